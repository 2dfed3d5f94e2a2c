"""The pre-norm transformer encoder (Xiong et al., arXiv 2002.04745), the trunk of every model.

Contract: ``Transformer.forward(x, mask=None, packing=None)`` maps ``(batch, tokens, dim)`` to
``(batch, tokens, dim)``.  Any module honouring ``(batch, tokens, dim) -> (batch, tokens, dim)``
can replace it in :class:`vit_core.ViT` (``transformer=``).  Blocks are built by a factory, so a
plugin swaps the token mixer or the MLP without copying the encoder.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from vit_core.layers.attention import Attention, SequencePacking
from vit_core.layers.feedforward import FeedForward
from vit_core.validation import check_non_negative_int, check_positive_int


def layer_norm(dim: int, bias: bool = True) -> nn.LayerNorm:
    return nn.LayerNorm(dim, bias=bias)


class TransformerBlock(nn.Module):
    """``x + mixer(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, mixer: nn.Module, mlp: nn.Module, dim: int, *, norm_bias: bool = True) -> None:
        super().__init__()
        self.attn_norm = layer_norm(dim, norm_bias)
        self.attn = mixer
        self.ff_norm = layer_norm(dim, norm_bias)
        self.ff = mlp

    def forward(self, x: Tensor, mask: Tensor | None = None, packing: SequencePacking | None = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), mask=mask, packing=packing)
        return x + self.ff(self.ff_norm(x))


BlockFactory = Callable[[int], nn.Module]


class Transformer(nn.Module):
    """A stack of pre-norm blocks followed by a final LayerNorm.

    Args:
        dim, depth, heads, dim_head, mlp_dim, dropout: as in the ViT paper (arXiv 2010.11929).
        norm_bias: bias in every LayerNorm (NaViT drops it).
        qk_norm, attn_scale, qkv_bias, out_bias, project_out: forwarded to :class:`Attention`.
        final_norm: end with a LayerNorm.
        block: ``block(layer_index) -> nn.Module`` builds each block instead of the default one.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int = 8,
        dim_head: int = 64,
        mlp_dim: int | None = None,
        dropout: float = 0.0,
        *,
        norm_bias: bool = True,
        qk_norm: str | None = None,
        attn_scale: float | None = None,
        qkv_bias: bool = False,
        out_bias: bool = True,
        project_out: bool | None = None,
        final_norm: bool = True,
        block: BlockFactory | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        check_non_negative_int("depth", depth)
        mlp_dim = 4 * dim if mlp_dim is None else mlp_dim

        def default_block(_: int) -> nn.Module:
            mixer = Attention(
                dim,
                heads,
                dim_head,
                dropout,
                qk_norm=qk_norm,
                scale=attn_scale,
                qkv_bias=qkv_bias,
                out_bias=out_bias,
                project_out=project_out,
            )
            return TransformerBlock(mixer, FeedForward(dim, mlp_dim, dropout), dim, norm_bias=norm_bias)

        self.layers = nn.ModuleList((block or default_block)(i) for i in range(depth))
        self.norm = layer_norm(dim, norm_bias) if final_norm else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None, packing: SequencePacking | None = None) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (batch, tokens, dim={self.dim}), got shape {tuple(x.shape)}")
        for layer in self.layers:
            x = layer(x, mask=mask, packing=packing)
        return self.norm(x)
