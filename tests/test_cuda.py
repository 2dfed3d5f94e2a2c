"""GPU readiness (marked ``cuda``, skipped without a CUDA GPU; ``python -m benchmarks.gpu_check`` runs them):
bf16 and fp16 training steps of ViT, NaViT (packed, through the varlen kernel) and one model of each plugin
through ``vit train``'s loop; ViT's attention on a fused SDPA kernel (the math fallback is switched off, so it
would raise); ``--compile``; DistributedDataParallel over nccl on one device, and ``vit train`` under torchrun.
On any machine: the script's ``--help``, and its refusal without CUDA."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.nn.attention import SDPBackend, sdpa_kernel

import vit_core.layers.packing as packing
from vit_core import ViT
from vit_core.registry import get_registry
from vit_core.training.checkpoint import CHECKPOINT
from vit_core.training.config import TrainConfig
from vit_core.training.loop import train
from vit_core.training.precision import Precision
from vit_core.training.step import TrainStep


def gpu(test: Callable[..., None]) -> Callable[..., None]:
    """``test`` marked ``cuda`` (``pytest -m cuda`` selects it) and skipped without a CUDA GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


MODELS = ["vit", "navit", "pit", "vivit", "mae", "ats-vit", "cait"]
"""The core's two, then one of each plugin: hierarchical, video, ssl (a trainer around a ViT), efficient, variants."""
FUSED = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]


def run(name: str, out: Path, **settings) -> tuple[float, dict[str, torch.Tensor]]:
    """A few steps of ``name``'s default configuration on synthetic data on the GPU: the last training loss
    and the checkpoint's weights."""
    if name not in {info.name for info in get_registry().list()}:
        pytest.skip(f"{name} is not installed")
    cfg = TrainConfig(
        name, data="synthetic", batch_size=8, max_steps=3, device="cuda", out=out, progress=False, log_every=1,
        **settings,
    )  # fmt: skip
    result = train(cfg, log=lambda _: None)
    return result.train_loss, load_file(str(out / CHECKPOINT / "model.safetensors"))


@gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", MODELS)
def test_a_mixed_precision_training_step(
    name: str, precision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finite losses, float32 master weights in the checkpoint; NaViT's packed attention on the varlen kernel."""
    calls: list[int] = []
    real = packing.varlen_attn
    if real is not None:
        monkeypatch.setattr(packing, "varlen_attn", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    loss, weights = run(name, tmp_path, precision=precision)
    assert math.isfinite(loss)
    assert {tensor.dtype for tensor in weights.values() if tensor.is_floating_point()} == {torch.float32}
    if name == "navit":
        assert calls, "NaViT's packed batches should run torch's varlen attention on this GPU"


@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_vit_attention_runs_a_fused_kernel(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward and backward under autocast with only the flash and memory-efficient SDPA kernels allowed:
    the math fallback would raise "No available kernel"."""
    calls: list[int] = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    model = ViT(image_size=64, patch_size=16, num_classes=10, dim=128, depth=2, heads=4, mlp_dim=256, dim_head=32)
    model = model.cuda()
    with sdpa_kernel(FUSED), torch.autocast("cuda", dtype=dtype):
        loss = model(torch.randn(4, 3, 64, 64, device="cuda")).float().logsumexp(-1).mean()
    loss.backward()
    assert len(calls) == 2, "each of the two blocks attends through scaled_dot_product_attention"
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@gpu
def test_a_training_run_under_sdpa_kernel_restriction(tmp_path: Path) -> None:
    """``vit train vit --precision bf16`` end to end with the math kernel switched off."""
    with sdpa_kernel(FUSED):
        loss, _ = run("vit", tmp_path, precision="bf16")
    assert math.isfinite(loss)


@gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compile(precision: str, tmp_path: Path) -> None:
    """``--compile``: the steps run compiled, to a loss near eager's (the compiled kernels sum in another order,
    and Adam's normalised steps amplify that in weights whose gradients are near zero: losses are compared)."""
    compiled, _ = run("vit", tmp_path / "compiled", precision=precision, compile=True)
    eager, _ = run("vit", tmp_path / "eager", precision=precision)
    assert math.isfinite(compiled)
    assert abs(compiled - eager) < 0.05 * max(1.0, abs(eager))


@gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ddp_over_nccl_on_one_device_equals_the_bare_model(precision: str) -> None:
    """A world of one over nccl: DistributedDataParallel (two micro-batches, ``no_sync`` on the first) steps
    the weights as the bare model does."""
    import torch.distributed as dist

    torch.manual_seed(0)
    model = ViT(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128).cuda()
    bare = copy.deepcopy(model)
    x, y = torch.randn(8, 3, 32, 32, device="cuda"), torch.randint(0, 10, (8,), device="cuda")
    dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1, device_id=torch.device("cuda", 0))
    try:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0])
        for net, module in ((wrapped, model), (bare, bare)):
            optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
            step = TrainStep(net, optimizer, Precision.of(precision, torch.device("cuda")), list(module.parameters()),
                             accum_steps=2)  # fmt: skip
            loss = step(x, y, lambda inputs, targets, net=net: F.cross_entropy(net(inputs), targets))
            assert torch.isfinite(loss)
    finally:
        dist.destroy_process_group()
    for (key, got), expected in zip(model.state_dict().items(), bare.state_dict().values()):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=key)


@gpu
def test_vit_train_under_torchrun_on_the_gpu(tmp_path: Path) -> None:
    """``torchrun --nproc-per-node 1 -m vit_core.cli train vit --device cuda --precision bf16``."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    args = ["--data", "synthetic", "--max-steps", "3", "--batch-size", "8", "--no-progress", "--precision", "bf16"]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "vit_core.cli",
         "train", "vit", *args, "--device", "cuda", "--out", str(tmp_path / "run")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 process(es) on cuda" in result.stdout
    assert (tmp_path / "run" / CHECKPOINT / "model.safetensors").is_file()


def test_gpu_check_helps_and_refuses_without_cuda(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """``python -m benchmarks.gpu_check --help`` runs anywhere; without CUDA the check stops at once, naming why."""
    from benchmarks import gpu_check

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "--write-docs" in done.stdout and "--skip-tests" in done.stdout, done.stderr
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ran: list[object] = []
    monkeypatch.setattr(gpu_check, "run_tests", lambda: ran.append(1))
    with pytest.raises(SystemExit) as stop:
        gpu_check.main([])
    assert stop.value.code != 0 and "needs a CUDA GPU" in str(stop.value.code) and "sees none" in str(stop.value.code)
    assert ran == [], "nothing runs before the check"
    with pytest.raises(SystemExit):
        gpu_check.main(["--batch", "0"])
    assert "--batch must be at least 1, got 0" in capsys.readouterr().err
