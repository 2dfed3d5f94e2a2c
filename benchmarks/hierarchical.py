"""vit-hierarchical against timm and vit-pytorch (issue 12), measured like every other comparison.

Section ``hierarchical``: PiT, LeViT, Twins-SVT, MaxViT, NesT and MobileViT at the plugin's
timm-size presets (``pit-ti``, ``levit-128s``, ``twins-svt-small``, ``maxvit-tiny``, ``nest-tiny``,
``mobilevit-xs``) against timm's ``pit_ti_224``, ``levit_128s``, ``twins_svt_small``,
``maxvit_tiny_tf_224``, ``nest_tiny`` and ``mobilevit_xs`` (``pretrained=False``) and vit-pytorch;
CvT-13, RegionViT, CrossFormer, ScalableViT and SepViT (vit-pytorch's README sizes, dropout off)
against vit-pytorch alone.  Images are 224x224; MobileViT's are 256x256 (its preset's and timm's
size), ScalableViT's too (the README's size, which its 64-wide first window needs).  Eager
inference and a training step (AdamW), peak training memory in a fresh process.  How rows are
built and checked: :mod:`benchmarks.zoo`.  Without vit-hierarchical the section is empty.

vit-pytorch cannot express two presets: its PiT has one MLP width for every stage (``pit-ti``'s
are 256/512/1024) and its Twins-SVT fixes heads and head width (8 x 64).  Those two get a second
comparison, ours and vit-pytorch at vit-pytorch's configuration (PiT: MLP 512 in every stage;
Twins: the preset without ``heads`` and ``dim_head``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace

from benchmarks import zoo
from benchmarks.cases import CPU_FP32, Setup, available
from benchmarks.zoo import Difference, Spec, ZooCase

SECTION = "hierarchical"
TIMM_CASES = ("PiT-Ti", "LeViT-128S", "Twins-SVT-S", "MaxViT-T", "NesT-T", "MobileViT-XS")
OTHER_CASES = ("CvT-13", "RegionViT-T", "CrossFormer-T", "ScalableViT-S", "SepViT-Lite")
BATCH = 8


def _preset(name: str) -> dict:
    """The plugin's preset configuration (empty when vit-hierarchical is not installed)."""
    if not available("vit_hierarchical"):
        return {}
    from vit_core.registry import get_registry

    return dict(get_registry().info(name).default_config)


def _measured(text: str, params: float, flops: float) -> Difference:
    return Difference(f"{text}; what is compared: parameter count and forward FLOPs per image", params, flops)


DIFFERENCES = {
    "PiT-Ti": _measured("timm's PiT-Ti: the same stages, widths, heads and token grids; 1.6% fewer parameters and "
                        "0.9% fewer FLOPs (layout details not itemised)", 0.02, 0.015),
    "LeViT-128S": _measured("timm's LeViT-128S follows the paper (attention-MLP downsampling blocks); ours follows "
                            "vit-pytorch's LeViT at the preset's widths, depths, heads and key/value widths: timm's "
                            "has 11% more parameters and 21% fewer FLOPs", 0.12, 0.23),
    "Twins-SVT-S": _measured("timm's Twins-SVT-S: the same widths and grids; 4.5% fewer parameters and 1.9% fewer "
                             "FLOPs (layout details not itemised)", 0.05, 0.025),
    "MaxViT-T": _measured("timm's maxvit_tiny_tf_224: the same stages and windows, FLOPs within 0.4%; 14% fewer "
                          "parameters (layout details not itemised)", 0.15, 0.01),
    "NesT-T": _measured("timm's NesT-T: the same FLOPs; 2.4% more parameters (layout details not itemised)",
                        0.03, 0.01),
    "MobileViT-XS": _measured("timm's mobilevit_xs: 2.7% fewer parameters and 12% more FLOPs, most of them in "
                              "attention (layout details not itemised)", 0.03, 0.13),
}  # fmt: skip
"""How timm's models differ from ours, with the tolerances the size check allows (measured at the
full configurations, ``pretrained=False``, rounded up)."""


NEST_REFERENCE = Difference(
    "ours learns a position per token of each block (the paper); vit-pytorch's NesT one per channel", 0.02, 0.01
)


def _case(name: str, ours: str, config: dict, image: int = 224, **kwargs: object) -> ZooCase:
    module = ours.split(":")[0]
    return ZooCase(
        SECTION, name, f"vit_hierarchical.{ours}", config, image, BATCH, f"vit_pytorch.{module}:{ours.split(':')[1]}",
        difference=DIFFERENCES.get(name), **kwargs,
    )  # fmt: skip


