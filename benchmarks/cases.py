"""What is measured: comparisons of rows (one implementation called one way each), built here
and measured by :func:`measure`.

A :class:`Row` holds its model, its inputs, its call arguments and the work its label claims; its
inference and training calls are both built by :meth:`Row.call` from those same fields, so no mode
can be called with other arguments than the label says.  :func:`measure` counts every row's work
in each mode (:mod:`benchmarks.work`) and refuses the comparison before timing anything when a row
does not do the work its label claims.

Competitors are optional: an implementation whose package is missing is left out.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.harness import interleaved
from benchmarks.work import (
    MODES,
    PRODUCTS_ALONE,
    Claim,
    Encoder,
    Work,
    attention_layer_claim,
    check_work,
    count_work,
    packed_navit_claim,
    padded_navit_claim,
    products_alone,
    vit_claim,
)
from vit_core import NaViT, SimpleViT, ViT
from vit_core.layers import Attention
from vit_core.runtime.allocator import pinned_threshold_env


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
class Timer:
    """How :func:`benchmarks.harness.interleaved` is run: kept ``rounds``, ``warmup`` calls, and
    how many busy rounds may be thrown away (0 in quick runs, whose times mean nothing)."""

    rounds: int = 7
    warmup: int = 2
    max_discards: int = 20


QUICK_TIMER = Timer(rounds=1, warmup=0, max_discards=0)
"""(The work count before the timing already calls every row once per mode.)"""


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

    @property
    def encoder(self) -> Encoder:
        return Encoder(self.dim, self.depth, self.heads, self.dim // self.heads, self.mlp, 3 * self.patch**2, 1000)

    @property
    def patches(self) -> int:
        return (self.image // self.patch) ** 2


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

OURS = "ours"
OURS_NESTED = "ours (nested flavour)"
MATMUL_PROBE = "matmul probe"
"""Name of the square matrix products timed in the same rounds as the rows."""


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build(impl: str, case: ViTCase) -> nn.Module:
    """``ours``, ``vit-pytorch`` or ``timm`` at the same configuration."""
    if impl == OURS:
        return (SimpleViT if case.simple else ViT)(**case.kwargs)
    if impl == "vit-pytorch":
        from vit_pytorch.simple_vit import SimpleViT as SimpleReference
        from vit_pytorch.vit import ViT as Reference

        return (SimpleReference if case.simple else Reference)(**case.kwargs)
    import timm

    return timm.create_model(case.timm_name, num_classes=1000, **(TIMM_SIMPLE_VIT if case.simple else {}))


def implementations(case: ViTCase) -> list[str]:
    impls = [OURS]
    if available("vit_pytorch"):
        impls.append("vit-pytorch")
    if case.timm_name and available("timm"):
        impls.append("timm")
    return impls


def baseline_of(impls: list[str]) -> str:
    """The row every ViT ratio is taken against: timm where installed, else vit-pytorch, else ours."""
    return next(name for name in ("timm", "vit-pytorch", OURS) if name in impls)


def train_step(
    model: nn.Module,
    x: object,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    setup: Setup = CPU_FP32,
    *,
    forward: Callable[[object], torch.Tensor] | None = None,
    optimizer: bool = True,
    **kwargs: object,
) -> Callable[[], None]:
    """One training step as a zero-argument call: ``forward(x)`` (default ``model(x, **kwargs)``),
    ``loss_fn(output)``, backward, and an AdamW step unless ``optimizer=False``."""
    forward = forward or (lambda inputs: model(inputs, **kwargs))
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-4) if optimizer else None

    def step() -> None:
        with setup.autocast():
            loss = loss_fn(forward(x))
        if adamw is not None:
            adamw.zero_grad(set_to_none=True)
        loss.backward()
        if adamw is not None:
            adamw.step()
        setup.synchronize()

    return step


def infer(
    model: nn.Module,
    x: object,
    setup: Setup = CPU_FP32,
    *,
    forward: Callable[[object], torch.Tensor] | None = None,
    **kwargs: object,
) -> Callable[[], None]:
    forward = forward or (lambda inputs: model(inputs, **kwargs))

    def run() -> None:
        with torch.no_grad(), setup.autocast():
            forward(x)
        setup.synchronize()

    return run


def float_sum(out: torch.Tensor) -> torch.Tensor:
    """The loss of a one-layer row: the sum of its output, in float32."""
    return out.float().sum()


def logsumexp_loss(logits: torch.Tensor) -> torch.Tensor:
    """A label-free loss on logits (NaViT rows): every logit receives a gradient."""
    return logits.logsumexp(-1).mean()


def _trunk(model: nn.Module) -> nn.Module:
    for name in ("transformer", "blocks"):
        if isinstance(getattr(model, name, None), nn.Module):
            return getattr(model, name)
    return model


@dataclass
class Row:
    """One implementation called one way: ``model(inputs, **kwargs)`` (or ``forward(inputs)``) in
    every mode, and ``claim``, the work its label promises per call (the same in both modes: no
    row drops tokens at random; ``train_claim``, when given, is the training forward's, for a
    model whose attention hands a learned bias to a kernel in eval mode only).

    ``eager``: for a compiled row, the uncompiled module whose work is counted (the dispatch mode
    cannot see inside compiled kernels).  ``memory``: returns the peak memory of training (bytes)."""

    label: str
    model: nn.Module
    inputs: object
    claim: Claim
    about: str
    kwargs: dict = field(default_factory=dict)
    loss: Callable[[torch.Tensor], torch.Tensor] = float_sum
    forward: Callable[[object], torch.Tensor] | None = None
    optimizer: bool = True
    eager: nn.Module | None = None
    memory: Callable[[], int] | None = None
    train_claim: Claim | None = None

    @property
    def trunk(self) -> nn.Module:
        return _trunk(self.eager or self.model)

    def claim_for(self, mode: str) -> Claim:
        return self.train_claim if mode == "train" and self.train_claim is not None else self.claim

    def call(self, mode: str, setup: Setup = CPU_FP32, *, counted: bool = False) -> Callable[[], None]:
        """The zero-argument call timed for ``mode`` (``counted``: on the eager module)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        model = self.eager if counted and self.eager is not None else self.model
        model.train(mode == "train")
        forward = self.forward
        if mode == "infer":
            return infer(model, self.inputs, setup, forward=forward, **self.kwargs)
        return train_step(
            model, self.inputs, self.loss, setup, forward=forward, optimizer=self.optimizer, **self.kwargs
        )

    def count(self, mode: str, setup: Setup = CPU_FP32) -> Work:
        return count_work(self.call(mode, setup, counted=True), self.trunk)


