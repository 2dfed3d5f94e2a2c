"""Masked patch prediction, the self-supervised task of the ViT paper (Dosovitskiy et al.,
arXiv 2010.11929, section 4.6 and appendix B.1.2).

A share of the patches (``mask_prob``) is picked for prediction; of those, ``replace_prob`` are
replaced by a learned mask patch, ``random_patch_prob`` by another patch of the same image, and
the rest kept (BERT's 80/10/10 scheme with the paper's 50% corruption).  The transformer predicts,
for each picked patch, its mean colour quantised to ``output_channel_bits`` bits per channel: one
of ``2 ** (bits * channels)`` classes (512 for 3-bit RGB), trained with cross-entropy.

vit-pytorch draws "random" and "mask" one after the other (random with probability
``random_patch_prob / (1 - replace_prob)``, then mask over it with ``replace_prob``); the
resulting shares are the same as ours, drawn here from one uniform number per patch.  At its
latest release vit-pytorch's MPP cannot run on its own README example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vit_core.validation import as_tuple, check_positive_int, check_probability
from vit_ssl.masking import check_ids, check_ratio
from vit_ssl.protocol import check_masked_encoder, drop_classifier
from vit_ssl.randomness import RankedGenerator


class MPP(nn.Module):
    """Masked-patch-prediction pre-training of ``transformer`` (a vit-core encoder).

    Args:
        transformer: the encoder (vit-pytorch's name for the argument); its classifier, which the loss
            never reads, is removed (:func:`vit_ssl.protocol.drop_classifier`).
        patch_size, dim: must match the encoder's (checked).
        output_channel_bits: bits per channel of the quantised mean colour.
        channels: image channels (must match the encoder's when it has ``channels``).
        max_pixel_val: the largest pixel value (after un-normalising with ``mean`` / ``std``).
        mask_prob: share of patches picked for prediction, in ``(0, 1)``.
        replace_prob: share of the picked patches replaced by the mask patch.
        random_patch_prob: share of the picked patches replaced by a random patch of the same image.
        mean, std: per-channel normalisation of the inputs, undone before computing the targets.
    """

    def __init__(
        self,
        transformer: nn.Module,
        patch_size: int | Sequence[int],
        dim: int,
        output_channel_bits: int = 3,
        channels: int = 3,
        max_pixel_val: float = 1.0,
        mask_prob: float = 0.15,
        replace_prob: float = 0.5,
        random_patch_prob: float = 0.5,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        check_masked_encoder(transformer, "MPP")
        encoder_patch = tuple(transformer.patch_embed.patch_size)
        if as_tuple("patch_size", patch_size, len(encoder_patch)) != encoder_patch:
            raise ValueError(f"patch_size={patch_size!r} differs from the encoder's patch size {encoder_patch}")
        if dim != transformer.num_features:
            raise ValueError(f"dim={dim!r} differs from the encoder's width num_features={transformer.num_features}")
        check_positive_int("channels", channels)
        if getattr(transformer, "channels", channels) != channels:
            raise ValueError(f"channels={channels} differs from the encoder's channels={transformer.channels}")
        self.bits = check_positive_int("output_channel_bits", output_channel_bits)
        if isinstance(max_pixel_val, bool) or not isinstance(max_pixel_val, (int, float)) or max_pixel_val <= 0:
            raise ValueError(f"max_pixel_val must be a positive float, got {max_pixel_val!r}")
        self.mask_prob = check_ratio("mask_prob", mask_prob)
        self.replace_prob = check_probability("replace_prob", replace_prob, allow_one=True)
        self.random_patch_prob = check_probability("random_patch_prob", random_patch_prob, allow_one=True)
        if self.replace_prob + self.random_patch_prob > 1.0 + 1e-9:
            raise ValueError(
                f"replace_prob + random_patch_prob must be at most 1 (they share the picked patches), got "
                f"{replace_prob} + {random_patch_prob}"
            )
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together")
        for name, value in (("mean", mean), ("std", std)):
            if value is not None and len(value) != channels:
                raise ValueError(f"{name} must have one value per channel ({channels}), got {value!r}")
        self.channels, self.max_pixel_val = channels, float(max_pixel_val)
        self.register_buffer(
            "mean", None if mean is None else torch.tensor(mean, dtype=torch.float32), persistent=False
        )
        self.register_buffer("std", None if std is None else torch.tensor(std, dtype=torch.float32), persistent=False)
        drop_classifier(transformer)
        self.transformer = transformer
        patch_dim = transformer.patch_embed.patch_dim
        self.mask_token = nn.Parameter(torch.randn(patch_dim) * 0.02)
        self.to_bits = nn.Linear(dim, 2 ** (self.bits * channels))
        self.generator = RankedGenerator()

    def targets(self, patches: Tensor) -> Tensor:
        """The class of each patch ``(batch, patches)``: its mean colour per channel, quantised."""
        b, n, _ = patches.shape
        colour = patches.float().view(b, n, -1, self.channels).mean(dim=2)  # channels are fastest in a patch
        if self.mean is not None:
            colour = colour * self.std + self.mean
        levels = 2**self.bits
        boundaries = torch.arange(1, levels, device=patches.device, dtype=torch.float32) * (self.max_pixel_val / levels)
        bins = torch.bucketize(colour.clamp(max=self.max_pixel_val), boundaries)
        place = levels ** torch.arange(self.channels, device=patches.device)
        return (bins * place).sum(dim=-1)

    def forward(self, img: Tensor, *, picked_ids: Tensor | None = None, corruption: Tensor | None = None) -> Tensor:
        """The loss of a batch.  ``picked_ids`` ``(batch, picked)`` fixes the patches to predict and
        ``corruption`` ``(batch, patches)`` the uniform draws that decide mask / random / keep."""
        encoder = self.transformer
        patches, grid = encoder.patches(img)
        b, n, patch_dim = patches.shape
        device = patches.device
        if picked_ids is None:
            picked = math.ceil(self.mask_prob * n)
            picked_ids = self.generator.rand((b, n), device).topk(picked, dim=-1).indices
        else:
            picked_ids = check_ids("picked_ids", picked_ids, b, n).to(device)
        if corruption is None:
            corruption = self.generator.rand((b, n), device)
        elif corruption.shape != (b, n):
            raise ValueError(f"corruption must be (batch, patches)=({b}, {n}), got {tuple(corruption.shape)}")
        chosen = torch.zeros(b, n, dtype=torch.bool, device=device).scatter_(1, picked_ids, True)
        replaced = chosen & (corruption < self.replace_prob)
        randomised = chosen & ~replaced & (corruption < self.replace_prob + self.random_patch_prob)
        donors = patches.gather(1, self.generator.randint(n, (b, n), device).unsqueeze(-1).expand(-1, -1, patch_dim))
        corrupted = torch.where(randomised.unsqueeze(-1), donors, patches)
        corrupted = torch.where(replaced.unsqueeze(-1), self.mask_token.to(patches.dtype), corrupted)
        tokens = encoder.patch_embed.embed_patches(corrupted)
        tokens = encoder.prepend_prefix(encoder.add_positions(tokens, grid))
        encoded = encoder.encode(tokens)[:, encoder.num_prefix_tokens :]
        logits = self.to_bits(encoded.gather(1, picked_ids.unsqueeze(-1).expand(-1, -1, encoded.shape[-1])))
        labels = self.targets(patches).gather(1, picked_ids)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())
