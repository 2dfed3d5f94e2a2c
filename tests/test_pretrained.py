"""vit_core.load_pretrained against its sources: timm and Hugging Face transformers models built at random
initialisation in small configurations, every parameter perturbed, saved in their own on-disk layouts, loaded
back and compared in float64 (logits, forward_features, forward_intermediates).  Nothing is downloaded."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vit_core import ViT, load_pretrained, save_model
from vit_core.interop.pretrained import PretrainedFormatError
from vit_core.interop.saving import ModelFileError
from vit_core.testing.oracle import FLOAT64_TOLERANCE, perturb

SMALL = dict(embed_dim=64, depth=2, num_heads=4, img_size=32, patch_size=8)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    scale = theirs.abs().max().item()
    assert (ours - theirs).abs().max().item() <= FLOAT64_TOLERANCE * max(scale, 1.0)


def save_timm(model: torch.nn.Module, folder: Path, arch: str, model_args: dict) -> Path:
    """timm's hub layout: model.safetensors and config.json with architecture and model_args."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(model.state_dict()), str(folder / "model.safetensors"))
    config = dict(architecture=arch, num_classes=model.num_classes, model_args=model_args)
    config["pretrained_cfg"] = dict(model.pretrained_cfg, input_size=[3, 32, 32])
    (folder / "config.json").write_text(json.dumps(config, default=list))
    return folder


def timm_model(arch: str, **model_args):
    timm = pytest.importorskip("timm", reason="timm is the oracle of the timm importer (pip install --no-deps timm)")
    model = timm.create_model(arch, pretrained=False, **model_args).double().eval()
    return perturb(model)


TIMM_CASES = {
    "augreg": ("vit_base_patch16_224", dict(num_classes=10)),
    "avg-pool": ("vit_base_patch16_224", dict(num_classes=10, global_pool="avg")),
    "deit": ("deit_small_patch16_224", dict(num_classes=10)),
    "deit-distilled": ("deit_small_distilled_patch16_224", dict(num_classes=10)),
    "mae-encoder": ("vit_base_patch16_224", dict(num_classes=0)),
    "dinov2": ("vit_small_patch14_dinov2", dict(num_classes=10)),
    "dinov2-reg4": ("vit_small_patch14_reg4_dinov2", dict(num_classes=10)),
    "dinov2-swiglu": ("vit_giant_patch14_dinov2", dict(num_classes=10, mlp_ratio=4.0)),
    "clip-laion": ("vit_base_patch16_clip_224", dict(num_classes=10)),
    "clip-openai": ("vit_base_patch16_clip_quickgelu_224", dict(num_classes=10)),
    "siglip": ("vit_base_patch16_siglip_224", dict(num_classes=10)),
}


@pytest.mark.parametrize("case", list(TIMM_CASES))
def test_timm_parity(case: str, tmp_path: Path) -> None:
    arch, extra = TIMM_CASES[case]
    args = {**SMALL, **extra}
    theirs = timm_model(arch, **args)
    model_args = {k: v for k, v in args.items() if k != "num_classes"}
    ours = load_pretrained(save_timm(theirs, tmp_path / case, arch, model_args))
    assert isinstance(ours, ViT) and not ours.training
    assert ours.pretrained_cfg["input_size"] == [3, 32, 32] or tuple(ours.pretrained_cfg["input_size"]) == (3, 32, 32)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        logits = ours(x) if ours.num_classes else ours.forward_head(ours.forward_features(x), pre_logits=True)
        _close(logits, theirs(x))
        _close(ours.forward_features(x), theirs.forward_features(x))
        final, hidden = ours.forward_intermediates(x, [0, 1])
        their_final, their_hidden = theirs.forward_intermediates(x, [0, 1], output_fmt="NLC")
        _close(final, their_final)
        for h, t in zip(hidden, their_hidden, strict=True):
            _close(h[:, ours.num_prefix_tokens :], t)


