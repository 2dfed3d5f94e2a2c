"""vit-ssl's trainers (and the distillable ViT), registered through the ``vit_core.plugins`` entry point.

Metadata only: this module does not import torch.  Every trainer's ``default_config`` names the
encoder it wraps by default as a :class:`~vit_core.registry.Component` (vit-core's small ``vit``).
"""

from __future__ import annotations

from vit_core.hookspecs import hookimpl
from vit_core.registry import Component, ModelInfo
from vit_core.registry.core_models import SMALL, VIT_CITATION, VIT_PAPER

IMAGE = (3, 32, 32)
SMALL_HEAD = dict(projection_hidden_size=32, projection_layers=3, num_classes_K=64, bottleneck_dim=16)


def _bib(key: str, title: str, authors: str, venue: str, year: int) -> str:
    fields = f"  title={{{title}}},\n  author={{{authors}}},\n  journal={{{venue}}},\n  year={{{year}}}"
    return f"@article{{{key},\n{fields}\n}}"


MAE_TITLE = "Masked Autoencoders Are Scalable Vision Learners"
SIMMIM_TITLE = "SimMIM: A Simple Framework for Masked Image Modeling"
MP3_TITLE = "Position Prediction as an Effective Pretraining Strategy"
DINO_TITLE = "Emerging Properties in Self-Supervised Vision Transformers"
ESVIT_TITLE = "Efficient Self-supervised Vision Transformers for Representation Learning"
DEIT_TITLE = "Training data-efficient image transformers & distillation through attention"
DEIT_CITATION = _bib(
    "touvron2020training",
    DEIT_TITLE,
    "Hugo Touvron and Matthieu Cord and Matthijs Douze and Francisco Massa and Alexandre Sablayrolles "
    "and Herv{\\'e} J{\\'e}gou",
    "arXiv preprint arXiv:2012.12877",
    2020,
)


@hookimpl
def vit_api_version() -> int:
    return 2  # the hook API version this plugin was written for


def _trainer(name: str, **fields: object) -> ModelInfo:
    return ModelInfo(name=name, family="ssl", kind="trainer", input_kind="image", input_shape=IMAGE, **fields)


