"""The core seams plugins build on, each tested alone and through a small subclass written here."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vit_core import Extractor, Recorder, SimpleViT, ViT
from vit_core.layers import (
    Attention,
    ChannelLayerNorm,
    CrossAttention,
    FeedForward,
    LayerScale,
    RelativePositionBias,
    Transformer,
    TransformerBlock,
    drop_path_rates,
    map_to_tokens,
    relative_position_index,
    resolve_indices,
    tokens_to_map,
    window_merge,
    window_partition,
)
from vit_core.layers.attention import EXPLICIT_CPU_TRAINING_KEYS
from vit_core.models.patch_model import check_encoder
from vit_core.validation import check_tensor

SMALL = dict(image_size=16, patch_size=4, num_classes=5, dim=32, depth=3, heads=2, mlp_dim=64, dim_head=8)


def small_vit(cls: type[ViT] = ViT, **kwargs) -> ViT:
    return cls(**(SMALL | kwargs))


def perturbed(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return module


def reference_attention(attn: Attention, x: torch.Tensor, scores_fn=lambda s: s, weights_fn=lambda w: w):
    """Multi-head attention written out from ``attn``'s weights, with optional score/weight transforms."""
    b, n, _ = x.shape
    h, d = attn.heads, attn.dim_head
    q, k, v = (x @ attn.to_qkv.weight.T).split(h * d, dim=-1)
    q, k, v = (t.reshape(b, n, h, d).transpose(1, 2) for t in (q, k, v))
    weights = weights_fn(scores_fn(q @ k.transpose(-1, -2) / math.sqrt(d)).softmax(-1))
    out = (weights @ v).transpose(1, 2).reshape(b, n, h * d)
    return out @ attn.to_out.weight.T + attn.to_out.bias


class SpySDPA:
    """Counts calls of the fused kernel and records the kind of ``attn_mask`` it got."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.masks: list[torch.dtype | None] = []
        self.mask_dims: list[int] = []
        original = F.scaled_dot_product_attention

        def spy(q, k, v, attn_mask=None, **kwargs):
            self.masks.append(None if attn_mask is None else attn_mask.dtype)
            self.mask_dims.append(0 if attn_mask is None else attn_mask.ndim)
            return original(q, k, v, attn_mask=attn_mask, **kwargs)

        monkeypatch.setattr(F, "scaled_dot_product_attention", spy)


# --- attention hooks -------------------------------------------------------------------------------


class TalkingHeads(Attention):
    """CaiT's talking heads (arXiv 2103.17239): heads mixed before and after the softmax."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(dim, heads, dim_head, dropout, **kwargs)
        self.pre = nn.Parameter(torch.randn(heads, heads))
        self.post = nn.Parameter(torch.randn(heads, heads))

    def transform_scores(self, scores):
        return torch.einsum("bhij,hg->bgij", scores, self.pre)

    def transform_weights(self, weights):
        return torch.einsum("bhij,hg->bgij", weights, self.post)


