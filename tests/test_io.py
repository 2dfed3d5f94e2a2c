"""vit_core.save_model / load_model (config.json + model.safetensors), vit convert, and their errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import vit_core
from tests.helpers import perturb
from vit_core import create_model, load_model, save_model
from vit_core.io import ModelFileError
from vit_core.layers import Attention
from vit_core.registry import Component, get_registry

ROOT = Path(__file__).resolve().parents[1]


def saved_vit(tmp_path: Path, **config) -> tuple[nn.Module, Path]:
    model = perturb(create_model("vit", **config)).eval()
    return model, save_model(model, tmp_path / "vit")


def test_round_trip_is_bit_identical_and_config_names_model_and_versions(tmp_path: Path) -> None:
    model, folder = saved_vit(tmp_path, image_size=(32, 24), num_classes=7)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    record = json.loads((folder / "config.json").read_text())
    assert record["model"] == "vit" and record["plugin"] == "vit-core" and record["distribution"] == "vit-core"
    assert record["vit_core_version"] == vit_core.__version__ and record["version"] == vit_core.__version__
    assert record["config"]["image_size"] == {"__tuple__": [32, 24]} and record["config"]["num_classes"] == 7
    loaded = load_model(folder)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.init_config == model.init_config  # tuples come back as tuples
    x = torch.randn(3, 3, 32, 24)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_init_config_records_the_outermost_constructor_by_name() -> None:
    from vit_efficient import PatchMergerViT

    model = PatchMergerViT(
        image_size=32, patch_size=8, num_classes=3, dim=32, depth=2, heads=2, mlp_dim=64, patch_merge_layer=1
    )
    assert model.init_config == {
        "image_size": 32,
        "patch_size": 8,
        "num_classes": 3,
        "dim": 32,
        "depth": 2,
        "heads": 2,
        "mlp_dim": 64,
        "patch_merge_layer": 1,
    }


def test_reduced_precision_round_trip(tmp_path: Path) -> None:
    model = create_model("simple-vit").to(torch.bfloat16).eval()
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert next(loaded.parameters()).dtype == torch.bfloat16
    x = torch.randn(2, 3, 32, 32, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_trainer_saved_with_its_encoder_as_a_registered_model(tmp_path: Path) -> None:
    info = get_registry().info("mae")
    trainer, parts = get_registry().create_with_parts("mae")
    perturb(trainer)
    config = {k: v for k, v in info.default_config.items() if not isinstance(v, Component)} | parts
    folder = save_model(trainer, tmp_path / "mae", name="mae", config=config)
    assert json.loads((folder / "config.json").read_text())["config"]["encoder"]["__model__"]["model"] == "vit"
    loaded = load_model(folder)
    assert type(loaded) is type(trainer) and type(loaded.encoder) is type(parts["encoder"])
    expected = trainer.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())


def test_arguments_json_cannot_hold_are_a_clear_error(tmp_path: Path) -> None:
    class WideAttention(Attention):
        pass

    model = create_model("vit", attention=WideAttention)
    with pytest.raises(TypeError, match=r"constructor argument attention=type cannot be saved"):
        save_model(model, tmp_path / "a")
    with pytest.raises(TypeError, match=r"dim=object"):
        save_model(create_model("vit"), tmp_path / "b", config={"dim": object()})
    with pytest.raises(TypeError, match=r"Linear is not a registered model class; pass save_model\(.*name="):
        save_model(nn.Linear(2, 2), tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_truncated_or_corrupted_files_name_the_file(tmp_path: Path) -> None:
    _, folder = saved_vit(tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=rf"{re.escape(str(weights))}: not a readable safetensors file"):
        load_model(folder)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        load_model(folder)
    config = folder / "config.json"
    config.write_text(config.read_text()[:40])
    with pytest.raises(ModelFileError, match=rf"{re.escape(str(config))}: not valid JSON"):
        load_model(folder)
    with pytest.raises(ModelFileError, match=r"not a folder written by vit_core\.save_model"):
        load_model(tmp_path / "nothing")


def test_model_not_installed_names_the_distribution_to_install(tmp_path: Path) -> None:
    _, folder = saved_vit(tmp_path)
    config = folder / "config.json"
    record = json.loads(config.read_text())
    record.update(model="acme-vit", plugin="acme", distribution="acme-vision", version="2.1")
    config.write_text(json.dumps(record))
    with pytest.raises(
        ModelFileError,
        match=r"model 'acme-vit' is not installed.*install the plugin distribution "
        r"'acme-vision' \(it was saved with acme-vision 2.1\)",
    ):
        load_model(folder)


def test_shape_mismatch_names_the_tensors(tmp_path: Path) -> None:
    _, folder = saved_vit(tmp_path)
    config = folder / "config.json"
    record = json.loads(config.read_text())
    record["config"]["num_classes"] = 11
    config.write_text(json.dumps(record))
    with pytest.raises(
        ModelFileError,
        match=r"model.safetensors: 2 tensor\(s\) whose shape does not match.*"
        r"head.bias \(10,\) \(the model has \(11,\)\), head.weight \(10, 64\) \(the model has \(11, 64\)\)",
    ):
        load_model(folder)


def test_missing_and_unexpected_tensors_are_named(tmp_path: Path) -> None:
    _, folder = saved_vit(tmp_path)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    del tensors["cls_token"]
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, weights)
    with pytest.raises(ModelFileError, match=r"1 missing tensor\(s\): cls_token; 1 unexpected tensor\(s\): extra"):
        load_model(folder)


def test_save_load_is_a_conformance_check() -> None:
    from vit_core.testing import CHECKS

    assert "save-load" in CHECKS


def test_no_pickle_loading_in_the_packages() -> None:
    sources = [*ROOT.glob("vit_core/**/*.py"), *ROOT.glob("plugins/*/vit_*/**/*.py")]
    assert len(sources) > 20
    offenders = []
    for source in sources:
        text = source.read_text()
        for call in re.finditer(r"torch\.load\((?:[^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in call.group(0):
                offenders.append(f"{source.relative_to(ROOT)}: {call.group(0)}")
        if re.search(r"\b(?:c?pickle|dill|joblib)\b", text):
            offenders.append(f"{source.relative_to(ROOT)}: mentions pickle")
    assert not offenders, offenders
