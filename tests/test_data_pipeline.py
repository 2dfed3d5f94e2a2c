"""The data pipeline's parts alone: decoding real-photo modes, folder listing and splits, transforms, the batch
steps (Mixup, CutMix, erasing), shards, and datasets that hold paths rather than pixels."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from vit_core.training.data.augment import Augmentation  # noqa: E402
from vit_core.training.data.batch import Mixing, RandomErasing, normalize, soft_cross_entropy  # noqa: E402
from vit_core.training.data.datasets import ImageFiles, collate, unreadable  # noqa: E402
from vit_core.training.data.decode import BadImageError, convert, decode  # noqa: E402
from vit_core.training.data.folders import (  # noqa: E402
    DataSourceError,
    imagenet_splits,
    list_folder,
    stratified_split,
)
from vit_core.training.data.randaugment import OPERATIONS, RandAugment  # noqa: E402
from vit_core.training.data.transforms import EvalTransform, TrainTransform, to_tensor  # noqa: E402


def gradient(width: int = 40, height: int = 30) -> Image.Image:
    """An RGB image whose red channel grows left to right and green top to bottom (orientation visible)."""
    x = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    y = np.tile(np.linspace(0, 255, height, dtype=np.uint8)[:, None], (1, width))
    return Image.fromarray(np.stack([x, y, np.full_like(x, 7)], axis=-1), "RGB")


# --- decoding ----------------------------------------------------------------------------------------------


def test_modes_convert_to_8bit_rgb_or_grey():
    grey16 = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert np.asarray(convert(grey16, "L")).max() == 255  # scaled by the 16-bit range, not clipped
    half16 = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))
    assert np.asarray(convert(half16, "L"))[0, 0] == 128
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(convert(rgba, "RGB"))[0, 0].tolist() == [255, 255, 255]  # transparent over white
    palette = gradient().convert("P")
    assert convert(palette, "RGB").mode == "RGB"
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    assert np.asarray(convert(cmyk, "RGB"))[0, 0].tolist() == [255, 0, 0]
    assert convert(gradient(), "L").mode == "L"


def test_exif_orientation_is_applied(tmp_path):
    image = gradient(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "r.jpg", exif=exif, quality=95)
    upright = decode(tmp_path / "r.jpg", "RGB")
    assert upright.size == (30, 40)


def test_a_truncated_file_is_named(tmp_path):
    gradient().save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.jpg", "text.png"):
        with pytest.raises(BadImageError) as err:
            decode(tmp_path / name, "RGB")
        assert name in str(err.value) and err.value.path.endswith(name)
    assert pickle.loads(pickle.dumps(BadImageError("a.jpg", "why"))).path == "a.jpg"  # crosses worker processes


# --- folders -----------------------------------------------------------------------------------------------


def make_folder(root, classes: dict[str, int], size=(24, 20)) -> None:
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            gradient(*size).save(root / name / f"img{i}.{'JPG' if i % 2 else 'png'}")


def test_listing_sorts_classes_ignores_hidden_and_non_images_and_reports_empty(tmp_path):
    make_folder(tmp_path, {"cat": 3, "ant": 2})
    (tmp_path / "bee").mkdir()
    (tmp_path / "cat" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "cat" / "notes.txt").write_text("x")
    (tmp_path / ".git").mkdir()
    listing = list_folder(tmp_path, "--data")
    assert listing.classes == ("ant", "bee", "cat")
    assert listing.empty == ("bee",)
    assert listing.counts() == [2, 0, 3]  # cat keeps label 2: nothing shifted


def test_validation_classes_map_by_name(tmp_path):
    make_folder(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    make_folder(tmp_path / "val", {"c": 1, "a": 1})
    train, val = imagenet_splits(tmp_path)
    names = list_folder(train, "--data").classes
    listing = list_folder(val, "--val-data", names)
    assert sorted(set(listing.labels)) == [0, 2]
    make_folder(tmp_path / "val", {"zebra": 1})
    with pytest.raises(DataSourceError, match="'zebra'"):
        list_folder(val, "--val-data", names)


def test_stratified_split_is_seeded_and_keeps_every_class():
    labels = [0] * 50 + [1] * 10 + [2] * 2
    train, held = stratified_split(labels, 0.1, seed=3)
    assert stratified_split(labels, 0.1, seed=3) == (train, held)
    assert sorted(train + held) == list(range(len(labels)))
    assert [sum(labels[i] == c for i in held) for c in range(3)] == [5, 1, 1]
    with pytest.raises(DataSourceError, match="--val-fraction"):
        stratified_split(labels, 1.5, seed=0)


def test_dataset_holds_paths_not_pixels(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2}, size=(400, 300))
    listing = list_folder(tmp_path, "--data")
    small = ImageFiles(listing.files, listing.labels, EvalTransform((32, 32)), "RGB")
    many = ImageFiles(listing.files * 500, listing.labels * 500, EvalTransform((32, 32)), "RGB")
    per_image = (len(pickle.dumps(many)) - len(pickle.dumps(small))) / (len(many) - len(small))
    assert per_image < 200  # a path and a label, not 400x300x3 pixels
    x, y, bad = collate([small[i] for i in range(len(small))])
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 32, 32) and y.tolist() == listing.labels and bad == ()


def test_skipped_files_leave_the_batch_and_are_named(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 1})
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    listing = list_folder(tmp_path, "--data")
    dataset = ImageFiles(listing.files, listing.labels, EvalTransform((16, 16)), "RGB")
    x, _, bad = collate([dataset[i] for i in range(len(dataset))])
    assert len(x) == 3 and len(bad) == 1 and bad[0][0].endswith("broken.jpg")
    with pytest.raises(BadImageError, match=r"broken\.jpg"):
        unreadable(bad, skip=False)
    assert unreadable(bad, skip=True) == [bad[0][0]]


# --- transforms --------------------------------------------------------------------------------------------


def test_eval_transform_resizes_the_shorter_side_then_centre_crops():
    out = EvalTransform((32, 32), crop_pct=0.5, interpolation="bilinear")(gradient(200, 100))
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    # shorter side 100 -> 64, width 128: the crop is the middle quarter of the width
    red = out[0].float().mean(0)
    assert 255 * 0.3 < red[0] < 255 * 0.45 and 255 * 0.55 < red[-1] < 255 * 0.7


def test_flip_is_the_mirror():
    image = gradient(32, 32)
    keep = TrainTransform((32, 32), scale=(1, 1), ratio=(1, 1), hflip=0.0)(image, random.Random(0))
    flip = TrainTransform((32, 32), scale=(1, 1), ratio=(1, 1), hflip=1.0)(image, random.Random(0))
    assert torch.equal(flip, keep.flip(-1))
    assert torch.equal(keep, to_tensor(image))


def test_random_resized_crop_is_seeded_and_inside_the_image():
    t = TrainTransform((16, 16))
    for seed in range(20):
        left, top, right, bottom = t.crop_box(50, 30, random.Random(seed))
        assert 0 <= left < right <= 50 and 0 <= top < bottom <= 30
    assert torch.equal(t(gradient(), random.Random(5)), t(gradient(), random.Random(5)))


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.__name__)
def test_every_randaugment_operation_keeps_size_and_mode(operation):
    for mode in ("RGB", "L"):
        image = gradient().convert(mode)
        out = operation(image, 0.9, random.Random(0))
        assert out.size == image.size and out.mode == mode


def test_randaugment_changes_images_and_is_seeded():
    augment = RandAugment(num_ops=2, magnitude=9, prob=1.0)
    a = to_tensor(augment(gradient(), random.Random(1)))
    assert torch.equal(a, to_tensor(augment(gradient(), random.Random(1))))
    assert not all(
        torch.equal(to_tensor(augment(gradient(), random.Random(s))), to_tensor(gradient())) for s in range(5)
    )
    with pytest.raises(ValueError, match="magnitude"):
        RandAugment(magnitude=11)


# --- batch steps -------------------------------------------------------------------------------------------


def batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 16, 16, generator=g), torch.arange(n) % 4


def test_mixup_targets_sum_to_one_and_mix_the_same_pairs():
    x, y = batch()
    mixed, targets = Mixing(4, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)(
        x, y, torch.Generator().manual_seed(1)
    )
    assert torch.allclose(targets.sum(1), torch.ones(len(y)))
    lam = float(targets[0, y[0]]) if y[0] != y[-1] else None
    assert lam is not None
    assert torch.allclose(mixed[0], lam * x[0] + (1 - lam) * x[-1], atol=1e-6)  # image 0 with its partner
    assert targets[0, y[-1]] == pytest.approx(1 - lam, abs=1e-6)


def test_cutmix_label_weight_equals_the_pasted_area():
    x, y = batch()
    mixed, targets = Mixing(4, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)(
        x, y, torch.Generator().manual_seed(2)
    )
    pasted = (mixed[0] != x[0]).any(0).float().mean()
    assert targets[0, y[-1]] == pytest.approx(float(pasted), abs=1e-6)
    assert torch.allclose(targets.sum(1), torch.ones(len(y)))


def test_label_smoothing_and_soft_loss():
    x, y = batch()
    _, targets = Mixing(4, mixup_alpha=0.0, cutmix_alpha=1e-9, label_smoothing=0.1)(
        x, y, torch.Generator().manual_seed(0)
    )
    assert torch.allclose(targets.sum(1), torch.ones(len(y)))
    assert targets.min() >= 0.1 / 4 - 1e-6
    logits = torch.randn(len(y), 4)
    hard = torch.nn.functional.one_hot(y, 4).float()
    assert torch.allclose(soft_cross_entropy(logits, hard), torch.nn.functional.cross_entropy(logits, y))


def test_erasing_changes_only_the_erased_box_and_is_seeded():
    x, _ = batch()
    out = RandomErasing(prob=1.0)(x, torch.Generator().manual_seed(3))
    assert torch.equal(out, RandomErasing(prob=1.0)(x, torch.Generator().manual_seed(3)))
    for before, after in zip(x, out, strict=True):
        changed = (before != after).any(0)
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        assert len(rows) and changed[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # one box
    assert torch.equal(RandomErasing(prob=0.0)(x, torch.Generator()), x)


def test_normalize_uint8():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(images, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert out[0, :, 0, 0].tolist() == [2.0, 1.0, 0.5]


def test_augment_presets_and_overrides():
    assert Augmentation.preset("deit").mixup == 0.8 and Augmentation.preset("none") == Augmentation()
    assert Augmentation.preset("basic").override(hflip=0.0, mixup=None).hflip == 0.0
    with pytest.raises(ValueError, match="--augment"):
        Augmentation.preset("heavy")
    with pytest.raises(ValueError, match="--reprob"):
        Augmentation.preset("deit").override(erase=2.0)


# --- shards ------------------------------------------------------------------------------------------------


def test_shards_round_trip_with_class_names(tmp_path):
    pytest.importorskip("webdataset")
    from vit_core.training.data.shards import ShardSource, write_index, write_split

    make_folder(tmp_path / "src", {"a": 3, "b": 2})
    listing = list_folder(tmp_path / "src", "--data")
    out = tmp_path / "shards"
    out.mkdir()
    entry = write_split(listing, out, "train", shard_size=2)
    write_index(out, listing.classes, {"train": entry})
    assert entry["samples"] == 5 and sorted(p.name for p in out.glob("*.tar")) == [
        f"train-00000{i}.tar" for i in range(3)
    ]
    source = ShardSource.open(str(out / "train-{000000..000002}.tar"), "--data")
    assert source.classes == ("a", "b") and source.samples == 5
    items = list(source.dataset(EvalTransform((8, 8)), "RGB", ("a", "b"), train=False, seed=0))
    assert sorted(label for _, label, _ in items) == [0, 0, 0, 1, 1]
    assert all(x.shape == (3, 8, 8) for x, _, _ in items)
