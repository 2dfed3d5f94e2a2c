"""MAE: "Masked Autoencoders Are Scalable Vision Learners" (He et al., arXiv 2111.06377).

What the paper adds to a ViT: most patches (75%) are dropped at random before the encoder, which
sees only the visible ones (with the class token); a small transformer decoder gets the encoded
visible tokens back in their places, a learned mask token everywhere else, its own positions, and
predicts the pixels of every patch; the loss is the mean squared error on the masked patches
(optionally against per-patch normalised pixels, the paper's best variant).

Written against vit-core's encoder protocol, so any encoder that implements it can be
pre-trained.  Where vit-pytorch differs: its MAE encodes the visible patches without the class
token (ours passes it through the encoder as the paper does, so a ``pool="cls"`` ViT's class
token trains too; with ``pool="mean"`` there is none and both compute the same loss), and at its
latest release it cannot run on its own README example (it slices the positional table as 3-D).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vit_core.layers import LearnedPositionalEmbedding, Transformer
from vit_core.validation import check_positive_int
from vit_ssl.masking import check_ratio, ids_to_mask, sample_ids
from vit_ssl.protocol import MASKED_MODELLING, check_masked_encoder, drop_classifier
from vit_ssl.randomness import RankedGenerator


@dataclass
class Reconstruction:
    """What :meth:`MAE.reconstruct` returns.

    Attributes:
        loss: the scalar training loss.
        predicted: predicted pixels of every patch, ``(batch, patches, patch_dim)``, in the encoder's
            patch order and layout (``encoder.patches``).
        target: what ``predicted`` is compared with on the masked patches (the patches, per-patch
            normalised when ``normalize_targets``).
        masked: ``(batch, patches)``, ``True`` where the patch was hidden from the encoder.
    """

    loss: Tensor
    predicted: Tensor
    target: Tensor
    masked: Tensor


class MAE(nn.Module):
    """Masked-autoencoder pre-training of ``encoder``; ``forward(images)`` returns the loss.

    Args:
        encoder: a vit-core encoder (``ViT``, ``SimpleViT`` or any implementation of the protocol,
            with ``num_features``, ``grid`` and ``patch_embed.patch_dim``); its classifier, which the
            loss never reads, is removed (:func:`vit_ssl.protocol.drop_classifier`).
        decoder_dim, decoder_depth, decoder_heads, decoder_dim_head: the decoder transformer
            (its MLP is ``4 * decoder_dim`` wide).
        masking_ratio: share of patches hidden from the encoder, in ``(0, 1)``.
        normalize_targets: predict per-patch normalised pixels (the paper's ``norm_pix_loss``).
    """

    def __init__(
        self,
        *,
        encoder: nn.Module,
        decoder_dim: int,
        masking_ratio: float = 0.75,
        decoder_depth: int = 1,
        decoder_heads: int = 8,
        decoder_dim_head: int = 64,
        normalize_targets: bool = False,
    ) -> None:
        super().__init__()
        check_masked_encoder(encoder, "MAE", MASKED_MODELLING)
        self.masking_ratio = check_ratio("masking_ratio", masking_ratio)
        check_positive_int("decoder_dim", decoder_dim)
        check_positive_int("decoder_depth", decoder_depth)
        drop_classifier(encoder)
        self.encoder = encoder
        self.normalize_targets = bool(normalize_targets)
        width = encoder.num_features
        self.enc_to_dec = nn.Linear(width, decoder_dim) if width != decoder_dim else nn.Identity()
        self.mask_token = nn.Parameter(torch.randn(decoder_dim) * 0.02)
        self.decoder = Transformer(decoder_dim, decoder_depth, decoder_heads, decoder_dim_head, decoder_dim * 4)
        self.decoder_pos = LearnedPositionalEmbedding(encoder.grid, decoder_dim)
        self.to_pixels = nn.Linear(decoder_dim, encoder.patch_embed.patch_dim)
        self.generator = RankedGenerator()

    def forward(self, img: Tensor, *, keep_ids: Tensor | None = None) -> Tensor:
        """The reconstruction loss of a batch; ``keep_ids`` ``(batch, kept)`` fixes the visible
        patches (default: a fresh random ``1 - masking_ratio`` share per image)."""
        return self.reconstruct(img, keep_ids=keep_ids).loss

    def reconstruct(self, img: Tensor, *, keep_ids: Tensor | None = None) -> Reconstruction:
        encoder = self.encoder
        patches, grid = encoder.patches(img)
        tokens, _ = encoder.tokenize(img)
        tokens = encoder.add_positions(tokens, grid)
        batch, num_patches, width = tokens.shape
        keep_ids = sample_ids("keep_ids", keep_ids, self.masking_ratio, tokens, self.generator)
        visible = tokens.gather(1, keep_ids.unsqueeze(-1).expand(-1, -1, width))
        encoded = encoder.encode(encoder.prepend_prefix(visible))[:, encoder.num_prefix_tokens :]
        decoded = self.enc_to_dec(encoded)
        dim = decoded.shape[-1]
        full = self.mask_token.to(decoded.dtype).expand(batch, num_patches, dim)
        full = full.scatter(1, keep_ids.unsqueeze(-1).expand(-1, -1, dim), decoded)  # back in patch order
        predicted = self.to_pixels(self.decoder(full + self.decoder_pos(grid)))
        target = _normalized(patches) if self.normalize_targets else patches
        masked = ~ids_to_mask(keep_ids, num_patches)
        per_patch = (predicted.float() - target.float()).square().mean(dim=-1)
        loss = (per_patch * masked).sum() / (batch * (num_patches - keep_ids.shape[1]))
        return Reconstruction(loss, predicted, target, masked)


def _normalized(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Each patch minus its mean, over its standard deviation (MAE's normalised-pixel target)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()
