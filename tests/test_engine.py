"""The training engine's parts alone (parameter groups, layer decay, schedule, EMA, accumulation, precision)
and through ``vit train``: a run killed with SIGKILL after a mid-epoch checkpoint resumes to the weights of an
uninterrupted one, a non-finite loss stops the run naming the step, and the engine's bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from vit_core.models.base import VisionModel
from vit_core.registry import get_registry
from vit_core.training.config import TrainConfig, TrainError
from vit_core.training.ema import ModelEma
from vit_core.training.layout import batch_layout, to_channels_last
from vit_core.training.loop import train
from vit_core.training.optim import layer_scales, no_decay_names, parameter_groups
from vit_core.training.schedule import Schedule, peak_lr, warmup_steps

TINY = {"image_size": 16, "patch_size": 8, "dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32, "dim_head": 8}
TINY_ARGS = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
LINEAR_MAPS = ("attn.mix", "attn.mix_scores", "attn.mix_weights")
"""Free 2-D parameters that are linear maps (talking heads, re-attention), decayed like any projection."""


def first_party_models() -> list[tuple[str, nn.Module]]:
    registry = get_registry()
    return [
        (name, registry.create(name, **info.default_config))
        for name, info in sorted(registry.entries.items())
        if info.kind == "model" and info.preset_of is None
    ]


def test_weight_decay_groups_of_every_first_party_model() -> None:
    """No 1-D parameter decays; every free parameter of 2+ dimensions (not the weight of a Linear, conv or
    embedding layer: positions, tokens, tables) is declared, except linear mixing maps; every declared name is
    a parameter."""
    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)
    for name, model in first_party_models():
        params = dict(model.named_parameters())
        declared = model.no_weight_decay()
        assert declared <= set(params), (name, declared - set(params))
        groups = parameter_groups(model, 0.05)
        decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
        assert not [n for n in decayed if params[n].ndim <= 1], name
        weights = {
            f"{prefix}.{n}" if prefix else n
            for prefix, module in model.named_modules()
            if isinstance(module, layers)
            for n, _ in module.named_parameters(recurse=False)
        }
        free = [n for n in decayed if n not in weights and not n.endswith(LINEAR_MAPS)]
        assert not free, (name, free)
    vit = get_registry().create("vit", **TINY)
    assert {"cls_token", "cls_pos", "pos_embed.weight"} <= no_decay_names(vit)
    assert "transformer.layers.0.attn.to_qkv.weight" not in no_decay_names(vit)


def test_layer_decay_rates_per_block() -> None:
    vit = get_registry().create("vit", **TINY)
    scales = layer_scales(vit, 0.5)  # 2 blocks: stem 0.5**3, block 0 0.5**2, block 1 0.5, head 1
    assert scales["cls_token"] == scales["patch_embed.proj.weight"] == 0.125
    assert scales["transformer.layers.0.attn.to_qkv.weight"] == 0.25
    assert {scales[n] for n in scales if n.startswith("transformer.layers.1.")} == {0.5}
    assert scales["head.weight"] == scales["transformer.norm.weight"] == 1.0
    groups = parameter_groups(vit, 0.05, 0.5)
    assert sorted({g["lr_scale"] for g in groups}) == [0.125, 0.25, 0.5, 1.0]
    for name, model in first_party_models():  # every first-party model but the adapter declares its order
        if name.endswith("learnable-memory-adapter"):
            with pytest.raises(TrainError, match="declares no block order"):
                layer_scales(model, 0.7)
            continue
        order = model.block_order()
        assert order is not None and order.blocks, name
        for pattern in (*order.stem, *(p for block in order.blocks for p in block)):
            assert any(n == pattern or n.startswith(pattern + ".") for n, _ in model.named_parameters()), (
                name,
                pattern,
            )


def test_schedule_at_warmup_end_and_last_step() -> None:
    schedule = Schedule(total=100, warmup=10, lr=1e-3, min_lr=1e-5)
    assert schedule.at(0) == pytest.approx(1e-4)
    assert schedule.at(9) == pytest.approx(1e-3)  # the warm-up's last step reaches the peak
    assert schedule.at(10) == pytest.approx(1e-3)
    assert schedule.at(100) == pytest.approx(1e-5)
    assert schedule.at(55) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # half-way down the cosine
    assert warmup_steps(100, 20, 0.1, None) == 10 and warmup_steps(100, 20, 0.1, 1.5) == 30
    assert peak_lr(3e-3, 5e-4, 1024) == pytest.approx(1e-3)


def test_ema_of_a_constant_model_is_that_model_and_warms_up() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ema = ModelEma(model, 0.999)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # the EMA's copy was taken before: the first update copies, later ones stay put
    for _ in range(5):
        ema.update(model)
    for a, b in zip(ema.module.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert ema.decay_at(1) == 0.0
    assert ema.decay_at(2) == pytest.approx(1 - 2 ** (-2 / 3))  # timm ModelEmaV3's warm-up
    assert ema.decay_at(10**9) == 0.999


def run_config(out: Path, **changes) -> TrainConfig:
    settings = {"overrides": dict(TINY), "data": "digits", "workers": 0, "max_steps": 6, "out": out,
                "progress": False, "threads": 1, "log_every": 1, **changes}  # fmt: skip
    return TrainConfig("vit", **settings)


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_accumulation_reaches_the_same_weights(tmp_path: Path, opt: str) -> None:
    """``--batch-size 64 --accum-steps 4`` equals ``--batch-size 64`` (fp32, no dropout) within 1e-5 (SGD
    without clipping sees the gradient's scale, which AdamW does not)."""
    train(run_config(tmp_path / "one", batch_size=64, opt=opt, clip=0.0), log=lambda _: None)
    train(run_config(tmp_path / "four", batch_size=64, accum_steps=4, opt=opt, clip=0.0), log=lambda _: None)
    one, four = (load_file(str(tmp_path / run / "checkpoint" / "model.safetensors")) for run in ("one", "four"))
    for key in one:
        torch.testing.assert_close(four[key], one[key], atol=1e-5, rtol=0, msg=key)


def test_bf16_on_cpu_trains(tmp_path: Path) -> None:
    result = train(run_config(tmp_path / "bf16", precision="bf16", max_steps=30, lr=1e-2), log=lambda _: None)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-5:]) < sum(losses[:5]), losses
    weights = load_file(str(tmp_path / "bf16" / "checkpoint" / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}  # master weights and checkpoints in fp32
    assert result.steps == 30


def test_bf16_evaluates_under_the_runs_autocast(tmp_path: Path) -> None:
    """The held-out pass runs under the training autocast (bf16 evaluation is 2x faster on CPU), fp32 without."""
    seen: dict[bool, set[bool]] = {True: set(), False: set()}

    def record(module: nn.Module, args: tuple, output: object) -> None:
        if isinstance(module, VisionModel):
            seen[module.training].add(torch.is_autocast_enabled("cpu"))

    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        train(run_config(tmp_path / "bf16", precision="bf16", max_steps=2), log=lambda _: None)
        assert seen == {True: {True}, False: {True}}
        seen[True].clear(), seen[False].clear()
        train(run_config(tmp_path / "fp32", max_steps=2), log=lambda _: None)
        assert seen == {True: {False}, False: {False}}
    finally:
        handle.remove()


def test_channels_last_reaches_the_same_weights_and_lays_out_grey_convolutions(tmp_path: Path) -> None:
    """``--channels-last`` changes memory order only: a CCT on grey digits reaches the default layout's weights
    (fp32, within 1e-5); a one-channel convolution's weight gets explicit channels-last strides, so its output
    is channels-last too (``contiguous`` would leave it NCHW, where max pooling runs 7x slower)."""
    cct = {"img_size": 8, "n_input_channels": 1, "embedding_dim": 16, "n_conv_layers": 2, "kernel_size": 3,
           "stride": 1, "padding": 1, "num_layers": 1, "num_heads": 2, "mlp_ratio": 1.0,
           "stochastic_depth_rate": 0.0, "attention_dropout": 0.0, "positional_embedding": "learnable"}  # fmt: skip
    runs = {}
    for name, channels_last in (("plain", False), ("nhwc", True)):
        config = run_config(tmp_path / name, overrides=cct, channels_last=channels_last, max_steps=4)
        train(replace(config, name="cct"), log=lambda _: None)
        runs[name] = load_file(str(tmp_path / name / "checkpoint" / "model.safetensors"))
    for key in runs["plain"]:
        torch.testing.assert_close(runs["nhwc"][key], runs["plain"][key], atol=1e-5, rtol=0, msg=key)
    conv = to_channels_last(nn.Conv2d(1, 8, 3, padding=1))
    assert conv.weight.stride() == (9, 1, 3, 1)
    batch = batch_layout(torch.rand(2, 1, 8, 8), True)
    assert batch.stride(1) == 1 and conv(batch).is_contiguous(memory_format=torch.channels_last)
    assert batch_layout(torch.rand(2, 1, 3, 8, 8), True).is_contiguous()  # video stays as it is


@pytest.mark.skipif(
    shutil.which("g++") is None or not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists(),
    reason="torch.compile's CPU backend builds C++ extensions: it needs g++ and Python's headers",
)
def test_compile_trains_through_the_compiled_graph(tmp_path: Path) -> None:
    """``--compile`` runs the steps through dynamo's graph (counted) and reaches the eager run's weights up to
    the kernels' rounding, which AdamW's normalised update can scale to a fraction of one step's size."""
    import torch._dynamo

    train(run_config(tmp_path / "eager", max_steps=3), log=lambda _: None)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    train(run_config(tmp_path / "compiled", max_steps=3, compile=True), log=lambda _: None)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    eager, compiled = (
        load_file(str(tmp_path / run / "checkpoint" / "model.safetensors")) for run in ("eager", "compiled")
    )
    assert eager.keys() == compiled.keys()
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], atol=3e-3, rtol=0, msg=key)  # lr 3e-3: one step
    torch._dynamo.reset()