def _full() -> list[ZooCase]:
    pit, twins = _preset("pit-ti"), _preset("twins-svt-small")
    twins_reference = {k: v for k, v in twins.items() if k not in ("heads", "dim_head")}
    return [
        _case("PiT-Ti", "pit:PiT", pit, timm="pit_ti_224", reference_config=pit | {"mlp_dim": 512}),
        _case("LeViT-128S", "levit:LeViT", _preset("levit-128s"), timm="levit_128s"),
        _case("Twins-SVT-S", "twins_svt:TwinsSVT", twins, timm="twins_svt_small", reference_config=twins_reference),
        _case("MaxViT-T", "max_vit:MaxViT", _preset("maxvit-tiny") | {"dropout": 0.0}, timm="maxvit_tiny_tf_224"),
        _case("NesT-T", "nest:NesT", _preset("nest-tiny"), timm="nest_tiny", reference_difference=NEST_REFERENCE,
              timm_config={"drop_path_rate": 0.0}),
        _case("MobileViT-XS", "mobile_vit:MobileViT", _preset("mobilevit-xs"), 256, timm="mobilevit_xs"),
        _case("CvT-13", "cvt:CvT", _preset("cvt-13")),
        _case("RegionViT-T", "regionvit:RegionViT", dict(dim=(64, 128, 256, 512), depth=(2, 2, 8, 2), window_size=7)),
        _case("CrossFormer-T", "crossformer:CrossFormer", dict(dim=(64, 128, 256, 512), depth=(2, 2, 8, 2),
              global_window_size=(8, 4, 2, 1), local_window_size=7)),
        _case("ScalableViT-S", "scalable_vit:ScalableViT", dict(dim=64, heads=(2, 4, 8, 16), depth=(2, 2, 20, 2),
              ssa_dim_key=(40, 40, 40, 32), reduction_factor=(8, 4, 2, 1), window_size=(64, 32, None, None)), 256),
        _case("SepViT-Lite", "sep_vit:SepViT", dict(dim=32, dim_head=32, heads=(1, 2, 4, 8), depth=(1, 2, 6, 2),
              window_size=7)),
    ]  # fmt: skip


QUICK_MODELS = {
    "PiT-Ti": "pit", "LeViT-128S": "levit", "Twins-SVT-S": "twins-svt", "MaxViT-T": "maxvit", "NesT-T": "nest",
    "MobileViT-XS": "mobilevit", "CvT-13": "cvt", "RegionViT-T": "regionvit", "CrossFormer-T": "crossformer",
    "ScalableViT-S": "scalable-vit", "SepViT-Lite": "sep-vit",
}  # fmt: skip
"""The registered model whose (tiny) default configuration each case runs at in quick runs."""


QUICK_CONFIGS = {
    "RegionViT-T": (dict(dim=(16, 32, 48, 64), depth=(1, 1, 2, 1), window_size=2, local_patch_size=4), 64),
    "CrossFormer-T": (dict(dim=(32, 32, 64, 64), depth=(1, 1, 2, 1), global_window_size=(2, 2, 2, 1),
                           local_window_size=(2, 2, 2, 1), cross_embed_kernel_sizes=((4, 8), (2, 4), (2, 4), (2, 4))),
                      32),
    "SepViT-Lite": (dict(dim=16, depth=(1, 2), heads=(1, 2), window_size=7, dim_head=32), 56),
}  # fmt: skip
"""Tiny configurations where the registered default is not vit-pytorch's architecture (vit-pytorch's
SepViT attends in 7x7 windows with 32-wide heads whatever it is told; its RegionViT and
CrossFormer fix the head widths the registered defaults change)."""


def _quick() -> list[ZooCase]:
    """Every case at its registered model's tiny default configuration, less the options vit-pytorch's
    class does not take (ours then runs at vit-pytorch's defaults for them)."""
    from vit_core.registry import get_registry

    out = []
    for case in _full():
        info = get_registry().info(QUICK_MODELS[case.name])
        config, image = dict(info.default_config), info.input_shape[-1]
        config, image = QUICK_CONFIGS.get(case.name, (config, image))
        accepted = inspect.signature(Spec(case.reference, {}).constructor()).parameters
        config = {k: v for k, v in config.items() if k in accepted and k != "num_classes"}
        out.append(replace(case, config=config, image=image, batch=2, timm=None, reference_config=None))
    return out


def comparisons(quick: bool, only: tuple[str, ...], setup: Setup = CPU_FP32) -> list[tuple[str, Callable]]:
    """The section's comparisons as ``(name, builder)`` pairs, as ``benchmarks.__main__`` takes them."""
    if SECTION not in only or not available("vit_hierarchical"):
        return []
    return zoo.comparisons(SECTION, _quick() if quick else _full(), setup, memory=not quick)