def test_timm_single_file_with_arch(tmp_path: Path) -> None:
    theirs = timm_model("vit_tiny_patch16_224", num_classes=10, img_size=64)
    file = tmp_path / "weights.pth"
    torch.save(_contiguous(theirs.state_dict()), file)
    with pytest.raises(PretrainedFormatError, match="arch="):
        load_pretrained(file)
    with pytest.raises(
        ModelFileError, match=r"shape does not match.*cls_token \(1, 192\) \(the model has \(1, 384\)\)"
    ):
        load_pretrained(file, arch="vit_small_patch16_224")
    ours = load_pretrained(file, arch="vit_tiny_patch16_64", num_classes=10)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        _close(ours(x), theirs(x))


def test_resize_equals_timm_load_at_384(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    args = dict(embed_dim=64, depth=2, num_heads=4, num_classes=10)
    torch.set_default_dtype(torch.float64)
    try:
        source = perturb(timm.create_model("vit_base_patch16_224", pretrained=False, **args)).eval()
        file = tmp_path / "vit.safetensors"
        save_file(_contiguous(source.state_dict()), str(file))
        theirs = timm.create_model(
            "vit_base_patch16_224",
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(file), num_classes=10),
            img_size=384,
            **args,
        ).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    folder = save_timm(source, tmp_path / "hub", "vit_base_patch16_224", dict(embed_dim=64, depth=2, num_heads=4))
    ours = load_pretrained(folder, image_size=384)
    assert tuple(ours.pretrained_cfg["input_size"]) == (3, 384, 384)
    x = torch.randn(1, 3, 384, 384, dtype=torch.float64)
    with torch.no_grad():
        _close(ours(x), theirs(x))


def _hf(kind: str):
    transformers = pytest.importorskip("transformers", reason="transformers is the oracle of the Hugging Face importer")
    common = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    if kind == "vit-classifier":
        cfg = transformers.ViTConfig(intermediate_size=128, num_labels=10, **common)
        return transformers.ViTForImageClassification(cfg)
    if kind == "vit":
        return transformers.ViTModel(transformers.ViTConfig(intermediate_size=128, hidden_act="gelu", **common))
    if kind == "dinov2":
        return transformers.Dinov2Model(transformers.Dinov2Config(**common))
    if kind == "dinov2-swiglu":
        return transformers.Dinov2Model(transformers.Dinov2Config(use_swiglu_ffn=True, **common))
    if kind == "dinov2-registers":
        cfg = transformers.Dinov2WithRegistersConfig(num_register_tokens=4, **common)
        return transformers.Dinov2WithRegistersModel(cfg)
    return transformers.ViTMAEModel(transformers.ViTMAEConfig(intermediate_size=128, mask_ratio=0.0, **common))


@pytest.mark.parametrize("kind", ["vit-classifier", "vit", "dinov2", "dinov2-swiglu", "dinov2-registers", "vit-mae"])
def test_transformers_parity(kind: str, tmp_path: Path) -> None:
    theirs = perturb(_hf(kind).double().eval())
    theirs.save_pretrained(tmp_path / kind)
    ours = load_pretrained(tmp_path / kind)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    kwargs = {"noise": torch.arange(16, dtype=torch.float64).expand(2, 16)} if kind == "vit-mae" else {}
    with torch.no_grad():
        out = theirs(x, output_hidden_states=True, **kwargs)
        if kind == "vit-classifier":
            _close(ours(x), out.logits)
            assert ours.pretrained_cfg["label_names"][3] == theirs.config.id2label[3]
        else:
            _close(ours(x), out.last_hidden_state)  # num_classes=0: forward returns the token features
            _close(ours.forward_features(x), out.last_hidden_state)
        _, hidden = ours.forward_intermediates(x, [0, 1])
        for h, t in zip(hidden, out.hidden_states[1:], strict=True):
            _close(h, t)


def test_num_classes_override_reports_the_new_head(tmp_path: Path) -> None:
    theirs = timm_model("vit_base_patch16_224", num_classes=10, **SMALL)
    folder = save_timm(theirs, tmp_path / "hub", "vit_base_patch16_224", dict(SMALL))
    with pytest.warns(UserWarning, match=r"new 3-class head .*head\.weight \(10, 64\)"):
        ours = load_pretrained(folder, num_classes=3)
    assert ours.head.out_features == 3
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        _close(ours.forward_features(x), theirs.forward_features(x))


