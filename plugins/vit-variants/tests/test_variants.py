"""vit-variants: README examples, parity with vit-pytorch, the fixes over it, interface, tools, bad input."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

import pytest
import torch
from torch import nn

from vit_core import Extractor, Recorder, create_model, load_reference_weights
from vit_core.registry import get_registry
from vit_core.testing.oracle import (
    FLOAT64_TOLERANCE,
    assert_bf16_close,
    assert_float32_close,
    assert_float64_close,
    perturb,
    share_fixed_table,
)

vit_variants = pytest.importorskip("vit_variants")

SMALL = dict(image_size=16, patch_size=4, num_classes=5, dim=16, depth=2, heads=2, mlp_dim=32, dim_head=8)
CCT_SMALL = dict(
    img_size=16,
    embedding_dim=16,
    n_conv_layers=2,
    kernel_size=3,
    stride=1,
    padding=1,
    num_layers=2,
    num_heads=2,
    mlp_ratio=2.0,
    num_classes=5,
)
CROSS_SMALL = dict(
    image_size=16,
    num_classes=5,
    sm_dim=16,
    lg_dim=24,
    sm_patch_size=4,
    lg_patch_size=8,
    sm_enc_depth=1,
    lg_enc_depth=2,
    sm_enc_heads=2,
    lg_enc_heads=2,
    sm_enc_mlp_dim=32,
    lg_enc_mlp_dim=32,
    sm_enc_dim_head=8,
    lg_enc_dim_head=8,
    cross_attn_depth=2,
    cross_attn_heads=2,
    cross_attn_dim_head=8,
    depth=2,
)
T2T_SMALL = dict(
    image_size=16, num_classes=5, dim=16, depth=2, heads=2, mlp_dim=32, dim_head=8, t2t_layers=((3, 2), (3, 2))
)

# key: (our class, vit-pytorch module.class, constructor arguments shared by both)
MODELS = {
    "deepvit": ("DeepViT", "deepvit.DeepViT", SMALL),
    "deepvit-mean": ("DeepViT", "deepvit.DeepViT", dict(SMALL, pool="mean")),
    "cait": ("CaiT", "cait.CaiT", dict(SMALL, cls_depth=2)),
    "t2t": ("T2TViT", "t2t.T2TViT", T2T_SMALL),
    "t2t-mean-3": ("T2TViT", "t2t.T2TViT", dict(T2T_SMALL, pool="mean", t2t_layers=((3, 1), (3, 2), (2, 2)))),
    "cct-learnable": ("CCT", "cct.CCT", dict(CCT_SMALL, positional_embedding="learnable")),
    "cct-sine": ("CCT", "cct.CCT", dict(CCT_SMALL, positional_embedding="sine", img_size=(16, 24))),
    "cct-none": ("CCT", "cct.CCT", dict(CCT_SMALL, positional_embedding="none", n_conv_layers=1)),
    "cross-vit": ("CrossViT", "cross_vit.CrossViT", CROSS_SMALL),
    "cross-vit-same-dim": ("CrossViT", "cross_vit.CrossViT", dict(CROSS_SMALL, lg_dim=16)),
    "xcit": ("XCiT", "xcit.XCiT", dict(SMALL, cls_depth=2)),
    "parallel-vit": ("ParallelViT", "parallel_vit.ViT", dict(SMALL, num_parallel_branches=3)),
    "parallel-vit-mean": ("ParallelViT", "parallel_vit.ViT", dict(SMALL, pool="mean")),
    "small-dataset-vit": ("SmallDatasetViT", "vit_for_small_dataset.ViT", SMALL),
    "learnable-memory-vit": ("LearnableMemoryViT", "learnable_memory_vit.ViT", SMALL),
}
REGISTERED = [
    "deepvit",
    "cait",
    "t2t-vit",
    "cct",
    "cross-vit",
    "xcit",
    "parallel-vit",
    "small-dataset-vit",
    "learnable-memory-vit",
    "learnable-memory-adapter",
]
CCT_PRESETS = ["cct-2", "cct-4", "cct-6", "cct-7", "cct-8", "cct-14", "cct-16"]


@pytest.fixture(autouse=True)
def _one_thread_for_small_models(request: pytest.FixtureRequest):
    """The small configurations run faster on one thread (no inter-thread sync, no fight for cores);
    the README-size examples keep every thread."""
    if request.node.get_closest_marker("readme"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(key: str, **overrides) -> nn.Module:
    cls, _, kwargs = MODELS[key]
    return getattr(vit_variants, cls)(**{**kwargs, **overrides})


def reference(key: str) -> nn.Module:
    _, path, kwargs = MODELS[key]
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(f"vit_pytorch.{module}"), name)(**kwargs)


def image(
    batch: int = 2, channels: int = 3, size: int | tuple[int, int] = 16, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    height, width = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, channels, height, width, dtype=dtype)


def input_for(key: str, batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    size = MODELS[key][2].get("img_size", MODELS[key][2].get("image_size"))
    return image(batch, size=size, dtype=dtype)


# --- README examples -------------------------------------------------------------------------


@pytest.mark.readme
@torch.no_grad()
def test_readme_deepvit() -> None:
    from vit_variants import DeepViT

    v = DeepViT(
        image_size=256,
        patch_size=32,
        num_classes=1000,
        dim=1024,
        depth=6,
        heads=16,
        mlp_dim=2048,
        dropout=0.1,
        emb_dropout=0.1,
    ).eval()
    assert v(torch.randn(1, 3, 256, 256)).shape == (1, 1000)


@pytest.mark.readme
@torch.no_grad()
def test_readme_cait() -> None:
    from vit_variants import CaiT

    v = CaiT(
        image_size=256,
        patch_size=32,
        num_classes=1000,
        dim=1024,
        depth=12,
        cls_depth=2,
        heads=16,
        mlp_dim=2048,
        dropout=0.1,
        emb_dropout=0.1,
        layer_dropout=0.05,
    ).eval()
    assert v(torch.randn(1, 3, 256, 256)).shape == (1, 1000)


@pytest.mark.readme
@torch.no_grad()
def test_readme_t2t_vit() -> None:
    from vit_variants import T2TViT

    v = T2TViT(
        dim=512,
        image_size=224,
        depth=5,
        heads=8,
        mlp_dim=512,
        num_classes=1000,
        t2t_layers=((7, 4), (3, 2), (3, 2)),
    ).eval()
    assert v(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.readme
@torch.no_grad()
def test_readme_cct() -> None:
    from vit_variants import CCT

    cct = CCT(
        img_size=(224, 448),
        embedding_dim=384,
        n_conv_layers=2,
        kernel_size=7,
        stride=2,
        padding=3,
        pooling_kernel_size=3,
        pooling_stride=2,
        pooling_padding=1,
        num_layers=14,
        num_heads=6,
        mlp_ratio=3.0,
        num_classes=1000,
        positional_embedding="learnable",
    ).eval()
    assert cct(torch.randn(1, 3, 224, 448)).shape == (1, 1000)


@pytest.mark.readme
@torch.no_grad()
def test_readme_cct_14() -> None:
    from vit_variants import cct_14

    cct = cct_14(
        img_size=224,
        n_conv_layers=1,
        kernel_size=7,
        stride=2,
        padding=3,
        pooling_kernel_size=3,
        pooling_stride=2,
        pooling_padding=1,
        num_classes=1000,
        positional_embedding="learnable",
    ).eval()
    assert cct(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    assert (cct.num_features, len(cct.transformer.layers)) == (384, 14)


CROSS_VIT_README = dict(
    image_size=256,
    num_classes=1000,
    depth=4,
    sm_dim=192,
    sm_patch_size=16,
    sm_enc_depth=2,
    sm_enc_heads=8,
    sm_enc_mlp_dim=2048,
    lg_dim=384,
    lg_patch_size=64,
    lg_enc_depth=3,
    lg_enc_heads=8,
    lg_enc_mlp_dim=2048,
    cross_attn_depth=2,
    cross_attn_heads=8,
    dropout=0.1,
    emb_dropout=0.1,
)


@pytest.mark.readme
@torch.no_grad()
def test_readme_cross_vit_and_its_extractor() -> None:
    from vit_variants import CrossViT

    from vit_core import Extractor

    v = CrossViT(**CROSS_VIT_README).eval()
    img = torch.randn(1, 3, 256, 256)
    assert v(img).shape == (1, 1000)
    v = Extractor(v, layer_name="multi_scale_encoder")
    logits, embeddings = v(img)
    assert logits.shape == (1, 1000)
    assert [e.shape for e in embeddings] == [(1, 257, 192), (1, 17, 384)]


@pytest.mark.readme
@torch.no_grad()
def test_readme_xcit() -> None:
    from vit_variants import XCiT

    v = XCiT(
        image_size=256,
        patch_size=32,
        num_classes=1000,
        dim=1024,
        depth=12,
        cls_depth=2,
        heads=16,
        mlp_dim=2048,
        dropout=0.1,
        emb_dropout=0.1,
        layer_dropout=0.05,
        local_patch_kernel_size=3,
    ).eval()
    assert v(torch.randn(1, 3, 256, 256)).shape == (1, 1000)


@pytest.mark.readme
@torch.no_grad()
def test_readme_parallel_vit() -> None:
    from vit_variants import ParallelViT

    v = ParallelViT(
        image_size=256,
        patch_size=16,
        num_classes=1000,
        dim=1024,
        depth=6,
        heads=8,
        mlp_dim=2048,
        num_parallel_branches=2,
        dropout=0.1,
        emb_dropout=0.1,
    ).eval()
    assert v(torch.randn(4, 3, 256, 256)).shape == (4, 1000)


@pytest.mark.readme
@torch.no_grad()
def test_readme_small_dataset_vit_and_spt() -> None:
    from vit_variants import SPT, SmallDatasetViT

    v = SmallDatasetViT(
        image_size=256,
        patch_size=16,
        num_classes=1000,
        dim=1024,
        depth=6,
        heads=16,
        mlp_dim=2048,
        dropout=0.1,
        emb_dropout=0.1,
    ).eval()
    img = torch.randn(4, 3, 256, 256)
    assert v(img).shape == (4, 1000)  # vit-pytorch's README says (1, 1000) for this batch of 4
    spt = SPT(dim=1024, patch_size=16, channels=3)
    assert spt(img).shape == (4, 256, 1024)


@pytest.mark.readme
def test_readme_learnable_memory_vit_and_adapters() -> None:
    from vit_variants import Adapter, LearnableMemoryViT

    v = LearnableMemoryViT(
        image_size=256,
        patch_size=16,
        num_classes=1000,
        dim=1024,
        depth=6,
        heads=8,
        mlp_dim=2048,
        dropout=0.1,
        emb_dropout=0.1,
    ).eval()
    img = torch.randn(4, 3, 256, 256)
    with torch.no_grad():
        logits = v(img)
    assert logits.shape == (4, 1000)
    adapter1 = Adapter(vit=v, num_classes=2, num_memories_per_layer=5).eval()
    adapter2 = Adapter(vit=v, num_classes=4, num_memories_per_layer=10).eval()
    with torch.no_grad():
        assert adapter1(img).shape == (4, 2)
        assert adapter2(img).shape == (4, 4)


# --- parity with vit-pytorch ------------------------------------------------------------------
# In float64 (both models ``.double()`` before the weights convert, float64 inputs, FLOAT64_TOLERANCE), where
# the order a processor's kernels sum in no longer matters; test_cait_in_float32 is the float32 check.

F64 = torch.float64


def imported(key: str, dtype: torch.dtype = F64) -> tuple[nn.Module, nn.Module]:
    """Ours with the weights of a perturbed reference, both in ``dtype`` and eval mode.

    CCT's fixed sine table is a (frozen) parameter there, recomputed here: it is not perturbed.
    """
    ref = reference(key)
    constants = ("positional_emb",) if MODELS[key][2].get("positional_embedding") == "sine" else ()
    sine = {n: p.clone() for n, p in ref.named_parameters() if n.rsplit(".", 1)[-1] in constants}
    perturb(ref)
    with torch.no_grad():
        for name, value in sine.items():
            ref.get_parameter(name).copy_(value)
    ours = load_reference_weights(build(key).to(dtype), ref.to(dtype).eval().state_dict())
    if constants:
        share_fixed_table(ref, "classifier.positional_emb", ours.pos_embed.table)
    return ours.eval(), ref


@pytest.mark.oracle
@pytest.mark.parametrize("key", list(MODELS))
def test_parity_with_vit_pytorch(oracle, key: str) -> None:
    ours, ref = imported(key)
    x = input_for(key, dtype=F64)
    with torch.no_grad():
        assert_float64_close(ours(x), ref(x))


@pytest.mark.oracle
def test_cait_in_float32(oracle) -> None:
    """The float32 check: within a tolerance relative to the output scale."""
    ours, ref = imported("cait", dtype=torch.float32)
    x = input_for("cait")
    with torch.no_grad():
        assert_float32_close(ours(x), ref(x))


@pytest.mark.oracle
@pytest.mark.parametrize("layers", [2, 4, 6, 7, 8, 14, 16])
def test_cct_preset_functions_match_the_references(oracle, layers: int) -> None:
    """``cct_N`` as the README calls it (size and tokenizer given, the rest from the preset) against
    vit-pytorch's ``cct_N`` with the same arguments, on imported perturbed weights."""
    from vit_pytorch import cct as reference

    kwargs = dict(img_size=32, n_conv_layers=1, kernel_size=3, num_classes=5, positional_embedding="learnable")
    ref = perturb(getattr(reference, f"cct_{layers}")(**kwargs)).double().eval()
    ours = getattr(vit_variants, f"cct_{layers}")(**kwargs).double()
    ours = load_reference_weights(ours, ref.state_dict()).eval()
    x = torch.randn(2, 3, 32, 32, dtype=F64)
    with torch.no_grad():
        assert_float64_close(ours(x), ref(x))


