"""The pre-norm transformer encoder (Xiong et al., arXiv 2002.04745), the trunk of every model.

Contract: ``Transformer.forward(x, mask=None, packing=None)`` maps ``(batch, tokens, dim)`` to
``(batch, tokens, dim)``.  Any module honouring ``(batch, tokens, dim) -> (batch, tokens, dim)``
can replace it in :class:`vit_core.ViT` (``transformer=``).  Blocks are built by a factory, so a
plugin swaps the token mixer or the MLP without copying the encoder; :class:`TransformerBlock`
takes stochastic depth, LayerScale, the norm and a context as options; modules can be inserted
after any block (token merging or sampling) and the hidden states of chosen blocks returned,
without re-writing the layer loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vit_core.layers.attention import Attention, check_queries
from vit_core.layers.feedforward import Activation, FeedForward
from vit_core.layers.packing import SequencePacking
from vit_core.layers.regularization import DropPath, LayerScale, drop_path_rates
from vit_core.validation import check_non_negative_int, check_positive_int, check_probability

NormFactory = Callable[[int], nn.Module]
BlockFactory = Callable[[int], nn.Module]


def layer_norm(dim: int, bias: bool = True, eps: float = 1e-5) -> nn.LayerNorm:
    """The default norm of the blocks: a LayerNorm over ``dim`` (timm's checkpoints use ``eps=1e-6``)."""
    return nn.LayerNorm(dim, eps=eps, bias=bias)


def _branch_scale(dim: int, layer_scale: float | None) -> nn.Module:
    return nn.Identity() if layer_scale is None else LayerScale(dim, layer_scale)


class TransformerBlock(nn.Module):
    """``x + drop_path(ls1(mixer(norm(x))))`` then ``x + drop_path(ls2(mlp(norm(x))))``.

    Args:
        mixer: the token mixer (an :class:`Attention`, or any module taking the same keywords).
        mlp: the position-wise MLP.
        dim: token width.
        norm_bias: bias of the default LayerNorms.
        norm: ``norm(dim) -> module`` builds both norms instead of LayerNorm.
        drop_path: stochastic-depth probability of both branches (arXiv 1603.09382).
        layer_scale: initial LayerScale gain of both branches (CaiT, arXiv 2103.17239); ``None``: none.
        context_norm: normalise ``context`` with a norm of its own before the mixer sees it.

    ``forward(x, mask, packing, *, queries, context, bias, grid)``: the keywords are handed to the
    mixer when given.  With ``queries=n`` only the first ``n`` tokens are updated and returned
    (every token still serves as key and value), so ``queries=1`` over ``cat(class, tokens)`` is a
    class-attention layer (CaiT).
    """

    supports_queries: ClassVar[bool] = True

    def __init__(
        self,
        mixer: nn.Module,
        mlp: nn.Module,
        dim: int,
        *,
        norm_bias: bool = True,
        norm: NormFactory | None = None,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
        context_norm: bool = False,
    ) -> None:
        super().__init__()
        make_norm = norm or (lambda d: layer_norm(d, norm_bias))
        self.attn_norm = make_norm(dim)
        self.attn = mixer
        self.attn_scale = _branch_scale(dim, layer_scale)
        self.ff_norm = make_norm(dim)
        self.ff = mlp
        self.ff_scale = _branch_scale(dim, layer_scale)
        self.context_norm = make_norm(dim) if context_norm else None
        self.drop_path = DropPath(drop_path, "drop_path")

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        packing: SequencePacking | None = None,
        *,
        queries: int | None = None,
        context: Tensor | None = None,
        bias: Tensor | None = None,
        grid: tuple[int, ...] | None = None,
    ) -> Tensor:
        x = self.mix(x, mask, packing, queries=queries, context=context, bias=bias, grid=grid)
        return self.feed_forward(x)

    def mix(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        packing: SequencePacking | None = None,
        *,
        queries: int | None = None,
        **mixer_kwargs: Any,
    ) -> Tensor:
        """The token-mixing residual step, ``x + drop_path(ls1(mixer(norm(x))))``; keyword arguments
        (``context``, ``bias``, ``grid``) reach the mixer when not ``None``."""
        context = mixer_kwargs.get("context")
        if context is not None and self.context_norm is not None:
            mixer_kwargs["context"] = self.context_norm(context)
        kwargs = {k: v for k, v in mixer_kwargs.items() if v is not None}
        if queries is not None:
            kwargs["queries"] = queries
        mixed = self.attn(self.attn_norm(x), mask=mask, packing=packing, **kwargs)
        residual = x if queries is None else x[:, :queries]
        return residual + self.drop_path(self.attn_scale(mixed))

    def feed_forward(self, x: Tensor) -> Tensor:
        """The MLP residual step, ``x + drop_path(ls2(mlp(norm(x))))``."""
        return x + self.drop_path(self.ff_scale(self.ff(self.ff_norm(x))))


