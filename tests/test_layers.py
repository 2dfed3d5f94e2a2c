"""The core blocks against plain-torch definitions of the same math."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vit_core.layers import (
    Attention,
    CrossAttention,
    FactorizedPositionalEmbedding,
    LearnedPositionalEmbedding,
    PatchEmbedding,
    SequencePacking,
    Transformer,
    grid_coordinates,
    patchify,
    sincos_2d,
)
from vit_core.testing.oracle import perturb


def explicit_head_norm(x: torch.Tensor, weight: torch.Tensor | None, kind: str | None) -> torch.Tensor:
    """QK-norm written out: RMSNorm with a gain per head and channel, or a bias-free LayerNorm shared by all heads."""
    if kind is None:
        return x
    if kind == "rms":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight[:, None, :]
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + 1e-5) * weight


def explicit_attention(
    attn: Attention, x: torch.Tensor, mask: torch.Tensor | None = None, qk_norm: str | None = None
) -> torch.Tensor:
    """Multi-head softmax attention from the layer's weight tensors alone (none of its modules run)."""
    b, n, _ = x.shape
    h, d = attn.heads, attn.dim_head
    qkv = x @ attn.to_qkv.weight.T
    q, k, v = qkv.view(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
    q_weight, k_weight = (getattr(norm, "weight", None) for norm in (attn.q_norm, attn.k_norm))
    q, k = explicit_head_norm(q, q_weight, qk_norm), explicit_head_norm(k, k_weight, qk_norm)
    scores = q @ k.transpose(-1, -2) * d**-0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, h * d)
    return out @ attn.to_out.weight.T + attn.to_out.bias


@pytest.mark.parametrize("qk_norm", [None, "rms", "layer"])
def test_attention_matches_explicit_softmax(qk_norm):
    """Perturbed first: at gain 1 a per-head gain broadcast over the wrong axis would pass."""
    attn = perturb(Attention(24, heads=3, dim_head=5, qk_norm=qk_norm)).eval()
    x = torch.randn(2, 7, 24)
    torch.testing.assert_close(attn(x), explicit_attention(attn, x, qk_norm=qk_norm), atol=1e-5, rtol=1e-5)


def test_attention_key_padding_mask_ignores_masked_keys():
    attn = perturb(Attention(16, heads=2, dim_head=8)).eval()
    x = torch.randn(1, 6, 16)
    mask = torch.tensor([[True, True, True, True, False, False]])
    y = torch.cat([x[:, :4], torch.randn(1, 2, 16)], dim=1)
    torch.testing.assert_close(attn(x, mask=mask)[:, :4], attn(y, mask=mask)[:, :4])
    torch.testing.assert_close(attn(x, mask=mask), explicit_attention(attn, x, mask[:, None, None]), atol=1e-5, rtol=0)


def test_single_head_of_full_width_has_no_output_projection():
    assert isinstance(Attention(16, heads=1, dim_head=16).to_out, torch.nn.Identity)
    assert isinstance(Attention(16, heads=2, dim_head=8).to_out, torch.nn.Linear)


def test_packed_attention_equals_each_sequence_alone():
    attn = Attention(16, heads=2, dim_head=8, qk_norm="rms").eval()
    seqs = [torch.randn(n, 16) for n in (2, 3, 3, 5)]
    packing = SequencePacking.from_sorted_lengths([2, 3, 3, 5])
    assert [(b.start, b.count, b.length) for b in packing.buckets] == [(0, 1, 2), (2, 2, 3), (8, 1, 5)]
    packed = attn(torch.cat(seqs)[None], packing=packing)[0]
    alone = torch.cat([attn(s[None])[0] for s in seqs])
    torch.testing.assert_close(packed, alone, atol=1e-6, rtol=1e-5)


def test_packed_cross_attention_pools_each_sequence_separately():
    attn = CrossAttention(16, heads=2, dim_head=8).eval()
    seqs = [torch.randn(n, 16) for n in (1, 4, 4)]
    packing = SequencePacking.from_sorted_lengths([1, 4, 4])
    queries = torch.randn(1, 3, 16)
    packed = attn(queries, torch.cat(seqs)[None], packing=packing.with_length(1), context_packing=packing)[0]
    alone = torch.cat([attn(queries[:, i : i + 1], s[None])[0] for i, s in enumerate(seqs)])
    torch.testing.assert_close(packed, alone, atol=1e-6, rtol=1e-5)


def test_packing_rejects_unsorted_lengths_and_wrong_token_count():
    with pytest.raises(ValueError, match="non-decreasing"):
        SequencePacking.from_sorted_lengths([3, 2])
    with pytest.raises(ValueError, match="packed input must be"):
        Attention(8, 2, 4)(torch.randn(1, 4, 8), packing=SequencePacking.from_sorted_lengths([2, 3]))