@dataclass
class Comparison:
    """Rows timed against each other in the same interleaved rounds, in each of ``modes``.

    ``baseline``: the row every ratio of the table is taken against (``None``: only ``pairs``);
    ``pairs``: (subject, anchor) ratios that the plot and the targets read; ``items``: images per
    call (1: a call is the unit); ``useful``: the row whose FLOPs are the useful work (no padding);
    ``ceiling``: a row whose matrix products and attention kernels are also timed alone
    (:func:`~benchmarks.work.products_alone`) in the same rounds, under :data:`PRODUCTS_ALONE`;
    ``params``: what the table prints about the case."""

    section: str
    name: str
    rows: list[Row]
    pairs: list[tuple[str, str]]
    params: dict
    baseline: str | None = None
    items: int = 1
    useful: str | None = None
    ceiling: str | None = None
    modes: tuple[str, ...] = MODES

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)


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


def measure(comparison: Comparison, timer: Timer = Timer(), setup: Setup = CPU_FP32, probe_side: int = 1536) -> dict:
    """Count every row's work in each mode (raising :class:`~benchmarks.work.WorkMismatch` when a row
    does not do what its label claims), then time the rows, interleaved with a matrix-product probe,
    mode by mode; return the comparison as JSON-ready data."""
    works = {r.label: {mode: r.count(mode, setup) for mode in comparison.modes} for r in comparison.rows}
    check_work(
        comparison.name,
        {r.label: {m: (r.claim_for(m), works[r.label][m]) for m in comparison.modes} for r in comparison.rows},
    )
    probe, probe_flops = matmul_probe(probe_side, setup=setup)
    seconds: dict[str, dict[str, list[float]]] = {r.label: {} for r in comparison.rows}
    seconds |= {MATMUL_PROBE: {}, PRODUCTS_ALONE: {}}
    discarded = {}
    for mode in comparison.modes:
        calls = {r.label: r.call(mode, setup) for r in comparison.rows} | {MATMUL_PROBE: probe}
        if comparison.ceiling is not None:
            calls[PRODUCTS_ALONE] = products_alone(comparison.row(comparison.ceiling).call(mode, setup, counted=True))
        timing = interleaved(calls, rounds=timer.rounds, warmup=timer.warmup, max_discards=timer.max_discards)
        for label, times in timing.rounds.items():
            seconds[label][mode] = times
        discarded[mode] = timing.discarded
    ceiling = seconds.pop(PRODUCTS_ALONE)
    return {
        "section": comparison.section,
        "name": comparison.name,
        "params": comparison.params,
        "baseline": comparison.baseline,
        "pairs": [list(p) for p in comparison.pairs],
        "items": comparison.items,
        "useful": comparison.useful,
        "modes": list(comparison.modes),
        "probe": {"flops": probe_flops, "side": probe_side, "seconds": seconds.pop(MATMUL_PROBE)},
        "ceiling": {"label": comparison.ceiling, "seconds": ceiling} if comparison.ceiling else None,
        "discarded": discarded,
        "rows": [
            {
                "label": r.label,
                "about": r.about,
                "claim": r.claim.as_dict(),
                "work": {mode: works[r.label][mode].as_dict() for mode in comparison.modes},
                "seconds": seconds[r.label],
                "peak_memory": r.memory() if r.memory else None,
            }
            for r in comparison.rows
        ],
    }


