"""`vit train` end to end through the real command line (typer's runner, this process), on tiny configurations:
a core classifier on synthetic images, the bundled digits, a trainer (`mae`, vit-ssl) around an encoder,
a third-party model from a fake plugin, resuming, and the bad inputs."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from tests.fake_plugins import install_fake, registering
from vit_core.cli import app
from vit_core.registry import reset_registry

TINY = ["image_size=16", "patch_size=8", "dim=16", "depth=1", "heads=2", "mlp_dim=32", "dim_head=8"]
LABEL_TRAINER = """

import torch.nn.functional as F
from torch import nn
from vit_core.registry import Component


class LabelTrainer(nn.Module):
    def __init__(self, *, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, images, labels):
        return F.cross_entropy(self.encoder(images), labels)
"""
TOYCO = registering(
    "toy('toy-vit')",
    "toy('label-trainer', target='fake_toyco_plugin:LabelTrainer', kind='trainer', takes_labels=True, "
    "default_config={'encoder': Component('vit', TINY)})",
    extra=LABEL_TRAINER,
)
FAST = ["--batch-size", "16", "--lr", "1e-2", "--no-progress", "--log-every", "1"]


def sets(pairs: list[str], prefix: str = "") -> list[str]:
    return [arg for pair in pairs for arg in ("--set", prefix + pair)]


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Every installed plugin plus ``toyco`` (a fake third-party plugin registering ``toy-vit``)."""
    site = tmp_path / "site"
    site.mkdir()
    install_fake(site, "toyco", TOYCO, dist="vit-test-toyco")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("VIT_PLUGINS", raising=False)
    monkeypatch.chdir(tmp_path)
    importlib.invalidate_caches()
    reset_registry()
    torch.set_num_threads(1)
    yield lambda *args: CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    reset_registry()
    sys.modules.pop("fake_toyco_plugin", None)


