"""The core's own models, registered through the same hooks as any plugin."""

from __future__ import annotations

from typing import Any

from vit_core.hookspecs import HOOK_API_VERSION, hookimpl
from vit_core.registry.schema import ModelInfo, Preset

VIT_PAPER = "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale"
VIT_CITATION = (
    "@inproceedings{dosovitskiy2021an,\n  title={An Image is Worth 16x16 Words: Transformers for "
    "Image Recognition at Scale},\n  author={Alexey Dosovitskiy and Lucas Beyer and Alexander "
    "Kolesnikov and others},\n  booktitle={ICLR},\n  year={2021}\n}"
)
SIMPLE_VIT_PAPER = "Better plain ViT baselines for ImageNet-1k"
SIMPLE_VIT_CITATION = (
    "@article{beyer2022better,\n  title={Better plain ViT baselines for ImageNet-1k},\n  "
    "author={Lucas Beyer and Xiaohua Zhai and Alexander Kolesnikov},\n  "
    "journal={arXiv preprint arXiv:2205.01580},\n  year={2022}\n}"
)
"""Paper metadata plugins reuse for models derived from ViT and SimpleViT."""

SMALL = dict(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128, dim_head=16)
"""The small default configuration of the core models (builds in milliseconds; tests and `vit describe`)."""

SIZES = {
    "ti": dict(dim=192, depth=12, heads=3, mlp_dim=768),
    "s": dict(dim=384, depth=12, heads=6, mlp_dim=1536),
    "b": dict(dim=768, depth=12, heads=12, mlp_dim=3072),
    "l": dict(dim=1024, depth=24, heads=16, mlp_dim=4096),
}
"""The ViT sizes of the papers (and timm): Tiny, Small, Base, Large; 64 dimensions per head."""
SIZE_NAMES = {"ti": "Tiny", "s": "Small", "b": "Base", "l": "Large"}


def size_presets(prefix: str, label: str, sizes: tuple[str, ...]) -> dict[str, Preset]:
    """``{prefix}-{size}-16`` presets: 224x224 images, 16x16 patches, 1000 classes (ImageNet-1k)."""
    return {
        f"{prefix}-{size}-16": Preset(
            dict(image_size=224, patch_size=16, num_classes=1000, **SIZES[size], dim_head=64),
            input_shape=(3, 224, 224),
            summary=f"{label}-{SIZE_NAMES[size]}/16 on 224x224 images, 1000 classes.",
        )
        for size in sizes
    }


TIMM_VIT = dict(patch_norm=False, qkv_bias=True, norm_eps=1e-6)
"""The options that make ``ViT`` hold timm's ``VisionTransformer`` weights (plain patch projection, qkv bias)."""
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
INCEPTION = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
OPENAI_CLIP = dict(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))


def pretrained_preset(
    size: str, patch: int, image: int, summary: str, weights: str, norm: dict, crop_pct: float, num_classes: int = 1000,
    **options: Any,
) -> Preset:  # fmt: skip
    """A preset of ``vit`` that timm / Hugging Face checkpoints load into (``create_model(name, pretrained=PATH)``)."""
    config = dict(image_size=image, patch_size=patch, num_classes=num_classes, **SIZES[size], dim_head=64)
    return Preset(
        {**config, **TIMM_VIT, **options},
        input_shape=(3, image, image),
        summary=summary,
        weights=weights,
        pretrained_cfg=dict(input_size=(3, image, image), interpolation="bicubic", crop_pct=crop_pct, **norm),
    )


PRETRAINED_PRESETS = {
    "vit-b-16-augreg": pretrained_preset(
        "b",
        16,
        224,
        "ViT-B/16 as timm's augreg checkpoints (How to train your ViT, arXiv 2106.10270).",
        "timm vit_base_patch16_224.augreg2_in21k_ft_in1k; Hugging Face google/vit-base-patch16-224",
        INCEPTION,
        0.9,
    ),
    "vit-s-16-augreg": pretrained_preset(
        "s",
        16,
        224,
        "ViT-S/16 as timm's augreg checkpoints.",
        "timm vit_small_patch16_224.augreg_in21k_ft_in1k",
        INCEPTION,
        0.9,
    ),
    "deit-s-16": pretrained_preset(
        "s",
        16,
        224,
        "DeiT-S/16 (arXiv 2012.12877).",
        "timm deit_small_patch16_224.fb_in1k; facebook/deit-small-patch16-224",
        IMAGENET,
        0.875,
    ),
    "deit-s-16-distilled": pretrained_preset(
        "s",
        16,
        224,
        "DeiT-S/16 with its distillation token; logits average both heads.",
        "timm deit_small_distilled_patch16_224.fb_in1k",
        IMAGENET,
        0.875,
        distill_token=True,
    ),
    "dinov2-s-14": pretrained_preset(
        "s",
        14,
        518,
        "DINOv2 ViT-S/14 backbone (arXiv 2304.07193): LayerScale, 518 px positions.",
        "timm vit_small_patch14_dinov2.lvd142m; Hugging Face facebook/dinov2-small",
        IMAGENET,
        1.0,
        num_classes=0,
        layer_scale=1e-5,
    ),
    "dinov2-s-14-reg4": pretrained_preset(
        "s",
        14,
        518,
        "DINOv2 ViT-S/14 with 4 register tokens (arXiv 2309.16588).",
        "timm vit_small_patch14_reg4_dinov2.lvd142m; Hugging Face facebook/dinov2-with-registers-small",
        IMAGENET,
        1.0,
        num_classes=0,
        layer_scale=1e-5,
        registers=4,
    ),
    "clip-b-16": pretrained_preset(
        "b",
        16,
        224,
        "CLIP ViT-B/16 image tower (arXiv 2103.00020): norm_pre, no patch bias, QuickGELU.",
        "timm vit_base_patch16_clip_quickgelu_224.openai (LAION towers: vit_base_patch16_clip_224, activation='gelu')",
        OPENAI_CLIP,
        1.0,
        num_classes=512,
        norm_pre=True,
        patch_bias=False,
        norm_eps=1e-5,
        activation="quick_gelu",
    ),
    "siglip-b-16": pretrained_preset(
        "b",
        16,
        224,
        "SigLIP ViT-B/16 image tower (arXiv 2303.15343): no class token, attention-pooling head.",
        "timm vit_base_patch16_siglip_224.webli",
        INCEPTION,
        0.9,
        num_classes=0,
        class_token=False,
        pool="map",
    ),
}
"""Presets whose weights come from timm or Hugging Face (docs/pretrained.md)."""


