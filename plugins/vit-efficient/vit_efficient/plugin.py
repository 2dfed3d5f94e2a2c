"""vit-efficient's models and backends, registered through the ``vit_core.plugins`` entry point.

Metadata only: this module does not import torch.
"""

from __future__ import annotations

from vit_core.hookspecs import HOOK_API_VERSION, hookimpl
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


@hookimpl
def vit_api_version() -> int:
    return HOOK_API_VERSION


@hookimpl
def vit_register_models() -> list[ModelInfo]:
    return [
        ModelInfo(
            name="ats-vit",
            target="vit_efficient.ats:ATSViT",
            family="efficient",
            paper_title="Adaptive Token Sampler for Efficient Vision Transformers",
            paper_url="https://arxiv.org/abs/2111.15667",
            summary="ViT that keeps at most K_i patch tokens after layer i, sampled by class attention x value norm.",
            input_kind="image",
            default_config={**SMALL, "max_tokens_per_depth": (8, 4)},
            input_shape=(3, 32, 32),
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
        ModelInfo(
            name="patch-merger-vit",
            target="vit_efficient.patch_merger:PatchMergerViT",
            family="efficient",
            paper_title="Learning to Merge Tokens in Vision Transformers",
            paper_url="https://arxiv.org/abs/2202.12015",
            summary="ViT whose tokens are merged into M learned-query averages mid-way (PatchMerger).",
            input_kind="image",
            default_config={**SMALL, "patch_merge_layer": 1, "patch_merge_num_tokens": 4},
            input_shape=(3, 32, 32),
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
        ModelInfo(
            name="nystrom",
            kind="backend",
            target="vit_efficient.backends:nystromformer",
            family="efficient",
            paper_title="Nystromformer: A Nystrom-Based Algorithm for Approximating Self-Attention",
            paper_url="https://arxiv.org/abs/2102.03902",
            summary="nystrom_attention.Nystromformer: landmark attention, linear in tokens (needs nystrom-attention).",
            input_kind="tokens",
            default_config={**TRUNK, "num_landmarks": 8},
            input_shape=(TOKENS, TRUNK["dim"]),
            plugs_into=HOST,
            citation=NYSTROM_CITATION,
            example=(
                "from vit_core import ViT, create_model\n"
                "trunk = create_model('nystrom', dim=512, depth=12, heads=8, num_landmarks=256)\n"
                "v = ViT(image_size=2048, patch_size=32, num_classes=1000, dim=512, transformer=trunk)\n"
                "preds = v(torch.randn(1, 3, 2048, 2048))  # (1, 1000)"
            ),
        ),
        ModelInfo(
            name="x-transformers",
            kind="backend",
            target="vit_efficient.backends:x_transformers_encoder",
            family="efficient",
            paper_title="Attention Is All You Need",
            paper_url="https://arxiv.org/abs/1706.03762",
            summary="x_transformers.Encoder: dense attention with optional improvements (needs x-transformers).",
            input_kind="tokens",
            default_config={**TRUNK, "ff_glu": True, "residual_attn": True},
            input_shape=(TOKENS, TRUNK["dim"]),
            plugs_into=HOST,
            citation=TRANSFORMER_CITATION,
            example=(
                "from vit_core import ViT, create_model\n"
                "trunk = create_model('x-transformers', dim=512, depth=12, heads=8, ff_glu=True, residual_attn=True)\n"
                "v = ViT(image_size=224, patch_size=16, num_classes=1000, dim=512, transformer=trunk)\n"
                "preds = v(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
        ),
    ]
