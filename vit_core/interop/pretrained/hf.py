"""Hugging Face transformers checkpoints -> timm's layout (then :func:`vit_core.interop.pretrained.timm.convert_state`).

Read: ``ViTModel`` / ``ViTForImageClassification`` (``model_type: vit``), ``Dinov2Model`` (``dinov2``),
``Dinov2WithRegistersModel`` (``dinov2_with_registers``) and ``ViTMAEModel``'s encoder (``vit_mae``), in the
names ``save_pretrained`` writes (``encoder.layer.0.attention.attention.query.weight``) and in transformers
5's module names (``layers.0.attention.q_proj.weight``).  Separate q / k / v projections are fused into one.
Left out on purpose: ``ViTModel``'s pooler (a tanh layer on the class token, not part of the classifier)
and the masked-image-modeling ``mask_token`` (used only in pretraining).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from vit_core.interop.pretrained.files import PretrainedFormatError

MODEL_TYPES = ("vit", "dinov2", "dinov2_with_registers", "vit_mae")
"""The ``model_type`` values of ``config.json`` that load."""

HIDDEN_ACTS = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "quick_gelu": "quick_gelu"}
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
IMAGENET_STANDARD = (0.5, 0.5, 0.5)
IMAGENET_DEFAULT = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

LAYER = r"(?:encoder\.layer|encoder\.layers|layers)\.(\d+)\."
RULES = [
    (LAYER + r"attention\.(?:attention\.)?(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)", None),
    (LAYER + r"attention\.(?:output\.dense|o_proj)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (LAYER + r"(?:layernorm_before|norm1)\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (LAYER + r"(?:layernorm_after|norm2)\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (LAYER + r"(?:intermediate\.dense|mlp\.fc1|mlp\.weights_in)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (LAYER + r"(?:output\.dense|mlp\.fc2|mlp\.weights_out)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (LAYER + r"layer_scale1\.lambda1", r"blocks.\1.ls1.gamma"),
    (LAYER + r"layer_scale2\.lambda1", r"blocks.\1.ls2.gamma"),
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.register_tokens", "reg_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
    (r"classifier\.(weight|bias)", r"head.\1"),
    (r"embeddings\.mask_token|pooler\.dense\.(?:weight|bias)", ""),
]
_RULES = [(re.compile(p), r) for p, r in RULES]
_QKV = {"query": 0, "key": 1, "value": 2, "q_proj": 0, "k_proj": 1, "v_proj": 2}


def to_vit_config(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A transformers ``config.json`` -> :class:`vit_core.ViT` arguments."""
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise PretrainedFormatError(
            f"{where}: model_type {model_type!r} is not supported; supported model types: {', '.join(MODEL_TYPES)}"
        )
    architectures = config.get("architectures") or []
    if model_type.startswith("dinov2") and any(a.endswith("ForImageClassification") for a in architectures):
        raise PretrainedFormatError(
            f"{where}: {architectures[0]}'s classifier reads the class token and the mean patch token together, "
            "which vit_core's ViT cannot express; load the backbone (Dinov2Model) with a new num_classes"
        )
    dim, heads = config["hidden_size"], config["num_attention_heads"]
    act = config.get("hidden_act", "gelu")
    if act not in HIDDEN_ACTS:
        raise PretrainedFormatError(f"{where}: hidden_act={act!r}; vit_core maps {', '.join(HIDDEN_ACTS)}")
    act = HIDDEN_ACTS[act]
    if model_type.startswith("dinov2"):
        hidden = int(dim * config.get("mlp_ratio", 4))
        if config.get("use_swiglu_ffn"):
            act, hidden = "swiglu", (int(hidden * 2 / 3) + 7) // 8 * 8
    else:
        hidden = config.get("intermediate_size", 4 * dim)
    labels = config.get("id2label") or {}
    classifier = any(a.endswith("ForImageClassification") for a in architectures)
    image_size, patch_size = config.get("image_size", 224), config.get("patch_size", 16)
    return dict(
        image_size=tuple(image_size) if isinstance(image_size, list) else image_size,
        patch_size=tuple(patch_size) if isinstance(patch_size, list) else patch_size,
        num_classes=len(labels) if classifier else 0,
        dim=dim,
        depth=config["num_hidden_layers"],
        heads=heads,
        dim_head=dim // heads,
        mlp_dim=hidden,
        channels=config.get("num_channels", 3),
        patch_norm=False,
        qkv_bias=config.get("qkv_bias", True),
        norm_eps=config.get("layer_norm_eps", 1e-12),
        layer_scale=config.get("layerscale_value", 1.0) if model_type.startswith("dinov2") else None,
        registers=config.get("num_register_tokens", 0) if model_type == "dinov2_with_registers" else 0,
        activation=act,
    )