# ---------------------------------------------------------------------------------------------
# ViT and SimpleViT

ABOUT = {
    OURS: "vit_core {model}{pruned}",
    "vit-pytorch": "vit-pytorch 1.26.11 {model}, same configuration",
    "timm": "timm {timm}{shape}, same width, depth and heads",
}


def _about(impl: str, case: ViTCase, compiled: bool = False) -> str:
    text = ABOUT[impl].format(
        model="SimpleViT" if case.simple else "ViT",
        pruned="" if case.simple else "; its last block runs for the class token only",
        timm=case.timm_name,
        shape=" shaped as SimpleViT (no class token, mean pooling, no qkv bias)" if case.simple else "",
    )
    return text + (", under torch.compile" if compiled else "")


def _vit_claim(impl: str, case: ViTCase, batch: int) -> Claim:
    prefix = 0 if case.simple else 1
    pruned = impl == OURS and not case.simple
    return vit_claim(case.encoder, batch, case.patches, prefix, pruned_last_block=pruned)


def vit_comparison(
    case: ViTCase, batch: int, setup: Setup = CPU_FP32, *, compile_ours: bool = False, memory: bool = True
) -> Comparison:
    """Ours, vit-pytorch and timm at ``case``'s configuration on one seeded batch (with
    ``compile_ours``, also ours under ``torch.compile``)."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, case.image, case.image, device=setup.device)
    loss = functools.partial(F.cross_entropy, target=torch.randint(0, 1000, (batch,), device=setup.device))
    impls = implementations(case)
    rows = [
        Row(
            impl,
            build(impl, case).to(setup.device),
            x,
            _vit_claim(impl, case, batch),
            _about(impl, case),
            loss=loss,
            memory=functools.partial(training_peak_memory, impl, case, batch, setup) if memory else None,
        )
        for impl in impls
    ]
    if compile_ours:
        eager = build(OURS, case).to(setup.device)
        compiled = torch.compile(eager)
        claim = _vit_claim(OURS, case, batch)
        rows.append(Row("ours+compile", compiled, x, claim, _about(OURS, case, True), loss=loss, eager=eager))
    baseline = baseline_of(impls)
    subjects = ["ours+compile"] if compile_ours else [OURS]
    anchors = [a for a in ("timm", "vit-pytorch") if a in impls] + ([OURS] if compile_ours else [])
    return Comparison(
        section="compile" if compile_ours else "vit",
        name=f"{case.name}, batch {batch}" + (", compiled" if compile_ours else ""),
        rows=rows,
        pairs=[(s, a) for s in subjects for a in anchors],
        params={"case": case.name, "batch": batch},
        baseline=baseline,
        items=batch,
        useful=OURS,
    )


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


def training_peak_memory(impl: str, case: ViTCase, batch: int, setup: Setup = CPU_FP32) -> int:
    """Peak memory increase (bytes) of two training steps (optimizer state included) in a fresh process,
    over its size once the model and batch are built: resident memory on CPU, allocated memory on CUDA."""
    return _run_fresh(MEMORY_SCRIPT.format(paths=sys.path, case=case.name, impl=impl, batch=batch, **_where(setup)))


# ---------------------------------------------------------------------------------------------
# NaViT


def mixed_resolution_images(count: int, low: int, high: int, patch: int, seed: int = 0) -> list[torch.Tensor]:
    rng = random.Random(seed)
    sides = list(range(low, high + 1, patch))
    return [torch.randn(3, rng.choice(sides), rng.choice(sides)) for _ in range(count)]


PACKING_LENGTHS = (1024, 256)
"""vit-pytorch ``na_vit``'s ``group_max_seq_len`` values compared (256 is its fastest on this CPU)."""