@hookimpl
def vit_api_version() -> int:
    return HOOK_API_VERSION


def core_entry(module: str, class_name: str, reference: str, **fields: Any) -> ModelInfo:
    """The entry of ``vit_core.models.<module>:<class_name>``: an image model of the ``vit`` family with the
    :data:`SMALL` configuration (``fields`` change any), imported from vit-pytorch's ``reference`` class by
    ``vit_core.interop.reference:import_<module>``."""
    defaults: dict[str, Any] = dict(
        name=module.replace("_", "-"),
        target=f"vit_core.models.{module}:{class_name}",
        family="vit",
        input_kind="image",
        default_config=SMALL,
        input_shape=(3, 32, 32),
        importer=f"vit_core.interop.reference:import_{module}",
        reference=reference,
    )
    return ModelInfo(**{**defaults, **fields})


@hookimpl
def vit_register_models() -> list[ModelInfo]:
    return [
        core_entry(
            "vit",
            "ViT",
            "vit_pytorch.vit.ViT",
            paper_title=VIT_PAPER,
            paper_url="https://arxiv.org/abs/2010.11929",
            summary="The original vision transformer: patch tokens, class token, learned positions.",
            presets={**size_presets("vit", "ViT", ("ti", "s", "b", "l")), **PRETRAINED_PRESETS},
            citation=VIT_CITATION,
            example=(
                "from vit_core import ViT\n"
                "v = ViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=16,\n"
                "        mlp_dim=2048, dropout=0.1, emb_dropout=0.1)\n"
                "preds = v(torch.randn(1, 3, 256, 256))  # (1, 1000)"
            ),
        ),
        core_entry(
            "simple_vit",
            "SimpleViT",
            "vit_pytorch.simple_vit.SimpleViT",
            paper_title=SIMPLE_VIT_PAPER,
            paper_url="https://arxiv.org/abs/2205.01580",
            summary="ViT with 2-D sin-cos positions, global average pooling and no dropout.",
            presets=size_presets("simple-vit", "SimpleViT", ("s", "b")),
            citation=SIMPLE_VIT_CITATION,
            example=(
                "from vit_core import SimpleViT\n"
                "v = SimpleViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=16,\n"
                "              mlp_dim=2048)\n"
                "preds = v(torch.randn(1, 3, 256, 256))  # (1, 1000)"
            ),
        ),
        core_entry(
            "navit",
            "NaViT",
            "vit_pytorch.na_vit.NaViT",
            paper_title="Patch n' Pack: NaViT, a Vision Transformer for any Aspect Ratio and Resolution",
            paper_url="https://arxiv.org/abs/2307.06304",
            summary="Images of any size packed into one sequence; factorized positions, token dropout, QK-norm.",
            input_kind="image-list",
            default_config={**SMALL, "token_dropout_prob": 0.1},
            citation=(
                "@inproceedings{dehghani2023patch,\n  title={Patch n' Pack: NaViT, a Vision Transformer for any "
                "Aspect Ratio and Resolution},\n  author={Mostafa Dehghani and Basil Mustafa and Josip Djolonga "
                "and others},\n  booktitle={NeurIPS},\n  year={2023}\n}"
            ),
            example=(
                "from vit_core import NaViT\n"
                "v = NaViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=16,\n"
                "          mlp_dim=2048, token_dropout_prob=0.1)\n"
                "preds = v([[torch.randn(3, 256, 256), torch.randn(3, 128, 128)], [torch.randn(3, 64, 256)]])\n"
                "# (3, 1000)"
            ),
        ),
    ]