def test_mask_must_be_boolean_and_shaped():
    attn = Attention(8, 2, 4)
    with pytest.raises(TypeError, match="boolean"):
        attn(torch.randn(1, 3, 8), mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"\(batch, keys\)"):
        attn(torch.randn(1, 3, 8), mask=torch.ones(1, 4, dtype=torch.bool))


@pytest.mark.parametrize("bad", [dict(heads=0), dict(dim_head=-1), dict(dropout=1.5)])
def test_attention_rejects_bad_arguments(bad):
    args = dict(dim=8, heads=2, dim_head=4) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        Attention(**args)


def test_patchify_layout_is_rows_then_channels_last():
    x = torch.arange(2 * 4 * 6, dtype=torch.float).reshape(1, 2, 4, 6)
    patches = patchify(x, (2, 3))
    assert patches.shape == (1, 4, 12)
    expected = x[0, :, 2:4, 0:3].permute(1, 2, 0).reshape(-1)  # second row of patches, first column
    torch.testing.assert_close(patches[0, 2], expected)


def test_patchify_handles_three_spatial_axes():
    x = torch.randn(2, 3, 4, 6, 8)
    patches = patchify(x, (2, 3, 4))
    assert patches.shape == (2, 2 * 2 * 2, 2 * 3 * 4 * 3)
    torch.testing.assert_close(patches[1, 0], x[1, :, :2, :3, :4].permute(1, 2, 3, 0).reshape(-1))


def test_patch_embedding_non_square_patches():
    embed = PatchEmbedding(3, (4, 2), 10)
    assert embed(torch.randn(2, 3, 8, 6)).shape == (2, 2 * 3, 10)


def test_patch_embedding_forward_map_puts_each_patch_at_its_grid_cell():
    embed = PatchEmbedding(3, (4, 2), 10)
    x = torch.randn(2, 3, 8, 6)
    fmap = embed.forward_map(x)
    assert fmap.shape == (2, 2, 3, 10)
    torch.testing.assert_close(fmap[:, 1, 2], embed(x[:, :, 4:8, 4:6])[:, 0])

    from vit_core.layers import ChannelsLastPatchEmbedding

    channels_last = ChannelsLastPatchEmbedding(3, (4, 2), 10)
    channels_last.load_state_dict(embed.state_dict())
    torch.testing.assert_close(channels_last(x.permute(0, 2, 3, 1)), fmap)  # (b, h, w, c) in, the same map out


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for backward while ``fn()`` runs (parameters excluded)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if not isinstance(t, torch.nn.Parameter):
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("flat", [False, True], ids=["images", "flat-patches"])
def test_patch_embedding_recompute_saves_memory_and_keeps_values_and_gradients(flat):
    torch.manual_seed(0)
    kept, recomputed = PatchEmbedding(3, (4, 4), 32, recompute=False), PatchEmbedding(3, (4, 4), 32)
    recomputed.load_state_dict(kept.state_dict())
    x = torch.randn(2, 3, 16, 16)
    inputs = patchify(x, (4, 4)) if flat else x

    def run(embed: PatchEmbedding) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = embed.embed_patches(inputs) if flat else embed(inputs)
        out.pow(2).sum().backward()
        return out, [p.grad for p in embed.parameters()]

    (out_a, grads_a), (out_b, grads_b) = run(kept), run(recomputed)
    torch.testing.assert_close(out_b, out_a)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a)
    kept_bytes = saved_bytes(lambda: kept.embed_patches(inputs) if flat else kept(inputs))
    recomputed_bytes = saved_bytes(lambda: recomputed.embed_patches(inputs) if flat else recomputed(inputs))
    patch_bytes, out_bytes = inputs.numel() * 4, out_a.numel() * 4
    assert recomputed_bytes == patch_bytes  # only the input
    assert kept_bytes >= 2 * patch_bytes + out_bytes  # the patches, normalised patches, projection


def test_sincos_table_matches_the_formula():
    table = sincos_2d(3, 4, 8)
    assert table.shape == (3, 4, 8)
    omega = torch.tensor([1.0, 1e-4])
    y, x = 2, 3
    expected = torch.cat([torch.sin(x * omega), torch.cos(x * omega), torch.sin(y * omega), torch.cos(y * omega)])
    torch.testing.assert_close(table[y, x], expected)
    with pytest.raises(ValueError, match="dim=6 must be divisible by 4"):
        sincos_2d(2, 2, 6)


def test_learned_positions_take_the_top_left_window():
    pos = LearnedPositionalEmbedding((4, 4), 3)
    window = pos((2, 3))
    torch.testing.assert_close(window, pos.weight[:2, :3].reshape(6, 3))
    with pytest.raises(ValueError, match="larger than the positional grid"):
        pos((5, 1))


def test_factorized_positions_sum_per_axis_tables():
    pos = FactorizedPositionalEmbedding((3, 5), 4)
    coords = grid_coordinates((2, 3))
    assert coords.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    rows, columns = pos.tables
    torch.testing.assert_close(pos(coords)[5], rows[1] + columns[2])  # (row 1, column 2): not symmetric
    torch.testing.assert_close(pos(coords), rows[coords[:, 0]] + columns[coords[:, 1]])