@pytest.mark.oracle
def test_parity_detects_a_changed_weight(oracle) -> None:
    """The parity comparison is sharp: one head-mixing matrix transposed after import breaks it."""
    ours, ref = imported("cait")
    mix = ours.cls_transformer.layers[1].attn.mix_weights
    x = input_for("cait", dtype=F64)
    with torch.no_grad():
        mix.copy_(mix.t().clone())
        assert not torch.allclose(ours(x), ref(x), atol=FLOAT64_TOLERANCE, rtol=FLOAT64_TOLERANCE)


@pytest.mark.oracle
def test_t2t_with_a_custom_trunk_parity(oracle) -> None:
    """``transformer=`` replaces the encoder; its weights load as they are."""
    from vit_pytorch.t2t import T2TViT as Reference

    def trunk() -> nn.Module:
        return nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.GELU())

    kwargs = dict(image_size=16, num_classes=5, dim=16, t2t_layers=((3, 2), (3, 2)))
    ref = perturb(Reference(**kwargs, transformer=trunk())).double().eval()
    ours = vit_variants.T2TViT(**kwargs, transformer=trunk()).double()
    ours = load_reference_weights(ours, ref.state_dict()).eval()
    x = image(dtype=F64)
    with torch.no_grad():
        assert_float64_close(ours(x), ref(x))