class LocalitySelfAttention(Attention):
    """LSA (arXiv 2112.13492): a learned temperature and no attention of a token to itself."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(dim, heads, dim_head, dropout, **kwargs)
        self.temperature = nn.Parameter(torch.tensor(math.log(dim_head**-0.5)))

    def attend(self, q, k, v, *, mask=None, bias=None, scale=None):
        n = q.shape[-2]
        not_self = ~torch.eye(n, k.shape[-2], dtype=torch.bool, device=q.device)
        mask = not_self if mask is None else mask & not_self
        return super().attend(q * self.temperature.exp(), k, v, mask=mask, bias=bias, scale=1.0)


class RelativeBiasAttention(Attention):
    """Window attention with a learned relative-position bias (Swin, arXiv 2103.14030)."""

    def __init__(self, dim: int, heads: int, dim_head: int, window: int) -> None:
        super().__init__(dim, heads, dim_head)
        self.relative = RelativePositionBias(heads, window, init_std=1.0)

    def score_bias(self, q, k):
        return self.relative()


def test_transform_hooks_switch_to_the_explicit_path_and_match_a_hand_computation(monkeypatch):
    assert TalkingHeads.explicit_scores and not Attention.explicit_scores
    attn = perturbed(TalkingHeads(16, 3, 4)).eval()
    x = torch.randn(2, 5, 16)
    spy = SpySDPA(monkeypatch)
    out = attn(x)
    assert spy.masks == []
    expected = reference_attention(
        attn,
        x,
        scores_fn=lambda s: torch.einsum("bhij,hg->bgij", s, attn.pre),
        weights_fn=lambda w: torch.einsum("bhij,hg->bgij", w, attn.post),
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # the queries= path uses the same hooks: the first query row is unchanged
    torch.testing.assert_close(attn(x, queries=1), out[:, :1], atol=1e-5, rtol=1e-5)


def test_attend_override_gives_locality_self_attention():
    attn = perturbed(LocalitySelfAttention(16, 2, 8)).eval()
    x = torch.randn(2, 6, 16)
    eye = torch.eye(6, dtype=torch.bool)
    expected = reference_attention(
        attn,
        x,
        scores_fn=lambda s: (s * math.sqrt(8) * attn.temperature.exp()).masked_fill(eye, float("-inf")),
    )
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)
    recorder = Recorder(nn.Sequential(attn))
    _, maps = recorder(x)
    assert torch.all(maps.diagonal(dim1=-2, dim2=-1) == 0)
    out = attn(x)
    out.sum().backward()
    assert attn.temperature.grad is not None and attn.temperature.grad != 0


def test_score_bias_stays_on_the_fused_kernel_and_equals_the_explicit_scores(monkeypatch):
    attn = perturbed(RelativeBiasAttention(16, 2, 8, window=3)).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        bias = attn.relative()
        assert bias.ndim == 3
        expected = reference_attention(attn, x, scores_fn=lambda s: s + bias)
        spy = SpySDPA(monkeypatch)
        torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)
        # the per-head bias reaches SDPA 4-D: its fused CPU kernel sends a 3-D mask to the math kernel
        assert spy.masks == [torch.float32] and spy.mask_dims == [4]
        # bias and boolean mask combined, still fused
        mask = torch.rand(2, 9) > 0.3
        mask[:, 0] = True
        expected = reference_attention(attn, x, scores_fn=lambda s: (s + bias).masked_fill(~mask[:, None, None], -1e9))
        torch.testing.assert_close(attn(x, mask=mask), expected, atol=1e-5, rtol=1e-5)
        assert spy.masks[-1] == torch.float32


def test_a_bias_that_needs_a_gradient_takes_the_explicit_path_with_the_same_values_and_gradients(monkeypatch):
    """On CPU no fused SDPA kernel differentiates its mask: the layer computes the scores itself."""
    attn = perturbed(RelativeBiasAttention(16, 2, 8, window=3)).train()
    x = torch.randn(2, 9, 16)
    mask = torch.rand(2, 9) > 0.3
    mask[:, 0] = True
    spy = SpySDPA(monkeypatch)
    out = attn(x, mask=mask)
    assert spy.masks == []
    expected = reference_attention(
        attn, x, scores_fn=lambda s: (s + attn.relative()).masked_fill(~mask[:, None, None], -1e9)
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(out)
    ours = torch.autograd.grad((out * weights).sum(), list(attn.parameters()))
    theirs = torch.autograd.grad((expected * weights).sum(), list(attn.parameters()))
    for name, a, b in zip([n for n, _ in attn.named_parameters()], ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    assert ours[-1].abs().sum() > 0  # the bias table itself is learned
    # a bias that needs no gradient keeps the fused kernel, in training too (at a length where it trains faster)
    Attention(16, 2, 8).train()(torch.randn(2, 80, 16), bias=torch.randn(1, 2, 80, 80))
    assert spy.masks == [torch.float32]


@pytest.mark.parametrize(
    ("dtype", "fast_keys", "slow_keys"), [(torch.float32, 49, 80), (torch.bfloat16, 197, 600)], ids=["fp32", "bf16"]
)
def test_cpu_training_takes_the_explicit_path_where_it_is_faster_with_the_same_gradients(
    monkeypatch, dtype, fast_keys, slow_keys
):
    """SDPA's fused CPU backward is slower than the explicit scores up to EXPLICIT_CPU_TRAINING_KEYS keys (7x
    at 49 keys in bfloat16): a CPU training call below that length computes the scores itself; longer calls,
    inference and calls that need no gradient keep the fused kernel."""
    assert EXPLICIT_CPU_TRAINING_KEYS[dtype] in range(fast_keys, slow_keys)
    attn = perturbed(Attention(16, 2, 8)).to(dtype).train()
    spy = SpySDPA(monkeypatch)
    x = torch.randn(2, fast_keys, 16, dtype=dtype)
    out = attn(x)
    assert spy.masks == []
    ours = torch.autograd.grad(out.float().square().sum(), list(attn.parameters()))
    with torch.no_grad():
        fused = attn(x)
    assert spy.masks == [None]  # inference keeps the fused kernel
    torch.testing.assert_close(out.detach(), fused, atol=2e-2, rtol=2e-2)
    q, k, v = attn.project(x)
    reference = attn.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
    assert len(spy.masks) == 2
    theirs = torch.autograd.grad(reference.float().square().sum(), list(attn.parameters()))
    for name, a, b in zip([n for n, _ in attn.named_parameters()], ours, theirs):
        assert (a.float() - b.float()).norm() <= 2e-2 * b.float().norm(), name  # bfloat16 rounds each element
    attn(torch.randn(2, slow_keys, 16, dtype=dtype))
    assert len(spy.masks) == 3  # past the crossover: fused
    attn.requires_grad_(False)
    attn(x)
    assert len(spy.masks) == 4  # nothing to differentiate: fused


def test_forward_bias_argument_and_its_validation():
    attn = perturbed(Attention(16, 2, 8)).eval()
    x = torch.randn(2, 4, 16)
    bias = torch.randn(2, 2, 4, 4)
    torch.testing.assert_close(attn(x, bias=bias), reference_attention(attn, x, lambda s: s + bias), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="bias must broadcast"):
        attn(x, bias=torch.randn(3, 4))
    with pytest.raises(TypeError, match="bias must be a floating-point"):
        attn(x, bias=torch.ones(4, 4, dtype=torch.bool))


def test_recorder_sees_the_transformed_weights_of_a_third_party_subclass():
    model = small_vit(depth=2)
    for i, layer in enumerate(model.transformer.layers):
        th = TalkingHeads(32, 2, 8)
        th.to_qkv, th.to_out = layer.attn.to_qkv, layer.attn.to_out
        model.transformer.layers[i].attn = th
    model.eval()
    x = torch.randn(1, 3, 16, 16)
    out, maps = Recorder(model)(x)
    assert maps.shape == (1, 2, 2, 17, 17)
    # talking heads after the softmax: rows no longer sum to one, so these are the transformed weights
    assert not torch.allclose(maps.sum(-1), torch.ones(1, 2, 2, 17))
    torch.testing.assert_close(out, model(x))


def test_value_width_independent_of_key_width():
    attn = Attention(16, heads=2, dim_head=4, dim_value=8)
    assert attn.to_qkv.out_features == 2 * 4 * 2 + 2 * 8 and attn.to_out.in_features == 16
    assert attn(torch.randn(2, 5, 16)).shape == (2, 5, 16)
    with pytest.raises(ValueError, match="dim_value must be a positive int"):
        Attention(16, dim_value=0)


# --- blocks and trunk ---------------------------------------------------------------------------


def test_layer_scale_block_matches_a_hand_computation():
    dim = 16
    block = TransformerBlock(Attention(dim, 2, 8), FeedForward(dim, 32), dim, layer_scale=0.1)
    perturbed(block).eval()
    x = torch.randn(2, 5, dim)
    y = x + block.attn_scale.gamma * block.attn(block.attn_norm(x))
    y = y + block.ff_scale.gamma * block.ff(block.ff_norm(y))
    torch.testing.assert_close(block(x), y)
    assert isinstance(block.attn_scale, LayerScale)
    with pytest.raises(ValueError, match="layer_scale must be a positive float"):
        TransformerBlock(Attention(dim), FeedForward(dim, 32), dim, layer_scale=0)


def test_block_norm_choice_and_context_norm():
    dim = 8
    block = TransformerBlock(
        CrossAttention(dim, 2, 4),
        FeedForward(dim, 16),
        dim,
        norm=lambda d: nn.RMSNorm(d),
        context_norm=True,
    )
    assert isinstance(block.attn_norm, nn.RMSNorm) and isinstance(block.context_norm, nn.RMSNorm)
    x, context = torch.randn(2, 1, dim), torch.randn(2, 7, dim) * 50
    out = block(x, context=context)
    expected = x + block.attn(block.attn_norm(x), context=block.context_norm(context))
    expected = expected + block.ff(block.ff_norm(expected))
    torch.testing.assert_close(out, expected)


def test_drop_path_rate_spreads_linearly_and_only_acts_in_training():
    assert drop_path_rates(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    trunk = Transformer(16, 4, heads=2, dim_head=8, drop_path_rate=0.3)
    assert [layer.drop_path.prob for layer in trunk.layers] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    x = torch.randn(64, 3, 16)
    trunk.eval()
    torch.testing.assert_close(trunk(x), trunk(x))
    trunk.train()
    assert not torch.allclose(trunk(x), trunk(x))


def test_block_factory_with_arguments_it_would_ignore_is_an_error():
    factory = lambda i: TransformerBlock(Attention(16), FeedForward(16, 32), 16)  # noqa: E731
    for arg in ({"heads": 4}, {"mlp_dim": 64}, {"dim_head": 8}, {"dropout": 0.1}, {"drop_path_rate": 0.1}):
        with pytest.raises(TypeError, match=f"{next(iter(arg))} would be ignored"):
            Transformer(16, 2, block=factory, **arg)
    assert len(Transformer(16, 2, block=factory).layers) == 2


def test_feedforward_activation():
    ff = FeedForward(8, 16, activation=nn.SiLU)
    assert isinstance(ff.act, nn.SiLU)
    x = torch.randn(3, 8)
    torch.testing.assert_close(ff(x), ff.fc2(F.silu(ff.fc1(x))))
    assert isinstance(Transformer(8, 1, activation=nn.SiLU).layers[0].ff.act, nn.SiLU)
    with pytest.raises(TypeError, match="activation must be"):
        FeedForward(8, 16, activation="silu")


def test_forward_intermediates_of_the_trunk():
    trunk = perturbed(Transformer(16, 4, heads=2, dim_head=8)).eval()
    x = torch.randn(2, 5, 16)
    hidden, h = [], x
    for layer in trunk.layers:
        h = layer(h)
        hidden.append(h)
    final, got = trunk.forward_intermediates(x)
    torch.testing.assert_close(final, trunk(x))
    for a, b in zip(got, hidden):
        torch.testing.assert_close(a, b)
    _, last_two = trunk.forward_intermediates(x, 2, norm=True)
    torch.testing.assert_close(last_two[1], final)
    torch.testing.assert_close(last_two[0], trunk.norm(hidden[2]))
    early, chosen = trunk.forward_intermediates(x, [0, -3], stop_early=True)
    torch.testing.assert_close(early, hidden[1])
    assert len(chosen) == 2
    assert resolve_indices(None, 3) == [0, 1, 2] and resolve_indices([-1, 0], 3) == [0, 2]
    assert resolve_indices(2, 3) == [1, 2]
    with pytest.raises(ValueError, match=r"indices=0 must select between 1 and 3 stages"):
        resolve_indices(0, 3, "stages")
    with pytest.raises(TypeError, match="a sequence of ints"):
        resolve_indices("last", 3)
    with pytest.raises(ValueError, match="indices"):
        trunk.forward_intermediates(x, [4])


class HalveTokens(nn.Module):
    def forward(self, x):
        return x[:, : x.shape[1] // 2]


def test_insert_after_runs_a_module_between_blocks():
    trunk = perturbed(Transformer(16, 3, heads=2, dim_head=8)).eval()
    x = torch.randn(2, 8, 16)
    plain = trunk.layers[2](trunk.layers[1](trunk.layers[0](x))[:, :4])
    trunk.insert_after(1, HalveTokens())
    assert not trunk.supports_queries
    torch.testing.assert_close(trunk(x), trunk.norm(plain))
    _, hidden = trunk.forward_intermediates(x)
    assert [h.shape[1] for h in hidden] == [8, 4, 4]
    with pytest.raises(ValueError, match="already inserted"):
        trunk.insert_after(1, HalveTokens())
    with pytest.raises(ValueError, match="index must be a block index"):
        trunk.insert_after(3, HalveTokens())


def test_inserted_module_mask_rule():
    seen = []

    class SpyBlock(nn.Module):
        def forward(self, x, mask=None):
            seen.append(mask)
            return x

    trunk = Transformer(8, 3, block=lambda i: SpyBlock())
    trunk.insert_after(0, nn.Identity())  # same token count: mask kept
    trunk.insert_after(1, HalveTokens())  # fewer tokens: mask dropped
    mask = torch.ones(1, 4, dtype=torch.bool)
    trunk(torch.randn(1, 4, 8), mask=mask)
    assert seen[0] is mask and seen[1] is mask and seen[2] is None


def test_layer_drop_only_in_training_and_keeps_a_block():
    calls = []

    class Count(nn.Module):
        def __init__(self, i):
            super().__init__()
            self.i = i

        def forward(self, x, mask=None):
            calls.append(self.i)
            return x + 1

    trunk = Transformer(4, 6, block=Count, layer_drop=0.5, final_norm=False)
    x = torch.zeros(1, 2, 4)
    trunk.eval()
    assert torch.all(trunk(x) == 6)
    trunk.train()
    counts = {int(trunk(x)[0, 0, 0]) for _ in range(50)}
    assert min(counts) >= 1 and len(counts) > 2
    always = Transformer(4, 3, block=Count, layer_drop=0.99, final_norm=False).train()
    assert all(int(always(x)[0, 0, 0]) >= 1 for _ in range(20))


# --- pruning declared, not inferred -------------------------------------------------------------


class ReadsSecondToken(ViT):
    """A subclass whose head reads token 1 too (a distillation-like token) without declaring it."""

    def pool_features(self, features):
        return self.fc_norm((features[:, 0] + features[:, 1]) / 2)


class DeclaresTwoTokens(ReadsSecondToken):
    def head_reads_leading_tokens(self):
        return 2 if self.head is not None else None


def test_pruning_is_decided_by_declarations():
    x = torch.randn(2, 3, 16, 16)
    base = perturbed(small_vit()).eval()
    assert base.pruned_queries() == 1
    undeclared = small_vit(ReadsSecondToken)
    undeclared.load_state_dict(base.state_dict())
    undeclared.eval()
    assert undeclared.pruned_queries() is None
    full = undeclared.forward_head(undeclared.forward_features(x))
    torch.testing.assert_close(undeclared(x), full)
    declared = small_vit(DeclaresTwoTokens)
    declared.load_state_dict(base.state_dict())
    declared.eval()
    assert declared.pruned_queries() == 2
    torch.testing.assert_close(declared(x), full, atol=1e-5, rtol=1e-5)


class NoQueries(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Transformer(32, 2, heads=2, dim_head=8)

    def forward(self, x):
        return self.inner(x)


def test_pruning_needs_a_trunk_that_declares_queries():
    model = small_vit()
    model.transformer.insert_after(0, nn.Identity())
    assert model.pruned_queries() is None
    foreign = ViT(image_size=16, patch_size=4, num_classes=5, dim=32, transformer=NoQueries())
    foreign.prune_last_block = True
    assert foreign.pruned_queries() is None


# --- encoder protocol ---------------------------------------------------------------------------


def test_encoder_protocol_steps_compose_to_forward_features():
    model = perturbed(small_vit()).eval()
    x = torch.randn(2, 3, 16, 16)
    tokens, grid = model.tokenize(x)
    assert grid == (4, 4) and tokens.shape == (2, 16, 32) and model.num_prefix_tokens == 1
    embedded = model.prepend_prefix(model.add_positions(tokens, grid))
    torch.testing.assert_close(embedded, model.embed(x))
    torch.testing.assert_close(model.encode(embedded), model.forward_features(x))
    patches, _ = model.patches(x)
    torch.testing.assert_close(model.patch_embed.embed_patches(patches), tokens)
    # MAE-style: encode a subset of the positioned tokens
    keep = torch.tensor([0, 5, 9])
    subset = model.prepend_prefix(model.add_positions(tokens, grid)[:, keep])
    assert model.encode(subset).shape == (2, 4, 32)
    simple = SimpleViT(image_size=16, patch_size=4, num_classes=5, dim=32, depth=1, heads=2, mlp_dim=64)
    assert simple.num_prefix_tokens == 0
    check_encoder(model)
    with pytest.raises(TypeError, match="Linear lacks num_prefix_tokens, patches, tokenize"):
        check_encoder(nn.Linear(2, 2), user="MAE")


def test_model_forward_intermediates_and_feature_info():
    model = perturbed(small_vit()).eval()
    x = torch.randn(2, 3, 16, 16)
    final, hidden = model.forward_intermediates(x, norm=True)
    torch.testing.assert_close(final, model.forward_features(x))
    torch.testing.assert_close(hidden[-1], final)
    maps = model.forward_intermediates(x, [1], output_fmt="NCHW", intermediates_only=True)
    _, hidden_raw = model.forward_intermediates(x)
    assert maps[0].shape == (2, 32, 4, 4)
    torch.testing.assert_close(maps[0][:, :, 1, 2], hidden_raw[1][:, 1 + 4 + 2])
    assert model.feature_info == [
        {"module": f"transformer.layers.{i}", "num_chs": 32, "reduction": 4} for i in range(3)
    ]
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(x, output_fmt="NHWC")


# --- tools --------------------------------------------------------------------------------------


def test_extractor_by_dotted_name_and_block_index():
    model = perturbed(small_vit()).eval()
    x = torch.randn(2, 3, 16, 16)
    _, hidden = model.forward_intermediates(x)
    _, by_name = Extractor(model, layer_name="transformer.layers.1")(x)
    torch.testing.assert_close(by_name, hidden[1])
    _, by_index = Extractor(model, layer_name=-1)(x)
    torch.testing.assert_close(by_index, hidden[2])
    _, latent = Extractor(model, layer_name="to_latent")(x)
    torch.testing.assert_close(latent, model.forward_head(model.forward_features(x), pre_logits=True))
    with pytest.raises(ValueError, match=r"not a module of ViT; valid names include .*transformer.layers.0"):
        Extractor(model, layer_name="transformer.blocks")
    with pytest.raises(ValueError, match="outside the 3 blocks"):
        Extractor(model, layer_name=3)


def test_recorder_on_a_model_it_cannot_see_is_a_clear_error():
    foreign = ViT(image_size=16, patch_size=4, num_classes=5, dim=32, transformer=nn.Sequential(nn.Linear(32, 32)))
    with pytest.raises(TypeError, match=r"Recorder cannot see any attention in ViT .*Sequential"):
        Recorder(foreign)


# --- shared pieces and checks -------------------------------------------------------------------


def test_two_d_helpers():
    x = torch.randn(2, 3, 4, 6)
    tokens = map_to_tokens(x)
    assert tokens.shape == (2, 24, 3)
    torch.testing.assert_close(tokens[:, 1 * 6 + 2], x[:, :, 1, 2])
    torch.testing.assert_close(tokens_to_map(tokens, (4, 6)), x)
    with pytest.raises(ValueError, match="grid 4x5"):
        tokens_to_map(tokens, (4, 5))
    hwc = x.permute(0, 2, 3, 1)
    windows = window_partition(hwc, (2, 3))
    assert windows.shape == (2 * 4, 6, 3)
    torch.testing.assert_close(windows[1, 0], hwc[0, 0, 3])  # second window of row 0 starts at column 3
    torch.testing.assert_close(window_merge(windows, (2, 3), (4, 6)), hwc)
    index = relative_position_index(2)
    assert index.shape == (4, 4) and index[0, 3] == 0 and index[3, 0] == 8 and torch.all(index.diagonal() == 4)
    norm = perturbed(ChannelLayerNorm(3))
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (3,), norm.weight, norm.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)


def test_check_tensor_names_the_models_argument_and_rejects_integer_images():
    x = torch.zeros(1, 3, 40, 40)
    with pytest.raises(ValueError, match="larger than img_size"):
        check_tensor("img", x, layout="(b, c, h, w)", max_size=(32, 32), size_name="img_size")
    with pytest.raises(TypeError, match=r"floating-point tensor, got dtype torch\.uint8"):
        small_vit()(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_cct_pieces_live_in_the_core():
    from vit_core.layers import CCTBlock, ConvTokenizer, sinusoidal_1d

    tokenizer = ConvTokenizer(
        3,
        16,
        n_conv_layers=2,
        kernel=(3, 3),
        stride=(1, 1),
        padding=(1, 1),
        pool_kernel=(3, 3),
        pool_stride=(2, 2),
        pool_padding=(1, 1),
    )
    assert tokenizer.output_grid((16, 16)) == (4, 4)
    assert tokenizer(torch.randn(2, 3, 16, 16)).shape == (2, 16, 16)
    assert CCTBlock(16, 2, 32, dropout=0.0, attention_dropout=0.0, drop_path=0.0)(torch.randn(2, 5, 16)).shape == (
        2,
        5,
        16,
    )
    table = sinusoidal_1d(4, 6)
    torch.testing.assert_close(table[2, 2], torch.tensor(math.sin(2 / 10000 ** (2 / 6))))


# --- the kit's intermediates and encoder-protocol checks catch broken models --------------------

KIT_SMALL = dict(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128, dim_head=16)


class IntermediatesMiscounted(ViT):
    @property
    def feature_info(self):
        return super().feature_info[:1]


class IntermediatesUnnormed(ViT):
    def forward_intermediates(self, x, indices=None, *, norm=False, output_fmt="NLC", intermediates_only=False):
        return super().forward_intermediates(
            x, indices, norm=False, output_fmt=output_fmt, intermediates_only=intermediates_only
        )


class PrefixMiscounted(ViT):
    @property
    def num_prefix_tokens(self):
        return 0


class EncodeSkipsDropoutAndTrunk(ViT):
    def encode(self, tokens, **trunk_kwargs):
        return tokens


class FeatureInfoTuple(ViT):
    @property
    def feature_info(self):
        return tuple(super().feature_info)


class FeatureInfoWithoutReduction(ViT):
    @property
    def feature_info(self):
        return [{k: v for k, v in entry.items() if k != "reduction"} for entry in super().feature_info]


class FeatureInfoMiswidth(ViT):
    """Says the blocks are twice as wide as they are."""

    @property
    def feature_info(self):
        return [dict(entry, num_chs=2 * entry["num_chs"]) for entry in super().feature_info]


class FeatureInfoShrinking(ViT):
    """Says the second block's map is finer than the first's."""

    @property
    def feature_info(self):
        entries = super().feature_info
        return [dict(entry, reduction=entry["reduction"] * (2 if i == 0 else 1)) for i, entry in enumerate(entries)]


class IntermediatesOnlyIgnored(ViT):
    """Returns ``(final, intermediates)`` even with ``intermediates_only=True``."""

    def forward_intermediates(self, x, indices=None, *, norm=False, output_fmt="NLC", intermediates_only=False):
        return super().forward_intermediates(x, indices, norm=norm, output_fmt=output_fmt)


class IntermediatesUnimplemented(ViT):
    def forward_intermediates(self, x, indices=None, **kwargs):
        raise NotImplementedError("no intermediates yet")


class EncodeDiffersFromForwardFeatures(ViT):
    """forward_features runs its own path, right; the protocol's encode (what MAE and SimMIM compose) scales
    the tokens first: it passes the intermediates check and fails encoder-protocol."""

    def encode(self, tokens, **trunk_kwargs):
        return super().encode(2 * tokens, **trunk_kwargs)

    def encode_input(self, x, **trunk_kwargs):
        tokens, grid = self.tokenize(x)
        tokens = self.prepend_prefix(self.add_positions(tokens, grid))
        return super().encode(tokens, **self.trunk_kwargs(grid), **trunk_kwargs)


@pytest.mark.parametrize(
    ("cls", "check", "fragment"),
    [
        (IntermediatesMiscounted, "intermediates", "feature_info describes 1"),
        (IntermediatesUnnormed, "intermediates", "last intermediate (norm=True) differ"),
        (PrefixMiscounted, "encoder-protocol", "num_prefix_tokens says 0"),
        (EncodeSkipsDropoutAndTrunk, "intermediates", "differ from forward_features"),
        (FeatureInfoTuple, "intermediates", "feature_info must be a non-empty list of dicts, got ({'module'"),
        (FeatureInfoWithoutReduction, "intermediates", "feature_info entries [0, 1] lack module/num_chs/reduction"),
        (FeatureInfoMiswidth, "intermediates", "transformer.layers.0: feature_info says 128 channels, got 64"),
        (FeatureInfoShrinking, "intermediates", "reductions must not decrease from stage to stage; entries [1]"),
        (
            IntermediatesOnlyIgnored,
            "intermediates",
            "forward_intermediates(indices=1, intermediates_only=True) gave (tensor(",
        ),
        (
            IntermediatesUnimplemented,
            "intermediates",
            "forward_intermediates raised NotImplementedError: no intermediates yet",
        ),
        (
            EncodeDiffersFromForwardFeatures,
            "encoder-protocol",
            "encode(prepend_prefix(add_positions(*tokenize(x)))) differs from forward_features(x)",
        ),
    ],
)
def test_kit_catches_broken_intermediates_and_protocol(cls, check, fragment):
    from vit_core.hookspecs import HOOK_API_VERSION, hookimpl
    from vit_core.registry import ModelInfo, Registry
    from vit_core.testing import ConformanceError, check_model

    info = ModelInfo(
        name="broken",
        target=f"{__name__}:{cls.__name__}",
        family="test",
        paper_title="A test model",
        paper_url="https://example.org/paper",
        summary="A deliberately broken model.",
        input_kind="image",
        default_config=KIT_SMALL,
        input_shape=(3, 32, 32),
        citation="@misc{test}",
        example="create_model('broken')",
    )

    class Plugin:
        @hookimpl
        def vit_api_version(self):
            return HOOK_API_VERSION

        @hookimpl
        def vit_register_models(self):
            return [info]

    registry = Registry()
    registry.add_plugin(Plugin(), "broken-plugin")
    with pytest.raises(ConformanceError, match=re.escape(fragment)) as caught:
        check_model("broken", registry=registry)
    assert caught.value.check == check


# --- backends chosen by name ----------------------------------------------------------------------

BUILT_WITH: list[dict] = []


def dense_backend(*, dim, depth, heads=8, dim_head=64, mlp_dim=None, dropout=0.0, final_norm=True):
    BUILT_WITH.append(dict(dim=dim, depth=depth, heads=heads, dim_head=dim_head, final_norm=final_norm))
    return Transformer(dim, depth, heads, dim_head, mlp_dim, dropout, final_norm=final_norm)


def test_vit_builds_a_registered_backend_by_name(request):
    from vit_core.hookspecs import HOOK_API_VERSION, hookimpl
    from vit_core.registry import Component, ModelInfo, Registry, set_registry

    backend = ModelInfo(
        name="dense-test",
        target=f"{__name__}:dense_backend",
        kind="backend",
        family="test",
        paper_title="Attention is all you need",
        paper_url="https://arxiv.org/abs/1706.03762",
        summary="The core trunk as a named backend.",
        input_kind="tokens",
        default_config=dict(dim=32, depth=1),
        input_shape=(5, 32),
        plugs_into=Component("vit", {"dim": 32}),
    )

    class Plugin:
        @hookimpl
        def vit_api_version(self):
            return HOOK_API_VERSION

        @hookimpl
        def vit_register_models(self):
            return [backend]

    registry = Registry()
    from vit_core.registry import core_models as core_plugin

    registry.add_plugin(core_plugin, "vit-core")
    registry.add_plugin(Plugin(), "backends")
    previous = set_registry(registry)
    request.addfinalizer(lambda: set_registry(previous))
    BUILT_WITH.clear()
    model = small_vit(transformer="dense-test", transformer_options={"final_norm": False})
    assert [dict(dim=32, depth=3, heads=2, dim_head=8, final_norm=False)] == BUILT_WITH
    assert isinstance(model.transformer, Transformer) and isinstance(model.fc_norm, nn.LayerNorm)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"not a registered backend .*registered: \['dense-test'\]"):
        small_vit(transformer="nystromm")
    with pytest.raises(ValueError, match="is a model, not a backend"):
        small_vit(transformer="vit")
    with pytest.raises(TypeError, match="transformer_options configures a backend"):
        small_vit(transformer_options={"final_norm": False})
    with pytest.raises(ValueError, match="works on tokens of width 16, but dim=32"):
        small_vit(transformer=Transformer(16, 1))


def test_attention_class_option_replaces_every_default_attention():
    trunk = Transformer(16, 2, heads=2, dim_head=8, attention=LocalitySelfAttention)
    assert all(isinstance(layer.attn, LocalitySelfAttention) for layer in trunk.layers)
    model = small_vit(attention=TalkingHeads)
    assert all(isinstance(layer.attn, TalkingHeads) for layer in model.transformer.layers)
    assert model.pruned_queries() == 1
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)), atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="attention would be ignored"):
        Transformer(16, 2, attention=TalkingHeads, block=lambda i: nn.Identity())
    with pytest.raises(TypeError, match="cannot be combined with transformer="):
        small_vit(attention=TalkingHeads, transformer=Transformer(32, 1))


def test_nchw_intermediates_of_merged_tokens_is_a_clear_error():
    model = small_vit().eval()
    model.transformer.insert_after(0, HalveTokens())
    with pytest.raises(ValueError, match=r"intermediate 0 holds 7 patch tokens, not the \(4, 4\) grid"):
        model.forward_intermediates(torch.randn(1, 3, 16, 16), output_fmt="NCHW")


class UsesTokenOutsideForward(ViT):
    parameters_outside_forward = ("extra_token",)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.extra_token = nn.Parameter(torch.zeros(1, 64))


def test_kit_gradients_check_skips_declared_outside_parameters():
    from vit_core.hookspecs import HOOK_API_VERSION, hookimpl
    from vit_core.registry import ModelInfo, Registry
    from vit_core.testing import CHECKS, ConformanceError, Subject

    def subject(cls):
        info = ModelInfo(
            name="outside",
            target=f"{__name__}:{cls.__name__}",
            family="test",
            paper_title="A test model",
            paper_url="https://example.org/paper",
            summary="A model with a parameter used outside forward.",
            input_kind="image",
            default_config=KIT_SMALL,
            input_shape=(3, 32, 32),
        )

        class Plugin:
            @hookimpl
            def vit_api_version(self):
                return HOOK_API_VERSION

            @hookimpl
            def vit_register_models(self):
                return [info]

        registry = Registry()
        registry.add_plugin(Plugin(), "outside-plugin")
        return Subject(registry.info("outside"), registry)

    CHECKS["gradients"](subject(UsesTokenOutsideForward))

    class Undeclared(UsesTokenOutsideForward):
        parameters_outside_forward = ()

    globals()["Undeclared"] = Undeclared
    with pytest.raises(ConformanceError, match="never used in forward: extra_token"):
        CHECKS["gradients"](subject(Undeclared))


def test_values_wider_than_queries_take_the_explicit_path_with_sdpa_values(monkeypatch):
    """SDPA's CPU kernel needs equal query and value widths (LeViT's differ): the layer computes the scores."""
    attn = perturbed(Attention(16, 2, 4, dim_value=8)).eval()
    x = torch.randn(2, 5, 16)
    spy = SpySDPA(monkeypatch)
    with torch.no_grad():
        out = attn(x)
        q, k, v = attn.project(x)
        assert spy.masks == []
        monkeypatch.undo()
        expected = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(out, attn.to_out(expected), atol=1e-5, rtol=1e-5)