def test_transformer_contract_and_custom_blocks():
    trunk = Transformer(16, depth=2, heads=2, dim_head=8, mlp_dim=32)
    x = torch.randn(2, 5, 16)
    assert trunk(x).shape == x.shape

    class Doubler(torch.nn.Module):
        def forward(self, x, mask=None, packing=None):
            return 2 * x

    custom = Transformer(16, depth=3, block=lambda i: Doubler(), final_norm=False)
    torch.testing.assert_close(custom(x), 8 * x)
    with pytest.raises(ValueError, match="dim=16"):
        trunk(torch.randn(2, 5, 8))


def test_transformer_queries_returns_the_first_tokens_exactly():
    trunk = Transformer(16, depth=3, heads=2, dim_head=8, mlp_dim=32).eval()
    x = torch.randn(2, 6, 16)
    full = trunk(x)
    for queries in (1, 2, 6):
        torch.testing.assert_close(trunk(x, queries=queries), full[:, :queries], atol=1e-6, rtol=1e-5)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    torch.testing.assert_close(trunk(x, mask=mask, queries=1), trunk(x, mask=mask)[:, :1], atol=1e-6, rtol=1e-5)
    empty = Transformer(16, depth=0)
    torch.testing.assert_close(empty(x, queries=2), empty(x)[:, :2])
    causal = torch.ones(6, 6, dtype=torch.bool).tril().expand(2, 6, 6)
    torch.testing.assert_close(trunk(x, mask=causal, queries=2), trunk(x, mask=causal)[:, :2], atol=1e-6, rtol=1e-5)


def test_transformer_queries_are_validated():
    trunk = Transformer(16, depth=1, heads=2, dim_head=8, mlp_dim=32)
    x = torch.randn(1, 4, 16)
    with pytest.raises(ValueError, match="queries must be a positive int, got 0"):
        trunk(x, queries=0)
    with pytest.raises(ValueError, match=r"queries must be at most the number of tokens \(4\), got 5"):
        trunk(x, queries=5)
    attn = Attention(16, 2, 8)
    with pytest.raises(ValueError, match="cannot be combined with packing"):
        attn(x, packing=SequencePacking.from_sorted_lengths([4]), queries=1)
    with pytest.raises(ValueError, match=r"queries must be at most the number of tokens \(4\), got 9"):
        attn(x, queries=9)
    with pytest.raises(ValueError, match="queries must be a positive int, got True"):
        attn(x, queries=True)


def test_transformer_observed_by_hooks_and_recorders():
    trunk = Transformer(16, depth=2, heads=2, dim_head=8, mlp_dim=32)
    assert not trunk.observed()
    handle = trunk.layers[1].ff.register_forward_hook(lambda *_: None)
    assert trunk.observed()
    handle.remove()
    trunk.layers[0].attn.recorder = lambda *_: None
    assert trunk.observed()


def test_transformer_final_norm_normalises():
    out = Transformer(16, depth=1, heads=2, dim_head=8, mlp_dim=32)(torch.randn(3, 4, 16) * 10)
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(3, 4), atol=1e-3, rtol=0)


def test_scaled_dot_product_is_the_kernel():
    calls = []
    original = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    F.scaled_dot_product_attention = spy
    try:
        with torch.no_grad():  # CPU training at 3 keys takes the faster explicit path (test_seams)
            Attention(8, 2, 4)(torch.randn(1, 3, 8))
    finally:
        F.scaled_dot_product_attention = original
    assert calls == [(1, 2, 3, 4)]


def test_3d_conv_tokenizer_carries_a_zero_bias_outside_the_state_dict():
    """torch.onnx's conv3d without a bias emits a mis-shaped bias; ours is an explicit zero buffer."""
    from vit_core.layers import ConvTokenizer

    geometry = dict(stride=(1, 1, 1), padding=(1, 1, 1), pool_kernel=(1, 3, 3), pool_stride=(1, 2, 2))
    video = ConvTokenizer(3, 8, n_conv_layers=1, kernel=(3, 3, 3), pool_padding=(0, 1, 1), **geometry)
    conv = video.stages[0].conv
    assert torch.equal(conv.bias, torch.zeros(8)) and "stages.0.conv.bias" not in video.state_dict()
    assert [name for name, _ in video.named_parameters()] == ["stages.0.conv.weight"]
    x = torch.randn(1, 3, 2, 8, 8)
    expected = torch.nn.functional.conv3d(x, conv.weight, None, padding=1)
    torch.testing.assert_close(conv(x), expected)
    image = ConvTokenizer(3, 8, n_conv_layers=1, kernel=(3, 3), stride=(1, 1), padding=(1, 1), pool_kernel=(3, 3),
                          pool_stride=(2, 2), pool_padding=(1, 1))  # fmt: skip
    assert image.stages[0].conv.bias is None