def test_bad_inputs(tmp_path: Path) -> None:
    reference = ViT(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128)
    ref_file = tmp_path / "vit_pytorch.pt"
    torch.save(
        {"to_patch_embedding.1.weight": torch.zeros(3), "transformer.layers.0.0.norm.weight": torch.zeros(3)}, ref_file
    )
    with pytest.raises(PretrainedFormatError, match=r"vit-pytorch tensor names.*timm name"):
        load_pretrained(ref_file, arch="vit_base_patch16_224")

    theirs_file = tmp_path / "timm.safetensors"
    save_file(
        {"blocks.0.attn.qkv.weight": torch.zeros(6, 2), "patch_embed.proj.weight": torch.zeros(2, 3, 1, 1)},
        str(theirs_file),
    )
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(theirs_file.read_bytes()[:-10])
    with pytest.raises(PretrainedFormatError, match="truncated"):
        load_pretrained(truncated, arch="vit_base_patch16_224")

    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"blocks.0.x": Evil()}))
    with pytest.raises(PretrainedFormatError, match=r"weights_only|refused"):
        load_pretrained(evil)

    folder = tmp_path / "hf-swin"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "swin"}))
    save_file(
        {"embeddings.patch_embeddings.projection.weight": torch.zeros(2, 3, 1, 1)}, str(folder / "model.safetensors")
    )
    with pytest.raises(
        PretrainedFormatError, match=r"'swin' is not supported.*vit, dinov2, dinov2_with_registers, vit_mae"
    ):
        load_pretrained(folder)

    own = save_model(reference, tmp_path / "own")
    with pytest.raises(TypeError, match="depth cannot be overridden"):
        load_pretrained(own, depth=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_pretrained(own).head.out_features == 10


def test_create_model_pretrained_preset(tmp_path: Path) -> None:
    from vit_core import create_model

    theirs = timm_model("deit_small_patch16_224")
    file = tmp_path / "deit.safetensors"
    save_file(_contiguous(theirs.state_dict()), str(file))
    ours = create_model("deit-s-16", pretrained=file)
    assert ours.pretrained_cfg["crop_pct"] == 0.875
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        _close(ours(x), theirs(x))
    small = save_timm(timm_model("vit_base_patch16_224", **SMALL), tmp_path / "small", "vit_base_patch16_224", SMALL)
    with pytest.raises(PretrainedFormatError, match=r"not 'vit-b-16-augreg': dim=64 \(the preset: 768\)"):
        create_model("vit-b-16-augreg", pretrained=small)


def test_options_change_the_output() -> None:
    base = dict(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128, dim_head=16)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    reference = ViT(**base).eval()
    for option in (
        dict(layer_scale=0.5),
        dict(registers=2),
        dict(pool="map", class_token=False),
        dict(distill_token=True),
    ):
        model = ViT(**base, **option).eval()
        missing, _ = model.load_state_dict(reference.state_dict(), strict=False)
        assert missing, option  # the option adds parameters ...
        with torch.no_grad():
            assert not torch.allclose(model(x), reference(x)), option  # ... and they change the output


def test_vit_convert_source(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vit_core import load_model
    from vit_core.cli import app

    theirs = timm_model("vit_base_patch16_224", num_classes=10, **SMALL)
    folder = save_timm(theirs, tmp_path / "hub", "vit_base_patch16_224", dict(SMALL))
    result = CliRunner().invoke(app, ["convert", str(folder), str(tmp_path / "out"), "--set", "num_classes=10"])
    assert result.exit_code == 0, result.output
    ours = load_model(tmp_path / "out")
    assert ours.pretrained_cfg["interpolation"] == "bicubic"
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        _close(ours(x), theirs(x))
    result = CliRunner().invoke(app, ["convert", str(folder), str(tmp_path / "bad"), "--set", "depth=3"])
    assert result.exit_code == 1 and "depth cannot be overridden" in result.output


PIT_SMALL = dict(img_size=32, patch_size=4, stride=2, base_dims=[32, 32], depth=[1, 2], heads=[2, 4])
"""A two-stage timm PiT of widths 64 and 128 (timm's widths are ``base_dims[i] * heads[i]``)."""

PIT_CASES = {
    "pit-ti": ("pit_ti_224", PIT_SMALL),
    "pit-s": ("pit_s_224", dict(PIT_SMALL, base_dims=[16, 16], heads=[4, 8])),
    "pit-b": ("pit_b_224", dict(PIT_SMALL, patch_size=6, stride=3)),
    "pit-ti-distilled": ("pit_ti_distilled_224", PIT_SMALL),
}


@pytest.mark.parametrize("case", list(PIT_CASES))
def test_timm_pit_parity(case: str, tmp_path: Path) -> None:
    pit = pytest.importorskip("vit_hierarchical.pit", reason="timm's PiT loads into vit-hierarchical's PiT")
    arch, model_args = PIT_CASES[case]
    theirs = timm_model(arch, num_classes=10, **model_args)
    ours = load_pretrained(save_timm(theirs, tmp_path / case, arch, model_args))
    assert isinstance(ours, pit.PiT) and not ours.training
    assert tuple(ours.pretrained_cfg["input_size"]) == (3, 32, 32) and ours.pretrained_cfg["crop_pct"] == 0.9
    prefix = ours.num_prefix_tokens
    assert prefix == theirs.num_tokens
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        _close(ours(x), theirs(x))
        features = ours.forward_features(x)
        _close(ours.fc_norm(features[:, :prefix]), theirs.forward_features(x))  # timm: the normed class token(s)
        _close(ours.forward_head(features, pre_logits=True), theirs.forward_head(theirs.forward_features(x), True))
        _, hidden = ours.forward_intermediates(x, output_fmt="NCHW")
        _, their_hidden = theirs.forward_intermediates(x)
        assert len(hidden) == len(their_hidden) == 2
        for h, t in zip(hidden, their_hidden, strict=True):
            _close(h, t)


def test_timm_pit_file_overrides_and_errors(tmp_path: Path) -> None:
    pytest.importorskip("vit_hierarchical.pit", reason="timm's PiT loads into vit-hierarchical's PiT")
    theirs = timm_model("pit_ti_224", num_classes=10, **PIT_SMALL)
    file = tmp_path / "pit.safetensors"
    save_file(_contiguous(theirs.state_dict()), str(file))
    with pytest.raises(ModelFileError, match=r"shape does not match.*patch_embed\.weight \(64, 3, 4, 4\)"):
        load_pretrained(file, arch="pit_ti_224")  # timm's own pit_ti_224: 3 stages, 16-px patches, 224-px positions
    with pytest.warns(UserWarning, match=r"new 3-class head .*head\.weight \(10, 128\)"):
        ours = load_pretrained(tmp_path / save_timm(theirs, tmp_path / "hub", "pit_ti_224", PIT_SMALL), num_classes=3)
    assert ours.head.out_features == 3 and "label_names" not in ours.pretrained_cfg
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        _close(
            ours.forward_head(ours.forward_features(x), pre_logits=True),
            theirs.forward_head(theirs.forward_features(x), True),
        )
    unequal = save_timm(theirs, tmp_path / "unequal", "pit_ti_224", dict(PIT_SMALL, base_dims=[32, 16]))
    with pytest.raises(PretrainedFormatError, match=r"cannot hold: base_dims=\(32, 16\)"):
        load_pretrained(unequal)
    unknown = save_timm(theirs, tmp_path / "unknown", "pit_xxl_224", PIT_SMALL)
    with pytest.raises(PretrainedFormatError, match=r"pit_xxl_224.*known: pit_<size>\[_distilled\]_224"):
        load_pretrained(unknown)
    with pytest.raises(PretrainedFormatError, match=r"plugins map: pit_\* \(pit\)"):
        load_pretrained(save_timm(theirs, tmp_path / "levit", "levit_128", PIT_SMALL))
