"""timm's ``VisionTransformer`` family -> :class:`vit_core.ViT`: architecture names, ``model_args`` and tensors.

timm's layout is also the common one here: Hugging Face checkpoints are renamed into it first
(:mod:`vit_core.interop.pretrained.hf`), then converted by :func:`convert_state`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vit_core.interop.pretrained.files import PretrainedFormatError
from vit_core.interop.saving import check_state
from vit_core.layers.positional import resample_grid

TIMM_SIZES: dict[str, tuple[int, int, int, float]] = {
    "tiny": (192, 12, 3, 4.0),
    "small": (384, 12, 6, 4.0),
    "base": (768, 12, 12, 4.0),
    "large": (1024, 24, 16, 4.0),
    "huge": (1280, 32, 16, 4.0),
    "so400m": (1152, 27, 16, 4304 / 1152),
}
"""``embed_dim, depth, num_heads, mlp_ratio`` of timm's size names."""

ARCH = re.compile(
    r"(?P<family>vit|deit3|deit)_(?P<size>tiny|small|base|large|huge|giant|so400m)_(?P<distilled>distilled_)?"
    r"patch(?P<patch>\d+)(?:_reg(?P<reg>\d+))?(?:_(?P<kind>clip_quickgelu|clip|siglip_gap|siglip|dinov2))?"
    r"(?:_(?P<img>\d+))?"
)
"""The timm architecture names this module maps (``vit_base_patch16_224``, ``deit_small_distilled_patch16_224``,
``vit_small_patch14_reg4_dinov2``, ``vit_base_patch16_clip_quickgelu_224``, ``vit_base_patch16_siglip_224``, ...);
a pretrained tag after a dot (``.augreg_in21k``) is ignored."""

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
INCEPTION = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
CLIP = dict(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))

TRAINING_ARGS = frozenset(
    {"drop_rate", "pos_drop_rate", "patch_drop_rate", "proj_drop_rate", "attn_drop_rate", "drop_path_rate"}
)
"""timm ``model_args`` that only matter while training (dropout, stochastic depth): accepted and not used."""

GLOBAL_POOLS = {"token": "cls", "avg": "avg", "map": "map"}
ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_tanh", "quick_gelu": "quick_gelu"}


def arch_args(arch: str) -> dict[str, Any]:
    """timm's constructor arguments (its vocabulary) of the architecture ``arch``; ``ValueError`` if unknown."""
    base = arch.split(".", 1)[0]
    match = ARCH.fullmatch(base)
    if match is None or (match["size"] == "giant" and match["kind"] != "dinov2"):
        raise ValueError(
            f"arch={arch!r} is not a timm architecture vit_core maps; known: vit_<size>_patch<P>_<img> "
            "(augreg, MAE), deit[3]_<size>[_distilled]_patch16_<img>, vit_<size>_patch14[_reg4]_dinov2, "
            "vit_<size>_patch<P>_clip[_quickgelu]_<img>, vit_<size>_patch<P>_siglip[_gap]_<img>, with <size> in "
            f"{', '.join(TIMM_SIZES)} (giant for DINOv2)"
        )
    kind = match["kind"]
    if match["size"] == "giant":
        args: dict[str, Any] = dict(embed_dim=1536, depth=40, num_heads=24, mlp_ratio=2.66667 * 2, swiglu=True)
    else:
        dim, depth, heads, ratio = TIMM_SIZES[match["size"]]
        args = dict(embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=ratio)
    args.update(patch_size=int(match["patch"]), img_size=int(match["img"] or (518 if kind == "dinov2" else 224)))
    args.update(qkv_bias=True, eps=1e-6, num_classes=1000)
    if match["family"] == "deit3":
        args.update(init_values=1e-6, no_embed_class=True)
    if match["distilled"]:
        args["distilled"] = True
    if kind == "dinov2":
        args.update(init_values=1e-5)
    if match["reg"]:
        args.update(reg_tokens=int(match["reg"]), no_embed_class=True)
    if kind in ("clip", "clip_quickgelu"):
        args.update(pre_norm=True, eps=1e-5, act_layer="quick_gelu" if kind == "clip_quickgelu" else "gelu")
    if kind in ("siglip", "siglip_gap"):
        args.update(class_token=False, global_pool="map" if kind == "siglip" else "avg")  # timm: exact GELU
        if kind == "siglip_gap":
            args["fc_norm"] = False
    return args


