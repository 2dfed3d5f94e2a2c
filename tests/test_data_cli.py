"""``vit train`` on real image collections, through the real command line: generated JPEG/PNG folders of varied
sizes and modes (an EXIF-rotated photo, grey, palette, RGBA, CMYK, 16-bit), both folder layouts, ``--val-data``,
bad files, WebDataset shards, and the trained model used by ``vit predict``, ``vit eval`` and ``load_model``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from vit_core.cli import app  # noqa: E402
from vit_core.interop.saving import load_model  # noqa: E402
from vit_core.registry import reset_registry  # noqa: E402

TINY = ["image_size=16", "patch_size=8", "dim=16", "depth=1", "heads=2", "mlp_dim=32", "dim_head=8", "channels=3"]
FAST = ["--batch-size", "8", "--lr", "1e-2", "--no-progress", "--log-every", "1", "--workers", "0"]
COLOURS = {"blue": 2, "green": 1, "red": 0}


def sets(pairs: list[str]) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def photo(rng: np.random.Generator, channel: int) -> Image.Image:
    """A noisy photo of random size and aspect whose dominant colour channel is the class."""
    width, height = (int(v) for v in rng.integers(20, 60, 2))
    pixels = rng.integers(0, 70, (height, width, 3)).astype(np.uint8)
    pixels[:, :, channel] += 170
    return Image.fromarray(pixels)


def save_varied(image: Image.Image, path: Path, index: int) -> None:
    """Save in one of several modes and formats, as a real collection mixes them."""
    kind = index % 5
    if kind == 0:
        image.save(path.with_suffix(".JPG"), quality=95)
    elif kind == 1:
        image.save(path.with_suffix(".png"))
    elif kind == 2:
        image.convert("RGBA").save(path.with_suffix(".png"))
    elif kind == 3:
        image.convert("P").save(path.with_suffix(".gif"))
    else:
        image.convert("CMYK").save(path.with_suffix(".jpeg"), quality=95)


def collection(root: Path, per_class: int, seed: int = 0, classes: dict[str, int] = COLOURS) -> Path:
    rng = np.random.default_rng(seed)
    for name, channel in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            save_varied(photo(rng, channel), root / name / f"img{i:03d}", i)
    return root


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VIT_PLUGINS", raising=False)
    reset_registry()
    torch.set_num_threads(1)
    yield lambda *args: CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    reset_registry()


def ok(result: Any) -> str:
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output + result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_folder_trains_and_the_run_predicts_and_evaluates(invoke, tmp_path):
    data = collection(tmp_path / "photos", per_class=12)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotated on display: the loader must turn it upright
    photo(np.random.default_rng(9), 0).save(data / "red" / "rotated.jpg", exif=exif)
    (data / "red" / ".DS_Store").write_bytes(b"\0")
    (data / "red" / "notes.txt").write_text("not an image")
    grey16 = (np.random.default_rng(3).integers(0, 65535, (24, 24))).astype(np.uint16)
    Image.fromarray(grey16).save(data / "green" / "grey16.png")
    out = tmp_path / "run"
    stdout = ok(invoke("train", "vit", *sets(TINY), "--data", f"folder:{data}", "--epochs", "4", *FAST, "--out", out))
    assert "35 train / 3 held out, 3 classes" in stdout  # 38 images (hidden and text files ignored), 1 per class
    assert "epoch 4 done: held-out accuracy" in stdout  # plain lines where stdout is not a terminal
    assert sorted(p.name for p in out.iterdir()) == ["best", "checkpoint", "metrics.jsonl"]

    model = load_model(out)  # the run folder stands for its best checkpoint
    cfg = model.pretrained_cfg
    assert cfg["label_names"] == ["blue", "green", "red"] and cfg["input_size"] == [3, 16, 16]
    assert cfg["mean"] == [0.485, 0.456, 0.406] and cfg["crop_pct"] == 0.875 and cfg["interpolation"] == "bicubic"
    assert load_model(out / "checkpoint").pretrained_cfg == cfg

    val = collection(tmp_path / "val", per_class=4, seed=5)
    predicted = json.loads(ok(invoke("predict", out, *sorted((val / "red").iterdir()), "--top-k", "2", "--json")))
    assert len(predicted) == 4 and all(len(p["top"]) == 2 for p in predicted)
    assert {entry["label"] for p in predicted for entry in p["top"]} <= {"blue", "green", "red"}
    assert all(p["top"][0]["probability"] >= p["top"][1]["probability"] for p in predicted)

    report = json.loads(ok(invoke("eval", out / "best", "--data", f"folder:{val}", "--json", "--workers", "0")))
    confusion = np.array(report["confusion"])
    assert confusion.sum() == report["samples"] == 12
    hand = {"top1": 0, "count": 0}
    for p in json.loads(ok(invoke("predict", out / "best", *sorted(val.rglob("*.*")), "--top-k", "1", "--json"))):
        hand["count"] += 1
        hand["top1"] += p["top"][0]["label"] == Path(p["image"]).parent.name
    assert report["top1"] == pytest.approx(hand["top1"] / hand["count"])
    assert report["top1"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert report["top5"] == 1.0  # three classes
    plot = tmp_path / "confusion.png"
    ok(invoke("eval", out, "--data", f"folder:{val}", "--plot", plot, "--workers", "0"))
    with Image.open(plot) as picture:
        assert picture.format == "PNG"


def test_imagenet_layout_val_data_and_class_mapping(invoke, tmp_path):
    root = tmp_path / "imagenet"
    collection(root / "train", per_class=6)
    collection(root / "val", per_class=2, seed=1, classes={"red": 0, "blue": 2})  # lacks green: fine
    stdout = ok(invoke("train", "vit", *sets(TINY), "--data", f"folder:{root}", "--max-steps", "2", *FAST))
    assert "18 train / 4 held out, 3 classes" in stdout
    other = collection(tmp_path / "other", per_class=3, seed=2)
    stdout = ok(
        invoke(
            "train",
            "vit",
            *sets(TINY),
            "--data",
            f"folder:{root}",
            "--val-data",
            f"folder:{other}",
            "--max-steps",
            "2",
            *FAST,
        )
    )
    assert "18 train / 9 held out" in stdout
    collection(tmp_path / "zoo", per_class=2, classes={"red": 0, "zebra": 1})
    message = error(
        invoke(
            "train", "vit", *sets(TINY), "--data", f"folder:{root}", "--val-data", f"folder:{tmp_path / 'zoo'}", *FAST
        )
    )
    assert "'zebra'" in message and "not classes of the training set" in message


def test_empty_class_is_reported_not_dropped(invoke, tmp_path):
    data = collection(tmp_path / "photos", per_class=5, classes={"apple": 0, "cherry": 2})
    (data / "banana").mkdir()
    out = tmp_path / "run"
    stdout = ok(
        invoke("train", "vit", *sets(TINY), "--data", f"folder:{data}", "--max-steps", "1", *FAST, "--out", out)
    )
    assert "class folder 'banana' holds no image (kept as class 1)" in stdout
    assert load_model(out).pretrained_cfg["label_names"] == ["apple", "banana", "cherry"]


def test_a_truncated_file_is_named_or_skipped_and_listed(invoke, tmp_path):
    data = collection(tmp_path / "photos", per_class=5)
    good = next((data / "red").glob("*.JPG"))
    (data / "red" / "cut.jpg").write_bytes(good.read_bytes()[:300])
    args = ["train", "vit", *sets(TINY), "--data", f"folder:{data}", "--epochs", "1", *FAST, "--out", tmp_path / "r"]
    message = error(invoke(*args))
    assert "cut.jpg" in message and "--skip-bad-images" in message
    stdout = ok(invoke(*args, "--skip-bad-images"))
    assert "skipped 1 unreadable image(s)" in stdout
    assert (tmp_path / "r" / "bad-images.txt").read_text().strip().endswith("cut.jpg")


def test_augment_presets_train_and_bad_values_are_named(invoke, tmp_path):
    data = collection(tmp_path / "photos", per_class=4)
    for preset in ("none", "basic", "deit"):
        ok(
            invoke(
                "train", "vit", *sets(TINY), "--data", f"folder:{data}", "--augment", preset, "--max-steps", "2", *FAST
            )
        )
    base = ["train", "vit", *sets(TINY), "--data", f"folder:{data}", *FAST]
    assert "--augment must be one of none, basic, deit, got 'heavy'" in error(invoke(*base, "--augment", "heavy"))
    assert "--reprob" in error(invoke(*base, "--reprob", "1.5"))
    assert "--interpolation" in error(invoke(*base, "--interpolation", "nearest"))
    assert "--crop-pct" in error(invoke(*base, "--crop-pct", "0"))
    assert "--val-fraction" in error(invoke(*base, "--val-fraction", "1.5"))
    assert "--workers" in error(invoke("train", "vit", *sets(TINY), "--data", f"folder:{data}", "--workers", "-1"))


def test_predict_and_eval_refuse_what_they_cannot_use(invoke, tmp_path):
    assert "nothing: not a folder written by vit_core.save_model" in error(
        invoke("predict", tmp_path / "nothing", "x.png")
    )
    data = collection(tmp_path / "photos", per_class=3)
    out = tmp_path / "run"
    ok(invoke("train", "vit", *sets(TINY), "--data", f"folder:{data}", "--max-steps", "1", *FAST, "--out", out))
    assert "--top-k must be at least 1" in error(invoke("predict", out, next(data.rglob("*.png")), "--top-k", "0"))
    (tmp_path / "fake.png").write_text("no")
    assert "fake.png" in error(invoke("predict", out, tmp_path / "fake.png"))
    assert "expected folder:PATH or wds:PATTERN" in error(invoke("eval", out, "--data", "mnist"))


def test_shards_are_written_trained_on_and_split_across_ranks(invoke, tmp_path, monkeypatch):
    pytest.importorskip("webdataset")
    from vit_core.training.data.pipeline import DataSettings, load

    root = tmp_path / "imagenet"
    collection(root / "train", per_class=8)
    collection(root / "val", per_class=2, seed=1)
    stdout = ok(invoke("data", "shards", f"folder:{root}", tmp_path / "shards", "--shard-size", "4"))
    assert "train: 24 images of 3 classes" in stdout and "val: 6 images" in stdout
    train = "wds:" + str(tmp_path / "shards" / "train-{000000..000005}.tar")
    val = "wds:" + str(tmp_path / "shards" / "val-{000000..000001}.tar")
    out = tmp_path / "run"
    stdout = ok(
        invoke(
            "train",
            "vit",
            *sets(TINY),
            "--data",
            train,
            "--val-data",
            val,
            "--epochs",
            "2",
            *FAST,
            "--batch-size",
            "4",
            "--out",
            out,
        )
    )
    assert "24 train / 6 held out, 3 classes" in stdout
    assert load_model(out).pretrained_cfg["label_names"] == ["blue", "green", "red"]

    seen = []
    for rank in (0, 1):  # what each of two torchrun ranks reads in one pass: disjoint, together everything
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        data = load(DataSettings(source=train, val_source=val, workers=0), "image", (3, 16, 16))
        seen.append([tuple(x.flatten()[:64].tolist()) for x, _, _ in data.train_set])
    assert len(seen[0]) == len(seen[1]) == 12
    assert not set(seen[0]) & set(seen[1])


def test_two_torchrun_processes_train_on_shards(tmp_path):
    pytest.importorskip("webdataset")
    root = collection(tmp_path / "photos", per_class=8)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("VIT_PLUGINS", None)
    cli = [sys.executable, "-m", "vit_core.cli"]
    subprocess.run(
        [*cli, "data", "shards", f"folder:{root}", str(tmp_path / "s"), "--shard-size", "6"],
        env=env,
        check=True,
        capture_output=True,
    )
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    shards = f"wds:{tmp_path}/s/train-{{000000..000003}}.tar"
    run = subprocess.run(
        [
            *launch,
            "-m",
            "vit_core.cli",
            "train",
            "vit",
            *sets(TINY),
            "--data",
            shards,
            "--val-data",
            f"folder:{root}",
            "--epochs",
            "2",
            *FAST,
            "--out",
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 process(es)" in run.stdout and (tmp_path / "run" / "best" / "config.json").is_file()


def test_preview_draws_one_row_per_preset(invoke, tmp_path):
    pytest.importorskip("matplotlib")
    from vit_core.training.data.preview import preset_batches

    data = collection(tmp_path / "photos", per_class=4)
    batches = preset_batches(f"folder:{data}", size=24, count=4)
    assert list(batches) == ["none", "basic", "deit"]
    assert all(b.shape == (4, 3, 24, 24) and b.min() >= 0 and b.max() <= 1 for b in batches.values())
    assert not torch.equal(batches["none"], batches["deit"])  # the preset changed what the model sees
    out = tmp_path / "preview.png"
    assert "wrote" in ok(invoke("data", "preview", f"folder:{data}", out, "--size", "24", "--count", "4"))
    with Image.open(out) as picture:
        assert picture.format == "PNG"
    assert "--count must be at least 1" in error(invoke("data", "preview", f"folder:{data}", out, "--count", "0"))


def test_init_brings_its_preprocessing(invoke, tmp_path):
    """Fine-tuning from a model that records its preprocessing feeds images as it was trained on them."""
    from vit_core import ViT
    from vit_core.interop.saving import save_model

    start = ViT(image_size=16, patch_size=8, num_classes=5, dim=16, depth=1, heads=2, mlp_dim=32, dim_head=8)
    start.pretrained_cfg = {
        "input_size": [3, 16, 16],
        "mean": [0.1, 0.2, 0.3],
        "std": [0.4, 0.5, 0.6],
        "interpolation": "bilinear",
        "crop_pct": 0.9,
    }
    save_model(start, tmp_path / "start", name="vit")
    data = collection(tmp_path / "photos", per_class=3)
    out = tmp_path / "run"
    ok(
        invoke(
            "train",
            "vit",
            "--init",
            tmp_path / "start",
            "--data",
            f"folder:{data}",
            "--max-steps",
            "1",
            *FAST,
            "--out",
            out,
        )
    )
    cfg = load_model(out).pretrained_cfg
    assert cfg["mean"] == [0.1, 0.2, 0.3] and cfg["std"] == [0.4, 0.5, 0.6]
    assert cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 0.9 and cfg["label_names"] == sorted(COLOURS)


def test_data_shards_and_eval_refuse_bad_options(invoke, tmp_path):
    data = collection(tmp_path / "photos", per_class=2)
    assert "SOURCE must be folder:PATH, got 'digits'" in error(invoke("data", "shards", "digits", tmp_path / "s"))
    message = error(invoke("data", "shards", f"folder:{data}", tmp_path / "s", "--shard-size", "0"))
    assert "--shard-size must be at least 1, got 0" in message
    out = tmp_path / "run"
    ok(invoke("train", "vit", *sets(TINY), "--data", f"folder:{data}", "--max-steps", "1", *FAST, "--out", out))
    assert "--batch-size must be at least 1, got 0" in error(
        invoke("eval", out, "--data", "digits", "--batch-size", "0")
    )
    zoo = collection(tmp_path / "zoo", per_class=1, classes={"zebra": 0})
    assert "'zebra'" in error(invoke("eval", out, "--data", f"folder:{zoo}", "--workers", "0"))
