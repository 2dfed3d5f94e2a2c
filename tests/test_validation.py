"""Bad input gets a ValueError/TypeError naming the argument and what was expected."""

from __future__ import annotations

import pytest
import torch

from vit_core import NaViT, SimpleViT, ViT

ARGS = dict(image_size=32, patch_size=8, num_classes=10, dim=32, depth=1, heads=2, mlp_dim=64, dim_head=16)


@pytest.mark.parametrize("cls", [ViT, SimpleViT])
@pytest.mark.parametrize(
    ("shape", "error", "message"),
    [
        ((2, 1, 32, 32), ValueError, r"img must have channels=3 .* got shape \(2, 1, 32, 32\)"),
        ((2, 3, 64, 32), ValueError, r"img spatial size \(64, 32\) is larger than image_size \(32, 32\)"),
        ((2, 3, 32, 30), ValueError, r"spatial size \(32, 30\) must be divisible by patch_size \(8, 8\)"),
        ((3, 32, 32), ValueError, r"img must have 4 dimensions \(batch, channels, height, width\)"),
    ],
)
def test_forward_rejects_bad_images(cls, shape, error, message):
    with pytest.raises(error, match=message):
        cls(**ARGS)(torch.randn(shape))


def test_forward_rejects_non_tensors():
    with pytest.raises(TypeError, match=r"img must be a torch\.Tensor"):
        ViT(**ARGS)([[1, 2]])


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (dict(pool="max"), ValueError, r"pool must be one of 'cls', 'mean', 'avg', 'map', got 'max'"),
        (dict(heads=0), ValueError, r"heads must be a positive int, got 0"),
        (dict(dim_head=0), ValueError, r"dim_head must be a positive int, got 0"),
        (dict(dim=-4), ValueError, r"dim must be a positive int, got -4"),
        (dict(depth=-1), ValueError, r"depth must be a non-negative int, got -1"),
        (dict(image_size=30), ValueError, r"image_size \(30, 30\) must be divisible by patch_size \(8, 8\)"),
        (dict(patch_size=(8,)), TypeError, r"patch_size must be an int or a tuple of 2 ints"),
        (dict(dropout=1.0), ValueError, r"dropout must be a float in \[0, 1\), got 1.0"),
        (dict(emb_dropout=-0.1), ValueError, r"emb_dropout must be a float in \[0, 1\)"),
        (dict(num_classes=-1), ValueError, r"num_classes must be a non-negative int, got -1"),
        (dict(channels=0), ValueError, r"channels must be a positive int, got 0"),
    ],
)
def test_vit_rejects_bad_arguments(bad, error, message):
    with pytest.raises(error, match=message):
        ViT(**(ARGS | bad))


def test_vit_accepts_dim_not_divisible_by_heads():
    assert ViT(**(ARGS | dict(dim=100, heads=3)))(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_simple_vit_dim_must_divide_by_four():
    with pytest.raises(ValueError, match=r"dim=30 must be divisible by 4 \(SimpleViT's 2-D sin-cos table\)"):
        SimpleViT(**(ARGS | dict(dim=30)))


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], r"NaViT takes a non-empty list"),
        (torch.randn(2, 3, 32, 32), r"NaViT takes a non-empty list"),
        ([[]], r"batched_images\[0\] must be a non-empty list of images"),
        ([torch.randn(1, 32, 32)], r"each image must have channels=3"),
        ([torch.randn(3, 30, 32)], r"spatial size \(30, 32\) must be divisible by patch_size \(8, 8\)"),
        ([torch.randn(3, 64, 32)], r"larger than image_size \(32, 32\)"),
        ([torch.randn(1, 3, 32, 32)], r"each image must have 3 dimensions \(channels, height, width\)"),
    ],
)
def test_navit_rejects_bad_input(batch, message):
    with pytest.raises(ValueError, match=message):
        NaViT(**ARGS)(batch)


def test_navit_rejects_grouping_a_list_of_lists():
    with pytest.raises(ValueError, match="group_images=True takes a flat list"):
        NaViT(**ARGS)([[torch.randn(3, 8, 8)]], group_images=True)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (dict(token_dropout_prob=1.0), r"token_dropout_prob must be a float in \[0, 1\), got 1.0"),
        (dict(patch_size=(8, 8)), r"patch_size must be a positive int"),
        (dict(qk_norm="batch"), r"qk_norm must be one of 'rms', 'layer', got 'batch'"),
        (dict(heads=-2), r"heads must be a positive int, got -2"),
    ],
)
def test_navit_rejects_bad_arguments(bad, message):
    with pytest.raises(ValueError, match=message):
        NaViT(**(ARGS | bad))