def label_names(config: Mapping[str, Any]) -> list[str] | None:
    """The class names of ``id2label``, by index, when the checkpoint is a classifier."""
    labels = config.get("id2label") or {}
    if not labels or not any(a.endswith("ForImageClassification") for a in config.get("architectures") or []):
        return None
    return [labels.get(str(i), labels.get(i, str(i))) for i in range(len(labels))]


def pretrained_cfg(config: Mapping[str, Any], preprocessor: Mapping[str, Any], vit: Mapping[str, Any]) -> dict:
    """timm's preprocessing vocabulary from ``preprocessor_config.json`` (or the image processor's defaults)."""
    dinov2 = str(config.get("model_type", "")).startswith("dinov2")
    size = preprocessor.get("size") or ({"shortest_edge": 256} if dinov2 else {"height": 224, "width": 224})
    crop = preprocessor.get("crop_size") or {"height": 224, "width": 224}
    center_crop = preprocessor.get("do_center_crop", dinov2)
    if center_crop:
        out_size = (crop["height"], crop["width"])
        edge = size.get("shortest_edge", size.get("height", out_size[0]))
        crop_pct = out_size[0] / edge
    else:
        out_size = (
            size.get("height", size.get("shortest_edge", 224)),
            size.get("width", size.get("shortest_edge", 224)),
        )
        crop_pct = 1.0
    norm = IMAGENET_DEFAULT if dinov2 else dict(mean=IMAGENET_STANDARD, std=IMAGENET_STANDARD)
    cfg = dict(
        input_size=(vit["channels"], *out_size),
        mean=tuple(preprocessor.get("image_mean", norm["mean"])),
        std=tuple(preprocessor.get("image_std", norm["std"])),
        interpolation=RESAMPLE.get(preprocessor.get("resample", 3 if dinov2 else 2), "bicubic"),
        crop_pct=crop_pct,
    )
    names = label_names(config)
    if names:
        cfg["label_names"] = names
    return cfg


def to_timm_layout(tensors: Mapping[str, Tensor], where: str) -> dict[str, Tensor]:
    """transformers tensor names -> timm's (q / k / v fused into ``qkv``); the base model's prefix (``vit.``,
    ``dinov2.``) is removed.  A tensor no rule knows is an error naming it."""
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[int, Tensor]] = {}
    for key, value in tensors.items():
        name = re.sub(r"^(vit|dinov2|vit_mae|model)\.", "", key)
        for pattern, repl in _RULES:
            match = pattern.fullmatch(name)
            if match is None:
                continue
            if repl is None:
                qkv.setdefault((match[1], match[3]), {})[_QKV[match[2]]] = value
            elif repl:
                out[pattern.sub(repl, name)] = value
            break
        else:
            raise PretrainedFormatError(f"{where}: tensor {key!r} {tuple(value.shape)} fits no transformers ViT layout")
    for (layer, param), parts in qkv.items():
        if sorted(parts) != [0, 1, 2]:
            raise PretrainedFormatError(f"{where}: layer {layer} lacks one of its query / key / value {param}s")
        out[f"blocks.{layer}.attn.qkv.{param}"] = torch.cat([parts[0], parts[1], parts[2]])
    return out
