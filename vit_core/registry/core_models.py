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
            presets=size_presets("vit", "ViT", ("ti", "s", "b", "l")),
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
