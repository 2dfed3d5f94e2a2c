"""What each trainer needs of its encoder: vit-core's encoder protocol plus a few sizes.

The trainers compose the protocol's steps (``patches``, ``tokenize``, ``add_positions``,
``prepend_prefix``, ``encode``, ``num_prefix_tokens``) and read the sizes their heads are built
with: ``num_features`` (token width), ``grid`` (the patch grid of the size the encoder was built
for) and ``patch_embed`` (``patch_dim``, ``patch_size``, ``embed_patches``).  An encoder missing one
gets a TypeError naming what is missing.

A trainer's loss never reads its encoder's classifier, so every trainer removes it
(:func:`drop_classifier`): under ``DistributedDataParallel`` a parameter that gets no gradient stops
training at the second step, and ``find_unused_parameters`` would cost a graph traversal every step.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from vit_core.models.patch_model import ENCODER_PROTOCOL, check_encoder

SIZES = ("num_features", "grid", "patch_embed")
MASKED_MODELLING = (*ENCODER_PROTOCOL, *SIZES)
"""What MAE, SimMIM, MPP and MP3 need."""


def check_masked_encoder(encoder: object, user: str, needs: Sequence[str] = MASKED_MODELLING) -> None:
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"{user} needs an nn.Module encoder, got {type(encoder).__name__}")
    check_encoder(encoder, needs, user=user)
    patch_embed = encoder.patch_embed
    missing = [name for name in ("patch_dim", "patch_size", "embed_patches") if not hasattr(patch_embed, name)]
    if missing:
        raise TypeError(
            f"{user} needs encoder.patch_embed to expose patch_dim, patch_size and embed_patches; "
            f"{type(patch_embed).__name__} lacks {', '.join(missing)}"
        )


def drop_classifier(encoder: nn.Module) -> None:
    """Remove ``encoder``'s classification head (``reset_classifier(0)``, vit-core's model interface): the
    trainers' losses read features, never logits.  Give the pre-trained encoder a head for fine-tuning
    with ``encoder.reset_classifier(num_classes)``.  An encoder without the interface is left as it is."""
    if getattr(encoder, "head", None) is not None and callable(getattr(encoder, "reset_classifier", None)):
        encoder.reset_classifier(0)