def navit_comparison(images: list[torch.Tensor], cfg: dict, setup: Setup = CPU_FP32) -> Comparison:
    """Our NaViT against vit-pytorch's padded ``na_vit`` at each of :data:`PACKING_LENGTHS`, and our
    nested-tensor flavour against vit-pytorch's nested-tensor NaViT, on the same images.

    No row drops tokens: ours and ``na_vit`` are built with ``token_dropout_prob=None`` (``na_vit``
    with ``0.0`` would still draw and gather a keep-mask for every image in training), the nested
    one with ``0.0``, its "off" (it compares the rate with 0 and refuses ``None`` in training)."""
    images = [image.to(setup.device) for image in images]
    patch = cfg["patch_size"]
    lengths = [(image.shape[1] // patch) * (image.shape[2] // patch) for image in images]
    encoder = Encoder(
        cfg["dim"], cfg["depth"], cfg["heads"], cfg["dim_head"], cfg["mlp_dim"], 3 * patch**2, cfg["num_classes"]
    )
    packed = packed_navit_claim(encoder, lengths)

    def row(label: str, model: nn.Module, claim: Claim, about: str, **kwargs: object) -> Row:
        return Row(label, model.to(setup.device), images, claim, about, kwargs=kwargs, loss=logsumexp_loss)

    rows = [
        row(OURS, NaViT(**cfg, token_dropout_prob=None), packed, "vit_core NaViT: exact packing, no padding, no mask"),
        row(
            OURS_NESTED,
            NaViT.nested_tensor_flavour(**cfg, token_dropout_prob=None),
            packed,
            "vit_core NaViT.nested_tensor_flavour(): LayerNorm QK-norm, biased patch norms, no pooling "
            "residual (the architecture of na_vit_nested); packed as ours",
        ),
    ]
    pairs = []
    if available("vit_pytorch"):
        from vit_pytorch.na_vit import NaViT as Padded
        from vit_pytorch.na_vit_nested_tensor import NaViT as Nested

        padded = Padded(**cfg, token_dropout_prob=None)
        for length in PACKING_LENGTHS:
            label = f"na_vit@{length}"
            about = (
                f"vit-pytorch na_vit called with group_images=True, group_max_seq_len={length} in both modes: "
                "groups padded to the longest, a dense mask per group"
            )
            claim = padded_navit_claim(encoder, lengths, length)
            rows.append(row(label, padded, claim, about, group_images=True, group_max_seq_len=length))
            pairs.append((OURS, label))
        about = "vit-pytorch na_vit_nested_tensor: jagged nested tensors, token_dropout_prob=0.0"
        rows.append(row("na_vit_nested", Nested(**cfg, token_dropout_prob=0.0), packed, about))
        pairs.append((OURS_NESTED, "na_vit_nested"))
    return Comparison(
        section="navit",
        name=f"NaViT, {len(images)} images",
        rows=rows,
        pairs=pairs,
        params={
            "images": len(images),
            "patches": sum(lengths),
            "patch": patch,
            "sides": f"{min(min(i.shape[1:]) for i in images)}..{max(max(i.shape[1:]) for i in images)}",
            **{k: cfg[k] for k in ("dim", "depth", "heads", "dim_head", "mlp_dim")},
        },
        items=len(images),
        useful=OURS,
        ceiling=OURS,
    )


# ---------------------------------------------------------------------------------------------
# One attention layer on long sequences


@contextmanager
def explicit_scores(attn: Attention) -> Iterator[None]:
    """Make ``attn`` take its own explicit score path (:meth:`~vit_core.layers.Attention.attend`:
    scores materialised, softmax, dropout on the weights, then the weighted values) with every hook
    of the layer applied: scale, QK-norm, score transforms.  The core takes that path for layers
    whose ``explicit_scores`` is true (and while a recorder is attached)."""
    previous = vars(attn).get("explicit_scores")
    attn.explicit_scores = True
    try:
        yield
    finally:
        if previous is None:
            del attn.explicit_scores
        else:
            attn.explicit_scores = previous


def explicit_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """``attn(x)`` through the layer's explicit score path (the vit-pytorch way of attending)."""
    with explicit_scores(attn):
        return attn(x)


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


def long_comparison(tokens: int, dim: int, heads: int, setup: Setup = CPU_FP32, *, memory: bool = True) -> Comparison:
    """Forward + backward of one attention layer on one sequence: the fused kernel against the same
    layer's explicit score path (no optimizer step)."""
    attn = Attention(dim, heads, dim // heads).to(setup.device)
    x = torch.randn(1, tokens, dim, device=setup.device, requires_grad=True)
    claim = attention_layer_claim(dim, heads, dim // heads, tokens)

    def peak(impl: str) -> Callable[[], int] | None:
        if not memory:
            return None
        script = LONG_SCRIPT.format(paths=sys.path, dim=dim, heads=heads, tokens=tokens, impl=impl, **_where(setup))
        return functools.partial(_run_fresh, script)

    common = dict(optimizer=False, loss=float_sum)
    rows = [
        Row(OURS, attn, x, claim, "vit_core Attention: fused SDPA", memory=peak(OURS), **common),
        Row(
            "explicit",
            attn,
            x,
            claim,
            "the same layer through its explicit score path (scores materialised)",
            forward=functools.partial(explicit_attention, attn),
            memory=peak("explicit"),
            **common,
        ),
    ]
    return Comparison(
        section="long",
        name=f"attention, {tokens} tokens",
        rows=rows,
        pairs=[(OURS, "explicit")],
        params={"tokens": tokens, "dim": dim, "heads": heads},
        baseline="explicit",
        useful=OURS,
        modes=("train",),
    )


def _where(setup: Setup) -> dict:
    return {"device": setup.device, "dtype": setup.dtype_name}


def _run_fresh(script: str) -> int:
    """Run ``script`` in a fresh Python process (glibc's mmap threshold pinned) and return the number it prints."""
    env = os.environ | pinned_threshold_env()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    return int(json.loads(out.stdout.strip().splitlines()[-1]))
