"""vit-variants' models, registered through the ``vit_core.plugins`` entry point.

Metadata only: this module does not import torch.
"""

from __future__ import annotations

from vit_core.hookspecs import hookimpl
from vit_core.registry import Component, ModelInfo, Preset

API_VERSION = 2  # the vit_core.HOOK_API_VERSION this plugin was written for

FAMILY = "variants"
IMAGE = dict(image_size=32, patch_size=8, num_classes=10)
SMALL = dict(IMAGE, dim=32, depth=2, heads=2, mlp_dim=64, dim_head=16)
INPUT_SHAPE = (3, 32, 32)
CCT_SMALL = dict(
    img_size=32,
    embedding_dim=32,
    n_conv_layers=1,
    kernel_size=3,
    stride=1,
    padding=1,
    pooling_kernel_size=3,
    pooling_stride=2,
    pooling_padding=1,
    num_layers=2,
    num_heads=2,
    mlp_ratio=2.0,
    num_classes=10,
    positional_embedding="learnable",
)


def _bib(key: str, title: str, authors: str, eprint: str, year: int) -> str:
    return (
        f"@article{{{key},\n  title={{{title}}},\n  author={{{authors}}},\n"
        f"  journal={{arXiv preprint arXiv:{eprint}}},\n  year={{{year}}}\n}}"
    )


CCT_TITLE = "Escaping the Big Data Paradigm with Compact Transformers"
CCT_CITATION = _bib(
    "hassani2021escaping",
    CCT_TITLE,
    "Ali Hassani and Steven Walton and Nikhil Shah and Abulikemu Abuduweili and Jiachen Li and Humphrey Shi",
    "2104.05704",
    2021,
)
CAIT_AUTHORS = (
    "Hugo Touvron and Matthieu Cord and Alexandre Sablayrolles and Gabriel Synnaeve and Herv{\\'e} J{\\'e}gou"
)


def _image_model(
    name: str,
    target: str,
    *,
    paper_title: str,
    arxiv: str,
    summary: str,
    default_config: dict,
    citation: str,
    example: str,
    importer: str,
    reference: str,
    presets: dict[str, Preset] | None = None,
    size_arg: str = "image_size",
    channels_arg: str = "channels",
) -> ModelInfo:
    return ModelInfo(
        name=name,
        target=target,
        family=FAMILY,
        paper_title=paper_title,
        paper_url=f"https://arxiv.org/abs/{arxiv}",
        summary=summary,
        input_kind="image",
        default_config=default_config,
        input_shape=INPUT_SHAPE,
        citation=citation,
        example=example,
        importer=importer,
        reference=reference,
        presets=presets or {},
        size_arg=size_arg,
        channels_arg=channels_arg,
    )


MEMORY_TITLE = "Fine-tuning Image Transformers using Learnable Memory"
MEMORY_CITATION = _bib(
    "sandler2022fine",
    MEMORY_TITLE,
    "Mark Sandler and Andrey Zhmoginov and Max Vladymyrov and Andrew Jackson",
    "2203.15243",
    2022,
)
"""The learnable-memory paper (arXiv 2203.15243), cited by the backbone and by the adapter."""


CCT_SIZES = {
    2: dict(num_layers=2, num_heads=2, mlp_ratio=1, embedding_dim=128),
    4: dict(num_layers=4, num_heads=2, mlp_ratio=1, embedding_dim=128),
    6: dict(num_layers=6, num_heads=4, mlp_ratio=2, embedding_dim=256),
    7: dict(num_layers=7, num_heads=4, mlp_ratio=2, embedding_dim=256),
    8: dict(num_layers=8, num_heads=4, mlp_ratio=2, embedding_dim=256),
    14: dict(num_layers=14, num_heads=6, mlp_ratio=3, embedding_dim=384),
    16: dict(num_layers=16, num_heads=6, mlp_ratio=3, embedding_dim=384),
}
"""The sizes of vit-pytorch's ``cct_2`` ... ``cct_16`` (and the paper's CCT-L): layers, heads, MLP ratio, width."""


