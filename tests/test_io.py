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
from vit_core import create_model, load_model, save_model
from vit_core.hookspecs import HOOK_API_VERSION, hookimpl
from vit_core.interop.saving import ModelFileError
from vit_core.layers import Attention
from vit_core.registry import Component, ModelInfo, Registry, get_registry
from vit_core.testing.oracle import assert_float64_close, perturb, share_fixed_table, without_qk_norm_eps

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


def test_a_name_the_recorded_plugin_does_not_provide_is_not_installed(tmp_path: Path) -> None:
    """A folder saved by plugin acme's model "vit" must not load vit-core's ViT in its place."""
    _, folder = saved_vit(tmp_path)
    config = folder / "config.json"
    record = json.loads(config.read_text())
    for plugin in ("acme", "variants"):  # not installed; installed, but it does not provide "vit"
        record.update(plugin=plugin, distribution="acme-vision", version="1.0")
        config.write_text(json.dumps(record))
        with pytest.raises(
            ModelFileError,
            match=rf"model 'vit' is not installed \(unknown model '{plugin}:vit'.*; install the plugin distribution "
            r"'acme-vision' \(it was saved with acme-vision 1.0\)",
        ):
            load_model(folder)


def test_dtype_mismatch_names_the_file_and_the_tensor(tmp_path: Path) -> None:
    _, folder = saved_vit(tmp_path)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    tensors["cls_token"] = tensors["cls_token"].to(torch.int64)
    save_file(tensors, weights)
    with pytest.raises(
        ModelFileError,
        match=rf"{re.escape(str(weights))}: 1 tensor\(s\) whose dtype does not match the model's: "
        r"cls_token torch.int64 \(the model has torch.float32\)",
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
        uses = r"^\s*(?:import|from)\s+(?:c?pickle|cloudpickle|dill|joblib)\b|\b(?:c?pickle|dill|joblib)\.loads?\("
        if re.search(uses, text, re.MULTILINE):
            offenders.append(f"{source.relative_to(ROOT)}: uses pickle")
    assert not offenders, offenders


# vit convert: vit-pytorch state dict files -> saved folders.

VIT = dict(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128, dim_head=16)
CONVERT_CASES = {
    "vit": ("vit_pytorch.vit:ViT", VIT, {}, (3, 3, 32, 32)),
    "simple-vit": (
        "vit_pytorch.simple_vit:SimpleViT",
        VIT | dict(image_size=(32, 48), patch_size=(8, 16)),
        {"image_size": "[32,48]", "patch_size": "[8,16]"},
        (3, 3, 32, 48),
    ),
    "navit": ("vit_pytorch.na_vit:NaViT", VIT | dict(token_dropout_prob=0.1), {}, None),
    "vit-3d": (
        "vit_pytorch.vit_3d:ViT",
        dict(VIT, image_size=16, image_patch_size=8, frames=4, frame_patch_size=2, depth=1, patch_size=None),
        {"depth": "1"},
        (2, 3, 4, 16, 16),
    ),
}


def _reference(target: str, config: dict) -> nn.Module:
    import importlib

    module, _, attr = target.partition(":")
    config = {k: v for k, v in config.items() if v is not None}
    return perturb(getattr(importlib.import_module(module), attr)(**config), constants=("beta",)).eval()


@pytest.mark.oracle
@pytest.mark.parametrize("name", list(CONVERT_CASES))
def test_vit_convert_matches_the_reference(oracle, tmp_path: Path, name: str) -> None:
    from typer.testing import CliRunner

    from vit_core.cli import app

    target, config, settings, shape = CONVERT_CASES[name]
    reference = _reference(target, config)
    state_file = tmp_path / "reference.pt"
    torch.save(reference.state_dict(), state_file)
    args = ["convert", name, str(state_file), str(tmp_path / "out")]
    args += [f"--set={k}={v}" for k, v in settings.items()]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # compared in float64 (kernel order no longer matters): the perturbed weights are float32 values, exact in both
    ours = load_model(tmp_path / "out").double()
    reference.double()
    if name == "simple-vit":
        share_fixed_table(reference, "pos_embedding", ours.pos_embed.table)
    if name == "navit":
        without_qk_norm_eps(ours)
    f64 = dict(dtype=torch.float64)
    if shape is None:
        x = [[torch.randn(3, 32, 32, **f64), torch.randn(3, 16, 32, **f64)], [torch.randn(3, 32, 16, **f64)]]
    else:
        x = torch.randn(*shape, **f64)
    with torch.no_grad():
        assert_float64_close(ours(x), reference(x))


def test_convert_errors_name_the_file(oracle, tmp_path: Path) -> None:
    from vit_core.interop.saving import convert_reference

    reference = _reference("vit_pytorch.vit:ViT", VIT)
    state_file = tmp_path / "reference.pt"
    torch.save(reference.state_dict(), state_file)
    with pytest.raises(ModelFileError, match=r"reference.pt: does not import into 'vit' built with .*'dim': 32"):
        convert_reference("vit", state_file, tmp_path / "out", dim=32)
    assert not (tmp_path / "out").exists()
    torch.save({"model": reference}, tmp_path / "pickled.pt")  # a whole module: needs unpickling code
    with pytest.raises(ModelFileError, match=r"pickled.pt: not a state dict torch.load\(weights_only=True\) can read"):
        convert_reference("vit", tmp_path / "pickled.pt", tmp_path / "out")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ModelFileError, match=r"list.pt: holds list, not a state dict"):
        convert_reference("vit", tmp_path / "list.pt", tmp_path / "out")
    with pytest.raises(ValueError, match=r"'mae' registers no weight importer; models with importers: navit"):
        convert_reference("mae", state_file, tmp_path / "out")


