"""timm's PiT (``timm.models.pit``: ``pit_ti_224`` ... ``pit_b_224`` and the distilled ones) -> :class:`PiT`.

Registered as PiT's ``timm_importer`` (``timm_architectures=("pit_*",)``), so ``vit_core.load_pretrained``
reads a timm PiT hub folder or weights file without knowing this plugin.  timm's network is our PiT with
``pool_pointwise=False`` (its pooling is the depth-wise stride-2 convolution alone), ``cls_position=False``
(its class token has no position), ``qkv_bias=True``, ``norm_eps=1e-6`` and, for ``distilled=True``,
``distill_token=True``; the outputs are equal (docs/pretrained.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from vit_core.interop.pretrained import PretrainedFormatError
from vit_core.interop.pretrained.timm import IMAGENET, TRAINING_ARGS, block_key, load_converted
from vit_hierarchical.pit import PiT

PIT_ARCH = re.compile(r"pit_(?P<size>ti|xs|s|b)(?P<distilled>_distilled)?_224")
"""The timm PiT architecture names (``pit_s_224``, ``pit_b_distilled_224``)."""

PIT_SIZES: dict[str, dict[str, Any]] = {
    "ti": dict(patch_size=16, stride=8, base_dims=(32, 32, 32), depth=(2, 6, 4), heads=(2, 4, 8)),
    "xs": dict(patch_size=16, stride=8, base_dims=(48, 48, 48), depth=(2, 6, 4), heads=(2, 4, 8)),
    "s": dict(patch_size=16, stride=8, base_dims=(48, 48, 48), depth=(2, 6, 4), heads=(3, 6, 12)),
    "b": dict(patch_size=14, stride=7, base_dims=(64, 64, 64), depth=(3, 6, 4), heads=(4, 8, 16)),
}
"""timm's constructor arguments of each PiT size."""

KNOWN_ARGS = frozenset(
    {"img_size", "patch_size", "stride", "stem_type", "base_dims", "depth", "heads", "mlp_ratio"}
    | {"num_classes", "in_chans", "global_pool", "distilled"}
)
OVERRIDES = ("num_classes", "image_size", "dropout", "emb_dropout", "dynamic_img_size")

RULES = [
    (re.compile(r"patch_embed\.conv\.(weight|bias)"), r"patch_embed.\1"),
    (re.compile(r"transformers\.(\d+)\.pool\.conv\.(weight|bias)"), r"stages.\1.pool.depthwise.\2"),
    (re.compile(r"transformers\.(\d+)\.pool\.fc\.(weight|bias)"), r"stages.\1.pool.cls.\2"),
    (re.compile(r"norm\.(weight|bias)"), r"fc_norm.\1"),
    (re.compile(r"(head|head_dist)\.(weight|bias)"), r"\1.\2"),
]
"""timm PiT tensor names -> ours, besides the blocks, tokens and positions."""
STAGE_BLOCK = re.compile(r"transformers\.(\d+)\.(blocks\..*)")
ORIGINAL_POOLS = re.compile(r"pools\.(\d+)\.")
"""The original (NAVER) checkpoints' pooling names, ``pools.0.`` for timm's ``transformers.1.pool.``."""


def timm_pit_args(arch: str, model_args: Mapping[str, Any]) -> dict[str, Any]:
    """timm's constructor arguments of the PiT ``arch`` with ``model_args`` over them; ``ValueError`` if unknown."""
    match = PIT_ARCH.fullmatch(arch)
    if match is None:
        raise ValueError(
            f"arch={arch!r} is not a timm PiT architecture vit_hierarchical maps; known: pit_<size>[_distilled]_224 "
            f"with <size> in {', '.join(PIT_SIZES)}"
        )
    args: dict[str, Any] = dict(PIT_SIZES[match["size"]], img_size=224, mlp_ratio=4, num_classes=1000)
    args.update(distilled=bool(match["distilled"]))
    args.update(model_args)
    return args