def metrics(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output + result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_classifier_learns_then_resumes(invoke: Callable[..., Any], tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("train", "vit", *sets(TINY), "--data", "synthetic", "--epochs", "3", *FAST, "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "test accuracy" in result.stdout and "loop overhead" in result.stdout  # the summary table
    records = metrics(out)
    train = [r for r in records if r["split"] == "train"]
    tests = [r for r in records if r["split"] == "test"]
    assert len(tests) == 3 and train[-1]["step"] == tests[-1]["step"]
    assert sum(r["loss"] for r in train[-3:]) < sum(r["loss"] for r in train[:3])
    assert tests[-1]["accuracy"] > 0.4  # 4 classes: chance is 0.25
    checkpoint = out / "checkpoint"
    assert {p.name for p in checkpoint.iterdir()} == {
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    }
    steps = json.loads((checkpoint / "state.json").read_text())["step"]
    assert steps == train[-1]["step"]

    from vit_core import load_model

    model = load_model(checkpoint)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)  # the head was sized to the data's classes

    # the model's settings and the data come from the checkpoint; a contradicting --set is refused
    message = error(invoke("train", "vit", "--set", "dim=32", "--epochs", "5", *FAST, "--resume", out))
    assert "--set dim=32: the checkpoint" in message and "trained with dim=16" in message
    assert "trained on --data synthetic" in error(invoke("train", "vit", "--data", "digits", *FAST, "--resume", out))
    resumed = invoke("train", "vit", "--epochs", "5", *FAST, "--resume", out)
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert f"resuming at step {steps}" in resumed.stdout
    later = metrics(out)[len(records) :]
    assert later[0]["step"] == steps + 1 and later[-1]["step"] == steps * 5 // 3
    assert json.loads((checkpoint / "state.json").read_text())["step"] == steps * 5 // 3


def train_losses(out: Path) -> list[float]:
    return [r["loss"] for r in metrics(out) if r["split"] == "train"]


def test_digits(invoke: Callable[..., Any], tmp_path: Path) -> None:
    digits = invoke("train", "vit", *sets(TINY), "--max-steps", "3", *FAST, "--out", tmp_path / "digits")
    assert digits.exit_code == 0, digits.output + digits.stderr
    assert "on digits: 1618 train / 179 held out, 10 classes, sample (3, 16, 16)" in digits.stdout


def test_trainer_around_an_encoder_lowers_its_loss(invoke: Callable[..., Any], tmp_path: Path) -> None:
    pytest.importorskip("vit_ssl")
    mae = tmp_path / "mae"
    result = invoke(
        "train", "mae", "--encoder", "vit", *sets(TINY, "encoder."), "--data", "synthetic", "--epochs", "4",
        *FAST, "--out", mae,
    )  # fmt: skip
    assert result.exit_code == 0, result.output + result.stderr
    losses = train_losses(mae)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses
    records = metrics(mae)
    assert "accuracy" not in records[-1] and records[-1]["split"] == "test"
    config = json.loads((mae / "checkpoint" / "config.json").read_text())
    assert config["model"] == "mae" and config["config"]["encoder"]["__model__"]["model"] == "vit"
    message = error(invoke("train", "mae", "--encoder", "simple-vit", "--epochs", "5", *FAST, "--resume", mae))
    assert "--encoder simple-vit: the checkpoint" in message and "trained --encoder vit" in message


def test_third_party_model_and_labelled_trainer_train(invoke: Callable[..., Any], tmp_path: Path) -> None:
    toy = tmp_path / "toy"
    result = invoke("train", "toy-vit", "--data", "synthetic", "--epochs", "4", *FAST, "--out", toy)
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads((toy / "checkpoint" / "config.json").read_text())["plugin"] == "toyco"
    losses = train_losses(toy)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses
    assert metrics(toy)[-1]["accuracy"] > 0.5  # 4 classes: chance is 0.25

    # a trainer taking labels: its encoder (3 classes registered) gets the data's 4
    labels = invoke("train", "label-trainer", "--data", "synthetic", "--epochs", "1", *FAST, "--out", tmp_path / "lt")
    assert labels.exit_code == 0, labels.output + labels.stderr
    config = json.loads((tmp_path / "lt" / "checkpoint" / "config.json").read_text())
    assert config["config"]["encoder"]["__model__"]["config"]["num_classes"] == 4


def test_image_lists_and_clips(invoke: Callable[..., Any], tmp_path: Path) -> None:
    """NaViT gets lists of images, a video model the digits as moving clips (frames of its configuration)."""
    navit = invoke("train", "navit", *sets(TINY), "--data", "synthetic", "--max-steps", "2", *FAST, "--out", tmp_path)
    assert navit.exit_code == 0, navit.output + navit.stderr
    clips = invoke("train", "vit-3d", "--set", "frames=2", "--max-steps", "2", *FAST, "--out", tmp_path / "clips")
    assert clips.exit_code == 0, clips.output + clips.stderr
    assert "on digits: 1618 train / 179 held out, 10 classes, sample (3, 2, 16, 16)" in clips.stdout


def write_images(root: Path, classes: dict[str, int]) -> None:
    from PIL import Image

    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (12, 10), (40 * i, 100, 200)).save(root / name / f"{i}.png")


def test_image_folder(invoke: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_images(tmp_path / "images", {"cats": 5, "dogs": 5})
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = "folder:~/images"  # the shell does not expand ~ after "folder:"; the loader does
    result = invoke("train", "vit", *sets(TINY), "--data", folder, "--max-steps", "2", *FAST, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output + result.stderr
    assert "8 train / 2 held out, 2 classes, sample (3, 16, 16)" in result.stdout


def test_bad_input(invoke: Callable[..., Any], tmp_path: Path) -> None:
    base = [*sets(TINY), "--data", "synthetic", *FAST]
    assert "unknown model 'no-such-vit'" in error(invoke("train", "no-such-vit", *FAST))
    message = error(invoke("train", "vit", *base, "--set", "colour=3"))
    assert "colour" in message and "valid keys:" in message and "patch_size" in message
    assert "patch_size" in error(invoke("train", "vit", *base, "--set", "patch_size=5", "--max-steps", "1"))  # ViT's
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    assert "no images" in error(invoke("train", "vit", *base, "--data", f"folder:{tmp_path / 'empty'}"))
    write_images(tmp_path / "one", {"cats": 3})
    assert "only one class" in error(invoke("train", "vit", *base, "--data", f"folder:{tmp_path / 'one'}"))
    assert "no checkpoint" in error(invoke("train", "vit", *base, "--resume", tmp_path / "nothing"))
    run = tmp_path / "simple"
    assert invoke("train", "simple-vit", *base, "--max-steps", "1", "--out", run).exit_code == 0
    message = error(invoke("train", "vit", *base, "--epochs", "2", "--resume", run))
    assert "checkpoint is of model 'simple-vit', not 'vit'" in message
    assert "expected digits, synthetic" in error(invoke("train", "vit", *base, "--data", "mnist"))
    if "mae" in invoke("list").stdout:
        message = error(invoke("train", "mae", "--encoder", "vit", "--set", "encoder.colour=3", *FAST))
        assert "--set encoder.colour" in message and "encoder.patch_size" in message
    assert "backend" in error(invoke("train", "nystrom", *FAST)) if "nystrom" in invoke("list").stdout else True


def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    """torchrun, two CPU processes (gloo, loopback), each half of every global batch of 8: the final weights
    equal one process's on the whole batches, and only rank 0 writes (one metrics line per record)."""
    import os
    import subprocess

    from safetensors.torch import load_file

    args = [*sets(TINY), "--data", "synthetic", "--max-steps", "6", *FAST, "--batch-size", "8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("VIT_PLUGINS", None)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    one = subprocess.Popen(
        [sys.executable, "-m", "vit_core.cli", "train", "vit", *args, "--out", str(tmp_path / "one")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    two = subprocess.run(
        [*launch, "-m", "vit_core.cli", "train", "vit", *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out, err = one.communicate(timeout=600)
    assert one.returncode == 0, out + err
    assert two.returncode == 0, two.stdout + two.stderr
    assert "global batch 8, 2 process(es)" in two.stdout and two.stdout.count("training vit") == 1
    single, double = (load_file(str(tmp_path / run / "checkpoint" / "model.safetensors")) for run in ("one", "two"))
    assert single.keys() == double.keys()
    for key in single:
        torch.testing.assert_close(double[key], single[key], atol=1e-5, rtol=0, msg=key)
    assert len(metrics(tmp_path / "two")) == len(metrics(tmp_path / "one")) == 7  # 6 train lines + 1 test
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best", "checkpoint", "metrics.jsonl"]


def test_sample_shape_reads_each_models_own_input_arguments() -> None:
    """Every registered model's default configuration gives its registered sample; a changed size, channel
    or frame count reaches the sample through the argument the model names it by (CCT's img_size,
    CCT3D's num_frames, MobileViT's in_channels)."""
    from vit_core.registry import get_registry
    from vit_core.training.build import sample_shape

    registry = get_registry()
    for name, info in registry.entries.items():
        if info.kind == "model" and info.preset_of is None:
            assert sample_shape(info, info.default_config) == tuple(info.input_shape), name
    changed = {
        "cct": ({"img_size": 48}, (3, 48, 48)),
        "cct-3d": ({"img_size": 24, "num_frames": 6}, (3, 6, 24, 24)),
        "mobilevit": ({"in_channels": 1}, (1, 64, 64)),
        "vit": ({"image_size": (48, 32), "channels": 1}, (1, 48, 32)),
    }
    installed = {info.name for info in registry.entries.values()}
    assert {"cct", "cct-3d", "mobilevit"} <= installed  # the test session installs every plugin
    for name, (config, shape) in changed.items():
        info = registry.info(name)
        assert sample_shape(info, {**info.default_config, **config}) == shape, name
    with pytest.raises(ValueError, match=r"in_channels=\(8, 8\).*positive int"):
        sample_shape(registry.info("mobilevit"), {"in_channels": (8, 8)})


def test_a_bare_cuda_device_under_torchrun_is_the_local_gpu() -> None:
    from vit_core.training.distributed import select_device

    assert select_device("cuda", 2, 1) == torch.device("cuda", 1)  # torch.device needs no GPU to be built
    assert select_device("cuda:0", 2, 1) == torch.device("cuda", 0)
    assert select_device("cpu", 2, 1) == torch.device("cpu")
    assert select_device("cuda", 1, 0) == torch.device("cuda")


def test_set_values_are_python_literals_or_json_and_lists_are_tuples() -> None:
    from vit_core.cli.options import parse_sets

    parsed = parse_sets(["dim=64", "image_size=[32,48]", "pool='mean'", "pool2=mean", "flag=true", "none=null"])
    assert parsed == {"dim": 64, "image_size": (32, 48), "pool": "mean", "pool2": "mean", "flag": True, "none": None}
    assert parse_sets(["size=(16, 16)", "nested={'a': [1, 2]}"]) == {"size": (16, 16), "nested": {"a": (1, 2)}}


@pytest.mark.parametrize("size", ["abc", "", "(0, 16)", "[16, 16, 3, 4, 'x']"])
def test_a_size_that_is_no_size_is_named(size: str) -> None:
    from vit_core.cli.options import parse_sets
    from vit_core.registry import get_registry
    from vit_core.training.build import sample_shape
    from vit_core.training.config import TrainError

    with pytest.raises(TrainError, match=r"image_size=.*'vit' takes its input size as a positive int or a"):
        sample_shape(get_registry().info("vit"), parse_sets([f"image_size={size}"]))