@hookimpl
def vit_register_models() -> list[ModelInfo]:
    return [
        _trainer(
            "mae",
            target="vit_ssl.mae:MAE",
            paper_title=MAE_TITLE,
            paper_url="https://arxiv.org/abs/2111.06377",
            summary="Masked autoencoder: encode 25% of the patches, a small decoder predicts the pixels of the rest.",
            default_config=dict(encoder=Component("vit"), decoder_dim=32, decoder_depth=1, decoder_heads=2),
            citation=_bib(
                "he2021masked",
                MAE_TITLE,
                "Kaiming He and Xinlei Chen and Saining Xie and Yanghao Li and Piotr Doll{\\'a}r and Ross Girshick",
                "arXiv preprint arXiv:2111.06377",
                2021,
            ),
            example=(
                "from vit_core import ViT\nfrom vit_ssl import MAE\n"
                "v = ViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=8, mlp_dim=2048)\n"
                "mae = MAE(encoder=v, masking_ratio=0.75, decoder_dim=512, decoder_depth=6)\n"
                "loss = mae(torch.randn(8, 3, 256, 256)); loss.backward()"
            ),
            reference="vit_pytorch.mae.MAE",
        ),
        _trainer(
            "simmim",
            target="vit_ssl.simmim:SimMIM",
            paper_title=SIMMIM_TITLE,
            paper_url="https://arxiv.org/abs/2111.09886",
            summary="Masked image modelling: mask tokens in, one linear layer predicts the masked pixels (L1).",
            default_config=dict(encoder=Component("vit"), masking_ratio=0.5),
            citation=_bib(
                "xie2021simmim",
                SIMMIM_TITLE,
                "Zhenda Xie and Zheng Zhang and Yue Cao and Yutong Lin and Jianmin Bao and Zhuliang Yao and Qi Dai "
                "and Han Hu",
                "arXiv preprint arXiv:2111.09886",
                2021,
            ),
            example=(
                "from vit_core import ViT\nfrom vit_ssl import SimMIM\n"
                "v = ViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=8, mlp_dim=2048)\n"
                "mim = SimMIM(encoder=v, masking_ratio=0.5)\n"
                "loss = mim(torch.randn(8, 3, 256, 256)); loss.backward()"
            ),
            reference="vit_pytorch.simmim.SimMIM",
        ),
        _trainer(
            "mpp",
            target="vit_ssl.mpp:MPP",
            paper_title=VIT_PAPER,
            paper_url="https://arxiv.org/abs/2010.11929",
            summary="Masked patch prediction (the ViT paper's): predict the 3-bit mean colour of corrupted patches.",
            default_config=dict(
                transformer=Component("vit"), patch_size=SMALL["patch_size"], dim=SMALL["dim"], mask_prob=0.15
            ),
            citation=VIT_CITATION,
            example=(
                "from vit_core import ViT\nfrom vit_ssl import MPP\n"
                "model = ViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=8,\n"
                "            mlp_dim=2048, dropout=0.1, emb_dropout=0.1)\n"
                "mpp = MPP(transformer=model, patch_size=32, dim=1024, mask_prob=0.15, random_patch_prob=0.30,\n"
                "          replace_prob=0.50)\n"
                "loss = mpp(torch.rand(20, 3, 256, 256)); loss.backward()"
            ),
            reference="vit_pytorch.mpp.MPP",
        ),
        _trainer(
            "mp3",
            target="vit_ssl.mp3:MP3",
            paper_title=MP3_TITLE,
            paper_url="https://arxiv.org/abs/2207.07611",
            summary="Masked position prediction: no positions in, each patch classifies its own position.",
            default_config=dict(vit=Component("vit"), masking_ratio=0.75),
            citation=_bib(
                "zhai2022position",
                MP3_TITLE,
                "Shuangfei Zhai and Navdeep Jaitly and Jason Ramapuram and Dan Busbridge and Tatiana Likhomanenko "
                "and Joseph Yitan Cheng and Walter Talbott and Chen Huang and Hanlin Goh and Joshua Susskind",
                "arXiv preprint arXiv:2207.07611",
                2022,
            ),
            example=(
                "from vit_core import ViT\nfrom vit_ssl import MP3\n"
                "v = ViT(num_classes=1000, image_size=256, patch_size=8, dim=1024, depth=6, heads=8, mlp_dim=2048,\n"
                "        dropout=0.1)\n"
                "mp3 = MP3(vit=v, masking_ratio=0.75)\n"
                "loss = mp3(torch.randn(8, 3, 256, 256)); loss.backward()"
            ),
            reference="vit_pytorch.mp3.MP3",
        ),
        _trainer(
            "dino",
            target="vit_ssl.dino:Dino",
            paper_title=DINO_TITLE,
            paper_url="https://arxiv.org/abs/2104.14294",
            summary="Self-distillation with an EMA teacher, multi-crop views, centring and sharpening.",
            default_config=dict(net=Component("vit"), image_size=32, **SMALL_HEAD),
            citation=_bib(
                "caron2021emerging",
                DINO_TITLE,
                "Mathilde Caron and Hugo Touvron and Ishan Misra and Herv{\\'e} J{\\'e}gou and Julien Mairal and "
                "Piotr Bojanowski and Armand Joulin",
                "arXiv preprint arXiv:2104.14294",
                2021,
            ),
            example=(
                "from vit_core import ViT\nfrom vit_ssl import Dino\n"
                "model = ViT(image_size=256, patch_size=32, num_classes=0, dim=1024, depth=6, heads=8, mlp_dim=2048)\n"
                "learner = Dino(model, image_size=256, projection_hidden_size=256, projection_layers=4,\n"
                "               num_classes_K=65336, student_temp=0.9, teacher_temp=0.04)\n"
                "loss = learner(torch.rand(20, 3, 256, 256)); loss.backward()\n"
                "# after opt.step(): learner.update_moving_average()"
            ),
            reference="vit_pytorch.dino.Dino",
        ),
        _trainer(
            "esvit",
            target="vit_ssl.esvit:EsViTTrainer",
            paper_title=ESVIT_TITLE,
            paper_url="https://arxiv.org/abs/2106.09785",
            summary="DINO plus a region-matching loss between views, for multi-stage (or any token) backbones.",
            default_config=dict(net=Component("vit"), image_size=32, **SMALL_HEAD),
            citation=_bib(
                "li2021efficient",
                ESVIT_TITLE,
                "Chunyuan Li and Jianwei Yang and Pengchuan Zhang and Mei Gao and Bin Xiao and Xiyang Dai and "
                "Lu Yuan and Jianfeng Gao",
                "arXiv preprint arXiv:2106.09785",
                2021,
            ),
            example=(
                "from vit_hierarchical import CvT  # any backbone; hidden_layer names its un-pooled output\n"
                "from vit_ssl import EsViTTrainer\n"
                "learner = EsViTTrainer(cvt, image_size=256, hidden_layer='layers', projection_hidden_size=256,\n"
                "                       projection_layers=4, num_classes_K=65336, student_temp=0.9)\n"
                "loss = learner(torch.rand(8, 3, 256, 256)); loss.backward()\n"
                "# after opt.step(): learner.update_moving_average()"
            ),
            reference="vit_pytorch.es_vit.EsViTTrainer",
        ),
        ModelInfo(
            name="distillable-vit",
            target="vit_ssl.distill:DistillableViT",
            family="ssl",
            paper_title=DEIT_TITLE,
            paper_url="https://arxiv.org/abs/2012.12877",
            summary="ViT with DeiT's distillation token and head; forward(x) is the plain ViT, to_vit() gives it.",
            input_kind="image",
            default_config=SMALL,
            input_shape=IMAGE,
            citation=DEIT_CITATION,
            example=(
                "from vit_ssl import DistillableViT\n"
                "v = DistillableViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=8,\n"
                "                   mlp_dim=2048, dropout=0.1, emb_dropout=0.1)\n"
                "logits, distill_logits = v(torch.randn(2, 3, 256, 256), distill=True)\n"
                "vit = v.to_vit()  # a plain vit_core.ViT"
            ),
            reference="vit_pytorch.distill.DistillableViT",
        ),
        _trainer(
            "distill",
            target="vit_ssl.distill:DistillWrapper",
            paper_title=DEIT_TITLE,
            paper_url="https://arxiv.org/abs/2012.12877",
            summary="DeiT distillation: the distillation token learns from a frozen teacher (soft or hard).",
            default_config=dict(
                student=Component("distillable-vit"),
                teacher=Component("vit", trained=False),
                temperature=3.0,
                alpha=0.5,
            ),
            takes_labels=True,
            citation=DEIT_CITATION,
            example=(
                "from vit_ssl import DistillableViT, DistillWrapper\n"
                "v = DistillableViT(image_size=256, patch_size=32, num_classes=1000, dim=1024, depth=6, heads=8,\n"
                "                   mlp_dim=2048, dropout=0.1, emb_dropout=0.1)\n"
                "distiller = DistillWrapper(student=v, teacher=teacher, temperature=3, alpha=0.5, hard=False)\n"
                "loss = distiller(torch.randn(2, 3, 256, 256), torch.randint(0, 1000, (2,))); loss.backward()\n"
                "v = v.to_vit()"
            ),
            reference="vit_pytorch.distill.DistillWrapper",
        ),
    ]