def test_vit_convert_help_lists_the_importers_and_bad_settings_fail() -> None:
    from typer.testing import CliRunner

    from vit_core.cli import app

    result = CliRunner().invoke(app, ["convert", "--help"])
    assert result.exit_code == 0
    assert "vit: vit_pytorch.vit.ViT" in result.output and "vivit: vit_pytorch.vivit.ViViT" in result.output
    assert "mae" not in result.output.split("importer")[-1]
    bad = CliRunner().invoke(app, ["convert", "vit", "x.pt", "out", "--set", "dim"])
    assert bad.exit_code == 1 and "--set takes key=value" in bad.output


# Larger inputs: learned positions resampled from the 2-D grid.


def _digits_vit() -> tuple[nn.Module, torch.Tensor]:
    """A ViT trained briefly on sklearn digits at 32x32 (one channel), and the images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images[:256], dtype=torch.float32).unsqueeze(1) / 16
    images = nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target[:256])
    model = create_model("vit", channels=1, dim=32, heads=2, dim_head=16, mlp_dim=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(30):
        batch = slice(step * 32 % 256, step * 32 % 256 + 32)
        loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), images


def test_trained_vit_runs_at_larger_and_non_square_sizes(tmp_path: Path) -> None:
    model, images = _digits_vit()
    with pytest.raises(ValueError, match=r"img spatial size \(48, 48\) is larger than image_size \(32, 32\)"):
        model(torch.zeros(1, 1, 48, 48))
    dynamic = create_model("vit", channels=1, dim=32, heads=2, dim_head=16, mlp_dim=64, dynamic_img_size=True)
    dynamic.load_state_dict(model.state_dict())
    dynamic.eval()
    with torch.no_grad():
        assert torch.equal(dynamic(images[:8]), model(images[:8]))  # the training grid: the table itself
        for size in [(48, 48), (48, 32)]:
            x = nn.functional.interpolate(images[:8], size=size, mode="bilinear", align_corners=False)
            out = dynamic(x)
            assert out.shape == (8, 10) and torch.isfinite(out).all()
            resized = create_model("vit", channels=1, dim=32, heads=2, dim_head=16, mlp_dim=64)
            resized.load_state_dict(model.state_dict())
            resized.set_input_size(size)
            torch.testing.assert_close(resized.eval()(x), out, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match=r"img spatial size \(36, 32\) must be divisible by patch_size \(8, 8\)"):
        dynamic(torch.zeros(1, 1, 36, 32))
    loaded = load_model(save_model(resized, tmp_path / "resized"))
    assert loaded.input_size == (48, 32) and loaded.pos_embed.weight.shape == (6, 4, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), resized(x))


def test_resampling_keeps_rows_and_columns_and_is_the_identity_on_the_same_grid() -> None:
    from vit_core.layers.positional import resample_grid

    rows = torch.arange(4.0).reshape(4, 1, 1).expand(4, 4, 1)  # depends on the row only
    cols = torch.arange(4.0).reshape(1, 4, 1).expand(4, 4, 1) * 10  # on the column only
    table = torch.cat((rows, cols), dim=-1).to(torch.bfloat16)
    out = resample_grid(table, (6, 4))
    assert out.shape == (6, 4, 2) and out.dtype == torch.bfloat16
    assert (out[..., 0] == out[:, :1, 0]).all() and (out[..., 1] == out[:1, :, 1]).all()
    assert out[..., 0].float().diff(dim=0).gt(0).all()  # rows still increase down the grid
    assert resample_grid(table, (4, 4)) is table
    model = create_model("vit").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        model.set_input_size(32)
        assert torch.equal(model(x), before)
    with pytest.raises(ValueError, match=r"interpolation must be one of .*got 'nearest'"):
        model.set_input_size(48, interpolation="nearest")
    with pytest.raises(ValueError, match=r"image_size"):
        model.set_input_size(44)
    with pytest.raises(TypeError, match=r"dynamic_img_size must be a bool, got 'yes'"):
        create_model("vit", dynamic_img_size="yes")


RESIZABLE = [
    "vit",
    "ats-vit",
    "patch-merger-vit",
    "distillable-vit",
    "cait",
    "xcit",
    "deepvit",
    "small-dataset-vit",
    "learnable-memory-vit",
    "parallel-vit",
    "cross-vit",
    "t2t-vit",
    "pit",
]
"""Models with learned 2-D positions that take ``dynamic_img_size`` and ``set_input_size``."""
DIVIDED = [name for name in RESIZABLE if name not in ("t2t-vit", "pit")]
"""Those whose patches must divide the input (T2T's soft splits and PiT's strided convolution take any size)."""


def _input(name: str, size: tuple[int, int], batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, get_registry().info(name).input_shape[0], *size)


def _default_size(name: str) -> tuple[int, int]:
    return tuple(get_registry().info(name).input_shape[1:])


@pytest.mark.parametrize("name", RESIZABLE)
def test_dynamic_img_size_runs_larger_and_non_square_inputs(name: str) -> None:
    h, w = _default_size(name)
    fixed = perturb(create_model(name)).eval()
    dynamic = create_model(name, dynamic_img_size=True).eval()
    dynamic.load_state_dict(fixed.state_dict())
    num_classes = get_registry().info(name).default_config["num_classes"]
    with torch.no_grad():
        x = _input(name, (h, w))
        assert torch.equal(dynamic(x), fixed(x))  # the training grid: the table itself, not resampled
        for size in [(2 * h, 2 * w), (h + h // 2, w)]:
            out = dynamic(_input(name, size))
            assert out.shape == (2, num_classes) and torch.isfinite(out).all(), size
    with pytest.raises(ValueError, match=r"larger than image_size|up to image_size"):
        fixed(_input(name, (2 * h, 2 * w)))


@pytest.mark.parametrize("name", RESIZABLE)
def test_set_input_size_resamples_for_good_and_round_trips(name: str, tmp_path: Path) -> None:
    h, w = _default_size(name)
    model = perturb(create_model(name)).eval()
    x = _input(name, (h, w))
    with torch.no_grad():
        before = model(x)
        model.set_input_size((h, w))  # the same grid: the identity
        assert torch.equal(model(x), before)
    size = (2 * h, w + w // 2)
    model.set_input_size(size, interpolation="bilinear")
    assert model.init_config["image_size"] == size
    x = _input(name, size)
    loaded = load_model(save_model(model, tmp_path / name))
    with torch.no_grad():
        out = model(x)
        assert torch.isfinite(out).all() and torch.equal(loaded(x), out)


@pytest.mark.parametrize("name", DIVIDED)
def test_sizes_the_patches_do_not_divide_still_raise(name: str) -> None:
    h, w = _default_size(name)
    dynamic = create_model(name, dynamic_img_size=True).eval()
    with pytest.raises(ValueError, match=rf"img spatial size \({h + 4}, {w}\) must be divisible by"):
        dynamic(_input(name, (h + 4, w)))
    with pytest.raises(ValueError, match=rf"image_size \({h + 4}, {h + 4}\) must be divisible by"):
        create_model(name).set_input_size(h + 4)
    with pytest.raises(ValueError, match=r"interpolation must be one of .*got 'nearest'"):
        create_model(name).set_input_size(2 * h, interpolation="nearest")
    with pytest.raises(TypeError, match=r"dynamic_img_size must be a bool, got 1"):
        create_model(name, dynamic_img_size=1)


def test_pit_and_t2t_reject_inputs_below_one_token() -> None:
    with pytest.raises(ValueError, match=r"image_size \(2, 2\) is smaller than patch_size=4"):
        create_model("pit").set_input_size(2)
    with pytest.raises(ValueError, match=r"img height 2 does not fit PiT: sides must be at least patch_size=4"):
        create_model("pit", dynamic_img_size=True)(torch.zeros(1, 3, 2, 32))
    with pytest.raises(TypeError, match=r"image_size must be an int or a tuple of 2 ints"):
        create_model("t2t-vit").set_input_size((32, 32, 32))


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("simple-vit", r"SimpleViT cannot change its input size .*its positions are FixedPositionalEmbedding"),
        ("vit-3d", r"ViT3D cannot change its input size .*learned positions are on a 3-D grid \(2, 2, 2\)"),
        ("simple-vit-3d", r"SimpleViT3D cannot change its input size .*FixedPositionalEmbedding"),
    ],
)
def test_models_whose_positions_cannot_be_resampled_say_why(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        create_model(name).set_input_size(64)


def test_the_resizable_models_are_the_documented_ones() -> None:
    import inspect

    docs = (ROOT / "docs" / "interop.md").read_text()
    table = docs.split("<!-- resizable: kept in sync with tests/test_io.py -->")[1].split("\n\n")[0]
    documented = dict(re.findall(r"^\| `([\w-]+)` \| (yes|no) \|", table, re.MULTILINE))
    registry = get_registry()
    models = registry.list(kind="model", presets=False)
    taking = sorted(i.name for i in models if "dynamic_img_size" in inspect.signature(i.load_class()).parameters)
    assert taking == sorted(RESIZABLE)
    assert documented == {i.name: "yes" if i.name in RESIZABLE else "no" for i in models}


# vit convert through a given registry (a plugin added in-process, not installed).


def identity_import(state: dict, model: nn.Module) -> dict:
    """An importer for :class:`ToyPlugin`'s model: the state dict is already ours."""
    return state