def default_pretrained_cfg(arch: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """timm's preprocessing defaults of ``arch`` (input size, mean, std, interpolation, crop fraction)."""
    base = arch.split(".", 1)[0]
    if "clip" in base:
        norm, crop = CLIP, 1.0
    elif "siglip" in base or (base.startswith("vit_") and "dinov2" not in base):
        norm, crop = INCEPTION, 0.9
    else:
        norm, crop = IMAGENET, 1.0 if "dinov2" in base else 0.875 if base.startswith("deit") else 0.9
    size = args.get("img_size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    channels = args.get("in_chans", 3)
    return dict(input_size=(channels, *size), interpolation="bicubic", crop_pct=crop, **norm, architecture=arch)


def to_vit_config(args: Mapping[str, Any], where: str) -> dict[str, Any]:
    """timm ``VisionTransformer`` arguments -> :class:`vit_core.ViT` arguments (``where`` names them in errors)."""
    known = {
        "embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size", "img_size", "in_chans", "num_classes",
        "qkv_bias", "class_token", "global_pool", "fc_norm", "init_values", "reg_tokens", "no_embed_class",
        "pre_norm", "act_layer", "final_norm", "eps", "distilled", "swiglu", "dynamic_img_size",
    }  # fmt: skip
    unknown = sorted(set(args) - known - TRAINING_ARGS)
    if unknown:
        raise PretrainedFormatError(f"{where}: timm arguments vit_core's ViT cannot express: {', '.join(unknown)}")
    dim, heads = args["embed_dim"], args["num_heads"]
    if dim % heads:
        raise PretrainedFormatError(f"{where}: embed_dim={dim} is not divisible by num_heads={heads}")
    hidden = int(dim * args.get("mlp_ratio", 4.0))
    pool = args.get("global_pool", "token")
    if pool not in GLOBAL_POOLS:
        raise PretrainedFormatError(f"{where}: global_pool={pool!r}; vit_core maps {', '.join(GLOBAL_POOLS)}")
    act = args.get("act_layer", "gelu")
    if args.get("swiglu"):
        act, hidden = "swiglu", hidden // 2
    elif act not in ACTIVATIONS:
        raise PretrainedFormatError(f"{where}: act_layer={act!r}; vit_core maps {', '.join(ACTIVATIONS)}")
    use_fc_norm = pool == "avg" if args.get("fc_norm") is None else bool(args["fc_norm"])
    final_norm = args.get("final_norm", True)
    config = dict(
        image_size=args.get("img_size", 224),
        patch_size=args["patch_size"],
        num_classes=args.get("num_classes", 1000),
        dim=dim,
        depth=args["depth"],
        heads=heads,
        dim_head=dim // heads,
        mlp_dim=hidden,
        channels=args.get("in_chans", 3),
        pool=GLOBAL_POOLS[pool],
        class_token=args.get("class_token", True),
        patch_norm=False,
        patch_bias=not args.get("pre_norm", False),
        qkv_bias=args.get("qkv_bias", True),
        norm_eps=args.get("eps", 1e-6),
        norm_pre=args.get("pre_norm", False),
        final_norm=bool(final_norm and not use_fc_norm),
        fc_norm=bool(final_norm and use_fc_norm),
        layer_scale=args.get("init_values"),
        registers=args.get("reg_tokens", 0),
        activation=act,
        distill_token=bool(args.get("distilled", False)),
        dynamic_img_size=bool(args.get("dynamic_img_size", False)),
    )
    for key in ("image_size", "patch_size"):
        if isinstance(config[key], list):
            config[key] = tuple(config[key])
    return config


BLOCK_RULES = [
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"transformer.layers.\1.attn_norm.\2"),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"transformer.layers.\1.attn.to_qkv.\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"transformer.layers.\1.attn.to_out.\2"),
    (r"blocks\.(\d+)\.ls1\.gamma", r"transformer.layers.\1.attn_scale.gamma"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"transformer.layers.\1.ff_norm.\2"),
    (r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"transformer.layers.\1.ff.\2.\3"),
    (r"blocks\.(\d+)\.ls2\.gamma", r"transformer.layers.\1.ff_scale.gamma"),
    (r"norm\.(weight|bias)", r"transformer.norm.\1"),
    (r"(norm_pre|fc_norm|head|head_dist|patch_embed\.proj)\.(weight|bias)", r"\1.\2"),
    (r"attn_pool\.latent", "attn_pool.latent"),
    (r"attn_pool\.q\.(weight|bias)", r"attn_pool.attn.to_q.\1"),
    (r"attn_pool\.kv\.(weight|bias)", r"attn_pool.attn.to_kv.\1"),
    (r"attn_pool\.proj\.(weight|bias)", r"attn_pool.attn.to_out.\1"),
    (r"attn_pool\.(norm|mlp\.fc1|mlp\.fc2)\.(weight|bias)", r"attn_pool.\1.\2"),
]
"""timm tensor names -> ours (the tokens and positions are converted by :func:`convert_state` itself)."""
_RULES = [(re.compile(p), r) for p, r in BLOCK_RULES]
_BLOCK_RULES = [(pattern, repl) for pattern, repl in _RULES if pattern.pattern.startswith(r"blocks\.")]


def block_key(key: str) -> str | None:
    """A tensor of timm's transformer ``Block`` list (``blocks.3.attn.qkv.weight``) -> its name in a core
    :class:`~vit_core.layers.Transformer` (``transformer.layers.3.attn.to_qkv.weight``); ``None`` for any other
    name.  Plugins converting timm models built on the same blocks (PiT's stages) prefix the result."""
    for pattern, repl in _BLOCK_RULES:
        if pattern.fullmatch(key):
            return pattern.sub(repl, key)
    return None


TOKENS = {"cls_token": "cls_token", "dist_token": "dist_token", "reg_token": "reg_tokens"}


def split_positions(pos: Tensor, num_prefix: int, grid: tuple[int, int] | None, where: str) -> tuple[Tensor, Tensor]:
    """timm's ``pos_embed`` ``(1, [prefix +] h * w, dim)`` -> (prefix positions ``(n, dim)``, table ``(h, w, dim)``).

    Whether the prefix tokens have positions is read from the length (timm's ``no_embed_class`` tables
    have none): a square count of positions has no prefix (two squares never differ by 1 or 2)."""
    pos = pos.reshape(-1, pos.shape[-1])
    length = pos.shape[0]
    if grid is not None and math.prod(grid) in (length, length - num_prefix):
        patches = math.prod(grid)
    elif math.isqrt(length) ** 2 == length:
        patches = length
    elif math.isqrt(length - num_prefix) ** 2 == length - num_prefix:
        patches = length - num_prefix
    else:
        raise PretrainedFormatError(
            f"{where}: pos_embed holds {length} positions, neither a square grid nor one plus {num_prefix} "
            "prefix position(s)"
        )
    if grid is None or math.prod(grid) != patches:
        side = math.isqrt(patches)
        grid = (side, side)
    prefix = pos[: length - patches]
    if prefix.shape[0] == 0:
        prefix = torch.zeros(num_prefix, pos.shape[-1], dtype=pos.dtype)
    return prefix, pos[length - patches :].reshape(*grid, -1)


def convert_state(
    tensors: Mapping[str, Tensor], model: Any, where: str, *, source_grid: tuple[int, int] | None = None
) -> tuple[dict[str, Tensor], list[str]]:
    """timm-layout ``tensors`` -> a state dict for ``model`` (a :class:`vit_core.ViT`) and the head tensors left out
    because ``model``'s classifier differs (a new ``num_classes``).

    The patch convolution becomes the linear map over ``(p1, p2, channels)`` patch vectors; the positions
    are split into the prefix tokens' and the patch grid's, resampled (bicubic, antialiased, in float32,
    as timm does) when ``model``'s grid differs; a tensor no rule knows is an error naming it."""
    out: dict[str, Tensor] = {}
    num_prefix = int(model.cls_token is not None) + int(model.dist_token is not None)
    for key, value in tensors.items():
        if key in TOKENS:
            out[TOKENS[key]] = value.reshape(-1, value.shape[-1])
        elif key == "pos_embed":
            prefix, table = split_positions(value, num_prefix, source_grid, where)
            names = [n for n, t in (("cls_pos", model.cls_token), ("dist_pos", model.dist_token)) if t is not None]
            if prefix.shape[0] != len(names):
                raise PretrainedFormatError(
                    f"{where}: pos_embed has {prefix.shape[0]} prefix position(s); the model has {len(names)} "
                    f"({', '.join(names) or 'no class token'})"
                )
            out.update(zip(names, prefix.split(1)))
            grid = tuple(model.pos_embed.grid)
            out["pos_embed.weight"] = (
                table if tuple(table.shape[:2]) == grid else resample_grid(table, grid, antialias=True)
            )
        elif key == "patch_embed.proj.weight" and value.ndim == 4:
            out[key] = value.permute(0, 2, 3, 1).reshape(value.shape[0], -1)
        else:
            for pattern, repl in _RULES:
                if pattern.fullmatch(key):
                    out[pattern.sub(repl, key)] = value
                    break
            else:
                raise PretrainedFormatError(f"{where}: tensor {key!r} {tuple(value.shape)} fits no timm ViT layout")
    dropped = []
    expected = model.state_dict()
    for name in ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias"):
        if name in out and (name not in expected or expected[name].shape != out[name].shape):
            dropped.append(f"{name} {tuple(out.pop(name).shape)}")
    return out, dropped


def load_converted(model: nn.Module, state: dict[str, Tensor], where: str, dropped: list[str]) -> nn.Module:
    """Load a converted timm ``state`` into ``model`` (strictly; shapes checked first, naming the tensor) and
    return it, cast to the checkpoint's floating dtype.  The classifier (``head``, ``head_dist``) the state
    lacks (``dropped``: the checkpoint's, of another class count) is ``model``'s new one, with a warning."""
    expected = model.state_dict()
    new_head = [k for k in expected if k.startswith(("head.", "head_dist.")) and k not in state]
    for key in new_head:
        state[key] = expected[key]
    check_state(where, model, state)
    dtypes = {t.dtype for k, t in state.items() if t.is_floating_point() and k not in new_head}
    if len(dtypes) == 1:
        model = model.to(dtypes.pop())
    model.load_state_dict(state, strict=True)
    if new_head:
        warnings.warn(
            f"{where}: a new {model.num_classes}-class head ({', '.join(new_head)}) is initialised at random"
            + (f"; the checkpoint's {', '.join(dropped)} is not used" if dropped else ""),
            stacklevel=4,
        )
    return model
