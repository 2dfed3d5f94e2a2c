"""vit-hierarchical against vit-pytorch 1.26.11: same (perturbed) weights, same outputs in eval mode."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from vit_core.testing.oracle import perturb
from vit_core import load_reference_weights

vit_hierarchical = pytest.importorskip("vit_hierarchical")

pytestmark = pytest.mark.oracle


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread for these small models: on a busy two-core host every parallel op waits
    at OpenMP's barrier for a descheduled thread (a training step of the Twins default measured
    25 times slower with two threads than with one); restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TWINS = dict(
    num_classes=10,
    **{f"s{i}_{k}": v for i in (1, 2, 3, 4) for k, v in (("local_patch_size", 2), ("global_k", 2))},
    s1_emb_dim=16,
    s2_emb_dim=16,
    s3_emb_dim=32,
    s4_emb_dim=32,
    s1_depth=0,
    s2_depth=1,
    s3_depth=1,
    s4_depth=1,
)
CVT = dict(
    num_classes=10,
    s1_emb_dim=16,
    s1_depth=1,
    s2_emb_dim=32,
    s2_heads=2,
    s2_depth=1,
    s2_proj_kernel=5,
    s3_emb_dim=48,
    s3_heads=2,
    s3_depth=2,
    s3_kv_proj_stride=1,
)
MOBILEVIT = dict(
    image_size=(64, 64),
    dims=(16, 20, 24),
    channels=(8, 8, 16, 16, 16, 16, 24, 24, 32, 32, 64),
    num_classes=10,
    depths=(1, 2, 1),
)

# key: (vit-pytorch module, class, arguments shared by both, input shape)
CASES = {
    "pit": (
        "pit",
        "PiT",
        dict(image_size=32, patch_size=4, num_classes=10, dim=32, depth=(1, 2), heads=(2, 1), mlp_dim=64, dim_head=16),
        (2, 3, 32, 32),
    ),
    "levit": (
        "levit",
        "LeViT",
        dict(image_size=64, num_classes=10, stages=2, dim=(32, 48), depth=(1, 2), heads=(2, 3), mlp_mult=2, dim_key=8),
        (2, 3, 64, 64),
    ),
    "levit-distill": (
        "levit",
        "LeViT",
        dict(
            image_size=96,
            num_classes=10,
            stages=3,
            dim=(16, 24, 32),
            depth=1,
            heads=(1, 2, 2),
            mlp_mult=2,
            dim_key=8,
            dim_value=8,
            num_distill_classes=5,
        ),
        (2, 3, 96, 96),
    ),
    "cvt": ("cvt", "CvT", CVT, (2, 3, 32, 32)),
    "twins-svt": ("twins_svt", "TwinsSVT", TWINS, (2, 3, 64, 64)),
    "regionvit": (
        "regionvit",
        "RegionViT",
        dict(dim=(16, 32, 48, 64), depth=(1, 1, 2, 1), window_size=2, local_patch_size=4, num_classes=10),
        (2, 3, 64, 64),
    ),
    "regionvit-3conv-peg": (
        "regionvit",
        "RegionViT",
        dict(
            dim=(16, 32, 48, 64),
            depth=(1, 1, 2, 1),
            window_size=2,
            num_classes=10,
            tokenize_local_3_conv=True,
            use_peg=True,
        ),
        (2, 3, 64, 64),
    ),
    "crossformer": (
        "crossformer",
        "CrossFormer",
        dict(
            dim=(32, 32, 64, 64),
            depth=(1, 1, 2, 1),
            global_window_size=(2, 2, 2, 1),
            local_window_size=(2, 2, 2, 1),
            cross_embed_kernel_sizes=((4, 8), (2, 4), (2, 4), (2, 4)),
            num_classes=10,
        ),
        (2, 3, 32, 32),
    ),
    "scalable-vit": (
        "scalable_vit",
        "ScalableViT",
        dict(
            num_classes=10,
            dim=16,
            depth=(2, 1),
            heads=(1, 2),
            reduction_factor=(2, 1),
            window_size=(4, None),
            ssa_dim_key=8,
            ssa_dim_value=12,
            iwsa_dim_key=8,
            iwsa_dim_value=6,
        ),
        (2, 3, 32, 32),
    ),
    "sep-vit": (  # vit-pytorch's DSSA uses 7x7 windows and 32-wide heads whatever it is told
        "sep_vit",
        "SepViT",
        dict(num_classes=10, dim=16, depth=(1, 2), heads=(1, 2), window_size=7, dim_head=32),
        (2, 3, 56, 56),  # 2x2 windows in the first stage, one in the second: both DSSA paths
    ),
    "maxvit": (
        "max_vit",
        "MaxViT",
        dict(num_classes=10, dim=16, depth=(1, 2), dim_head=8, dim_conv_stem=8, window_size=2, dropout=0.0),
        (2, 3, 32, 32),
    ),
    "nest": (
        "nest",
        "NesT",
        dict(image_size=32, patch_size=4, num_classes=10, dim=16, heads=2, num_hierarchies=3, block_repeats=(1, 2, 1)),
        (2, 3, 32, 32),
    ),
    "mobilevit": ("mobile_vit", "MobileViT", MOBILEVIT, (2, 3, 64, 64)),
    "mobilevit-expansion-1": ("mobile_vit", "MobileViT", dict(MOBILEVIT, expansion=1), (2, 3, 64, 64)),
}


def pair(key: str) -> tuple[nn.Module, nn.Module]:
    """(reference with perturbed weights, ours with those weights), both in eval mode."""
    module, name, kwargs, _ = CASES[key]
    reference = getattr(importlib.import_module(f"vit_pytorch.{module}"), name)(**kwargs)
    ours = getattr(vit_hierarchical, name)(**kwargs)
    perturb(reference).eval()
    return reference, load_reference_weights(ours, reference.state_dict()).eval()


def as_tensor(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat(out, dim=-1) if isinstance(out, tuple) else out


@pytest.mark.parametrize("key", list(CASES))
def test_parity_with_vit_pytorch(oracle, key: str) -> None:
    reference, ours = pair(key)
    if key == "scalable-vit":
        # vit-pytorch stores [SSA, FF, PEG, FF, IWSA] per layer but its loop runs them as SSA, FF, PEG,
        # FF, IWSA; the paper (and ours) runs IWSA before the second FF.  Swap the reference's two
        # modules (after its weights were taken) so it runs the paper's order with the same weights.
        for stage in reference.layers:
            for layer in stage[0].layers:
                layer[3], layer[4] = layer[4], layer[3]
    x = torch.randn(CASES[key][3])
    with torch.no_grad():
        expected, got = as_tensor(reference(x)), as_tensor(ours(x))
    assert expected.abs().max() > 0.1, "outputs too small to compare"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_scalable_vit_block_order_differs_from_the_release(oracle) -> None:
    """Without the swap above, vit-pytorch 1.26.11 runs FF then IWSA: a different function of the same weights."""
    reference, ours = pair("scalable-vit")
    x = torch.randn(CASES["scalable-vit"][3])
    with torch.no_grad():
        assert not torch.allclose(ours(x), reference(x), atol=1e-3)


def test_crossformer_import_reproduces_the_reference_bias_offsets(oracle) -> None:
    """vit-pytorch evaluates the bias MLP at the first (2g-1)^2 offsets of the [-g, g] grid; a model
    built here uses the true offsets [-(g-1), g-1]; the importer writes the reference's."""
    fresh = vit_hierarchical.CrossFormer(**CASES["crossformer"][2])
    _, imported = pair("crossformer")
    name = "stages.0.blocks.0.block.attn.position_bias.offsets"
    span = torch.arange(-1.0, 2.0)
    true = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1).reshape(-1, 2)
    assert torch.equal(fresh.get_buffer(name), true)
    assert torch.equal(imported.get_buffer(name)[0], torch.tensor([-2.0, -2.0]))


