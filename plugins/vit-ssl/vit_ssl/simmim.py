"""SimMIM: "A Simple Framework for Masked Image Modeling" (Xie et al., arXiv 2111.09886).

What the paper adds to a ViT: the tokens of a random share of patches (50% here, as vit-pytorch's
README recommends) are swapped for a learned mask token before positions are added, the encoder
runs on the whole sequence, and one linear layer maps each masked token back to its pixels; the
loss is the L1 distance on the masked pixels, averaged over them.

Where vit-pytorch differs: it also divides that average by the number of masked patches (its loss
is ours over ``num_masked``); it feeds the encoder no class token (ours passes the encoder's
prefix tokens through, as the paper's ViT does); and at its latest release it cannot run on its
own README example.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vit_ssl.masking import check_ratio, ids_to_mask, sample_ids
from vit_ssl.protocol import check_masked_encoder, drop_classifier
from vit_ssl.randomness import RankedGenerator


class SimMIM(nn.Module):
    """SimMIM pre-training of ``encoder``; ``forward(images)`` returns the loss.

    Args:
        encoder: a vit-core encoder (``ViT``, ``SimpleViT`` or any implementation of the protocol); its
            classifier, which the loss never reads, is removed (:func:`vit_ssl.protocol.drop_classifier`).
        masking_ratio: share of patches replaced by the mask token, in ``(0, 1)``.
    """

    def __init__(self, *, encoder: nn.Module, masking_ratio: float = 0.5) -> None:
        super().__init__()
        check_masked_encoder(encoder, "SimMIM")
        self.masking_ratio = check_ratio("masking_ratio", masking_ratio)
        drop_classifier(encoder)
        self.encoder = encoder
        self.mask_token = nn.Parameter(torch.randn(encoder.num_features) * 0.02)
        self.to_pixels = nn.Linear(encoder.num_features, encoder.patch_embed.patch_dim)
        self.generator = RankedGenerator()

    def forward(self, img: Tensor, *, masked_ids: Tensor | None = None) -> Tensor:
        """The reconstruction loss of a batch; ``masked_ids`` ``(batch, masked)`` fixes the masked
        patches (default: a fresh random ``masking_ratio`` share per image)."""
        encoder = self.encoder
        patches, grid = encoder.patches(img)
        tokens, _ = encoder.tokenize(img)
        _, num_patches, width = tokens.shape
        masked_ids = sample_ids("masked_ids", masked_ids, self.masking_ratio, tokens, self.generator)
        masked = ids_to_mask(masked_ids, num_patches).unsqueeze(-1)
        tokens = torch.where(masked, self.mask_token.to(tokens.dtype), tokens)
        tokens = encoder.prepend_prefix(encoder.add_positions(tokens, grid))
        encoded = encoder.encode(tokens)[:, encoder.num_prefix_tokens :]
        predicted = self.to_pixels(encoded.gather(1, masked_ids.unsqueeze(-1).expand(-1, -1, width)))
        target = patches.gather(1, masked_ids.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        return (predicted.float() - target.float()).abs().mean()