def test_a_non_finite_loss_stops_the_run_naming_the_step(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"the loss is not finite at step \d+"):
        train(run_config(tmp_path / "nan", lr=1e30, clip=0.0, warmup=0.0, max_steps=20), log=lambda _: None)
    assert not (tmp_path / "nan" / "checkpoint").exists()  # nothing written after the loss went bad


def cli(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("VIT_PLUGINS", None)
    command = [sys.executable, "-m", "vit_core.cli", "train", "vit", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_a_run_killed_after_a_mid_epoch_checkpoint_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """SIGKILL after the checkpoint at step 9 (mid-epoch 1), ``--resume RUN`` alone: the final weights, the EMA
    and the optimizer state equal an uninterrupted run's (fp32, one process) within 1e-6."""
    args = [*TINY_ARGS, "--epochs", "2", "--batch-size", "64", "--workers", "0", "--no-progress", "--ema", "0.9",
            "--checkpoint-every", "9", "--log-every", "1", "--threads", "1"]  # fmt: skip
    whole = cli(*args, "--out", str(tmp_path / "whole"))
    killed = cli(*args, "--out", str(tmp_path / "killed"))
    state = tmp_path / "killed" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while not (state.is_file() and json.loads(state.read_text())["step"] >= 9):
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    step = json.loads(state.read_text())["step"]
    assert step < 29 and step % 29, step  # 29 steps an epoch: killed mid-epoch, before the run's end
    resumed = cli("--resume", str(tmp_path / "killed"))
    outputs = []
    for proc in (whole, resumed):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out + err
        outputs.append(out)
    assert f"resuming at step {step}" in outputs[1]
    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        a, b = (load_file(str(tmp_path / run / "checkpoint" / name)) for run in ("whole", "killed"))
        assert a.keys() == b.keys(), name
        for key in a:
            torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=0, msg=f"{name} {key}")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"precision": "fp16", "device": "cpu"}, "--precision fp16 needs a CUDA device"),
        ({"accum_steps": 0}, "--accum-steps must be a positive int"),
        ({"ema": 1.5}, r"--ema must be a decay in \[0, 1\)"),
        ({"strategy": "fsdp"}, "--strategy fsdp shards the model across processes: start it with torchrun"),
        ({"opt": "lamb"}, "--opt must be one of adamw, sgd, got 'lamb'"),
        ({"drop_path": 1.5}, r"--drop-path must be a probability in \[0, 1\)"),
    ],
)
def test_bad_engine_options(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(TrainError, match=message):
        train(run_config(tmp_path / "bad", **changes), log=lambda _: None)


def test_layer_decay_on_a_model_without_block_order_and_init_of_another_kind(tmp_path: Path) -> None:
    class Plain(VisionModel):
        pass

    with pytest.raises(TrainError, match="Plain declares no block order"):
        layer_scales(Plain(), 0.75)
    train(run_config(tmp_path / "simple", max_steps=1), log=lambda _: None)
    other = TrainConfig("simple-vit", data="digits", workers=0, max_steps=1, out=tmp_path / "x", progress=False)
    with pytest.raises(TrainError, match=r"--init .* holds a 'vit' model, not 'simple-vit'"):
        train(TrainConfig(**{**other.__dict__, "init": str(tmp_path / "simple")}), log=lambda _: None)


def test_init_remakes_the_head_resamples_positions_and_records_the_start(tmp_path: Path) -> None:
    train(run_config(tmp_path / "source", max_steps=2), log=lambda _: None)
    notes: list[str] = []
    cfg = run_config(tmp_path / "tuned", max_steps=2, data="synthetic", init=str(tmp_path / "source"))
    cfg.overrides = {"image_size": 24}
    train(cfg, log=notes.append)
    assert any("a new 4-class head" in n and "positions resampled from image_size=16 to 24" in n for n in notes), notes
    state = json.loads((tmp_path / "tuned" / "checkpoint" / "state.json").read_text())
    assert state["init"] == str(tmp_path / "source")
    config = json.loads((tmp_path / "tuned" / "checkpoint" / "config.json").read_text())["config"]
    assert config["dim"] == 16 and config["image_size"] == 24 and config["num_classes"] == 4