@pytest.mark.parametrize("key", ["levit", "maxvit", "mobilevit", "cvt"])
def test_parity_in_training_mode(oracle, key: str) -> None:
    """Batch statistics (BatchNorm in training) give the same outputs and the same running averages."""
    reference, ours = pair(key)
    reference.train()
    ours.train()
    x = torch.randn(CASES[key][3])
    torch.testing.assert_close(as_tensor(ours(x)), as_tensor(reference(x)), atol=1e-4, rtol=1e-4)
    ours_bn = [m.running_mean for m in ours.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    ref_bn = [m.running_mean for m in reference.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(ours_bn) == len(ref_bn) > 0
    assert sorted(float(t.sum()) for t in ours_bn) == pytest.approx(sorted(float(t.sum()) for t in ref_bn), abs=1e-4)


def test_reference_levit_leaves_most_of_its_backbone_untrained(oracle) -> None:
    """The issue's bug: zero-initialised BatchNorm gains in the shrink blocks (no residual) stop every
    gradient below them.  Ours (tests/test_hierarchical.py) trains every parameter."""
    from vit_pytorch.levit import LeViT

    reference = LeViT(**CASES["levit-distill"][2])
    reference(torch.randn(CASES["levit-distill"][3]))[0].sum().backward()
    dead = [n for n, p in reference.named_parameters() if p.grad is None or not p.grad.any()]
    assert len(dead) > len(list(reference.parameters())) // 2


REFERENCE_FIXES = ["cvt", "twins-svt", "regionvit", "crossformer", "sep-vit", "mobilevit", "nest"]


@pytest.mark.parametrize("name", REFERENCE_FIXES)
def test_vit_convert_applies_what_the_reference_hard_codes(tmp_path, name: str) -> None:
    """A vit-pytorch model built from the default configuration's arguments it takes (its head counts and
    widths are fixed inside it) converts with no --set: ``reference_config`` supplies them."""
    import inspect

    from vit_core import load_model
    from vit_core.interop.saving import convert_reference
    from vit_core.registry import get_registry

    info = get_registry().info(name)
    module, _, attr = info.reference.rpartition(".")
    Reference = getattr(importlib.import_module(module), attr)
    accepted = inspect.signature(Reference).parameters
    config = {k: v for k, v in info.default_config.items() if k in accepted}
    config.update({k: v for k, v in info.reference_config.items() if k in accepted})  # taken but ignored (SepViT)
    settings, x = {}, torch.randn(2, *info.input_shape)
    if name == "regionvit":  # its local tokenizer is the reference's at local_patch_size=4 only
        settings, x = {"local_patch_size": 4}, torch.randn(2, 3, 64, 64)
    if name == "crossformer":  # the reference's 32-wide heads need widths divisible by 32
        settings = {"dim": (32, 32, 64, 64)}
    if name == "sep-vit":
        x = torch.randn(2, 3, 224, 224)  # the reference's fixed 7x7 windows need maps divisible by 7
    reference = perturb(Reference(**config | settings)).eval()
    torch.save(reference.state_dict(), tmp_path / "reference.pt")
    convert_reference(name, tmp_path / "reference.pt", tmp_path / "out", **settings)
    ours = load_model(tmp_path / "out").eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


def test_regionvit_import_names_the_local_tokenizer_it_needs() -> None:
    """vit-pytorch embeds local tokens with an 8x8 stride-4 convolution whatever ``local_patch_size``;
    ours follows it (a 2p x 2p stride-p convolution), so only ``local_patch_size=4`` shares its weights."""
    from vit_pytorch.regionvit import RegionViT as Reference

    cfg = dict(dim=(16, 32, 48, 64), depth=1, window_size=2, local_patch_size=2, num_classes=10)
    reference = Reference(**cfg)
    with pytest.raises(ValueError, match=r"8x8 stride-4 convolution whatever local_patch_size.*got local_patch_size=2"):
        load_reference_weights(vit_hierarchical.RegionViT(**cfg), reference.state_dict())
    ours = vit_hierarchical.RegionViT(**cfg)
    assert ours.local_encoder.module.kernel_size == (4, 4) and ours.local_encoder.module.stride == (2, 2)


def test_a_failed_conversion_says_what_the_reference_hard_codes(tmp_path) -> None:
    from vit_pytorch.cvt import CvT as Reference

    from vit_core.interop.saving import ModelFileError, convert_reference
    from vit_core.registry import get_registry

    config = {k: v for k, v in get_registry().info("cvt").default_config.items() if k != "dim_head"}
    torch.save(Reference(**config | {"s1_emb_dim": 24}).state_dict(), tmp_path / "reference.pt")
    with pytest.raises(ModelFileError, match=r"vit_pytorch.cvt.CvT hard-codes \{'dim_head': 64\}, applied here"):
        convert_reference("cvt", tmp_path / "reference.pt", tmp_path / "out")
