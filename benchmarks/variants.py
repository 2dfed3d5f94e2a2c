"""vit-variants against timm and vit-pytorch (issue 11), measured like every other comparison.

Section ``variants``: CaiT, XCiT and CrossViT at the configurations of timm's ``cait_xxs24_224``,
``xcit_tiny_12_p16_224`` and ``crossvit_tiny_240`` (built with ``pretrained=False``) against timm and
vit-pytorch; DeepViT, T2T-ViT, CCT, Parallel ViT, ViT for small datasets and the learnable-memory
ViT against vit-pytorch alone (timm has none of them), at ViT-S/16 sizes (CCT: CCT-14/7x2).  Eager
inference and a training step (AdamW), peak training memory in a fresh process.  How rows are
built and checked: :mod:`benchmarks.zoo`.  Without vit-variants the section is empty.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import zoo
from benchmarks.cases import CPU_FP32, Setup
from benchmarks.zoo import Difference, ZooCase

SECTION = "variants"
TIMM_CASES = ("CaiT-XXS24", "XCiT-T12/16", "CrossViT-Ti")
OTHER_CASES = ("DeepViT-S/16", "T2T-ViT-14", "CCT-14/7x2", "ParallelViT-S/16", "SmallDatasetViT-S/16",
               "LearnableMemoryViT-S/16")  # fmt: skip
BATCH = 8

CAIT = dict(image_size=224, patch_size=16, dim=192, depth=24, cls_depth=2, heads=4, dim_head=48, mlp_dim=768)
XCIT = dict(image_size=224, patch_size=16, dim=192, depth=12, cls_depth=2, heads=4, dim_head=48, mlp_dim=768)
CROSSVIT = dict(
    image_size=240, sm_dim=96, lg_dim=192, sm_patch_size=12, lg_patch_size=16, sm_enc_depth=1, lg_enc_depth=4,
    sm_enc_heads=3, lg_enc_heads=3, sm_enc_dim_head=32, lg_enc_dim_head=64, sm_enc_mlp_dim=384,
    lg_enc_mlp_dim=768, cross_attn_depth=1, cross_attn_heads=3, cross_attn_dim_head=64, depth=3, dropout=0.0,
    emb_dropout=0.0,
)  # fmt: skip
VIT_S16 = dict(image_size=224, patch_size=16, dim=384, depth=12, heads=6, dim_head=64, mlp_dim=1536)
T2T_14 = dict(
    image_size=224, dim=384, depth=14, heads=6, dim_head=64, mlp_dim=1152, t2t_layers=((7, 4), (3, 2), (3, 2))
)
CCT_14 = dict(
    img_size=224, embedding_dim=384, n_conv_layers=2, kernel_size=7, stride=2, padding=3, pooling_kernel_size=3,
    pooling_stride=2, pooling_padding=1, num_layers=14, num_heads=6, mlp_ratio=3.0, positional_embedding="learnable",
    dropout_rate=0.0, attention_dropout=0.0, stochastic_depth_rate=0.0,
)  # fmt: skip

CAIT_DIFFERENCE = Difference(
    "timm's CaiT has biased q/k/v projections and runs its talking-heads mixes as nn.Linear (counted as linear "
    "FLOPs; ours as batched products), so linear and attention FLOPs are compared together",
    params=0.005,
    flops=0.01,
)
XCIT_DIFFERENCE = Difference(
    "timm's XCiT embeds patches with a stem of 3x3 stride-2 convolutions and BatchNorm (ours and vit-pytorch: "
    "one linear patch embedding) and adds Fourier-feature positions",
    params=0.015,
    flops=0.08,
)
CROSSVIT_TIMM = {"img_scale": (1.0, 1.0)}
"""timm's ``crossvit_tiny_240`` resizes the image to 224 for its large-patch branch (196 tokens, 13%
fewer FLOPs); built with ``img_scale=(1.0, 1.0)`` it reads the 240 image as ours and vit-pytorch's
do (225 tokens), so the three do the same work."""
CROSSVIT_DIFFERENCE = Difference(
    "timm's crossvit_tiny_240 at img_scale=(1.0, 1.0) (its preset resizes the image to 224 for the large-patch "
    "branch: 196 tokens, not 225)",
    params=0.02,
    flops=0.02,
)


def _case(name: str, ours: str, config: dict, image: int, reference: str, **kwargs: object) -> ZooCase:
    return ZooCase(SECTION, name, f"vit_variants.{ours}", config, image, BATCH, f"vit_pytorch.{reference}", **kwargs)


FULL = [
    _case("CaiT-XXS24", "cait:CaiT", CAIT, 224, "cait:CaiT", timm="cait_xxs24_224", difference=CAIT_DIFFERENCE),
    _case("XCiT-T12/16", "xcit:XCiT", XCIT, 224, "xcit:XCiT", timm="xcit_tiny_12_p16_224", difference=XCIT_DIFFERENCE),
    _case("CrossViT-Ti", "cross_vit:CrossViT", CROSSVIT, 240, "cross_vit:CrossViT", timm="crossvit_tiny_240",
          difference=CROSSVIT_DIFFERENCE, timm_config=CROSSVIT_TIMM),
    _case("DeepViT-S/16", "deepvit:DeepViT", VIT_S16, 224, "deepvit:DeepViT"),
    _case("T2T-ViT-14", "t2t:T2TViT", T2T_14, 224, "t2t:T2TViT"),
    _case("CCT-14/7x2", "cct:CCT", CCT_14, 224, "cct:CCT"),
    _case("ParallelViT-S/16", "parallel_vit:ParallelViT", VIT_S16 | {"num_parallel_branches": 2}, 224,
          "parallel_vit:ViT"),
    _case("SmallDatasetViT-S/16", "small_dataset:SmallDatasetViT", VIT_S16, 224, "vit_for_small_dataset:ViT"),
    _case("LearnableMemoryViT-S/16", "learnable_memory:LearnableMemoryViT", VIT_S16, 224, "learnable_memory_vit:ViT"),
]  # fmt: skip
"""Every case at its paper (timm) size."""

TINY = dict(image_size=32, patch_size=8, dim=32, depth=1, heads=2, dim_head=16, mlp_dim=64)


def _quick(case: ZooCase) -> ZooCase:
    """``case`` at a tiny size (seconds), with its timm anchor only when the timm model is this size too."""
    tiny = {
        "CaiT-XXS24": TINY | {"cls_depth": 1},
        "XCiT-T12/16": TINY | {"cls_depth": 1},
        "CrossViT-Ti": dict(CROSSVIT, image_size=48, sm_dim=16, lg_dim=32, sm_patch_size=12, lg_patch_size=16,
                            lg_enc_depth=1, sm_enc_mlp_dim=32, lg_enc_mlp_dim=64, sm_enc_dim_head=8,
                            lg_enc_dim_head=16, cross_attn_dim_head=8, depth=1),
        "T2T-ViT-14": dict(TINY, t2t_layers=((3, 2), (3, 2))) | {"image_size": 32, "patch_size": None},
        "CCT-14/7x2": dict(CCT_14, img_size=32, embedding_dim=32, n_conv_layers=1, kernel_size=3, stride=1, padding=1,
                           num_layers=1, num_heads=2, mlp_ratio=2.0),
        "ParallelViT-S/16": TINY | {"num_parallel_branches": 2},
    }.get(case.name, TINY)  # fmt: skip
    tiny = {k: v for k, v in tiny.items() if v is not None}
    image = tiny.get("image_size", tiny.get("img_size"))
    return ZooCase(case.section, case.name, case.ours, tiny, image, 2, case.reference)


QUICK = [_quick(case) for case in FULL]


def comparisons(quick: bool, only: tuple[str, ...], setup: Setup = CPU_FP32) -> list[tuple[str, Callable]]:
    """The section's comparisons as ``(name, builder)`` pairs, as ``benchmarks.__main__`` takes them."""
    if SECTION not in only:
        return []
    return zoo.comparisons(SECTION, QUICK if quick else FULL, setup, memory=not quick)