class ToyPlugin:
    """Registers "toy-vit" (a ViT) with :func:`identity_import` as its weight importer."""

    @hookimpl
    def vit_api_version(self) -> int:
        return HOOK_API_VERSION

    @hookimpl
    def vit_register_models(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name="toy-vit",
                target="vit_core.models.vit:ViT",
                family="test",
                paper_title="A toy",
                paper_url="https://example.org/toy",
                summary="A ViT registered in-process.",
                input_kind="image",
                default_config=VIT,
                input_shape=(3, 32, 32),
                citation="@misc{toy}",
                example="create_model('toy-vit')",
                importer="tests.test_io:identity_import",
            )
        ]


def test_convert_imports_through_the_registry_it_is_given(tmp_path: Path) -> None:
    from vit_core.interop.reference import load_reference_weights
    from vit_core.interop.saving import convert_reference

    registry = Registry()
    registry.add_plugin(ToyPlugin(), "toy")
    source = perturb(registry.create("toy-vit")).eval()
    torch.save(source.state_dict(), tmp_path / "toy.pt")
    folder = convert_reference("toy-vit", tmp_path / "toy.pt", tmp_path / "out", registry=registry)
    loaded = load_model(folder, registry=registry)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    target = load_reference_weights(registry.create("toy-vit"), source.state_dict(), "toy-vit", registry=registry)
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())
