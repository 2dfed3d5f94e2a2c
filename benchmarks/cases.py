"""What is measured: ViT / SimpleViT throughput and memory, NaViT packing, long sequences, compile.

Competitors are optional: an implementation whose package is missing is left out of the table.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmarks.harness import Ratio, Timing, interleaved
from vit_core import NaViT, SimpleViT, ViT
from vit_core.layers import Attention
from vit_core.registry import count_flops


@dataclass(frozen=True)
class Setup:
    """Where and in what precision to run: ``device`` (``"cpu"``, ``"cuda"``) and ``dtype``
    (``torch.float32``, or a lower precision applied through autocast, e.g. ``torch.bfloat16``)."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32

    @property
    def dtype_name(self) -> str:
        """``"float32"``, ``"bfloat16"``...: the ``torch`` attribute naming ``dtype``."""
        return str(self.dtype).removeprefix("torch.")

    def autocast(self) -> torch.autocast:
        device_type = torch.device(self.device).type
        return torch.autocast(device_type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA runs asynchronously), so that a timed call is complete."""
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()


CPU_FP32 = Setup()


@dataclass(frozen=True)
class ViTCase:
    name: str
    image: int
    patch: int
    dim: int
    depth: int
    heads: int
    mlp: int
    timm_name: str | None
    simple: bool = False
    """SimpleViT (no class token, sin-cos positions, mean pooling, no qkv bias) instead of ViT."""

    @property
    def kwargs(self) -> dict:
        return dict(
            image_size=self.image, patch_size=self.patch, num_classes=1000, dim=self.dim,
            depth=self.depth, heads=self.heads, mlp_dim=self.mlp, dim_head=self.dim // self.heads,
        )  # fmt: skip


FULL = [
    ViTCase("ViT-S/16", 224, 16, 384, 12, 6, 1536, "vit_small_patch16_224"),
    ViTCase("ViT-B/16", 224, 16, 768, 12, 12, 3072, "vit_base_patch16_224"),
    ViTCase("SimpleViT-S/16", 224, 16, 384, 12, 6, 1536, "vit_small_patch16_224", simple=True),
    ViTCase("SimpleViT-B/16", 224, 16, 768, 12, 12, 3072, "vit_base_patch16_224", simple=True),
]
QUICK = [ViTCase("tiny", 32, 8, 64, 1, 2, 128, None), ViTCase("tiny-simple", 32, 8, 64, 1, 2, 128, None, simple=True)]

TIMM_SIMPLE_VIT = dict(class_token=False, global_pool="avg", fc_norm=False, qkv_bias=False)
"""timm's ViT shaped as SimpleViT: no class token, final norm then mean pooling, no qkv bias (its
positions stay learned, an addition of the same cost as the fixed sin-cos table)."""


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build(impl: str, case: ViTCase) -> torch.nn.Module:
    """``ours``, ``vit-pytorch`` or ``timm`` at the same configuration."""
    if impl == "ours":
        return (SimpleViT if case.simple else ViT)(**case.kwargs)
    if impl == "vit-pytorch":
        from vit_pytorch.simple_vit import SimpleViT as SimpleReference
        from vit_pytorch.vit import ViT as Reference

        return (SimpleReference if case.simple else Reference)(**case.kwargs)
    import timm

    return timm.create_model(case.timm_name, num_classes=1000, **(TIMM_SIMPLE_VIT if case.simple else {}))


def implementations(case: ViTCase) -> list[str]:
    impls = ["ours"]
    if available("vit_pytorch"):
        impls.append("vit-pytorch")
    if case.timm_name and available("timm"):
        impls.append("timm")
    return impls


def train_step(
    model: torch.nn.Module, x: object, loss_fn: Callable[[torch.Tensor], torch.Tensor], setup: Setup = CPU_FP32
) -> Callable[[], None]:
    """One optimizer step (forward, ``loss_fn(logits)``, backward, AdamW) as a zero-argument call."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with setup.autocast():
            loss = loss_fn(model(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        setup.synchronize()

    return step


def infer(model: torch.nn.Module, x: object, setup: Setup = CPU_FP32, **kwargs: object) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad(), setup.autocast():
            model(x, **kwargs)
        setup.synchronize()

    return run


MATMUL_PROBE = "matmul probe"
"""Name of the square matrix products timed in the same rounds as the training steps."""


def matmul_probe(n: int = 1536, repeats: int = 4, setup: Setup = CPU_FP32) -> tuple[Callable[[], None], float]:
    """``repeats`` products of two ``n x n`` matrices at the setup's precision, and their FLOPs."""
    a, b = (torch.randn(n, n, device=setup.device, dtype=setup.dtype) for _ in range(2))

    def mm() -> None:
        for _ in range(repeats):
            a @ b
        setup.synchronize()

    return mm, 2.0 * n**3 * repeats


def matmul_rate(n: int = 1536, repeats: int = 10, setup: Setup = CPU_FP32) -> float:
    """The device's matrix-product rate in FLOP/s at the setup's precision (median of ``repeats``)."""
    mm, flops = matmul_probe(n, repeats=1, setup=setup)
    timing = interleaved({"mm": mm}, rounds=repeats, warmup=2)
    return flops / timing.median("mm")


def matmul_share(timing: Timing, name: str, work: float, probe_work: float) -> Ratio:
    """``name``'s FLOP rate (``work`` FLOPs per call) over the probe's (``probe_work`` per call),
    round by round: each call is compared with the machine's rate in that very round."""
    return timing.speedup(name, MATMUL_PROBE).scaled(work / probe_work)


def vit_throughput(
    case: ViTCase,
    batch: int,
    rounds: int,
    compile_ours: bool = False,
    setup: Setup = CPU_FP32,
    probe_side: int = 1536,
) -> dict:
    """Images/s for inference and training of each implementation, interleaved, each one's speed-up
    over the baseline (timm where installed, else ours) as a median of per-round ratios, and its
    training FLOP rate as a share of the matrix-product rate timed in the same rounds."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, case.image, case.image, device=setup.device)
    y = torch.randint(0, 1000, (batch,), device=setup.device)
    impls = implementations(case)
    models = {impl: build(impl, case).to(setup.device) for impl in impls}
    if compile_ours:
        models["ours+compile"] = torch.compile(build("ours", case).to(setup.device))
    flops = {impl: count_flops(m, x[:1]) for impl, m in models.items() if impl != "ours+compile"}
    for m in models.values():
        m.eval()
    inference = interleaved({k: infer(m, x, setup) for k, m in models.items()}, rounds=rounds)
    for m in models.values():
        m.train()
    loss = functools.partial(F.cross_entropy, target=y)
    probe, probe_flops = matmul_probe(probe_side, setup=setup)
    steps = {k: train_step(m, x, loss, setup) for k, m in models.items()}
    training = interleaved(steps | {MATMUL_PROBE: probe}, rounds=rounds)
    baseline = "timm" if "timm" in models else "ours"
    return {
        impl: {
            "infer_ips": batch / inference.median(impl),
            "train_ips": batch / training.median(impl),
            "infer_speedup": inference.speedup(impl, baseline),
            "train_speedup": training.speedup(impl, baseline),
            "flops_per_image": flops.get(impl, flops["ours"]),
            "train_matmul_share": matmul_share(training, impl, 3 * flops.get(impl, flops["ours"]) * batch, probe_flops),
        }
        for impl in models
    } | {"discarded_rounds": inference.discarded + training.discarded}


MEMORY_SCRIPT = """
import functools, json, sys, torch
import torch.nn.functional as F
sys.path[:0] = {paths!r}
from benchmarks.cases import build, train_step, QUICK, FULL, Setup
from benchmarks.memory import peak_increase
setup = Setup({device!r}, getattr(torch, {dtype!r}))
case = next(c for c in QUICK + FULL if c.name == {case!r})
model = build({impl!r}, case).to(setup.device)
x = torch.randn({batch}, 3, case.image, case.image, device=setup.device)
y = torch.randint(0, 1000, ({batch},), device=setup.device)
step = train_step(model, x, functools.partial(F.cross_entropy, target=y), setup)
print(json.dumps(peak_increase(lambda: (step(), step()), setup.device)))
"""


FIXED_MMAP_THRESHOLD = 64 * 1024
"""glibc serves allocations above this size with ``mmap`` and returns them on free.  Its default
threshold moves with the allocation history, so large tensors may land on the heap and the peak
then depends on fragmentation (we saw +-100 MB run to run at ViT-B/16 batch 32); fixed, the peak
is that of the live tensors and repeats to the megabyte."""


def training_peak_memory(impl: str, case: ViTCase, batch: int, setup: Setup = CPU_FP32) -> int:
    """Peak memory increase (bytes) of two training steps (optimizer state included) in a fresh process,
    over its size once the model and batch are built: resident memory on CPU, allocated memory on CUDA."""
    return _run_fresh(MEMORY_SCRIPT.format(paths=sys.path, case=case.name, impl=impl, batch=batch, **_where(setup)))


def mixed_resolution_images(count: int, low: int, high: int, patch: int, seed: int = 0) -> list[torch.Tensor]:
    rng = random.Random(seed)
    sides = list(range(low, high + 1, patch))
    return [torch.randn(3, rng.choice(sides), rng.choice(sides)) for _ in range(count)]


def navit_padding_waste(images: list[torch.Tensor], patch: int, max_len: int) -> dict:
    """Shares of padded tokens and of wasted attention positions in vit-pytorch's padded packing."""
    groups, used = [[]], 0
    for img in images:
        n = (img.shape[1] // patch) * (img.shape[2] // patch)
        if used + n > max_len:
            groups, used = [*groups, []], 0
        groups[-1].append(n)
        used += n
    width = max(sum(g) for g in groups)
    tokens = sum(sum(g) for g in groups)
    useful_pairs = sum(n * n for g in groups for n in g)
    return {
        "padded_token_share": 1 - tokens / (len(groups) * width),
        "wasted_attention_share": 1 - useful_pairs / (len(groups) * width * width),
    }


def navit_throughput(images: list[torch.Tensor], cfg: dict, rounds: int, setup: Setup = CPU_FP32) -> dict:
    """Images/s of our NaViT and vit-pytorch's padded (two packing lengths) and nested-tensor NaViTs,
    and our speed-up over each (median of per-round ratios)."""
    images = [image.to(setup.device) for image in images]
    models = {"ours": NaViT(**cfg)}
    if available("vit_pytorch"):
        from vit_pytorch.na_vit import NaViT as Padded
        from vit_pytorch.na_vit_nested_tensor import NaViT as Nested

        models["na_vit"] = Padded(**cfg)
        models["na_vit_nested"] = Nested(**cfg)
    models = {k: m.to(setup.device) for k, m in models.items()}
    calls = {"ours": {}, "na_vit@1024": {"group_max_seq_len": 1024}, "na_vit@256": {"group_max_seq_len": 256}}
    calls = {k: v for k, v in calls.items() if k.split("@")[0] in models}
    results: dict = {}
    for mode in ("infer", "train"):
        runs = {}
        for label, kwargs in calls.items():
            model = models[label.split("@")[0]]
            grouping = dict(group_images=True, **kwargs) if kwargs else {}
            runs[label] = _navit_call(model, images, grouping, mode, setup)
        if "na_vit_nested" in models:
            runs["na_vit_nested"] = _navit_call(models["na_vit_nested"], images, {}, mode, setup)
        timing = interleaved(runs, rounds=rounds)
        for label in runs:
            results.setdefault(label, {})[f"{mode}_ips"] = len(images) / timing.median(label)
            results[label][f"ours_{mode}_speedup"] = timing.speedup("ours", label)
    return results


def _navit_call(model: torch.nn.Module, images: list, grouping: dict, mode: str, setup: Setup) -> Callable[[], None]:
    if mode == "infer":
        model.eval()
        return infer(model, images, setup, **grouping)
    model.train()
    return train_step(model, images, lambda logits: logits.logsumexp(-1).mean(), setup)


def explicit_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention that materialises the score matrix (the vit-pytorch way)."""
    b, n, _ = x.shape
    q, k, v = attn.to_qkv(x).view(b, n, 3, attn.heads, attn.dim_head).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-1, -2) * attn.dim_head**-0.5).softmax(-1)
    return attn.to_out((weights @ v).transpose(1, 2).reshape(b, n, -1))


LONG_SCRIPT = """
import json, sys, torch
sys.path[:0] = {paths!r}
from benchmarks.cases import Setup, explicit_attention
from benchmarks.memory import peak_increase
from vit_core.layers import Attention
setup = Setup({device!r}, getattr(torch, {dtype!r}))
attn = Attention({dim}, {heads}, {dim} // {heads}).to(setup.device)
x = torch.randn(1, {tokens}, {dim}, device=setup.device, requires_grad=True)
fn = (lambda: attn(x)) if {impl!r} == "ours" else (lambda: explicit_attention(attn, x))

def step():
    with setup.autocast():
        out = fn()
    out.float().sum().backward()

print(json.dumps(peak_increase(step, setup.device)))
"""


def long_sequence(tokens: int, dim: int, heads: int, rounds: int, setup: Setup = CPU_FP32) -> dict:
    """Forward+backward time and peak memory of one attention layer, fused vs explicit softmax."""
    attn = Attention(dim, heads, dim // heads).to(setup.device)
    x = torch.randn(1, tokens, dim, device=setup.device, requires_grad=True)

    def step(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with setup.autocast():
                out = fn()
            out.float().sum().backward()
            setup.synchronize()

        return run

    timing = interleaved(
        {"ours": step(lambda: attn(x)), "explicit": step(lambda: explicit_attention(attn, x))},
        rounds=rounds,
        warmup=1,
    )
    out = {}
    for impl in ("ours", "explicit"):
        script = LONG_SCRIPT.format(paths=sys.path, dim=dim, heads=heads, tokens=tokens, impl=impl, **_where(setup))
        out[impl] = {
            "seconds": timing.median(impl),
            "speedup": timing.speedup(impl, "explicit"),
            "peak_memory": _run_fresh(script),
        }
    return out


def _where(setup: Setup) -> dict:
    return {"device": setup.device, "dtype": setup.dtype_name}


def _run_fresh(script: str) -> int:
    """Run ``script`` in a fresh Python process (glibc's mmap threshold pinned) and return the number it prints."""
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": str(FIXED_MMAP_THRESHOLD)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    return int(json.loads(out.stdout.strip().splitlines()[-1]))
