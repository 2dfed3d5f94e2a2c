"""vit-hierarchical's models, registered through the ``vit_core.plugins`` entry point.

Metadata only: this module does not import torch.  Each model has a small default configuration
(builds in well under a second) and, where timm has the same architecture, a paper-size preset
named after timm's model (``pit-ti``, ``levit-128s``, ``twins-svt-small``, ``maxvit-tiny``,
``nest-tiny``, ``mobilevit-xs``), which the benchmarks use.
"""

from __future__ import annotations

from typing import Any

from vit_core.hookspecs import hookimpl
from vit_core.registry import ModelInfo, Preset

API_VERSION = 2
IMAGENET = (3, 224, 224)


def _cite(key: str, title: str, authors: str, arxiv: str, year: int) -> str:
    return (
        f"@article{{{key},\n  title={{{title}}},\n  author={{{authors}}},\n"
        f"  journal={{arXiv preprint arXiv:{arxiv}}},\n  year={{{year}}}\n}}"
    )


def _info(
    name: str,
    cls: str,
    module: str,
    *,
    title: str,
    arxiv: str,
    citation: str,
    summary: str,
    config: dict[str, Any],
    input_shape: tuple[int, ...],
    example: str,
    reference: str,
    presets: dict[str, Preset] | None = None,
    channels_arg: str = "channels",
    reference_config: dict[str, Any] | None = None,
) -> ModelInfo:
    return ModelInfo(
        name=name,
        target=f"vit_hierarchical.{module}:{cls}",
        family="hierarchical",
        paper_title=title,
        paper_url=f"https://arxiv.org/abs/{arxiv}",
        summary=summary,
        input_kind="image",
        default_config=config,
        input_shape=input_shape,
        presets=presets or {},
        citation=citation,
        example=example,
        importer=f"vit_hierarchical.weights:import_{module}",
        reference=reference,
        reference_config=reference_config or {},
        channels_arg=channels_arg,
    )


@hookimpl
def vit_api_version() -> int:
    return API_VERSION


