"""NaViT: "Patch n' Pack: NaViT, a Vision Transformer for any Aspect Ratio and Resolution"
(Dehghani et al., arXiv 2307.06304).

What the paper changes: images of any size are cut into patches and *packed* into one sequence;
positions are factorized per axis; tokens may be dropped at random while training; queries and
keys are normalised; each image is pooled by attention.  Here packing is exact: the images'
tokens are concatenated (sorted by length) with no padding, and attention runs per run of
equal-length images (see :class:`~vit_core.layers.SequencePacking`), so an image never attends
to another one and no dense mask is built.

One class serves the three call forms of vit-pytorch's README: a list of lists of images
(explicit groups), a flat list with ``group_images=True, group_max_seq_len=N`` (automatic
groups), and a flat list.  Grouping only decides which images share a sequence; since images
never attend across, the outputs do not depend on it.  ``group_max_seq_len`` is still enforced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vit_core.layers import (
    AttentionPool,
    FactorizedPositionalEmbedding,
    PatchEmbedding,
    SequencePacking,
    Transformer,
    grid_coordinates,
    patchify,
)
from vit_core.models.base import (
    BlockOrder,
    VisionModel,
    block_feature_info,
    layer_blocks,
    parameter_names,
    trunk_intermediates,
)
from vit_core.validation import (
    as_tuple,
    check_choice,
    check_grid,
    check_non_negative_int,
    check_positive_int,
    check_probability,
    check_tensor,
)

TokenDropout = Callable[[int, int], float]
IMAGE_LAYOUT = "(channels, height, width)"


@dataclass
class PackedFeatures:
    """NaViT's features: every image's tokens packed on one axis.

    ``tokens``: ``(1, total_tokens, dim)``, images sorted by token count; ``packing``: their
    layout; ``order[i]``: the input position of the i-th packed image.
    """

    tokens: Tensor
    packing: SequencePacking
    order: tuple[int, ...]

    def per_image(self) -> list[Tensor]:
        """The tokens of each image, ``(tokens_i, dim)``, in input order."""
        chunks = self.tokens[0].split(list(self.packing.lengths))
        out: list[Tensor] = [chunks[0]] * len(chunks)
        for packed_index, image_index in enumerate(self.order):
            out[image_index] = chunks[packed_index]
        return out


class NaViT(VisionModel):
    """Native-resolution ViT over lists of variable-size images (arguments as vit-pytorch's NaViT).

    Args:
        image_size: largest height and width accepted (sizes the positional tables).
        patch_size: square patch side; every image side must divide by it.
        token_dropout_prob: ``None``, a float in ``[0, 1)``, or ``f(height, width) -> float``:
            the share of each image's tokens dropped while training.
        qk_norm: ``"rms"`` (default, as vit-pytorch's ``na_vit``), ``"layer"`` or ``None``.
        patch_norm_bias: bias in the two patch-embedding LayerNorms.
        pool_residual: add the pooling query back to the pooled vector.

    :meth:`nested_tensor_flavour` builds the architecture of vit-pytorch's nested-tensor NaViT.
    """

    def __init__(
        self,
        *,
        image_size: int | tuple[int, int],
        patch_size: int,
        num_classes: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        channels: int = 3,
        dim_head: int = 64,
        dropout: float = 0.0,
        emb_dropout: float = 0.0,
        token_dropout_prob: float | TokenDropout | None = None,
        qk_norm: str | None = "rms",
        patch_norm_bias: bool = False,
        pool_residual: bool = True,
    ) -> None:
        super().__init__()
        self.image_size = as_tuple("image_size", image_size)
        self.patch_size = check_positive_int("patch_size", patch_size)
        grid = check_grid("image_size", self.image_size, "patch_size", (patch_size, patch_size))
        self.channels = check_positive_int("channels", channels)
        self.num_features = check_positive_int("dim", dim)
        self.num_classes = check_non_negative_int("num_classes", num_classes)
        if token_dropout_prob is not None and not callable(token_dropout_prob):
            check_probability("token_dropout_prob", token_dropout_prob)
        self.token_dropout_prob = token_dropout_prob
        attn_scale = 1.0 if qk_norm == "rms" else None

        self.patch_embed = PatchEmbedding(channels, (patch_size, patch_size), dim, norm_bias=patch_norm_bias)
        self.pos_embed = FactorizedPositionalEmbedding(grid, dim)
        self.dropout = nn.Dropout(check_probability("emb_dropout", emb_dropout))
        self.transformer = Transformer(
            dim,
            depth,
            heads,
            dim_head,
            mlp_dim,
            dropout,
            norm_bias=False,
            qk_norm=qk_norm,
            attn_scale=attn_scale,
            out_bias=False,
        )
        self.attn_pool = AttentionPool(
            dim, heads, dim_head, qk_norm=qk_norm, attn_scale=attn_scale, norm_bias=False, residual=pool_residual
        )
        self.head = self.make_head(num_classes)

    @classmethod
    def nested_tensor_flavour(cls, *, qk_rmsnorm: bool = True, **kwargs: object) -> NaViT:
        """The architecture of vit-pytorch's ``na_vit_nested_tensor.NaViT``: per-head LayerNorm on
        queries and keys (``qk_rmsnorm=False`` drops it) with the usual ``dim_head ** -0.5`` scale,
        biased patch LayerNorms, and attention pooling without the residual.  Its weights import
        with :func:`vit_core.load_reference_weights`."""
        flavour = dict(qk_norm="layer" if qk_rmsnorm else None, patch_norm_bias=True, pool_residual=False)
        return cls(**(flavour | kwargs))

    def no_weight_decay(self) -> set[str]:
        """The factorized position tables and the per-head q/k norm gains (2-D: heads x dim_head)."""
        return parameter_names(self, "pos_embed", "*q_norm.weight", "*k_norm.weight")

    def block_order(self) -> BlockOrder | None:
        """Stem: the patch embedding and the position tables; blocks: the transformer's layers."""
        return BlockOrder(("patch_embed", "pos_embed"), layer_blocks(self.transformer, "transformer"))

    def make_head(self, num_classes: int) -> nn.Module | None:
        if not num_classes:
            return None
        return nn.Sequential(
            nn.LayerNorm(self.num_features, bias=False), nn.Linear(self.num_features, num_classes, bias=False)
        )

    def token_dropout(self, height: int, width: int) -> float:
        """Share of tokens dropped for an image of this size (0 outside training)."""
        p = self.token_dropout_prob
        if not self.training or p is None:
            return 0.0
        p = p(height, width) if callable(p) else p
        return check_probability("token_dropout_prob(height, width)", p)

    def kept_tokens(self, image: Tensor) -> int:
        h, w = image.shape[-2:]
        n = (h // self.patch_size) * (w // self.patch_size)
        return max(1, int(n * (1 - self.token_dropout(h, w))))

    def group(self, images: Sequence[Tensor], max_seq_len: int) -> list[list[Tensor]]:
        """Greedy grouping in input order so that no group holds more than ``max_seq_len`` tokens."""
        check_positive_int("group_max_seq_len", max_seq_len)
        groups: list[list[Tensor]] = [[]]
        used = 0
        for image in images:
            self._check_image(image)
            n = self.kept_tokens(image)
            if n > max_seq_len:
                raise ValueError(
                    f"an image of size {tuple(image.shape[-2:])} has {n} patches, more than "
                    f"group_max_seq_len={max_seq_len}"
                )
            if used + n > max_seq_len:
                groups.append([])
                used = 0
            groups[-1].append(image)
            used += n
        return groups

    def _check_image(self, image: object) -> tuple[int, ...]:
        p = self.patch_size
        return check_tensor(
            "each image",
            image,
            layout=IMAGE_LAYOUT,
            batched=False,
            channels=self.channels,
            max_size=self.image_size,
            patch=(p, p),
        )

    def flatten_input(self, batched_images: object, group_images: bool, group_max_seq_len: int) -> list[Tensor]:
        """Validate the three call forms and return the images in input order."""
        if not isinstance(batched_images, (list, tuple)) or len(batched_images) == 0:
            raise ValueError(
                "NaViT takes a non-empty list of (channels, height, width) images or a non-empty list "
                f"of such lists; got {type(batched_images).__name__} of length "
                f"{len(batched_images) if isinstance(batched_images, (list, tuple)) else 'n/a'}"
            )
        if all(isinstance(item, Tensor) for item in batched_images):
            groups = self.group(batched_images, group_max_seq_len) if group_images else [list(batched_images)]
        elif group_images:
            raise ValueError("group_images=True takes a flat list of images, got a list of lists")
        else:
            groups = [list(g) if isinstance(g, (list, tuple)) else g for g in batched_images]
            for i, g in enumerate(groups):
                if not isinstance(g, list) or not g:
                    raise ValueError(f"batched_images[{i}] must be a non-empty list of images, got {g!r:.60}")
        return [image for group in groups for image in group]

    def pack(
        self, batched_images: object, group_images: bool = False, group_max_seq_len: int = 2048
    ) -> tuple[Tensor, SequencePacking, tuple[int, ...]]:
        """Validate, cut (dropping tokens while training), sort, embed and position every image:
        ``(1, total_tokens, dim)`` tokens before dropout, their packing and the packed order."""
        images = self.flatten_input(batched_images, group_images, group_max_seq_len)
        device = self.pos_embed.tables[0].device
        patches, coords = [], []
        for image in images:
            grid = self._check_image(image)
            tokens = patchify(image.unsqueeze(0), (self.patch_size, self.patch_size))[0]
            positions = grid_coordinates(grid, device)
            keep = self.kept_tokens(image)
            if keep < tokens.shape[0]:
                index = torch.randn(tokens.shape[0], device=device).topk(keep).indices
                tokens, positions = tokens[index], positions[index]
            patches.append(tokens)
            coords.append(positions)
        order = tuple(sorted(range(len(images)), key=lambda i: patches[i].shape[0]))
        packing = SequencePacking.from_sorted_lengths([patches[i].shape[0] for i in order])
        tokens = self.patch_embed.embed_patches(torch.cat([patches[i] for i in order]))
        tokens = tokens + self.pos_embed(torch.cat([coords[i] for i in order]))
        return tokens.unsqueeze(0), packing, order

    def forward_features(
        self, batched_images: object, group_images: bool = False, group_max_seq_len: int = 2048
    ) -> PackedFeatures:
        tokens, packing, order = self.pack(batched_images, group_images, group_max_seq_len)
        return PackedFeatures(self.transformer(self.dropout(tokens), packing=packing), packing, order)

    @property
    def feature_info(self) -> list[dict[str, object]]:
        return block_feature_info(self.transformer, self.num_features, self.patch_size)

    def forward_intermediates(
        self,
        batched_images: object,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output_fmt: str = "NLC",
        intermediates_only: bool = False,
        group_images: bool = False,
        group_max_seq_len: int = 2048,
    ) -> tuple[PackedFeatures, list[PackedFeatures]] | list[PackedFeatures]:
        """The packed tokens after the blocks chosen by ``indices`` (timm's meaning), each a
        :class:`PackedFeatures` (``per_image()`` splits it), and ``forward_features``'s result."""
        check_choice("output_fmt", output_fmt, ("NLC",))
        tokens, packing, order = self.pack(batched_images, group_images, group_max_seq_len)
        out = trunk_intermediates(
            self.transformer,
            self.dropout(tokens),
            indices,
            norm=norm,
            intermediates_only=intermediates_only,
            packing=packing,
        )
        hidden = [PackedFeatures(h, packing, order) for h in (out if intermediates_only else out[1])]
        return hidden if intermediates_only else (PackedFeatures(out[0], packing, order), hidden)

    def pool_features(self, features: PackedFeatures) -> Tensor:
        pooled = self.attn_pool(features.tokens, features.packing)
        inverse = [0] * len(features.order)
        for packed_index, image_index in enumerate(features.order):
            inverse[image_index] = packed_index
        if inverse == list(range(len(inverse))):
            return pooled
        rows = pooled.unbind(0)  # reordered by host-side indices: no index tensor copied to the device
        return torch.stack([rows[i] for i in inverse])

    def forward(self, batched_images: object, group_images: bool = False, group_max_seq_len: int = 2048) -> Tensor:
        """Images -> ``(num_images, num_classes)`` logits, in input order (groups flattened)."""
        return self.forward_head(self.forward_features(batched_images, group_images, group_max_seq_len))