@pytest.mark.oracle
def test_spt_parity(oracle) -> None:
    from vit_pytorch.vit_for_small_dataset import SPT as Reference
    from vit_variants.weights import import_spt

    ref = perturb(Reference(dim=16, patch_size=4, channels=2)).double().eval()
    ours = vit_variants.SPT(dim=16, patch_size=4, channels=2).double()
    ours.load_state_dict(import_spt(ref.state_dict(), ours))
    x = image(channels=2, dtype=F64)
    with torch.no_grad():
        assert_float64_close(ours(x), ref(x))


@pytest.mark.oracle
def test_adapter_parity(oracle) -> None:
    from vit_pytorch.learnable_memory_vit import Adapter as Reference
    from vit_variants.weights import import_adapter

    ref_vit = reference("learnable-memory-vit")
    ref = Reference(vit=ref_vit, num_memories_per_layer=3, num_classes=4)
    perturb(ref).double().eval()
    backbone = build("learnable-memory-vit").double()
    ours = vit_variants.Adapter(vit=backbone, num_memories_per_layer=3, num_classes=4).double()
    ours.load_state_dict(import_adapter(ref.state_dict(), ours))
    ours.eval()
    x = image(dtype=F64)
    with torch.no_grad():
        assert_float64_close(ours(x), ref(x))


