"""ViT, SimpleViT and NaViT: shapes, the shared interface, semantics, gradients, compile."""

from __future__ import annotations

import pytest
import torch

from vit_core import NaViT, SimpleViT, ViT
from vit_core.layers import Transformer, patchify
from vit_core.testing.oracle import assert_bf16_close

SMALL = dict(num_classes=10, dim=32, depth=2, heads=2, mlp_dim=64, dim_head=16)


def vit(**kw):
    return ViT(**(dict(image_size=32, patch_size=8) | SMALL | kw))


def simple_vit(**kw):
    return SimpleViT(**(dict(image_size=32, patch_size=8) | SMALL | kw))


def navit(**kw):
    return NaViT(**(dict(image_size=32, patch_size=8) | SMALL | kw))


@pytest.mark.parametrize("build", [vit, simple_vit, lambda: vit(pool="mean")])
def test_image_models_interface(build):
    model = build().eval()
    x = torch.randn(3, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape[:1] == (3,) and features.shape[-1] == model.num_features
    torch.testing.assert_close(model(x), model.forward_head(features))
    assert model.forward_head(features, pre_logits=True).shape == (3, model.num_features)
    model.reset_classifier(4)
    assert model(x).shape == (3, 4) and model.num_classes == 4


def test_vit_runs_the_last_block_for_the_class_token_only():
    from torch.utils.flop_counter import FlopCounterMode

    model, x = vit(depth=3), torch.randn(2, 3, 32, 32)
    logits = {}
    flops = {}
    for prune in (True, False):
        model.prune_last_block = prune
        model.zero_grad()
        with FlopCounterMode(display=False) as counter:
            logits[prune] = model(x)
            logits[prune].square().sum().backward()
        flops[prune] = counter.get_total_flops()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        if prune:
            pruned_grads = grads
    torch.testing.assert_close(logits[True], logits[False], atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(pruned_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    # the last block's MLP, output projection and scores shrink from 17 tokens to 1
    assert flops[True] < 0.9 * flops[False]


def test_vit_keeps_every_token_for_recorder_extractor_and_custom_trunks():
    from vit_core.tools import Extractor, Recorder

    model, x = vit(depth=2).eval(), torch.randn(2, 3, 32, 32)
    _, maps = Recorder(model)(x)
    assert maps.shape == (2, 2, 2, 17, 17)
    logits, tokens = Extractor(model)(x)
    assert tokens.shape == (2, 17, 32)
    torch.testing.assert_close(logits, model.forward_head(tokens))
    blocks_seen = []
    model.transformer.layers[-1].register_forward_hook(lambda m, i, out: blocks_seen.append(out.shape))
    model(x)
    assert blocks_seen == [(2, 17, 32)]
    custom = ViT(image_size=32, patch_size=8, num_classes=10, dim=32, transformer=Transformer(32, 1, 2, 16, 64))
    assert not custom.prune_last_block
    custom.eval()
    full = custom(x)
    custom.prune_last_block = True  # a core trunk passed in may opt in
    torch.testing.assert_close(custom(x), full, atol=1e-5, rtol=1e-5)
    foreign = ViT(image_size=32, patch_size=8, num_classes=10, dim=32, transformer=torch.nn.Identity())
    foreign.prune_last_block = True  # a trunk that knows no queries= keeps the full path
    assert foreign(x).shape == (2, 10)


def test_vit_without_classes_returns_token_features():
    model = vit(num_classes=0)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 17, 32)
    assert vit(num_classes=0, pool="mean")(torch.randn(2, 3, 32, 32)).shape == (2, 16, 32)


def test_vit_dim_head_is_independent_of_dim_and_heads():
    model = ViT(image_size=32, patch_size=8, num_classes=5, dim=100, depth=1, heads=3, mlp_dim=50)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_tuple_image_and_patch_sizes():
    model = ViT(image_size=(32, 16), patch_size=(8, 4), **SMALL)
    assert model(torch.randn(2, 3, 32, 16)).shape == (2, 10)
    assert model.pos_embed.weight.shape == (4, 4, 32)


def test_smaller_image_keeps_its_two_dimensional_positions():
    """A 16x32 image on a model built for 32x32 uses rows 0-1 of the 4x4 positional grid."""
    model = vit(num_classes=0, pool="mean").eval()
    img = torch.randn(1, 3, 16, 32)
    tokens = model.patch_embed(img) + model.pos_embed.weight[:2, :4].reshape(8, -1)
    torch.testing.assert_close(model(img), model.transformer(tokens))
    # a narrow image takes the first columns of every row, not the first 8 entries of a flat table
    narrow = torch.randn(1, 3, 32, 16)
    expected = model.pos_embed.weight[:, :2].reshape(8, -1)
    torch.testing.assert_close(model.transformer(model.patch_embed(narrow) + expected), model(narrow))


def test_simple_vit_smaller_image_uses_its_sincos_window():
    model = simple_vit().eval()
    assert model(torch.randn(2, 3, 16, 24)).shape == (2, 10)


def test_custom_transformer_replaces_the_trunk():
    trunk = Transformer(32, depth=1, heads=4, dim_head=8, mlp_dim=16, final_norm=False)
    model = ViT(image_size=32, patch_size=8, num_classes=7, dim=32, transformer=trunk)
    assert model.transformer is trunk
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(TypeError, match="depth, heads, mlp_dim"):
        ViT(image_size=32, patch_size=8, num_classes=7, dim=32)


@pytest.mark.parametrize("build", [vit, simple_vit, lambda: vit(dropout=0.1, emb_dropout=0.1)])
def test_gradients_reach_every_parameter(build):
    model = build()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_dropout_is_active_in_training_only():
    model = vit(dropout=0.5, emb_dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    assert not torch.equal(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


# NaViT


def images(*sizes):
    return [torch.randn(3, h, w) for h, w in sizes]


def test_navit_three_call_forms_agree():
    model = navit().eval()
    imgs = images((32, 32), (16, 16), (16, 32), (32, 16), (8, 32))
    grouped = model([imgs[:2], imgs[2:4], imgs[4:]])
    auto = model(imgs, group_images=True, group_max_seq_len=16)
    flat = model(imgs)
    assert grouped.shape == (5, 10)
    torch.testing.assert_close(grouped, auto, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grouped, flat, atol=1e-5, rtol=1e-5)


def test_navit_images_never_attend_to_each_other():
    model = navit().eval()
    imgs = images((32, 32), (16, 16), (16, 16))
    before = model([imgs])
    imgs[1] = torch.randn(3, 16, 16) * 5
    after = model([imgs])
    torch.testing.assert_close(before[[0, 2]], after[[0, 2]], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(before[1], after[1])
    alone = model([imgs[0]])
    torch.testing.assert_close(alone[0], after[0], atol=1e-5, rtol=1e-5)


def test_navit_token_dropout_keeps_the_expected_share():
    model = navit(token_dropout_prob=0.5)
    seen = []
    model.transformer.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    model(images((32, 32), (16, 16)))
    assert seen == [8 + 2]
    model.eval()
    model(images((32, 32), (16, 16)))
    assert seen[-1] == 16 + 4


class KeptTokens:
    """What NaViT's token dropout keeps: the raw patches and the coordinates it embeds, in packed order."""

    def __init__(self, model: NaViT) -> None:
        self.patches = self.coords = None
        embed = model.patch_embed.embed_patches

        def embed_patches(patches):
            self.patches = patches
            return embed(patches)

        model.patch_embed.embed_patches = embed_patches
        model.pos_embed.register_forward_hook(self._positions)

    def _positions(self, module, args, output):
        self.coords = args[0]


def row_major(coords, width):
    return (coords[:, 0] * width + coords[:, 1]).tolist()


def test_navit_token_dropout_keeps_random_tokens_with_their_positions():
    model = navit(token_dropout_prob=0.5).train()
    kept = KeptTokens(model)
    image = torch.randn(3, 32, 32)
    patches = patchify(image[None], (8, 8))[0]  # 16 patches, row-major
    draws = []
    for _ in range(4):
        model([image])
        index = row_major(kept.coords, 4)
        assert len(index) == len(set(index)) == 8
        torch.testing.assert_close(kept.patches, patches[index])  # each kept patch sits at its own position
        draws.append(sorted(index))
    assert list(range(8)) not in draws  # not the first k tokens
    assert len({tuple(d) for d in draws}) == len(draws)  # a fresh draw every call


def test_navit_token_dropout_draws_a_mask_per_image():
    model = navit(token_dropout_prob=0.5).train()
    kept = KeptTokens(model)
    image = torch.randn(3, 32, 32)
    model([image, image])
    first, second = kept.coords[:8], kept.coords[8:]
    assert sorted(row_major(first, 4)) != sorted(row_major(second, 4))


def test_navit_token_dropout_keeps_at_least_one_token():
    model = navit(token_dropout_prob=0.9).train()
    kept = KeptTokens(model)
    imgs = images((8, 8), (16, 16))  # 1 and 4 patches: 10% of either rounds down to 0
    assert [model.kept_tokens(img) for img in imgs] == [1, 1]
    assert model(imgs).shape == (2, 10) and kept.patches.shape[0] == 2


def test_navit_grouping_counts_tokens_after_dropout():
    model = navit(token_dropout_prob=0.5).train()
    imgs = images((32, 32), (32, 32))  # 16 patches each, 8 kept while training
    assert [len(g) for g in model.group(imgs, 16)] == [2]
    assert model(imgs, group_images=True, group_max_seq_len=8).shape == (2, 10)
    model.eval()
    assert [len(g) for g in model.group(imgs, 16)] == [1, 1]
    with pytest.raises(ValueError, match=r"has 16 patches, more than group_max_seq_len=8"):
        model(imgs, group_images=True, group_max_seq_len=8)


def test_navit_token_dropout_callable():
    model = navit(token_dropout_prob=lambda h, w: 0.75 if h * w > 256 else 0.0)
    assert model.kept_tokens(torch.randn(3, 32, 32)) == 4
    assert model.kept_tokens(torch.randn(3, 16, 16)) == 4
    bad = navit(token_dropout_prob=lambda h, w: 2.0)
    with pytest.raises(ValueError, match=r"token_dropout_prob\(height, width\)"):
        bad(images((16, 16)))


def test_navit_gradients_reach_every_parameter():
    model = navit(token_dropout_prob=0.25)
    model(images((32, 32), (16, 8), (8, 16))).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_navit_image_longer_than_the_maximum_sequence():
    with pytest.raises(ValueError, match=r"has 16 patches, more than group_max_seq_len=8"):
        navit()(images((32, 32)), group_images=True, group_max_seq_len=8)


def test_navit_features_per_image():
    model = navit().eval()
    features = model.forward_features(images((16, 16), (8, 8)))
    assert [t.shape for t in features.per_image()] == [(4, 32), (1, 32)]
    assert model.forward_head(features, pre_logits=True).shape == (2, 32)


# torch.compile


@pytest.mark.parametrize("build", [vit, simple_vit])
def test_compile_matches_eager(build):
    model = build().eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)


def test_navit_compiles_without_graph_breaks():
    model = navit().eval()
    imgs = images((32, 32), (16, 16), (16, 32))
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(imgs), model(imgs), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("build", "example"),
    [
        (vit, lambda: torch.randn(2, 3, 32, 32)),
        (simple_vit, lambda: torch.randn(2, 3, 32, 32)),
        (navit, lambda: images((32, 32), (16, 8))),
    ],
    ids=["vit", "simple-vit", "navit"],
)
def test_bf16_autocast(build, example):
    """Autocast reaches the model (bfloat16 logits) and moves them by at most 5% of the largest fp32 logit
    (bfloat16 rounding moves them about 1%)."""
    model, x = build().eval(), example()
    assert_bf16_close(model, x)
