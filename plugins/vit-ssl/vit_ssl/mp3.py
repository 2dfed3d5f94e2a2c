"""MP3: "Position Prediction as an Effective Pretraining Strategy" (Zhai et al., arXiv 2207.07611).

What the paper adds: the transformer gets the patch tokens without positional embeddings and
predicts, for every patch, which of the grid's positions it came from (a classification over the
positions).  To make the task hard and cheap, a random share of the patches (``masking_ratio``)
is removed from the keys and values of every attention layer: all patches ask, only the visible
ones answer.  Here that is a key mask on the encoder's own trunk (one fused attention call per
layer); the encoder's class token, when it has one, stays visible.

vit-pytorch's MP3 ships its own ViT, whose layers all attend to the *input* embeddings of the
visible patches; ours uses any vit-core encoder, whose layers attend to the visible patches'
current tokens, as a masked self-attention does.  The task never reads the encoder's positional
embeddings (``vit.pos_embed``) nor its classifier: MP3 freezes the first and removes the second, so
no parameter goes without a gradient (which stops ``DistributedDataParallel``).  Before fine-tuning,
``vit.pos_embed.requires_grad_(True)`` and ``vit.reset_classifier(num_classes)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_ssl.masking import check_ratio, ids_to_mask, sample_ids
from vit_ssl.protocol import check_masked_encoder, drop_classifier
from vit_ssl.randomness import RankedGenerator


class MP3(nn.Module):
    """Masked-position-prediction pre-training of ``vit``; ``forward(images)`` returns the loss.

    Args:
        vit: a vit-core encoder (``ViT``, ``SimpleViT`` or any implementation of the protocol whose
            ``encode`` passes ``mask=`` to a trunk taking a ``(batch, tokens)`` key mask).
        masking_ratio: share of patches removed from the keys and values, in ``(0, 1)``.
    """

    def __init__(self, vit: nn.Module, masking_ratio: float) -> None:
        super().__init__()
        check_masked_encoder(vit, "MP3")
        self.masking_ratio = check_ratio("masking_ratio", masking_ratio)
        drop_classifier(vit)
        positions = getattr(vit, "pos_embed", None)
        if isinstance(positions, nn.Module):  # never read here: frozen, not a parameter without gradient
            positions.requires_grad_(False)
        self.vit = vit
        self.grid = tuple(vit.grid)
        self.mlp_head = nn.Sequential(nn.LayerNorm(vit.num_features), nn.Linear(vit.num_features, math.prod(self.grid)))
        self.generator = RankedGenerator()

    def positions(self, grid: tuple[int, ...], device: torch.device) -> Tensor:
        """The class of every patch of a ``grid`` (the top-left window of the built grid): its
        row-major index in the built grid."""
        index = torch.arange(math.prod(self.grid), device=device).view(self.grid)
        return index[tuple(slice(0, g) for g in grid)].reshape(-1)

    def forward(self, img: Tensor, *, keep_ids: Tensor | None = None) -> Tensor:
        """The position-classification loss of a batch; ``keep_ids`` ``(batch, kept)`` fixes the
        patches left in the keys and values (default: a fresh random share per image)."""
        vit = self.vit
        tokens, grid = vit.tokenize(img)
        batch, num_patches, _ = tokens.shape
        keep_ids = sample_ids("keep_ids", keep_ids, self.masking_ratio, tokens, self.generator)
        prefix = vit.num_prefix_tokens
        visible = ids_to_mask(keep_ids, num_patches)
        key_mask = torch.cat((visible.new_ones(batch, prefix), visible), dim=1)
        encoded = vit.encode(vit.prepend_prefix(tokens), mask=key_mask)[:, prefix:]
        logits = self.mlp_head(encoded)
        labels = self.positions(tuple(grid), tokens.device).expand(batch, -1)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())