def _cct_preset(layers: int, conv: str, image: int, num_classes: int, summary: str) -> Preset:
    """CCT-``layers``/``k``x``n`` of the paper: kernel ``k``, ``n`` convolutions, on ``image``-sized inputs."""
    kernel, n_conv = (int(v) for v in conv.split("x"))
    tokenizer = dict(kernel_size=kernel, stride=max(1, kernel // 2 - 1), padding=max(1, kernel // 2))
    return Preset(
        config={
            **CCT_SIZES[layers],
            **tokenizer,
            "img_size": image,
            "n_conv_layers": n_conv,
            "num_classes": num_classes,
            "positional_embedding": "learnable",
        },
        input_shape=(3, image, image),
        summary=f"CCT-{layers}/{conv} ({summary}): {CCT_SIZES[layers]['num_layers']} layers, width "
        f"{CCT_SIZES[layers]['embedding_dim']}, as vit_variants.cct_{layers}",
    )


CCT_PRESETS = {
    "cct-2": _cct_preset(2, "3x2", 32, 10, "CIFAR-10"),
    "cct-4": _cct_preset(4, "3x2", 32, 10, "CIFAR-10"),
    "cct-6": _cct_preset(6, "3x2", 32, 10, "CIFAR-10"),
    "cct-7": _cct_preset(7, "3x1", 32, 10, "CIFAR-10"),
    "cct-8": _cct_preset(8, "3x2", 32, 10, "CIFAR-10"),
    "cct-14": _cct_preset(14, "7x2", 224, 1000, "ImageNet"),
    "cct-16": _cct_preset(16, "7x2", 224, 1000, "ImageNet"),
}


@hookimpl
def vit_api_version() -> int:
    return API_VERSION


@hookimpl
def vit_register_models() -> list[ModelInfo]:
    return [
        _image_model(
            "deepvit",
            "vit_variants.deepvit:DeepViT",
            paper_title="DeepViT: Towards Deeper Vision Transformer",
            arxiv="2103.11886",
            summary="ViT with re-attention: each layer mixes its heads' attention maps with a learned matrix.",
            default_config=SMALL,
            citation=_bib(
                "zhou2021deepvit",
                "DeepViT: Towards Deeper Vision Transformer",
                "Daquan Zhou and Bingyi Kang and Xiaojie Jin and Linjie Yang and Xiaochen Lian and Qibin Hou and "
                "Jiashi Feng",
                "2103.11886",
                2021,
            ),
            example=(
                "from vit_variants import DeepViT\n"
                "v = DeepViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=16,\n"
                "            mlp_dim=2048, dropout=0.1, emb_dropout=0.1)\n"
                "preds = v(torch.randn(1, 3, 256, 256))  # (1, 1000)"
            ),
            importer="vit_variants.weights:import_deepvit",
            reference="vit_pytorch.deepvit.DeepViT",
        ),
        _image_model(
            "cait",
            "vit_variants.cait:CaiT",
            paper_title="Going deeper with Image Transformers",
            arxiv="2103.17239",
            summary="LayerScale, talking-heads attention, and class-attention layers after the patch layers.",
            default_config={**SMALL, "cls_depth": 1},
            citation=_bib("touvron2021going", "Going deeper with Image Transformers", CAIT_AUTHORS, "2103.17239", 2021),
            example=(
                "from vit_variants import CaiT\n"
                "v = CaiT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=12, cls_depth=2,\n"
                "         heads=16, mlp_dim=2048, dropout=0.1, emb_dropout=0.1, layer_dropout=0.05)\n"
                "preds = v(torch.randn(1, 3, 256, 256))  # (1, 1000)"
            ),
            importer="vit_variants.weights:import_cait",
            reference="vit_pytorch.cait.CaiT",
        ),
        _image_model(
            "t2t-vit",
            "vit_variants.t2t:T2TViT",
            paper_title="Tokens-to-Token ViT: Training Vision Transformers from Scratch on ImageNet",
            arxiv="2101.11986",
            summary="Tokens from repeated soft splits (unfold) with one-layer transformers between them.",
            default_config=dict(
                image_size=32,
                num_classes=10,
                dim=32,
                depth=2,
                heads=2,
                mlp_dim=64,
                dim_head=16,
                t2t_layers=((3, 2), (3, 2)),
            ),
            citation=_bib(
                "yuan2021tokens",
                "Tokens-to-Token ViT: Training Vision Transformers from Scratch on ImageNet",
                "Li Yuan and Yunpeng Chen and Tao Wang and Weihao Yu and Yujun Shi and Francis EH Tay and "
                "Jiashi Feng and Shuicheng Yan",
                "2101.11986",
                2021,
            ),
            example=(
                "from vit_variants import T2TViT\n"
                "v = T2TViT(dim=512, image_size=224, depth=5, heads=8, mlp_dim=512, num_classes=1000,\n"
                "           t2t_layers=((7, 4), (3, 2), (3, 2)))\n"
                "preds = v(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
            importer="vit_variants.weights:import_t2t",
            reference="vit_pytorch.t2t.T2TViT",
        ),
        _image_model(
            "cct",
            "vit_variants.cct:CCT",
            paper_title=CCT_TITLE,
            arxiv="2104.05704",
            summary="Compact Convolutional Transformer: conv tokenizer, sequence pooling, no class token.",
            default_config=CCT_SMALL,
            citation=CCT_CITATION,
            example=(
                "from vit_variants import CCT\n"
                "cct = CCT(img_size=(224, 448), embedding_dim=384, n_conv_layers=2, kernel_size=7, stride=2,\n"
                "          padding=3, pooling_kernel_size=3, pooling_stride=2, pooling_padding=1,\n"
                "          num_layers=14, num_heads=6, mlp_ratio=3.0, num_classes=1000,\n"
                "          positional_embedding='learnable')\n"
                "pred = cct(torch.randn(1, 3, 224, 448))  # (1, 1000)"
            ),
            importer="vit_core.interop.reference:import_cct",
            reference="vit_pytorch.cct.CCT",
            presets=CCT_PRESETS,
            size_arg="img_size",
            channels_arg="n_input_channels",
        ),
        _image_model(
            "cross-vit",
            "vit_variants.cross_vit:CrossViT",
            paper_title="CrossViT: Cross-Attention Multi-Scale Vision Transformer for Image Classification",
            arxiv="2103.14899",
            summary="Two patch sizes in two branches that exchange information through their class tokens.",
            default_config=dict(
                image_size=32,
                num_classes=10,
                sm_dim=32,
                lg_dim=48,
                sm_patch_size=8,
                lg_patch_size=16,
                sm_enc_depth=1,
                sm_enc_heads=2,
                sm_enc_mlp_dim=64,
                sm_enc_dim_head=16,
                lg_enc_depth=1,
                lg_enc_heads=2,
                lg_enc_mlp_dim=64,
                lg_enc_dim_head=16,
                cross_attn_depth=1,
                cross_attn_heads=2,
                cross_attn_dim_head=16,
                depth=2,
                dropout=0.0,
                emb_dropout=0.0,
            ),
            citation=_bib(
                "chen2021crossvit",
                "CrossViT: Cross-Attention Multi-Scale Vision Transformer for Image Classification",
                "Chun-Fu Chen and Quanfu Fan and Rameswar Panda",
                "2103.14899",
                2021,
            ),
            example=(
                "from vit_variants import CrossViT\n"
                "v = CrossViT(image_size=256, num_classes=1000, depth=4, sm_dim=192, sm_patch_size=16,\n"
                "             sm_enc_depth=2, sm_enc_heads=8, sm_enc_mlp_dim=2048, lg_dim=384,\n"
                "             lg_patch_size=64, lg_enc_depth=3, lg_enc_heads=8, lg_enc_mlp_dim=2048,\n"
                "             cross_attn_depth=2, cross_attn_heads=8, dropout=0.1, emb_dropout=0.1)\n"
                "pred = v(torch.randn(1, 3, 256, 256))  # (1, 1000)"
            ),
            importer="vit_variants.weights:import_cross_vit",
            reference="vit_pytorch.cross_vit.CrossViT",
        ),
        _image_model(
            "xcit",
            "vit_variants.xcit:XCiT",
            paper_title="XCiT: Cross-Covariance Image Transformers",
            arxiv="2106.09681",
            summary="Attention over channels (cross-covariance), local patch interaction, class-attention layers.",
            default_config={**SMALL, "cls_depth": 1},
            citation=_bib(
                "el2021xcit",
                "XCiT: Cross-Covariance Image Transformers",
                "Alaaeldin El-Nouby and Hugo Touvron and Mathilde Caron and Piotr Bojanowski and Matthijs Douze "
                "and Armand Joulin and Ivan Laptev and Natalia Neverova and Gabriel Synnaeve and Jakob Verbeek "
                "and Herv{\\'e} J{\\'e}gou",
                "2106.09681",
                2021,
            ),
            example=(
                "from vit_variants import XCiT\n"
                "v = XCiT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=12, cls_depth=2,\n"
                "         heads=16, mlp_dim=2048, dropout=0.1, emb_dropout=0.1, layer_dropout=0.05,\n"
                "         local_patch_kernel_size=3)\n"
                "preds = v(torch.randn(1, 3, 256, 256))  # (1, 1000)"
            ),
            importer="vit_variants.weights:import_xcit",
            reference="vit_pytorch.xcit.XCiT",
        ),
        _image_model(
            "parallel-vit",
            "vit_variants.parallel_vit:ParallelViT",
            paper_title="Three things everyone should know about Vision Transformers",
            arxiv="2203.09795",
            summary="ViT whose layers run several attention and MLP branches in parallel.",
            default_config={**SMALL, "num_parallel_branches": 2},
            citation=_bib(
                "touvron2022three",
                "Three things everyone should know about Vision Transformers",
                "Hugo Touvron and Matthieu Cord and Alaaeldin El-Nouby and Jakob Verbeek and Herv{\\'e} J{\\'e}gou",
                "2203.09795",
                2022,
            ),
            example=(
                "from vit_variants import ParallelViT\n"
                "v = ParallelViT(image_size=256, patch_size=16, num_classes=1000, dim=1024, depth=6, heads=8,\n"
                "                mlp_dim=2048, num_parallel_branches=2, dropout=0.1, emb_dropout=0.1)\n"
                "preds = v(torch.randn(4, 3, 256, 256))  # (4, 1000)"
            ),
            importer="vit_variants.weights:import_parallel_vit",
            reference="vit_pytorch.parallel_vit.ViT",
        ),
        _image_model(
            "small-dataset-vit",
            "vit_variants.small_dataset:SmallDatasetViT",
            paper_title="Vision Transformer for Small-Size Datasets",
            arxiv="2112.13492",
            summary="Shifted patch tokenization and locality self-attention (learned temperature, no self-attention).",
            default_config=SMALL,
            citation=_bib(
                "lee2021vision",
                "Vision Transformer for Small-Size Datasets",
                "Seung Hoon Lee and Seunghyun Lee and Byung Cheol Song",
                "2112.13492",
                2021,
            ),
            example=(
                "from vit_variants import SmallDatasetViT\n"
                "v = SmallDatasetViT(image_size=256, patch_size=16, num_classes=1000, dim=1024, depth=6,\n"
                "                    heads=16, mlp_dim=2048, dropout=0.1, emb_dropout=0.1)\n"
                "preds = v(torch.randn(4, 3, 256, 256))  # (4, 1000)"
            ),
            importer="vit_variants.weights:import_small_dataset_vit",
            reference="vit_pytorch.vit_for_small_dataset.ViT",
        ),
        _image_model(
            "learnable-memory-vit",
            "vit_variants.learnable_memory:LearnableMemoryViT",
            paper_title=MEMORY_TITLE,
            arxiv="2203.15243",
            summary="ViT whose layers take memory tokens: Adapter fine-tunes tasks on the frozen backbone.",
            default_config=SMALL,
            citation=MEMORY_CITATION,
            example=(
                "from vit_variants import Adapter, LearnableMemoryViT\n"
                "v = LearnableMemoryViT(image_size=256, patch_size=16, num_classes=1000, dim=1024, depth=6,\n"
                "                       heads=8, mlp_dim=2048, dropout=0.1, emb_dropout=0.1)\n"
                "img = torch.randn(4, 3, 256, 256)\n"
                "logits = v(img)  # (4, 1000)\n"
                "adapter = Adapter(vit=v, num_classes=2, num_memories_per_layer=5)\n"
                "logits1 = adapter(img)  # (4, 2): frozen backbone, learnable memories and head"
            ),
            importer="vit_variants.weights:import_learnable_memory_vit",
            reference="vit_pytorch.learnable_memory_vit.ViT",
        ),
        _image_model(
            "learnable-memory-adapter",
            "vit_variants.learnable_memory:Adapter",
            paper_title=MEMORY_TITLE,
            arxiv="2203.15243",
            summary="A task on a frozen LearnableMemoryViT: per-layer memory tokens, a class token and a head.",
            default_config=dict(
                vit=Component("learnable-memory-vit", trained=False), num_memories_per_layer=2, num_classes=10
            ),
            citation=MEMORY_CITATION,
            example=(
                "from vit_variants import Adapter, LearnableMemoryViT\n"
                "v = LearnableMemoryViT(image_size=256, patch_size=16, num_classes=1000, dim=1024, depth=6,\n"
                "                       heads=8, mlp_dim=2048)\n"
                "adapter = Adapter(vit=v, num_classes=2, num_memories_per_layer=5)\n"
                "logits = adapter(torch.randn(4, 3, 256, 256))  # (4, 2): frozen backbone, learnable memories and head"
            ),
            importer="vit_variants.weights:import_adapter",
            reference="vit_pytorch.learnable_memory_vit.Adapter",
        ),
    ]