@hookimpl
def vit_register_models() -> list[ModelInfo]:
    return [
        _info(
            "pit",
            "PiT",
            "pit",
            title="Rethinking Spatial Dimensions of Vision Transformers",
            arxiv="2103.16302",
            citation=_cite(
                "heo2021rethinking",
                "Rethinking Spatial Dimensions of Vision Transformers",
                "Byeongho Heo and Sangdoo Yun and Dongyoon Han and Sanghyuk Chun and Junsuk Choe and Seong Joon Oh",
                "2103.16302",
                2021,
            ),
            summary="ViT whose token map shrinks and widens between stages through depth-wise convolutions.",
            config=dict(
                image_size=32, patch_size=4, num_classes=10, dim=32, depth=(1, 1), heads=2, mlp_dim=64, dim_head=16
            ),
            input_shape=(3, 32, 32),
            example=(
                "from vit_hierarchical import PiT\n"
                "v = PiT(image_size=224, patch_size=14, dim=256, num_classes=1000, depth=(3, 3, 3),\n"
                "        heads=16, mlp_dim=2048, dropout=0.1, emb_dropout=0.1)\n"
                "preds = v(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
            reference="vit_pytorch.pit.PiT",
            presets={
                "pit-ti": Preset(
                    dict(
                        image_size=224,
                        patch_size=16,
                        num_classes=1000,
                        dim=64,
                        depth=(2, 6, 4),
                        heads=(2, 4, 8),
                        dim_head=32,
                        mlp_dim=(256, 512, 1024),
                    ),
                    input_shape=IMAGENET,
                    summary="PiT-Ti (timm's pit_ti_224 architecture) on 224x224 images.",
                )
            },
        ),
        _info(
            "levit",
            "LeViT",
            "levit",
            title="LeViT: a Vision Transformer in ConvNet's Clothing for Faster Inference",
            arxiv="2104.01136",
            citation=_cite(
                "graham2021levit",
                "LeViT: a Vision Transformer in ConvNet's Clothing for Faster Inference",
                "Benjamin Graham and Alaaeldin El-Nouby and Hugo Touvron and Pierre Stock and Armand Joulin "
                "and Herv{\\'e} J{\\'e}gou and Matthijs Douze",
                "2104.01136",
                2021,
            ),
            summary="Convolutional stem, BatchNorm-ed attention with offset biases, shrinking attention stages.",
            config=dict(
                image_size=64,
                num_classes=10,
                stages=2,
                dim=(32, 48),
                depth=1,
                heads=(2, 3),
                mlp_mult=2,
                dim_key=8,
                dim_value=16,
            ),
            input_shape=(3, 64, 64),
            example=(
                "from vit_hierarchical import LeViT\n"
                "levit = LeViT(image_size=224, num_classes=1000, stages=3, dim=(256, 384, 512), depth=4,\n"
                "              heads=(4, 6, 8), mlp_mult=2, dropout=0.1)\n"
                "preds = levit(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
            reference="vit_pytorch.levit.LeViT",
            presets={
                "levit-128s": Preset(
                    dict(
                        image_size=224,
                        num_classes=1000,
                        stages=3,
                        dim=(128, 256, 384),
                        depth=(2, 3, 4),
                        heads=(4, 6, 8),
                        mlp_mult=2,
                        dim_key=16,
                        dim_value=32,
                    ),
                    input_shape=IMAGENET,
                    summary="LeViT-128S (timm's levit_128s sizes) on 224x224 images.",
                )
            },
        ),
        _info(
            "cvt",
            "CvT",
            "cvt",
            title="CvT: Introducing Convolutions to Vision Transformers",
            arxiv="2103.15808",
            citation=_cite(
                "wu2021cvt",
                "CvT: Introducing Convolutions to Vision Transformers",
                "Haiping Wu and Bin Xiao and Noel Codella and Mengchen Liu and Xiyang Dai and Lu Yuan and Lei Zhang",
                "2103.15808",
                2021,
            ),
            summary="Convolutional token embeddings per stage and depth-wise convolutional q/k/v projections.",
            config=dict(
                num_classes=10,
                s1_emb_dim=16,
                s1_depth=1,
                s2_emb_dim=32,
                s2_heads=2,
                s2_depth=1,
                s3_emb_dim=48,
                s3_heads=2,
                s3_depth=1,
                dim_head=16,
            ),
            input_shape=(3, 32, 32),
            example=(
                "from vit_hierarchical import CvT\n"
                "v = CvT(num_classes=1000, s1_emb_dim=64, s1_emb_kernel=7, s1_emb_stride=4, s1_proj_kernel=3,\n"
                "        s1_kv_proj_stride=2, s1_heads=1, s1_depth=1, s1_mlp_mult=4, s2_emb_dim=192,\n"
                "        s2_heads=3, s2_depth=2, s3_emb_dim=384, s3_heads=4, s3_depth=10)\n"
                "pred = v(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
            reference="vit_pytorch.cvt.CvT",
            reference_config=dict(dim_head=64),
            presets={
                "cvt-13": Preset(
                    dict(num_classes=1000), input_shape=IMAGENET, summary="CvT-13 (the constructor's defaults)."
                )
            },
        ),
        _info(
            "twins-svt",
            "TwinsSVT",
            "twins_svt",
            title="Twins: Revisiting the Design of Spatial Attention in Vision Transformers",
            arxiv="2104.13840",
            citation=_cite(
                "chu2021twins",
                "Twins: Revisiting the Design of Spatial Attention in Vision Transformers",
                "Xiangxiang Chu and Zhi Tian and Yuqing Wang and Bo Zhang and Haibing Ren and Xiaolin Wei and "
                "Huaxia Xia and Chunhua Shen",
                "2104.13840",
                2021,
            ),
            summary="Locally-grouped and global sub-sampled attention alternating, positions from a PEG.",
            config=dict(
                num_classes=10,
                **{f"s{i}_{k}": v for i in (1, 2, 3, 4) for k, v in (("local_patch_size", 2), ("global_k", 2))},
                s1_emb_dim=16,
                s2_emb_dim=16,
                s3_emb_dim=32,
                s4_emb_dim=32,
                s1_depth=0,
                s2_depth=0,
                s3_depth=1,
                s4_depth=0,
                heads=2,
                dim_head=8,
            ),
            input_shape=(3, 64, 64),
            example=(
                "from vit_hierarchical import TwinsSVT\n"
                "model = TwinsSVT(num_classes=1000, s1_emb_dim=64, s1_patch_size=4, s1_local_patch_size=7,\n"
                "                 s1_global_k=7, s1_depth=1, s2_emb_dim=128, s3_emb_dim=256, s3_depth=5,\n"
                "                 s4_emb_dim=512, s4_depth=4, peg_kernel_size=3, dropout=0.0)\n"
                "pred = model(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
            reference="vit_pytorch.twins_svt.TwinsSVT",
            reference_config=dict(heads=8, dim_head=64, mlp_mult=4),
            presets={
                "twins-svt-small": Preset(
                    dict(
                        num_classes=1000,
                        s1_emb_dim=64,
                        s2_emb_dim=128,
                        s3_emb_dim=256,
                        s4_emb_dim=512,
                        s1_global_k=8,
                        s2_global_k=4,
                        s3_global_k=2,
                        s4_global_k=1,
                        s1_depth=0,
                        s2_depth=0,
                        s3_depth=4,
                        s4_depth=3,
                        heads=(2, 4, 8, 16),
                        dim_head=32,
                    ),
                    input_shape=IMAGENET,
                    summary="Twins-SVT-S (timm's twins_svt_small sizes) on 224x224 images.",
                )
            },
        ),
        _info(
            "regionvit",
            "RegionViT",
            "regionvit",
            title="RegionViT: Regional-to-Local Attention for Vision Transformers",
            arxiv="2106.02689",
            citation=_cite(
                "chen2021regionvit",
                "RegionViT: Regional-to-Local Attention for Vision Transformers",
                "Chun-Fu Chen and Rameswar Panda and Quanfu Fan",
                "2106.02689",
                2021,
            ),
            summary="Regional tokens attend globally, then each region's local tokens with their regional token.",
            config=dict(
                dim=(16, 32, 48, 64),
                depth=(1, 1, 1, 2),
                window_size=2,
                local_patch_size=2,
                num_classes=10,
                heads=2,
                dim_head=8,
            ),
            input_shape=(3, 32, 32),
            example=(
                "from vit_hierarchical import RegionViT\n"
                "model = RegionViT(dim=(64, 128, 256, 512), depth=(2, 2, 8, 2), window_size=7,\n"
                "                  num_classes=1000, tokenize_local_3_conv=False, use_peg=False)\n"
                "pred = model(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
            reference="vit_pytorch.regionvit.RegionViT",
            reference_config=dict(heads=4, dim_head=32),
        ),
        _info(
            "crossformer",
            "CrossFormer",
            "crossformer",
            title="CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention",
            arxiv="2108.00154",
            citation=_cite(
                "wang2021crossformer",
                "CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention",
                "Wenxiao Wang and Lu Yao and Long Chen and Binbin Lin and Deng Cai and Xiaofei He and Wei Liu",
                "2108.00154",
                2021,
            ),
            summary="Cross-scale embeddings, short- and long-distance group attention, dynamic position bias.",
            config=dict(
                dim=(16, 16, 32, 32),
                depth=1,
                global_window_size=2,
                local_window_size=2,
                cross_embed_kernel_sizes=((4, 8), (2, 4), (2, 4), (2, 4)),
                num_classes=10,
                dim_head=8,
            ),
            input_shape=(3, 64, 64),
            example=(
                "from vit_hierarchical import CrossFormer\n"
                "model = CrossFormer(num_classes=1000, dim=(64, 128, 256, 512), depth=(2, 2, 8, 2),\n"
                "                    global_window_size=(8, 4, 2, 1), local_window_size=7)\n"
                "pred = model(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
            reference="vit_pytorch.crossformer.CrossFormer",
            reference_config=dict(dim_head=32),
        ),
        _info(
            "scalable-vit",
            "ScalableViT",
            "scalable_vit",
            title="ScalableViT: Rethinking the Context-oriented Generalization of Vision Transformer",
            arxiv="2203.10790",
            citation=_cite(
                "yang2022scalablevit",
                "ScalableViT: Rethinking the Context-oriented Generalization of Vision Transformer",
                "Rui Yang and Hailong Ma and Jie Wu and Yansong Tang and Xuefeng Xiao and Min Zheng and Xiu Li",
                "2203.10790",
                2022,
            ),
            summary="Scalable self-attention (reduced keys/values), windowed attention with a local interaction conv.",
            config=dict(
                num_classes=10,
                dim=16,
                depth=(1, 1),
                heads=(1, 2),
                reduction_factor=(2, 1),
                window_size=(4, None),
                ssa_dim_key=8,
                ssa_dim_value=8,
                iwsa_dim_key=8,
                iwsa_dim_value=8,
            ),
            input_shape=(3, 32, 32),
            example=(
                "from vit_hierarchical import ScalableViT\n"
                "model = ScalableViT(num_classes=1000, dim=64, heads=(2, 4, 8, 16), depth=(2, 2, 20, 2),\n"
                "                    ssa_dim_key=(40, 40, 40, 32), reduction_factor=(8, 4, 2, 1),\n"
                "                    window_size=(64, 32, None, None), dropout=0.1)\n"
                "preds = model(torch.randn(1, 3, 256, 256))  # (1, 1000)"
            ),
            reference="vit_pytorch.scalable_vit.ScalableViT",
        ),
        _info(
            "sep-vit",
            "SepViT",
            "sep_vit",
            title="SepViT: Separable Vision Transformer",
            arxiv="2203.15380",
            citation=_cite(
                "li2022sepvit",
                "SepViT: Separable Vision Transformer",
                "Wei Li and Xing Wang and Xin Xia and Jie Wu and Xuefeng Xiao and Min Zheng and Shiping Wen",
                "2203.15380",
                2022,
            ),
            summary="Depth-wise separable attention: within windows with a window token, then between windows.",
            config=dict(num_classes=10, dim=16, depth=(1, 1), heads=(1, 2), window_size=2, dim_head=8),
            input_shape=(3, 32, 32),
            example=(
                "from vit_hierarchical import SepViT\n"
                "v = SepViT(num_classes=1000, dim=32, dim_head=32, heads=(1, 2, 4, 8), depth=(1, 2, 6, 2),\n"
                "           window_size=7, dropout=0.1)\n"
                "preds = v(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
            reference="vit_pytorch.sep_vit.SepViT",
            reference_config=dict(window_size=7, dim_head=32),
        ),
        _info(
            "maxvit",
            "MaxViT",
            "max_vit",
            title="MaxViT: Multi-Axis Vision Transformer",
            arxiv="2204.01697",
            citation=_cite(
                "tu2022maxvit",
                "MaxViT: Multi-Axis Vision Transformer",
                "Zhengzhong Tu and Hossein Talebi and Han Zhang and Feng Yang and Peyman Milanfar and Alan Bovik "
                "and Yinxiao Li",
                "2204.01697",
                2022,
            ),
            summary="MBConv, then block (local window) and grid (sparse global) attention in every block.",
            config=dict(num_classes=10, dim=16, depth=(1, 1), dim_head=8, dim_conv_stem=8, window_size=2, dropout=0.0),
            input_shape=(3, 32, 32),
            example=(
                "from vit_hierarchical import MaxViT\n"
                "v = MaxViT(num_classes=1000, dim_conv_stem=64, dim=96, dim_head=32, depth=(2, 2, 5, 2),\n"
                "           window_size=7, mbconv_expansion_rate=4, mbconv_shrinkage_rate=0.25, dropout=0.1)\n"
                "preds = v(torch.randn(2, 3, 224, 224))  # (2, 1000)"
            ),
            reference="vit_pytorch.max_vit.MaxViT",
            presets={
                "maxvit-tiny": Preset(
                    dict(num_classes=1000, dim_conv_stem=64, dim=64, dim_head=32, depth=(2, 2, 5, 2), window_size=7),
                    input_shape=IMAGENET,
                    summary="MaxViT-T (timm's maxvit_tiny_tf_224 sizes) on 224x224 images.",
                )
            },
        ),
        _info(
            "nest",
            "NesT",
            "nest",
            title="Nested Hierarchical Transformer: Towards Accurate, Data-Efficient and Interpretable Visual "
            "Understanding",
            arxiv="2105.12723",
            citation=_cite(
                "zhang2021nested",
                "Nested Hierarchical Transformer: Towards Accurate, Data-Efficient and Interpretable Visual "
                "Understanding",
                'Zizhao Zhang and Han Zhang and Long Zhao and Ting Chen and Sercan {\\"O}. Ar{\\i}k and Tomas Pfister',
                "2105.12723",
                2021,
            ),
            summary="Attention within non-overlapping blocks, aggregated bottom-up (conv, max-pool) between levels.",
            config=dict(
                image_size=32, patch_size=4, num_classes=10, dim=16, heads=2, num_hierarchies=2, block_repeats=1
            ),
            input_shape=(3, 32, 32),
            example=(
                "from vit_hierarchical import NesT\n"
                "nest = NesT(image_size=224, patch_size=4, dim=96, heads=3, num_hierarchies=3,\n"
                "            block_repeats=(2, 2, 8), num_classes=1000)\n"
                "pred = nest(torch.randn(1, 3, 224, 224))  # (1, 1000)"
            ),
            reference="vit_pytorch.nest.NesT",
            reference_config=dict(dim_head=None),
            presets={
                "nest-tiny": Preset(
                    dict(
                        image_size=224,
                        patch_size=4,
                        dim=96,
                        heads=3,
                        num_hierarchies=3,
                        block_repeats=(2, 2, 8),
                        num_classes=1000,
                    ),
                    input_shape=IMAGENET,
                    summary="NesT-T (timm's nest_tiny) on 224x224 images.",
                )
            },
        ),
        _info(
            "mobilevit",
            "MobileViT",
            "mobile_vit",
            title="MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer",
            arxiv="2110.02178",
            citation=_cite(
                "mehta2021mobilevit",
                "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer",
                "Sachin Mehta and Mohammad Rastegari",
                "2110.02178",
                2021,
            ),
            summary="MobileNetV2 blocks and MobileViT blocks: a transformer across patches per in-patch position.",
            config=dict(
                image_size=(64, 64),
                dims=(16, 20, 24),
                channels=(8, 8, 16, 16, 16, 16, 24, 24, 32, 32, 64),
                num_classes=10,
                depths=(1, 1, 1),
            ),
            input_shape=(3, 64, 64),
            example=(
                "from vit_hierarchical import MobileViT\n"
                "mbvit_xs = MobileViT(image_size=(256, 256), dims=[96, 120, 144],\n"
                "                     channels=[16, 32, 48, 48, 64, 64, 80, 80, 96, 96, 384], num_classes=1000)\n"
                "pred = mbvit_xs(torch.randn(1, 3, 256, 256))  # (1, 1000)"
            ),
            reference="vit_pytorch.mobile_vit.MobileViT",
            reference_config=dict(heads=4, dim_head=8),
            channels_arg="in_channels",
            presets={
                "mobilevit-xs": Preset(
                    dict(
                        image_size=(256, 256),
                        dims=(96, 120, 144),
                        channels=(16, 32, 48, 48, 64, 64, 80, 80, 96, 96, 384),
                        num_classes=1000,
                    ),
                    input_shape=(3, 256, 256),
                    summary="MobileViT-XS (timm's mobilevit_xs) on 256x256 images.",
                )
            },
        ),
    ]