def pit_config(args: Mapping[str, Any], where: str) -> dict[str, Any]:
    """timm ``PoolingVisionTransformer`` arguments -> :class:`PiT` arguments (``where`` names them in errors)."""
    unknown = sorted(set(args) - KNOWN_ARGS - TRAINING_ARGS)
    if unknown:
        raise PretrainedFormatError(f"{where}: timm PiT arguments vit_hierarchical's PiT cannot express: {unknown}")
    problems = []
    if args.get("stem_type", "overlap") != "overlap":
        problems.append(f"stem_type={args['stem_type']!r} (only 'overlap')")
    if args.get("global_pool", "token") != "token":
        problems.append(f"global_pool={args['global_pool']!r} (only 'token': the class token's head)")
    patch, stride = args["patch_size"], args["stride"]
    if stride != patch // 2:
        problems.append(f"stride={stride} (PiT's patches overlap at patch_size // 2 = {patch // 2})")
    bases, heads, depth = (tuple(args[k]) for k in ("base_dims", "heads", "depth"))
    if not len(bases) == len(heads) == len(depth):
        problems.append(f"base_dims {bases}, heads {heads} and depth {depth} differ in length")
    elif len(set(bases)) != 1:
        problems.append(f"base_dims={bases} (one head width for every stage)")
    elif any(h != heads[0] * 2**i for i, h in enumerate(heads)):
        problems.append(f"heads={heads} (each stage twice the heads of the one before: the width doubles)")
    if problems:
        raise PretrainedFormatError(f"{where}: a PiT vit_hierarchical cannot hold: {'; '.join(problems)}")
    widths = [bases[0] * h for h in heads]
    return dict(
        image_size=_pair(args["img_size"]),
        patch_size=patch,
        num_classes=args["num_classes"],
        dim=widths[0],
        depth=depth,
        heads=heads,
        mlp_dim=tuple(int(w * args["mlp_ratio"]) for w in widths),
        dim_head=bases[0],
        channels=args.get("in_chans", 3),
        pool_pointwise=False,
        cls_position=False,
        qkv_bias=True,
        norm_eps=1e-6,
        distill_token=bool(args.get("distilled", False)),
    )


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def convert_pit_state(tensors: Mapping[str, Tensor], model: PiT, where: str) -> tuple[dict[str, Tensor], list[str]]:
    """timm PiT ``tensors`` -> a state dict for ``model`` and the head tensors left out (another class count).

    The positions ``(1, c, h, w)`` become the ``(h, w, c)`` table; the class tokens ``(1, n, c)`` the class
    (and distillation) token; a tensor no rule knows is an error naming it."""
    out: dict[str, Tensor] = {}
    for key, value in tensors.items():
        key = ORIGINAL_POOLS.sub(lambda m: f"transformers.{int(m[1]) + 1}.pool.", key)
        stage = STAGE_BLOCK.fullmatch(key)
        block = block_key(stage[2]) if stage else None
        if block is not None:
            out[f"stages.{stage[1]}.{block}"] = value
        elif key == "pos_embed" and value.ndim == 4:
            out["pos_embed.weight"] = value[0].permute(1, 2, 0)
        elif key == "cls_token" and value.ndim == 3 and value.shape[1] == model.num_prefix_tokens:
            out["cls_token"] = value[:, :1]
            if model.dist_token is not None:
                out["dist_token"] = value[:, 1:2]
        else:
            for pattern, repl in RULES:
                if pattern.fullmatch(key):
                    out[pattern.sub(repl, key)] = value
                    break
            else:
                raise PretrainedFormatError(
                    f"{where}: tensor {key!r} {tuple(value.shape)} fits no timm PiT layout of this model "
                    f"({model.num_prefix_tokens} class/distillation token(s))"
                )
    dropped, expected = [], model.state_dict()
    for name in ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias"):
        if name in out and (name not in expected or expected[name].shape != out[name].shape):
            dropped.append(f"{name} {tuple(out.pop(name).shape)}")
    return out, dropped


def load_timm_pit(
    arch: str, model_args: Mapping[str, Any], tensors: Mapping[str, Tensor], where: str, **overrides: Any
) -> PiT:
    """timm's PiT ``arch`` (``model_args`` over its defaults) with the weights ``tensors`` -> our :class:`PiT`
    holding them, with timm's ``pretrained_cfg``.  ``overrides``: ``num_classes`` (a new head),
    ``image_size`` (positions resampled bicubically; timm itself does not resize PiT), ``dropout``,
    ``emb_dropout``, ``dynamic_img_size``."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"load_pretrained({where}): {', '.join(unknown)} cannot be overridden for a timm PiT")
    try:
        args = timm_pit_args(arch, model_args)
    except ValueError as exc:
        raise PretrainedFormatError(f"{where}: {exc}") from None
    config = pit_config(args, where)
    image_size = overrides.pop("image_size", None)
    model = PiT(**{**config, **overrides})
    state, dropped = convert_pit_state(tensors, model, where)
    model = load_converted(model, state, where, dropped)
    if image_size is not None:
        with torch.no_grad():
            model.set_input_size(image_size)
    model.pretrained_cfg = dict(
        input_size=(config["channels"], *config["image_size"]),
        interpolation="bicubic",
        crop_pct=0.9,
        **IMAGENET,
        architecture=arch,
    )
    return model
