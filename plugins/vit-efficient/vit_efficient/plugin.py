"""vit-efficient's models and backends, registered through the ``vit_core.plugins`` entry point.

Metadata only: this module does not import torch.
"""

from __future__ import annotations

from typing import Any

from vit_core.hookspecs import hookimpl
from vit_core.registry import Component, ModelInfo

SMALL = dict(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128, dim_head=16)
"""The core ViT's small configuration: 16 patch tokens and a class token of width 64."""
TRUNK = dict(dim=64, depth=2, heads=4, dim_head=16)
"""Backends' small configuration, the width of the core ViT's (what ``plugs_into`` builds)."""
TOKENS = 17
HOST = Component("vit", {"dim": 64})

NYSTROM_CITATION = (
    '@inproceedings{xiong2021nystromformer,\n  title={Nystr{\\"o}mformer: A Nystr{\\"o}m-Based Algorithm for '
    "Approximating Self-Attention},\n  author={Yunyang Xiong and Zhanpeng Zeng and Rudrasis Chakraborty and "
    "Mingxing Tan and Glenn Fung and Yin Li and Vikas Singh},\n  booktitle={AAAI},\n  year={2021}\n}"
)
TRANSFORMER_CITATION = (
    "@inproceedings{vaswani2017attention,\n  title={Attention is All you Need},\n  author={Ashish Vaswani and "
    "Noam Shazeer and Niki Parmar and Jakob Uszkoreit and Llion Jones and Aidan N. Gomez and Lukasz Kaiser and "
    "Illia Polosukhin},\n  booktitle={NeurIPS},\n  year={2017}\n}"
)


def entry(name: str, target: str, *, paper: tuple[str, str], **fields: Any) -> ModelInfo:
    """The registry entry of ``vit_efficient.{target}``, after the paper ``(title, arXiv id)``: a backend
    (``kind="backend"``) takes tokens of the width of :data:`TRUNK` and plugs into :data:`HOST`; a model
    takes the images of :data:`SMALL`.  ``fields``: the other :class:`~vit_core.registry.ModelInfo` fields."""
    if fields.get("kind") == "backend":
        kind_fields = dict(input_kind="tokens", input_shape=(TOKENS, TRUNK["dim"]), plugs_into=HOST)
    else:
        kind_fields = dict(input_kind="image", input_shape=(3, 32, 32))
    return ModelInfo(
        name=name,
        target=f"vit_efficient.{target}",
        family="efficient",
        paper_title=paper[0],
        paper_url=f"https://arxiv.org/abs/{paper[1]}",
        **kind_fields,
        **fields,
    )


@hookimpl
def vit_api_version() -> int:
    return 2  # the hook API version this plugin was written for


@hookimpl
def vit_register_models() -> list[ModelInfo]:
    return [
        entry(
            "ats-vit",
            "ats:ATSViT",
            paper=("Adaptive Token Sampler for Efficient Vision Transformers", "2111.15667"),
            summary="ViT that keeps at most K_i patch tokens after layer i, sampled by class attention x value norm.",
            default_config={**SMALL, "max_tokens_per_depth": (8, 4)},
            citation=(
                "@inproceedings{fayyaz2022adaptive,\n  title={Adaptive Token Sampler for Efficient Vision "
                "Transformers},\n  author={Mohsen Fayyaz and Soroush Abbasi Koohpayegani and Farnoush Rezaei Jafari "
                "and Sunando Sengupta and Hamid Reza Vaezi Joze and Eric Sommerlade and Hamed Pirsiavash and "
                "Juergen Gall},\n  booktitle={ECCV},\n  year={2022}\n}"
            ),
            example=(
                "from vit_efficient import ATSViT\n"
                "v = ATSViT(image_size=256, patch_size=16, num_classes=1000, dim=1024, depth=6,\n"
                "           max_tokens_per_depth=(256, 128, 64, 32, 16, 8), heads=16, mlp_dim=2048,\n"
                "           dropout=0.1, emb_dropout=0.1)\n"
                "preds, token_ids = v(torch.randn(4, 3, 256, 256), return_sampled_token_ids=True)\n"
                "# (4, 1000), (4, <=8) with -1 for padding"
            ),
            importer="vit_core.interop.reference:import_vit",
            reference="vit_pytorch.ats_vit.ViT",
        ),
        entry(
            "patch-merger-vit",
            "patch_merger:PatchMergerViT",
            paper=("Learning to Merge Tokens in Vision Transformers", "2202.12015"),
            summary="ViT whose tokens are merged into M learned-query averages mid-way (PatchMerger).",
            default_config={**SMALL, "patch_merge_layer": 1, "patch_merge_num_tokens": 4},
            citation=(
                "@article{renggli2022learning,\n  title={Learning to Merge Tokens in Vision Transformers},\n  "
                "author={Cedric Renggli and Andr{\\'e} Susano Pinto and Neil Houlsby and Basil Mustafa and "
                "Joan Puigcerver and Carlos Riquelme},\n  journal={arXiv preprint arXiv:2202.12015},\n  year={2022}\n}"
            ),
            example=(
                "from vit_efficient import PatchMergerViT\n"
                "v = PatchMergerViT(image_size=256, patch_size=16, num_classes=1000, dim=1024, depth=12,\n"
                "                   heads=8, patch_merge_layer=6, patch_merge_num_tokens=8, mlp_dim=2048)\n"
                "preds = v(torch.randn(4, 3, 256, 256))  # (4, 1000)"
            ),
            importer="vit_efficient.weights:import_patch_merger_vit",
            reference="vit_pytorch.vit_with_patch_merger.ViT",
        ),
        entry(
            "nystrom",
            "backends:nystromformer",
            kind="backend",
            paper=("Nystromformer: A Nystrom-Based Algorithm for Approximating Self-Attention", "2102.03902"),
            summary="nystrom_attention.Nystromformer: landmark attention, linear in tokens (needs nystrom-attention).",
            default_config={**TRUNK, "num_landmarks": 8},
            citation=NYSTROM_CITATION,
            example=(
                "from vit_core import ViT, create_model\n"
                "trunk = create_model('nystrom', dim=512, depth=12, heads=8, num_landmarks=256)\n"
                "v = ViT(image_size=2048, patch_size=32, num_classes=1000, dim=512, transformer=trunk)\n"
                "preds = v(torch.randn(1, 3, 2048, 2048))  # (1, 1000)"
            ),
        ),
        entry(
            "x-transformers",
            "backends:x_transformers_encoder",
            kind="backend",
            paper=("Attention Is All You Need", "1706.03762"),
            summary="x_transformers.Encoder: dense attention with optional improvements (needs x-transformers).",
            default_config={**TRUNK, "ff_glu": True, "residual_attn": True},
            citation=TRANSFORMER_CITATION,
            example=(
                "from vit_core import ViT, create_model\n"
                "trunk = create_model('x-transformers', dim=512, depth=12, heads=8, ff_glu=True, residual_attn=True)\n"
                "v = ViT(image_size=224, patch_size=16, num_classes=1000, dim=512, transformer=trunk)\n"
                "preds = v(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
        ),
    ]
