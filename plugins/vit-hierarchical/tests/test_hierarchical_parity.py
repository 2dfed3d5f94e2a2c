"""vit-hierarchical against vit-pytorch 1.26.11: same (perturbed) weights, same outputs in eval mode.

Parity runs in float64 (both models ``.double()``, float64 inputs, :data:`FLOAT64_TOLERANCE`), where the
order a processor's kernels sum in no longer matters; ``test_levit_in_float32`` is the float32 check.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from vit_core import load_reference_weights
from vit_core.testing.oracle import (
    FLOAT64_TOLERANCE,
    assert_float32_close,
    assert_float64_close,
    perturb,
)

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


def pair(key: str, dtype: torch.dtype = torch.float64) -> tuple[nn.Module, nn.Module]:
    """(reference with perturbed weights, ours with those weights), both in ``dtype`` and eval mode.

    The weights convert in ``dtype`` (LeViT's importer divides its position biases by the attention scale):
    no float32 rounding between the two models."""
    module, name, kwargs, _ = CASES[key]
    reference = getattr(importlib.import_module(f"vit_pytorch.{module}"), name)(**kwargs)
    ours = getattr(vit_hierarchical, name)(**kwargs).to(dtype)
    perturb(reference).to(dtype).eval()
    return reference, load_reference_weights(ours, reference.state_dict()).eval()


def as_tensor(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat(out, dim=-1) if isinstance(out, tuple) else out


class Float64Offsets(nn.Module):
    """vit-pytorch's CrossFormer casts its integer offsets to float32 (``self.dpb(rel_pos.float())``) before
    its bias MLP, which cannot then run in float64: this wrapper casts them back (integers, so exactly)."""

    def __init__(self, bias_mlp: nn.Module) -> None:
        super().__init__()
        self.bias_mlp = bias_mlp

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.bias_mlp(offsets.double())


def runnable_in_float64(key: str, reference: nn.Module) -> nn.Module:
    """``reference`` (weights already taken) able to run the float64 comparison."""
    if key.startswith("crossformer"):
        for attention in [m for m in reference.modules() if hasattr(m, "dpb")]:
            attention.dpb = Float64Offsets(attention.dpb)
    return reference


@pytest.mark.parametrize("key", list(CASES))
def test_parity_with_vit_pytorch(oracle, key: str) -> None:
    reference, ours = pair(key)
    runnable_in_float64(key, reference)
    if key == "scalable-vit":
        # vit-pytorch stores [SSA, FF, PEG, FF, IWSA] per layer but its loop runs them as SSA, FF, PEG,
        # FF, IWSA; the paper (and ours) runs IWSA before the second FF.  Swap the reference's two
        # modules (after its weights were taken) so it runs the paper's order with the same weights.
        for stage in reference.layers:
            for layer in stage[0].layers:
                layer[3], layer[4] = layer[4], layer[3]
    x = torch.randn(CASES[key][3], dtype=torch.float64)
    with torch.no_grad():
        expected, got = as_tensor(reference(x)), as_tensor(ours(x))
    assert expected.abs().max() > 0.1, "outputs too small to compare"
    assert_float64_close(got, expected)


def test_levit_in_float32(oracle) -> None:
    """The float32 check, on the model whose float32 outputs differed most across processors (kernel order)."""
    reference, ours = pair("levit", dtype=torch.float32)
    x = torch.randn(CASES["levit"][3])
    with torch.no_grad():
        assert_float32_close(ours(x), reference(x))


def test_scalable_vit_block_order_differs_from_the_release(oracle) -> None:
    """Without the swap above, vit-pytorch 1.26.11 runs FF then IWSA: a different function of the same weights."""
    reference, ours = pair("scalable-vit")
    x = torch.randn(CASES["scalable-vit"][3], dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(ours(x), reference(x), atol=1e-3)


def test_crossformer_import_reproduces_the_reference_bias_offsets(oracle) -> None:
    """vit-pytorch evaluates the bias MLP at the first (2g-1)^2 offsets of the [-g, g] grid; a model
    built here uses the true offsets [-(g-1), g-1]; the importer writes the reference's."""
    fresh = vit_hierarchical.CrossFormer(**CASES["crossformer"][2])
    _, imported = pair("crossformer", dtype=torch.float32)
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
    x = torch.randn(CASES[key][3], dtype=torch.float64)
    assert_float64_close(as_tensor(ours(x)), as_tensor(reference(x)))
    ours_bn = [m.running_mean for m in ours.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    ref_bn = [m.running_mean for m in reference.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(ours_bn) == len(ref_bn) > 0
    sums = [sorted(float(t.sum()) for t in bn) for bn in (ours_bn, ref_bn)]
    assert sums[0] == pytest.approx(sums[1], abs=FLOAT64_TOLERANCE, rel=FLOAT64_TOLERANCE)


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
    # float32 weights, read exactly in float64 (the perturbed reference's weights are float32 values)
    ours = load_model(tmp_path / "out").double().eval()
    runnable_in_float64(name, reference.double())
    with torch.no_grad():
        assert_float64_close(ours(x.double()), reference(x.double()))


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