# --- fixes over the reference -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["cait", "xcit"])
def test_layer_dropout_only_in_training(key: str) -> None:
    model = build(key, layer_dropout=0.5, depth=4).eval()
    x = input_for(key)
    with torch.no_grad():
        every_layer = build(key, depth=4)
        every_layer.load_state_dict(model.state_dict())
        full = every_layer.eval()(x)
        outputs = [model(x) for _ in range(6)]
        assert all(torch.equal(out, full) for out in outputs)  # eval runs every layer
        model.train()
        dropped = [model(x) for _ in range(6)]
    assert any(not torch.allclose(out, full) for out in dropped)  # training skips some


@pytest.mark.oracle
@pytest.mark.parametrize("module", ["cait.CaiT", "xcit.XCiT"])
def test_reference_drops_layers_in_eval(oracle, module: str) -> None:
    """What the fix is about: vit-pytorch's CaiT and XCiT give different outputs for one input in eval mode."""
    path, name = module.split(".")
    Reference = getattr(importlib.import_module(f"vit_pytorch.{path}"), name)
    ref = Reference(**dict(SMALL, cls_depth=2, depth=4, layer_dropout=0.5)).eval()
    x = image()
    with torch.no_grad():
        outputs = [ref(x) for _ in range(8)]
    assert any(not torch.allclose(out, outputs[0]) for out in outputs[1:])


@pytest.mark.parametrize(("depth", "gain"), [(1, 0.1), (18, 0.1), (19, 1e-5), (24, 1e-5), (25, 1e-6), (36, 1e-6)])
def test_cait_layer_scale_from_total_depth(depth: int, gain: float) -> None:
    model = vit_variants.CaiT(**dict(SMALL, dim=8, heads=1, dim_head=4, mlp_dim=8, depth=depth, cls_depth=1))
    gammas = [
        layer.attn_scale.gamma for trunk in (model.transformer, model.cls_transformer) for layer in trunk.layers
    ] + [layer.ff_scale.gamma for layer in model.transformer.layers]
    assert all(torch.equal(g, torch.full_like(g, gain)) for g in gammas)


@pytest.mark.oracle
def test_reference_cait_layer_scale_follows_the_layer_index(oracle) -> None:
    from vit_pytorch.cait import CaiT as Reference

    ref = Reference(**dict(SMALL, depth=24, cls_depth=1))
    first, last = ref.patch_transformer.layers[0][0].scale, ref.patch_transformer.layers[-1][0].scale
    assert first.flatten()[0].item() == pytest.approx(0.1) and last.flatten()[0].item() == pytest.approx(1e-5)
    ours = vit_variants.CaiT(**dict(SMALL, depth=24, cls_depth=1))
    assert ours.transformer.layers[0].attn_scale.gamma[0].item() == pytest.approx(1e-5)


@pytest.mark.parametrize("key", ["cait", "xcit"])
def test_channels_argument(key: str) -> None:
    model = build(key, channels=1).eval()
    with torch.no_grad():
        assert model(image(channels=1)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"img must have channels=1"):
        model(image(channels=3))


@pytest.mark.parametrize("name", ["cct", "cct-2", "cct-7"])
def test_vit_train_and_bench_follow_ccts_input_channels(name: str) -> None:
    """``vit train`` and ``vit bench`` shape their data from ``channels_arg``: CCT's ``n_input_channels``."""
    from vit_core.training.build import sample_shape

    info = get_registry().info(name)
    assert info.channels_arg == "n_input_channels"
    shape = sample_shape(info, {"n_input_channels": 1})
    assert shape[0] == 1