def resolve_indices(indices: int | Sequence[int] | None, count: int, what: str = "blocks") -> list[int]:
    """timm's meaning of ``indices``: ``None`` all ``count`` items (blocks, stages), an int ``n`` the last ``n``,
    a sequence those indices (negatives count from the end; empty: none); sorted, without repeats."""
    if indices is None:
        return list(range(count))
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 0 < indices <= count:
            raise ValueError(f"indices={indices} must select between 1 and {count} {what}")
        return list(range(count - indices, count))
    if not isinstance(indices, (list, tuple)):
        raise TypeError(f"indices must be None, an int or a sequence of ints, got {indices!r}")
    out = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not -count <= i < count:
            raise ValueError(
                f"indices must hold ints in [-{count}, {count}) (the model has {count} {what}), got {indices!r}"
            )
        out.append(i % count)
    return sorted(set(out))


_ATTENTION_ARGS = (
    "heads",
    "dim_head",
    "mlp_dim",
    "dropout",
    "qk_norm",
    "attn_scale",
    "project_out",
    "activation",
    "attention",
)


class Transformer(nn.Module):
    """A stack of pre-norm blocks followed by a final LayerNorm.

    Args:
        dim, depth, heads, dim_head, mlp_dim, dropout: as in the ViT paper (arXiv 2010.11929);
            defaults 8 heads of 64, ``mlp_dim = 4 * dim``, no dropout.
        norm_bias: bias in every LayerNorm (NaViT drops it).
        qk_norm, attn_scale, qkv_bias, out_bias, project_out: forwarded to :class:`Attention`.
        activation: the MLP's non-linearity (default GELU).
        gated_mlp: the MLP is a gated linear unit (SwiGLU with ``activation=nn.SiLU``; see :class:`FeedForward`).
        attention: the default block's attention class (an :class:`Attention` subclass, called like
            it: ``attention(dim, heads, dim_head, dropout, qk_norm=..., scale=..., ...)``).
        final_norm: end with a LayerNorm.
        drop_path_rate: stochastic depth rising linearly from 0 to this rate over the blocks.
        layer_scale: initial LayerScale gain of every block (``None``: no LayerScale).
        layer_drop: LayerDrop (Fan et al., arXiv 1909.11556): while training, each block is skipped
            with this probability (at least one block runs); in eval every block runs.
        norm: ``norm(dim) -> module`` replaces every LayerNorm (blocks and final).
        block: ``block(layer_index) -> nn.Module`` builds each block instead of the default one;
            arguments that only the default block reads cannot be given with it.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int | None = None,
        dim_head: int | None = None,
        mlp_dim: int | None = None,
        dropout: float | None = None,
        *,
        norm_bias: bool = True,
        qk_norm: str | None = None,
        attn_scale: float | None = None,
        qkv_bias: bool = False,
        out_bias: bool = True,
        project_out: bool | None = None,
        activation: Activation | None = None,
        gated_mlp: bool = False,
        attention: Callable[..., nn.Module] | None = None,
        final_norm: bool = True,
        drop_path_rate: float = 0.0,
        layer_scale: float | None = None,
        layer_drop: float = 0.0,
        norm: NormFactory | None = None,
        block: BlockFactory | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.depth = check_non_negative_int("depth", depth)
        self.layer_drop = check_probability("layer_drop", layer_drop)
        check_probability("drop_path_rate", drop_path_rate)
        given = dict(
            heads=heads,
            dim_head=dim_head,
            mlp_dim=mlp_dim,
            dropout=dropout,
            qk_norm=qk_norm,
            attn_scale=attn_scale,
            project_out=project_out,
            activation=activation,
            attention=attention,
        )
        if block is not None:
            ignored = [name for name in _ATTENTION_ARGS if given[name] is not None]
            ignored += [
                name
                for name, on in (("qkv_bias", qkv_bias), ("out_bias", not out_bias), ("gated_mlp", gated_mlp))
                if on
            ]
            ignored += [name for name, on in (("drop_path_rate", drop_path_rate), ("layer_scale", layer_scale)) if on]
            if ignored:
                raise TypeError(
                    f"Transformer(block=...) builds its own blocks, so {', '.join(ignored)} would be ignored; "
                    "pass them to the block factory instead"
                )
        heads = 8 if heads is None else heads
        dim_head = 64 if dim_head is None else dim_head
        mlp_dim = 4 * dim if mlp_dim is None else mlp_dim
        dropout = 0.0 if dropout is None else dropout
        rates = drop_path_rates(drop_path_rate, depth)
        make_norm = norm or (lambda d: layer_norm(d, norm_bias))

        def default_block(i: int) -> nn.Module:
            mixer = (attention or Attention)(
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
            mlp = FeedForward(dim, mlp_dim, dropout, activation=activation or nn.GELU, gated=gated_mlp)
            return TransformerBlock(mixer, mlp, dim, norm=make_norm, drop_path=rates[i], layer_scale=layer_scale)

        self.layers = nn.ModuleList((block or default_block)(i) for i in range(depth))
        self.inserted = nn.ModuleDict()
        self.norm = make_norm(dim) if final_norm else nn.Identity()

    def insert_after(self, index: int, module: nn.Module) -> None:
        """Run ``module`` on the tokens after block ``index`` (e.g. a token merger).

        ``module(x)`` returns the new tokens or ``(tokens, mask)``, the key mask ``(batch, tokens)``
        the following blocks then use.  Returning tokens alone keeps the current mask when the
        token count is unchanged and drops it otherwise.
        """
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.layers):
            raise ValueError(f"index must be a block index in [0, {len(self.layers)}), got {index!r}")
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
        if str(index) in self.inserted:
            raise ValueError(f"a module is already inserted after block {index}: {type(self.inserted[str(index)])}")
        self.inserted[str(index)] = module

    @property
    def supports_queries(self) -> bool:
        """Whether ``forward(queries=n)`` is exact: every block declares it and nothing is inserted."""
        return not self.inserted and all(getattr(layer, "supports_queries", False) for layer in self.layers)

    def _check(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (batch, tokens, dim={self.dim}), got shape {tuple(x.shape)}")

    def _active_layers(self) -> list[bool]:
        """Which blocks run in this forward pass (LayerDrop skips some while training)."""
        if not self.training or self.layer_drop == 0.0 or not self.layers:
            return [True] * len(self.layers)
        keep = torch.rand(len(self.layers)) >= self.layer_drop
        if not keep.any():
            keep[torch.randint(len(self.layers), ())] = True
        return keep.tolist()

    def _run(
        self, i: int, active: bool, x: Tensor, mask: Tensor | None, queries: int | None = None, **kwargs: Any
    ) -> tuple[Tensor, Any]:
        if active:
            x = self.layers[i](x, mask=mask, **kwargs, **({} if queries is None else {"queries": queries}))
        elif queries is not None:
            x = x[:, :queries]
        if str(i) in self.inserted:
            out = self.inserted[str(i)](x)
            new, new_mask = out if isinstance(out, tuple) else (out, None)
            if not isinstance(out, tuple) and new.shape[1] == x.shape[1]:
                new_mask = mask
            x, mask = new, new_mask
        return x, mask

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        packing: SequencePacking | None = None,
        *,
        queries: int | None = None,
        **block_kwargs: Any,
    ) -> Tensor:
        """``block_kwargs`` (``context``, ``bias``, ``grid``) are handed to every block.

        ``queries=n`` returns only the first ``n`` tokens, ``(batch, n, dim)``: the last block then
        computes attention queries, output projection and MLP for those tokens alone (e.g. the class
        token, when it is all the head reads), which is exact for them and skips about a
        ``1 / depth`` share of the work.  Needs :attr:`supports_queries`.
        """
        self._check(x)
        if packing is not None:
            block_kwargs["packing"] = packing
        last = len(self.layers) - 1
        if queries is not None:
            check_queries(queries, x.shape[1])
            if not self.supports_queries:
                raise ValueError("queries= needs blocks that declare supports_queries and no inserted module")
            if last < 0:
                return self.norm(x[:, :queries])
        for i, active in enumerate(self._active_layers()):
            x, mask = self._run(i, active, x, mask, queries if i == last else None, **block_kwargs)
        return self.norm(x)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        mask: Tensor | None = None,
        packing: SequencePacking | None = None,
        norm: bool = False,
        stop_early: bool = False,
        **block_kwargs: Any,
    ) -> tuple[Tensor, list[Tensor]]:
        """Run the trunk and also return the tokens after the blocks chosen by ``indices``.

        ``indices``: ``None`` (every block), an int ``n`` (the last ``n``) or a sequence of block
        indices (negatives count from the end).  ``norm`` applies the final norm to each
        intermediate; ``stop_early`` stops after the last chosen block (the returned final tensor is
        then that block's output, un-normed).  Returns ``(final, intermediates)``.
        """
        self._check(x)
        if packing is not None:
            block_kwargs["packing"] = packing
        chosen = resolve_indices(indices, len(self.layers))
        stop = chosen[-1] if stop_early and chosen else len(self.layers) - 1
        intermediates = []
        for i, active in enumerate(self._active_layers()[: stop + 1]):
            x, mask = self._run(i, active, x, mask, **block_kwargs)
            if i in chosen:
                intermediates.append(self.norm(x) if norm else x)
        final = x if stop_early and stop < len(self.layers) - 1 else self.norm(x)
        return final, intermediates

    def observed(self) -> bool:
        """Whether a Recorder or a module hook watches this trunk (see :func:`is_observed`)."""
        return is_observed(self)


def is_observed(module: nn.Module) -> bool:
    """Whether a Recorder or a module hook watches ``module`` or one of its submodules (they expect
    every token of every block, so ``queries=`` must not be used)."""
    return any(
        m._forward_hooks or m._forward_pre_hooks or getattr(m, "recorder", None) is not None for m in module.modules()
    )
