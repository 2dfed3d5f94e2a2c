"""Same weights, same outputs: vit-pytorch (the oracle) through our documented importers.

Parity runs in float64 (both models ``.double()``, float64 inputs, :data:`FLOAT64_TOLERANCE`), where the
order a processor's kernels sum in no longer matters; ``test_vit_in_float32`` is the float32 check.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vit_core import NaViT, SimpleViT, ViT, load_reference_weights
from vit_core.testing.oracle import (
    FLOAT64_TOLERANCE,
    assert_float32_close,
    assert_float64_close,
    perturb,
    share_fixed_table,
    without_qk_norm_eps,
)

pytestmark = pytest.mark.oracle
SMALL = dict(num_classes=10, dim=32, depth=2, heads=4, mlp_dim=64, dim_head=8)
F64 = dict(dtype=torch.float64)


def imported(ours, reference, dtype: torch.dtype = torch.float64):
    """``ours`` with the weights of ``reference``, both in ``dtype`` and eval mode, after moving every reference
    weight off its initial value (the weights convert in ``dtype``: no float32 rounding between the two).

    vit-pytorch's bias-free LayerNorm (NaViT) keeps its zero bias as a ``beta`` buffer: a constant.
    """
    perturb(reference, constants=("beta",)).to(dtype).eval()
    return load_reference_weights(ours.to(dtype), reference.state_dict()).eval()


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize(("image_size", "patch_size"), [(32, 8), ((32, 16), (8, 4))])
def test_vit(oracle, pool, image_size, patch_size):
    from vit_pytorch.vit import ViT as Reference

    cfg = dict(image_size=image_size, patch_size=patch_size, pool=pool, dropout=0.1, emb_dropout=0.1) | SMALL
    reference = Reference(**cfg)
    ours = imported(ViT(**cfg), reference)
    x = torch.randn(3, 3, *((image_size,) * 2 if isinstance(image_size, int) else image_size), **F64)
    assert_float64_close(ours(x), reference(x))


def test_vit_in_float32(oracle):
    """The float32 check: the precision the models run in, within a tolerance relative to the output scale."""
    from vit_pytorch.vit import ViT as Reference

    cfg = dict(image_size=32, patch_size=8, pool="cls") | SMALL
    reference = Reference(**cfg)
    ours = imported(ViT(**cfg), reference, dtype=torch.float32)
    x = torch.randn(3, 3, 32, 32)
    assert_float32_close(ours(x), reference(x))


def test_float64_parity_catches_a_norm_eps_the_float32_tolerance_hides(oracle):
    """Every LayerNorm's ``eps`` 1e-6 instead of vit-pytorch's 1e-5: float64 parity fails, while float32 at
    the former tolerance (1e-5 absolute and relative) would have passed."""
    from vit_pytorch.vit import ViT as Reference

    cfg = dict(image_size=32, patch_size=8) | SMALL
    reference = Reference(**cfg)
    ours = imported(ViT(**cfg), reference)
    for module in ours.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = 1e-6
    x = torch.randn(2, 3, 32, 32, **F64)
    with pytest.raises(AssertionError, match="Tensor-likes are not close"):
        assert_float64_close(ours(x), reference(x))
    ours.float(), reference.float()
    assert torch.allclose(ours(x.float()), reference(x.float()), atol=1e-5, rtol=1e-5)


def test_vit_features_without_head(oracle):
    from vit_pytorch.vit import ViT as Reference

    cfg = dict(image_size=32, patch_size=8) | SMALL | dict(num_classes=0)
    reference = Reference(**cfg)
    ours = imported(ViT(**cfg), reference)
    x = torch.randn(2, 3, 32, 32, **F64)
    assert_float64_close(ours(x), reference(x))


def test_vit_smaller_images_differ_on_purpose(oracle):
    """vit-pytorch adds the first N rows of its flat table; we add the 2-D window (see ViT's docstring)."""
    from vit_pytorch.vit import ViT as Reference

    cfg = dict(image_size=32, patch_size=8) | SMALL
    reference = Reference(**cfg)
    ours = imported(ViT(**cfg), reference)
    square = torch.randn(2, 3, 16, 16, **F64)
    assert not torch.allclose(ours(square), reference(square), atol=1e-3)
    wide = torch.randn(2, 3, 16, 32, **F64)  # full rows: both layouts pick the same positions
    assert_float64_close(ours(wide), reference(wide))


def test_simple_vit(oracle):
    from vit_pytorch.simple_vit import SimpleViT as Reference

    cfg = dict(image_size=(32, 48), patch_size=(8, 16)) | SMALL
    reference = Reference(**cfg)
    ours = imported(SimpleViT(**cfg), reference)
    share_fixed_table(reference, "pos_embedding", ours.pos_embed.table)
    x = torch.randn(3, 3, 32, 48, **F64)
    assert_float64_close(ours(x), reference(x))


NAVIT = dict(image_size=64, patch_size=8, token_dropout_prob=0.1) | SMALL


@pytest.fixture
def navit_pair(oracle):
    from vit_pytorch.na_vit import NaViT as Reference

    reference = Reference(**NAVIT)
    return without_qk_norm_eps(imported(NaViT(**NAVIT), reference)), reference


def test_navit_qk_norm_eps_is_the_only_difference(oracle):
    """Kept, HeadNorm's eps moves the outputs beyond float64 parity but by less than 1e-5 of their scale."""
    from vit_pytorch.na_vit import NaViT as Reference

    reference = Reference(**NAVIT)
    ours = imported(NaViT(**NAVIT), reference)
    flat = [torch.randn(3, h, w, **F64) for h, w in [(64, 64), (32, 32), (8, 64)]]
    expected, got = reference(flat), ours(flat)
    difference = (got - expected).abs().max().item()
    assert FLOAT64_TOLERANCE < difference < 1e-5 * expected.abs().max().item()
    assert_float64_close(without_qk_norm_eps(ours)(flat), expected)


def test_navit_list_of_lists(navit_pair):
    ours, reference = navit_pair
    batch = [
        [torch.randn(3, 64, 64, **F64), torch.randn(3, 32, 32, **F64)],
        [torch.randn(3, 32, 64, **F64), torch.randn(3, 64, 32, **F64)],
        [torch.randn(3, 16, 64, **F64)],
    ]
    assert_float64_close(ours(batch), reference(batch))


def test_navit_auto_grouping(navit_pair):
    ours, reference = navit_pair
    flat = [torch.randn(3, h, w, **F64) for h, w in [(64, 64), (32, 32), (32, 64), (64, 32), (16, 64), (8, 8)]]
    kwargs = dict(group_images=True, group_max_seq_len=64)
    assert_float64_close(ours(flat, **kwargs), reference(flat, **kwargs))


def test_navit_flat_list(navit_pair):
    ours, reference = navit_pair
    flat = [torch.randn(3, h, w, **F64) for h, w in [(64, 64), (32, 32), (8, 64)]]
    assert_float64_close(ours(flat), reference(flat))


def test_importer_rejects_unknown_keys(oracle):
    from vit_pytorch.vit import ViT as Reference

    cfg = dict(image_size=32, patch_size=8) | SMALL
    state = Reference(**cfg).state_dict() | {"extra.weight": torch.zeros(1)}
    with pytest.raises(KeyError, match=r"no import rule for reference weight .extra\.weight."):
        load_reference_weights(ViT(**cfg), state)


def test_importer_names_a_configuration_mismatch(oracle):
    """A state dict of another patch size fails while converting (a reshape), not as a bare shape error."""
    from vit_pytorch.vit import ViT as Reference

    cfg = dict(image_size=32, patch_size=8) | SMALL
    state = Reference(**cfg | dict(patch_size=16)).state_dict()
    with pytest.raises(
        ValueError, match=r"does not fit this ViT: vit_core.interop.reference:import_vit failed with Runtime"
    ):
        load_reference_weights(ViT(**cfg), state)


def test_simple_vit_single_full_width_head_still_projects(oracle):
    """vit-pytorch's SimpleViT always has an output projection, even with one head of width dim."""
    from vit_pytorch.simple_vit import SimpleViT as Reference

    cfg = dict(image_size=16, patch_size=8, num_classes=3, dim=16, depth=1, heads=1, mlp_dim=8, dim_head=16)
    reference = Reference(**cfg)
    ours = imported(SimpleViT(**cfg), reference)
    share_fixed_table(reference, "pos_embedding", ours.pos_embed.table)
    x = torch.randn(2, 3, 16, 16, **F64)
    assert_float64_close(ours(x), reference(x))


def test_navit_nested_tensor_flavour(oracle):
    """vit-pytorch's nested-tensor NaViT (the README's third form) imports into NaViT.nested_tensor_flavour."""
    from vit_pytorch.na_vit_nested_tensor import NaViT as Reference

    cfg = dict(image_size=64, patch_size=8, token_dropout_prob=0.0) | SMALL
    reference = Reference(**cfg)
    ours = imported(NaViT.nested_tensor_flavour(**cfg), reference)
    flat = [torch.randn(3, h, w, **F64) for h, w in [(64, 64), (32, 32), (32, 64), (8, 64)]]
    assert_float64_close(ours(flat), reference(flat))


# The perturbation every parity test starts with, and why.


def swap_block_norms(model: nn.Module) -> nn.Module:
    """A misplaced norm: the first block's MLP norm stands before its attention and vice versa."""
    first, second = [m for m in model.transformer.layers[0].children() if isinstance(m, nn.LayerNorm)]
    for name in ("weight", "bias"):
        a, b = getattr(first, name), getattr(second, name)
        setattr(first, name, b)
        setattr(second, name, a)
    return model


@pytest.mark.parametrize("perturbed", [False, True], ids=["initial-weights", "perturbed"])
def test_only_perturbed_weights_expose_a_misplaced_norm(oracle, perturbed):
    """At the reference's initial weights (every gain 1, every bias 0) a misplaced norm gives the right output."""
    from vit_pytorch.vit import ViT as Reference

    cfg = dict(image_size=32, patch_size=8) | SMALL
    reference = Reference(**cfg)
    if perturbed:
        perturb(reference)
    reference.double().eval()
    broken = swap_block_norms(load_reference_weights(ViT(**cfg).double(), reference.state_dict())).eval()
    x = torch.randn(2, 3, 32, 32, **F64)
    close = torch.allclose(broken(x), reference(x), atol=FLOAT64_TOLERANCE, rtol=FLOAT64_TOLERANCE)
    assert close is not perturbed


def test_perturb_moves_every_parameter_and_state_buffer():
    module = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.BatchNorm1d(4))
    module.register_buffer("table", torch.zeros(3), persistent=False)
    module.register_buffer("beta", torch.zeros(4))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    perturb(module, constants=("beta",))
    after = module.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {f"{i}.{p}" for i in range(3) for p in ("weight", "bias")} | {"2.running_mean", "2.running_var"}
    assert (after["2.running_var"] > 0).all()
    assert torch.equal(module.table, torch.zeros(3))