def _class_token_rows(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The head-averaged class-attention rows ``(cls_depth, 1 + patches)`` that Recorder records."""
    recorder = Recorder(model, layer=model.cls_transformer)
    with torch.no_grad():
        _, maps = recorder(x)
    recorder.eject()
    return maps[0].mean(1)[:, 0]


@pytest.mark.parametrize("key", ["cait", "xcit"])
def test_attention_map_of_class_attention_models_reads_the_class_token(key: str) -> None:
    """``vit attention`` on CaiT and XCiT: the class token's attention over the patches ("last"), and its
    rollout through the class-attention layers, carried through the patch layers' rollout where those
    attend over tokens (CaiT; XCiT's XCA maps are channel to channel and are left out)."""
    from vit_core.tools.attention_map import attention_map

    model = build(key).eval()
    x = image(batch=1)
    rows = _class_token_rows(model, x)
    last = rows[-1, 1:]
    assert torch.allclose(attention_map(model, x, "last"), (last / last.sum()).reshape(4, 4), atol=1e-6)
    weights = torch.zeros(16)
    for row in rows:
        weights = (1 + row[0]) / 2 * weights + row[1:] / 2
    if key == "cait":
        with torch.no_grad():
            _, patch_maps = Recorder(model)(x)
        joint = torch.eye(16)
        for layer in patch_maps[0].mean(1):
            mixed = layer + torch.eye(16)
            joint = (mixed / mixed.sum(-1, keepdim=True)) @ joint
        weights = weights @ joint
    assert torch.allclose(attention_map(model, x, "rollout"), (weights / weights.sum()).reshape(4, 4), atol=1e-6)


@pytest.mark.parametrize("name", ["cait", "xcit", "cct", "cct-2"])
def test_vit_attention_draws_class_attention_and_cct_models(name: str, tmp_path) -> None:
    from PIL import Image

    from vit_core.tools.attention_map import draw

    Image.new("RGB", (40, 30), (90, 140, 200)).save(tmp_path / "in.png")
    model = create_model(name)
    heat = draw(model, tmp_path / "in.png", tmp_path / "out.png")
    assert heat.sum().item() == pytest.approx(1.0) and heat.ndim == 2
    with Image.open(tmp_path / "out.png") as written:
        assert written.size == (30, 30)  # the centre the model sees, at the image's resolution


# --- training, determinism, precision ---------------------------------------------------------


@pytest.mark.parametrize("key", list(MODELS))
def test_gradients_reach_every_parameter(key: str) -> None:
    overrides = {"layer_dropout": 0.0} if MODELS[key][0] in ("CaiT", "XCiT") else {}
    if MODELS[key][0] == "CCT":
        overrides = {"attention_dropout": 0.0, "stochastic_depth_rate": 0.0}
    model = build(key, **overrides).train()
    out = model(input_for(key))
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_spt_is_deterministic_and_runs_in_bf16() -> None:
    spt = vit_variants.SPT(dim=16, patch_size=4, channels=3).eval()
    x = image()
    with torch.no_grad():
        first, second = spt(x), spt(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = spt(x)
    assert torch.equal(first, second) and first.shape == (2, 16, 16)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    assert (low.float() - first).abs().max() < 0.05 * first.abs().max()


@pytest.mark.parametrize("name", REGISTERED)
def test_eval_is_deterministic_and_bf16_is_close(name: str) -> None:
    """Eval mode is deterministic (layer dropout off); autocast reaches the model (bfloat16 logits) and
    moves them by at most 5% of the largest fp32 logit (measured: 0.3% CCT to 2.3% DeepViT)."""
    info = get_registry().info(name)
    overrides = {"layer_dropout": 0.3} if name in ("cait", "xcit") else {}
    model = create_model(name, **overrides).eval()
    x = info.example_input(2)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    assert_bf16_close(model, x, (2, 10))


# --- interface: forward_intermediates, Recorder, Extractor ------------------------------------


@pytest.mark.parametrize("key", list(MODELS))
def test_forward_intermediates_end_with_forward_features(key: str) -> None:
    model = build(key).eval()
    x = input_for(key)
    with torch.no_grad():
        features = model.forward_features(x)
        final, hidden = model.forward_intermediates(x)
        only = model.forward_intermediates(x, indices=1, intermediates_only=True)
    assert len(hidden) == len(model.feature_info)
    assert all(isinstance(h, torch.Tensor) for h in hidden)  # timm's contract: a list of tensors
    if isinstance(features, tuple):  # CrossViT: both branches; the intermediates are the small branch's
        assert all(torch.equal(a, b) for a, b in zip(final, features))
        assert torch.equal(hidden[-1], features[0])
    else:
        assert torch.equal(final, features)
    assert torch.equal(hidden[-1], only[0])
    assert len(only) == 1


SINGLE_SCALE = ["deepvit", "cait", "t2t", "cct-learnable", "xcit", "parallel-vit", "small-dataset-vit"]


@pytest.mark.parametrize("key", [*SINGLE_SCALE, "learnable-memory-vit"])
def test_forward_intermediates_as_maps(key: str) -> None:
    model = build(key).eval()
    with torch.no_grad():
        hidden = model.forward_intermediates(input_for(key), [0, -1], output_fmt="NCHW", intermediates_only=True)
    assert [tuple(h.shape) for h in hidden] == [(2, 16, 4, 4)] * 2  # width 16 on a 4x4 token grid


def test_cross_vit_intermediates_are_the_small_branch_unless_asked_for_the_large() -> None:
    model = build("cross-vit").eval()
    x = input_for("cross-vit")
    with torch.no_grad():
        sm, lg = model.forward_features(x)
        tokens = model.forward_intermediates(x, intermediates_only=True)
        maps = model.forward_intermediates(x, output_fmt="NCHW", intermediates_only=True)
        final, large = model.forward_intermediates(x, branch="lg")
        large_maps = model.forward_intermediates(x, [0], output_fmt="NCHW", intermediates_only=True, branch="lg")
    assert [tuple(t.shape) for t in tokens] == [(2, 17, 16)] * 2 and torch.equal(tokens[-1], sm)
    assert [tuple(m.shape) for m in maps] == [(2, 16, 4, 4)] * 2
    assert [tuple(t.shape) for t in large] == [(2, 5, 24)] * 2 and torch.equal(large[-1], lg)
    assert torch.equal(final[0], sm) and torch.equal(final[1], lg)
    assert [tuple(m.shape) for m in large_maps] == [(2, 24, 2, 2)]
    info = model.feature_info
    assert info[0] == {"module": "multi_scale_encoder.layers.0", "num_chs": 16, "reduction": 4}
    with pytest.raises(ValueError, match="branch"):
        model.forward_intermediates(x, branch="md")


@pytest.mark.parametrize(
    ("key", "stacked"),
    [
        ("deepvit", (2, 2, 2, 17, 17)),
        ("cait", (2, 2, 2, 16, 16)),  # the patch layers; class attention: Recorder(layer=cls_transformer)
        ("t2t", (2, 2, 2, 17, 17)),
        ("cct-learnable", (2, 2, 2, 16, 16)),
        ("xcit", (2, 2, 2, 8, 8)),  # channel maps (dim_head x dim_head)
        ("parallel-vit", (2, 6, 2, 17, 17)),  # depth x branches
        ("small-dataset-vit", (2, 2, 2, 17, 17)),
        ("learnable-memory-vit", (2, 2, 2, 17, 17)),
    ],
)
def test_recorder_maps(key: str, stacked: tuple[int, ...]) -> None:
    model = build(key).eval()
    x = input_for(key)
    with torch.no_grad():
        preds, attn = Recorder(model)(x)
        assert torch.allclose(preds, model(x), atol=1e-6)
    assert attn.shape == stacked


def test_recorder_class_attention_and_lsa_maps() -> None:
    cait = build("cait").eval()
    with torch.no_grad():
        _, attn = Recorder(cait, layer=cait.cls_transformer)(input_for("cait"))
    assert attn.shape == (2, 2, 2, 1, 17)  # the class token over [itself, 16 patches]
    lsa = build("small-dataset-vit").eval()
    with torch.no_grad():
        _, attn = Recorder(lsa)(input_for("small-dataset-vit"))
    assert torch.allclose(attn.sum(-1), torch.ones(())) and not attn.diagonal(dim1=-2, dim2=-1).any()


def test_recorder_cross_vit_lists_every_attention_call() -> None:
    model = build("cross-vit").eval()
    with torch.no_grad():
        _, attn = Recorder(model)(input_for("cross-vit"))
    per_block = [(2, 2, 17, 17), (2, 2, 5, 5), (2, 2, 5, 5)] + [(2, 2, 1, 5), (2, 2, 1, 17)] * 2
    assert [tuple(a.shape) for a in attn] == per_block * 2


def test_extractor_on_cross_vit_returns_both_scales() -> None:
    model = build("cross-vit").eval()
    x = input_for("cross-vit")
    with torch.no_grad():
        logits, (sm, lg) = Extractor(model, layer_name="multi_scale_encoder")(x)
        features = model.forward_features(x)
    assert logits.shape == (2, 5)
    assert torch.equal(sm, features[0]) and torch.equal(lg, features[1])


def test_cross_vit_head_is_the_sum_of_both_branch_heads() -> None:
    model = build("cross-vit").eval()
    with torch.no_grad():
        sm, lg = model.forward_features(input_for("cross-vit"))
        pooled = model.forward_head((sm, lg), pre_logits=True)
        w, b = model.head.weight, model.head.bias
        sm_logits = model.sm_norm(sm[:, 0]) @ w[:, :16].t()
        lg_logits = model.lg_norm(lg[:, 0]) @ w[:, 16:].t() + b
    assert pooled.shape == (2, 40)
    torch.testing.assert_close(model.forward_head((sm, lg)), sm_logits + lg_logits)


# --- learnable memory: adapters on a frozen backbone ------------------------------------------


def test_adapter_trains_memories_not_the_backbone() -> None:
    vit = build("learnable-memory-vit").eval()
    x = image()
    with torch.no_grad():
        before_logits = vit(x)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    adapter = vit_variants.Adapter(vit=vit, num_memories_per_layer=3, num_classes=2)
    trainable = [p for p in adapter.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for n, p in adapter.named_parameters() if not n.startswith("vit.")}
    optimizer = torch.optim.SGD(adapter.parameters(), lr=0.5)
    memories = adapter.memories.detach().clone()
    loss = nn.functional.cross_entropy(adapter(x), torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    assert not torch.equal(adapter.memories, memories)
    assert all(torch.equal(before[k], v) for k, v in vit.state_dict().items())
    with torch.no_grad():
        assert torch.allclose(vit(x), before_logits, atol=1e-6)


def test_two_adapters_share_a_backbone_and_differ() -> None:
    vit = build("learnable-memory-vit").eval()
    first = vit_variants.Adapter(vit=vit, num_memories_per_layer=2, num_classes=3).eval()
    second = vit_variants.Adapter(vit=vit, num_memories_per_layer=4, num_classes=3).eval()
    x = image()
    with torch.no_grad():
        assert first.vit is second.vit
        assert not torch.allclose(first(x), second(x))
        features = first.forward_features(x)
        tokens = vit.forward_features(x)
    assert features.shape == (2, 18, 16)
    torch.testing.assert_close(features[:, 1:], tokens)  # the backbone's tokens never see the memories


# --- bad input ----------------------------------------------------------------------------------


def test_cross_vit_patch_sizes_must_divide_the_image() -> None:
    with pytest.raises(ValueError, match=r"image_size \(16, 16\) must be divisible by lg_patch_size \(6, 6\)"):
        build("cross-vit", lg_patch_size=6)
    with pytest.raises(ValueError, match=r"img spatial size \(12, 12\) must be divisible by lg_patch_size \(8, 8\)"):
        build("cross-vit")(image(size=12))
    with pytest.raises(ValueError, match=r"larger than image_size"):
        build("cross-vit")(image(size=24))


def test_cct_argument_checks() -> None:
    with pytest.raises(ValueError, match=r"embedding_dim=30 must be divisible by num_heads=4"):
        vit_variants.CCT(**dict(CCT_SMALL, embedding_dim=30, num_heads=4))
    with pytest.raises(ValueError, match=r"img_size=4 is too small for the tokenizer .* leaves a token grid"):
        vit_variants.CCT(**dict(CCT_SMALL, img_size=4, kernel_size=7, padding=0, n_conv_layers=1))
    with pytest.raises(ValueError, match=r"positional_embedding must be one of"):
        vit_variants.CCT(**dict(CCT_SMALL, positional_embedding="rope"))
    with pytest.raises(ValueError, match=r"pooling_padding=2 must be at most half of pooling_kernel_size=3"):
        vit_variants.CCT(**dict(CCT_SMALL, pooling_padding=2))
    with pytest.raises(ValueError, match=r"img must be img_size=\(16, 16\)"):
        build("cct-learnable")(image(size=8))
    with pytest.raises(ValueError, match=r"img of shape \(2, 3, 4, 4\) is too small for the tokenizer"):
        build("cct-none", kernel_size=5, padding=0)(image(size=4))
    assert build("cct-none").eval()(image(size=12)).shape == (2, 5)


def test_cct_presets_fix_their_size() -> None:
    cct = vit_variants.cct_7(img_size=32, num_classes=10)
    assert (len(cct.transformer.layers), cct.num_features, cct.transformer.layers[0].attn.heads) == (7, 256, 4)
    assert cct.tokenizer.geometry[:3] == ((3, 3), (1, 1), (1, 1))  # kernel 3 -> stride 1, padding 1
    with pytest.raises(TypeError, match=r"cct_7 fixes num_layers"):
        vit_variants.cct_7(img_size=32, num_layers=3)


def test_t2t_layers_checks() -> None:
    with pytest.raises(ValueError, match=r"t2t_layers=\[\(7, 4\)\] shrink image_size \(2, 2\) below one token"):
        vit_variants.T2TViT(**dict(T2T_SMALL, image_size=2, t2t_layers=((7, 4),)))
    with pytest.raises(ValueError, match=r"t2t_layers must be a non-empty sequence of \(kernel_size, stride\) pairs"):
        vit_variants.T2TViT(**dict(T2T_SMALL, t2t_layers=((3, 0),)))
    with pytest.raises(ValueError, match=r"img of shape \(2, 3, 2, 2\) is too small for the tokenizer"):
        build("t2t", t2t_layers=((7, 4), (3, 2)))(image(size=2))
    with pytest.raises(TypeError, match=r"T2TViT needs depth, heads, mlp_dim unless transformer= is given"):
        vit_variants.T2TViT(image_size=16, num_classes=5, dim=16)


def test_num_parallel_branches_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"num_parallel_branches must be a positive int, got 0"):
        build("parallel-vit", num_parallel_branches=0)


def test_adapter_needs_a_learnable_memory_backbone() -> None:
    from vit_core import ViT

    with pytest.raises(TypeError, match=r"vit must be a vit_variants.LearnableMemoryViT .* got ViT"):
        vit_variants.Adapter(vit=ViT(**SMALL))
    adapter = vit_variants.Adapter(vit=build("learnable-memory-vit")).eval()
    with pytest.raises(ValueError, match=r"img spatial size \(20, 20\) is larger than image_size \(16, 16\)"):
        adapter(image(size=20))


def test_adapter_runs_at_the_backbones_sizes_and_keeps_it_frozen() -> None:
    """The memory mask follows the backbone's token count: smaller inputs (as the backbone takes them) and a
    resized backbone work, and set_input_size leaves the backbone's resampled positions frozen."""
    backbone = build("learnable-memory-vit")
    adapter = vit_variants.Adapter(vit=backbone, num_memories_per_layer=3, num_classes=4).eval()
    with torch.no_grad():
        assert adapter(image(size=8)).shape == (2, 4)
        adapter.set_input_size(24)
        assert adapter(image(size=24)).shape == (2, 4)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert all(p.requires_grad for p in adapter.parameters() if not any(p is q for q in backbone.parameters()))


def test_adapter_intermediates_carry_the_task_token_and_memories() -> None:
    adapter = vit_variants.Adapter(vit=build("learnable-memory-vit"), num_memories_per_layer=3).eval()
    x = image()
    with torch.no_grad():
        final, hidden = adapter.forward_intermediates(x)
        maps = adapter.forward_intermediates(x, indices=1, output_fmt="NCHW", intermediates_only=True)
        features = adapter.forward_features(x)
        backbone_features = adapter.vit.forward_features(x)
    assert torch.allclose(final, features) and len(hidden) == 2 == len(adapter.feature_info)
    assert hidden[0].shape == (2, 1 + 1 + 16, 16)  # the task's token, the backbone's class token, 16 patches
    assert torch.allclose(features[:, 1:], backbone_features, atol=1e-6)  # the backbone's tokens are untouched
    assert not torch.allclose(adapter.forward_head(features), adapter.vit.forward_head(backbone_features)[:, :2])
    assert len(maps) == 1 and maps[0].shape == (2, 16, 4, 4)
    assert torch.allclose(maps[0], hidden[-1][:, 2:].transpose(1, 2).reshape(2, 16, 4, 4))


def test_xcit_checks() -> None:
    with pytest.raises(ValueError, match=r"local_patch_kernel_size must be odd"):
        build("xcit", local_patch_kernel_size=4)
    with pytest.raises(ValueError, match=r"layer_dropout must be a float in \[0, 1\)"):
        build("xcit", layer_dropout=1.0)


PATCH_MODELS = ["deepvit", "cait", "xcit", "parallel-vit", "small-dataset-vit", "learnable-memory-vit"]


@pytest.mark.parametrize("key", PATCH_MODELS)
@pytest.mark.parametrize("argument", ["heads", "dim_head", "mlp_dim", "channels"])
def test_non_positive_sizes_rejected(key: str, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"{argument} must be a positive int, got 0"):
        build(key, **{argument: 0})


# --- registry ---------------------------------------------------------------------------------


def test_conformance_kit() -> None:
    from vit_core.testing import check_plugin

    assert check_plugin("variants") == REGISTERED


@pytest.mark.parametrize("name", CCT_PRESETS)
def test_conformance_kit_on_every_preset(name: str) -> None:
    """The kit builds no preset (they are large); these are CCT's paper sizes, checked one by one."""
    from vit_core.testing import check_model

    check_model(name)


def test_presets_are_registered_and_described() -> None:
    from typer.testing import CliRunner

    from vit_core.cli import app

    registry = get_registry()
    assert registry.plugins["variants"].presets == CCT_PRESETS
    runner = CliRunner()
    for name in CCT_PRESETS:
        data = json.loads(runner.invoke(app, ["describe", name, "--json", "--no-measure"]).stdout)
        assert data["preset_of"] == "cct" and data["family"] == "variants", name
    data = json.loads(runner.invoke(app, ["describe", "cct-2", "--json"]).stdout)
    assert data["summary"].startswith("CCT-2/3x2") and data["num_params"] == 283_722
    model = create_model("cct-2").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_plugin_import_is_lazy() -> None:
    code = "import sys, vit_variants, vit_variants.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- the command line on these models ---------------------------------------------------------


def _cli(*args: object) -> Any:
    from typer.testing import CliRunner

    from vit_core.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})


def _error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output + result.stderr
    return result.stderr.strip().splitlines()[-1]


FAST = ["--data", "synthetic", "--batch-size", "16", "--no-progress", "--epochs", "1"]


def test_vit_train_sets_and_resumes_the_adapters_backbone(tmp_path, monkeypatch) -> None:
    """``--set vit.KEY=VALUE`` reaches the frozen backbone (the data follows its input), the checkpoint
    saves it, and --resume rebuilds it; ``--set vit=...`` names another registered model."""
    from vit_core import load_model

    monkeypatch.chdir(tmp_path)
    backbone = ["--set", "vit.channels=1", "--set", "vit.image_size=16"]
    result = _cli("train", "learnable-memory-adapter", *FAST, "--max-steps", "2", *backbone, "--out", "run")
    assert result.exit_code == 0, result.output + result.stderr
    assert "sample (1, 16, 16)" in result.output
    resumed = _cli("train", "learnable-memory-adapter", "--max-steps", "3", "--no-progress", "--resume", "run")
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert "resuming at step 2" in resumed.output
    adapter = load_model(tmp_path / "run" / "checkpoint")
    assert adapter.vit.channels == 1 and adapter(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    named = _cli("train", "learnable-memory-adapter", *FAST, "--max-steps", "1", "--set", "vit=learnable-memory-vit")
    assert named.exit_code == 0, named.output + named.stderr
    assert "has no component arguments" in _error(_cli("train", "cct", *FAST, "--set", "vit.dim=8"))
    assert "vit is a component" in _error(_cli("train", "learnable-memory-adapter", *FAST, "--set", "vit=3"))
    assert "unknown model 'vitt'" in _error(_cli("train", "learnable-memory-adapter", *FAST, "--set", "vit=vitt"))
    assert "has no component 'head'" in _error(_cli("train", "learnable-memory-adapter", *FAST, "--set", "head.x=1"))


def test_a_preset_run_resumes_and_draws_under_the_preset_name(tmp_path, monkeypatch) -> None:
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    assert _cli("train", "cct-2", *FAST, "--max-steps", "1", "--out", "run").exit_code == 0
    resumed = _cli("train", "cct-2", "--max-steps", "2", "--no-progress", "--resume", "run")
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    Image.new("RGB", (40, 30), (90, 140, 200)).save(tmp_path / "in.png")
    drawn = _cli("attention", "cct-2", "--image", "in.png", "--out", "out.png", "--checkpoint", "run")
    assert drawn.exit_code == 0, drawn.output + drawn.stderr
    draw = ["--image", "in.png", "--out", "o.png", "--checkpoint", "run"]
    assert "--set configures a fresh model" in _error(_cli("attention", "cct-2", *draw, "--set", "dim=8"))
    assert "is of model 'cct', not 'deepvit'" in _error(_cli("attention", "deepvit", *draw))


def test_attention_map_refuses_deepvit_and_rolls_out_parallel_branches() -> None:
    """DeepViT's recorded maps are normalised across heads (their head average is zero): refused.
    Parallel ViT's branches add into one residual: each layer's rollout step is their sum plus the identity."""
    from vit_core.tools.attention_map import attention_map

    x = image(batch=1)
    with pytest.raises(TypeError, match=r"DeepViT's recorded maps are no distributions .*token_attention = False"):
        attention_map(build("deepvit").eval(), x)
    model = build("parallel-vit").eval()
    with torch.no_grad():
        _, maps = Recorder(model)(x)
    layers = maps[0].mean(1).reshape(-1, 3, 17, 17)  # (depth, 3 branches, tokens, tokens)
    joint = torch.eye(17)
    for layer in layers:
        mixed = layer.sum(0) + torch.eye(17)
        joint = (mixed / mixed.sum(-1, keepdim=True)) @ joint
    expected = joint[0, 1:] / joint[0, 1:].sum()
    assert torch.allclose(attention_map(model, x, "rollout"), expected.reshape(4, 4), atol=1e-6)
    last = layers[-1].mean(0)[0, 1:]
    assert torch.allclose(attention_map(model, x, "last"), (last / last.sum()).reshape(4, 4), atol=1e-6)
