"""vit-video's models, registered through the ``vit_core.plugins`` entry point.

Metadata only: this module does not import torch.
"""

from __future__ import annotations

from vit_core.hookspecs import hookimpl
from vit_core.registry import ModelInfo
from vit_core.registry.core_models import SIMPLE_VIT_CITATION, SIMPLE_VIT_PAPER, VIT_CITATION, VIT_PAPER

VIDEO = dict(image_size=16, image_patch_size=8, frames=4, frame_patch_size=2, num_classes=10)
SMALL = dict(VIDEO, dim=64, heads=4, mlp_dim=128, dim_head=16)
INPUT_SHAPE = (3, 4, 16, 16)


@hookimpl
def vit_api_version() -> int:
    return 2  # the hook API version this plugin was written for


def _video_model(name: str, arxiv: str, **fields: object) -> ModelInfo:
    """A video model's entry: ``(3, 4, 16, 16)`` example inputs, its paper at ``arxiv.org/abs/{arxiv}``."""
    return ModelInfo(
        name=name,
        family="video",
        input_kind="video",
        input_shape=INPUT_SHAPE,
        paper_url=f"https://arxiv.org/abs/{arxiv}",
        **fields,
    )


@hookimpl
def vit_register_models() -> list[ModelInfo]:
    return [
        _video_model(
            name="vit-3d",
            target="vit_video.vit_3d:ViT3D",
            paper_title=VIT_PAPER,
            arxiv="2010.11929",
            summary="ViT on spatio-temporal tubes of a video: class token, learned 3-D positions.",
            default_config={**SMALL, "depth": 2},
            citation=VIT_CITATION,
            example=(
                "from vit_video import ViT3D\n"
                "v = ViT3D(image_size=128, frames=16, image_patch_size=16, frame_patch_size=2,\n"
                "          num_classes=1000, dim=1024, depth=6, heads=8, mlp_dim=2048, dropout=0.1,\n"
                "          emb_dropout=0.1)\n"
                "preds = v(torch.randn(4, 3, 16, 128, 128))  # (4, 1000)"
            ),
            importer="vit_core.interop.reference:import_vit",
            reference="vit_pytorch.vit_3d.ViT",
        ),
        _video_model(
            name="simple-vit-3d",
            target="vit_video.simple_vit_3d:SimpleViT3D",
            paper_title=SIMPLE_VIT_PAPER,
            arxiv="2205.01580",
            summary="SimpleViT on video tubes: fixed 3-D sin-cos positions, mean pooling, no dropout.",
            default_config={**SMALL, "depth": 2},
            citation=SIMPLE_VIT_CITATION,
            example=(
                "from vit_video import SimpleViT3D\n"
                "v = SimpleViT3D(image_size=128, frames=16, image_patch_size=16, frame_patch_size=2,\n"
                "                num_classes=1000, dim=1024, depth=6, heads=8, mlp_dim=2048)\n"
                "preds = v(torch.randn(4, 3, 16, 128, 128))  # (4, 1000)"
            ),
            importer="vit_core.interop.reference:import_simple_vit",
            reference="vit_pytorch.simple_vit_3d.SimpleViT",
        ),
        _video_model(
            name="cct-3d",
            target="vit_video.cct_3d:CCT3D",
            paper_title="Escaping the Big Data Paradigm with Compact Transformers",
            arxiv="2104.05704",
            summary="Compact Convolutional Transformer for video: 3-D conv tokenizer and sequence pooling.",
            default_config=dict(
                img_size=16,
                num_frames=4,
                embedding_dim=64,
                n_conv_layers=1,
                kernel_size=3,
                stride=1,
                padding=1,
                pooling_kernel_size=3,
                pooling_stride=2,
                pooling_padding=1,
                num_layers=2,
                num_heads=4,
                mlp_ratio=2.0,
                num_classes=10,
                positional_embedding="learnable",
            ),
            size_arg="img_size",
            channels_arg="n_input_channels",
            frames_arg="num_frames",
            citation=(
                "@article{hassani2021escaping,\n  title={Escaping the Big Data Paradigm with Compact "
                "Transformers},\n  author={Ali Hassani and Steven Walton and Nikhil Shah and Abulikailik "
                "Abuduweili and Jiachen Li and Humphrey Shi},\n  journal={arXiv preprint arXiv:2104.05704},\n"
                "  year={2021}\n}"
            ),
            example=(
                "from vit_video import CCT3D\n"
                "cct = CCT3D(img_size=224, num_frames=8, embedding_dim=384, n_conv_layers=2,\n"
                "            frame_kernel_size=3, kernel_size=7, stride=2, padding=3,\n"
                "            pooling_kernel_size=3, pooling_stride=2, pooling_padding=1, num_layers=14,\n"
                "            num_heads=6, mlp_ratio=3.0, num_classes=1000,\n"
                "            positional_embedding='learnable')\n"
                "pred = cct(torch.randn(1, 3, 8, 224, 224))  # (1, 1000)"
            ),
            importer="vit_core.interop.reference:import_cct",
            reference="vit_pytorch.cct_3d.CCT",
        ),
        _video_model(
            name="vivit",
            target="vit_video.vivit:ViViT",
            paper_title="ViViT: A Video Vision Transformer",
            arxiv="2103.15691",
            summary="Video transformer factorized over space and time: factorized encoder or self-attention.",
            default_config={
                **SMALL,
                "spatial_depth": 1,
                "temporal_depth": 1,
                "variant": "factorized_encoder",
            },
            citation=(
                "@inproceedings{arnab2021vivit,\n  title={ViViT: A Video Vision Transformer},\n  "
                "author={Anurag Arnab and Mostafa Dehghani and Georg Heigold and Chen Sun and "
                "Mario Lu{\\v{c}}i{\\'c} and Cordelia Schmid},\n  booktitle={ICCV},\n  year={2021}\n}"
            ),
            example=(
                "from vit_video import ViViT\n"
                "v = ViViT(image_size=128, frames=16, image_patch_size=16, frame_patch_size=2,\n"
                "          num_classes=1000, dim=1024, spatial_depth=6, temporal_depth=6, heads=8,\n"
                "          mlp_dim=2048,\n"
                "          variant='factorized_encoder')  # or 'factorized_self_attention'\n"
                "preds = v(torch.randn(4, 3, 16, 128, 128))  # (4, 1000)"
            ),
            importer="vit_video.weights:import_vivit",
            reference="vit_pytorch.vivit.ViViT",
        ),
    ]
