"""The pre-norm transformer encoder (Xiong et al., arXiv 2002.04745), the trunk of every model.

Contract: ``Transformer.forward(x, mask=None, packing=None)`` maps ``(batch, tokens, dim)`` to
``(batch, tokens, dim)``.  Any module honouring ``(batch, tokens, dim) -> (batch, tokens, dim)``
can replace it in :class:`vit_core.ViT` (``transformer=``).  Blocks are built by a factory, so a
plugin swaps the token mixer or the MLP without copying the encoder.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from vit_core.layers.attention import Attention, SequencePacking, check_queries
from vit_core.layers.feedforward import FeedForward
from vit_core.validation import check_non_negative_int, check_positive_int


def layer_norm(dim: int, bias: bool = True) -> nn.LayerNorm:
    return nn.LayerNorm(dim, bias=bias)


class TransformerBlock(nn.Module):
    """``x + mixer(norm(x))`` then ``x + mlp(norm(x))``.

    With ``queries=n`` only the first ``n`` tokens are updated and returned (the mixer must accept
    ``queries=``, as :class:`Attention` does); every token still serves as key and value.
    """

    def __init__(self, mixer: nn.Module, mlp: nn.Module, dim: int, *, norm_bias: bool = True) -> None:
        super().__init__()
        self.attn_norm = layer_norm(dim, norm_bias)
        self.attn = mixer
        self.ff_norm = layer_norm(dim, norm_bias)
        self.ff = mlp

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        packing: SequencePacking | None = None,
        *,
        queries: int | None = None,
    ) -> Tensor:
        if queries is None:
            x = x + self.attn(self.attn_norm(x), mask=mask, packing=packing)
        else:
            x = x[:, :queries] + self.attn(self.attn_norm(x), mask=mask, packing=packing, queries=queries)
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

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        packing: SequencePacking | None = None,
        *,
        queries: int | None = None,
    ) -> Tensor:
        """``queries=n`` returns only the first ``n`` tokens, ``(batch, n, dim)``: the last block then
        computes attention queries, output projection and MLP for those tokens alone (e.g. the class
        token, when it is all the head reads), which is exact for them and skips about a
        ``1 / depth`` share of the work.  Needs default blocks (or blocks accepting ``queries=``)."""
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (batch, tokens, dim={self.dim}), got shape {tuple(x.shape)}")
        if queries is None:
            for layer in self.layers:
                x = layer(x, mask=mask, packing=packing)
            return self.norm(x)
        check_queries(queries, x.shape[1])
        layers = list(self.layers)
        for layer in layers[:-1]:
            x = layer(x, mask=mask, packing=packing)
        x = layers[-1](x, mask=mask, packing=packing, queries=queries) if layers else x[:, :queries]
        return self.norm(x)

    def observed(self) -> bool:
        """Whether a Recorder or a module hook watches this trunk or one of its modules (they expect
        every token of every block, so ``queries=`` must not be used)."""
        return any(
            m._forward_hooks or m._forward_pre_hooks or getattr(m, "recorder", None) is not None for m in self.modules()
        )
