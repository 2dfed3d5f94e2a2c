"""Importers of vit-pytorch state dicts for the variants (see :mod:`vit_core.interop.reference`).

Use them through ``vit_core.load_reference_weights(model, reference.state_dict())``.  vit-pytorch
flattens patches as ``(p1 p2 c)``, our layout, so patch weights load unpermuted.  Its attention
layers with separate ``to_q`` / ``to_kv`` projections are fused into our ``to_qkv`` (queries, then
keys, then values: the row order of ``cat(to_q, to_kv)``); its ``LayerScale(fn)`` wrappers become
our blocks' ``attn_scale`` / ``ff_scale``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from vit_core.interop.reference import HEAD_RULES, PATCH_RULES, TRANSFORMER_RULES, StateDict, concat_weights, rename
from vit_core.layers import Transformer

Rules = list[tuple[str, str]]


def block_rules(*attention: tuple[str, str]) -> Rules:
    """vit-pytorch's ``layers.i.0`` (attention, pre-norm inside) / ``layers.i.1`` (feed-forward), with an
    optional ``LayerScale`` (``.scale``, ``.fn.``) around each -> our ``TransformerBlock``.

    ``attention``: extra ``(reference name, our name)`` pairs inside the attention layer.
    """
    extra = [(rf"(.*)layers\.(\d+)\.0\.(?:fn\.)?{ref}", rf"\1layers.\2.attn.{ours}") for ref, ours in attention]
    return [
        *extra,
        (r"(.*)layers\.(\d+)\.0\.(?:fn\.)?norm\.(weight|bias)", r"\1layers.\2.attn_norm.\3"),
        (r"(.*)layers\.(\d+)\.0\.(?:fn\.)?to_qkv\.(weight|bias)", r"\1layers.\2.attn.to_qkv.\3"),
        (r"(.*)layers\.(\d+)\.0\.(?:fn\.)?to_out\.0\.(weight|bias)", r"\1layers.\2.attn.to_out.\3"),
        (r"(.*)layers\.(\d+)\.0\.scale", r"\1layers.\2.attn_scale.gamma"),
        (r"(.*)layers\.(\d+)\.1\.(?:fn\.)?net\.0\.(weight|bias)", r"\1layers.\2.ff_norm.\3"),
        (r"(.*)layers\.(\d+)\.1\.(?:fn\.)?net\.1\.(weight|bias)", r"\1layers.\2.ff.fc1.\3"),
        (r"(.*)layers\.(\d+)\.1\.(?:fn\.)?net\.4\.(weight|bias)", r"\1layers.\2.ff.fc2.\3"),
        (r"(.*)layers\.(\d+)\.1\.scale", r"\1layers.\2.ff_scale.gamma"),
    ]


def fuse_qkv(state: StateDict) -> StateDict:
    """Every ``...to_q.weight`` / ``...to_kv.weight`` pair -> one ``...to_qkv.weight``, in place."""
    for prefix in [k.removesuffix("to_q.weight") for k in state if k.endswith("to_q.weight")]:
        concat_weights(state, prefix, ("to_q.weight", "to_kv.weight"))
    return state


def flatten_gains(state: StateDict) -> StateDict:
    """vit-pytorch's ``(1, 1, dim)`` LayerScale gains -> our ``(dim,)``, in place."""
    for key in [k for k in state if k.endswith("_scale.gamma")]:
        state[key] = state[key].reshape(-1)
    return state


def class_and_positions(state: StateDict, model: nn.Module) -> StateDict:
    """Pop ``cls_token`` and ``pos_embedding`` (class position first) -> ``cls_token``, ``cls_pos`` and the
    positional grid of a :class:`~vit_core.models.patch_model.PatchTransformer`."""
    dim = model.num_features
    pos = state.pop("pos_embedding").reshape(-1, dim)
    return {
        "cls_token": state.pop("cls_token").reshape(1, dim),
        "cls_pos": pos[:1],
        "pos_embed.weight": pos[1:].reshape(model.pos_embed.weight.shape),
    }


def convert(state: Mapping[str, Tensor], rules: Iterable[tuple[str, str]]) -> StateDict:
    """Fuse q / kv projections, rename by ``rules`` (a key no rule matches is an error), flatten gains."""
    return flatten_gains(rename(fuse_qkv(dict(state)), rules))


def replace_prefix(state: StateDict, old: str, new: str) -> StateDict:
    """Keys starting with ``old`` start with ``new`` instead."""
    return {new + k[len(old) :] if k.startswith(old) else k: v for k, v in state.items()}


def import_deepvit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.deepvit.DeepViT`` -> :class:`vit_variants.DeepViT`."""
    state = dict(state)
    out = class_and_positions(state, model)
    rules = block_rules(
        ("reattn_weights", "mix"),
        (r"reattn_norm\.1\.(weight|bias)", r"head_norm.\3"),
    )
    out.update(convert(state, [*PATCH_RULES, *HEAD_RULES, *rules]))
    return out


TALKING_HEADS = (("mix_heads_pre_attn", "mix_scores"), ("mix_heads_post_attn", "mix_weights"))


def import_cait(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.cait.CaiT`` -> :class:`vit_variants.CaiT` (patch layers -> ``transformer``)."""
    state = dict(state)
    out = {
        "class_token": state.pop("cls_token"),
        "pos_embed.weight": state.pop("pos_embedding").reshape(model.pos_embed.weight.shape),
    }
    state = replace_prefix(state, "patch_transformer.", "transformer.")
    out.update(convert(state, [*PATCH_RULES, *HEAD_RULES, *block_rules(*TALKING_HEADS)]))
    return out


def import_t2t(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.t2t.T2TViT`` -> :class:`vit_variants.T2TViT`.

    vit-pytorch's ``to_patch_embedding`` is one ``Sequential`` of four modules per soft split (the
    one-layer transformer fourth) and the projection last.
    """
    state = dict(state)
    out = class_and_positions(state, model)
    splits = len(model.patch_embed.layers)
    renamed: StateDict = {}
    for key, value in state.items():
        if key.startswith("to_patch_embedding."):
            index, _, rest = key.removeprefix("to_patch_embedding.").partition(".")
            inner = "proj" if int(index) == 4 * splits else f"mixers.{int(index) // 4}"
            key = f"patch_embed.{inner}.{rest}"
        renamed[key] = value
    keep = [(r"(patch_embed\.proj\..*)", r"\1")]
    if not isinstance(model.transformer, Transformer):
        keep.append((r"(transformer\..*)", r"\1"))
    out.update(rename(renamed, [*HEAD_RULES, *keep, *TRANSFORMER_RULES]))
    return out


def _cross_vit_rules() -> Rules:
    encoder = r"(multi_scale_encoder\.layers\.\d+)"
    rules: Rules = [
        (r"(sm|lg)_image_embedder\.to_patch_embedding\.1\.(weight|bias)", r"\1_embed.patch_embed.patch_norm.\2"),
        (r"(sm|lg)_image_embedder\.to_patch_embedding\.2\.(weight|bias)", r"\1_embed.patch_embed.proj.\2"),
        (r"(sm|lg)_image_embedder\.to_patch_embedding\.3\.(weight|bias)", r"\1_embed.patch_embed.norm.\2"),
        (r"(sm|lg)_mlp_head\.0\.(weight|bias)", r"\1_norm.\2"),
        (encoder + r"\.0\.(.*)", r"\1.sm_encoder.\2"),
        (encoder + r"\.1\.(.*)", r"\1.lg_encoder.\2"),
    ]
    for index, name in (("0", "sm_attend_lg"), ("1", "lg_attend_sm")):
        layer = encoder + r"\.2\.layers\.(\d+)\." + index
        ours = rf"\1.cross.\2.{name}"
        rules += [
            (layer + r"\.fn\.norm\.(weight|bias)", ours + r".norm.\3"),
            (layer + r"\.fn\.to_qkv\.weight", ours + ".to_qkv.weight"),
            (layer + r"\.fn\.to_out\.0\.(weight|bias)", ours + r".to_out.\3"),
            (layer + r"\.project_in\.(weight|bias)", ours + r".project_in.\3"),
            (layer + r"\.project_out\.(weight|bias)", ours + r".project_back.\3"),
        ]
    return rules


def import_cross_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.cross_vit.CrossViT`` -> :class:`vit_variants.CrossViT`.

    The two heads become one linear map on both class tokens (weights side by side, biases summed).
    """
    state = dict(state)
    out: StateDict = {}
    for branch in ("sm", "lg"):
        prefix = f"{branch}_image_embedder."
        inner = {name: state.pop(prefix + name) for name in ("cls_token", "pos_embedding")}
        embedded = class_and_positions(inner, getattr(model, f"{branch}_embed"))
        out.update({f"{branch}_embed.{k}": v for k, v in embedded.items()})
    heads = [(state.pop(f"{b}_mlp_head.1.weight"), state.pop(f"{b}_mlp_head.1.bias")) for b in ("sm", "lg")]
    out["head.weight"] = torch.cat([weight for weight, _ in heads], dim=1)
    out["head.bias"] = heads[0][1] + heads[1][1]
    state = rename(fuse_qkv(state), _cross_vit_rules())
    keep = [(r"(.*\.cross\..*|(?:sm|lg)_(?:embed|norm)\..*)", r"\1")]
    out.update(rename(state, [*keep, *TRANSFORMER_RULES]))
    return out


def import_xcit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.xcit.XCiT`` -> :class:`vit_variants.XCiT`.

    vit-pytorch learns the XCA temperature in log space (it multiplies by ``exp(temperature)``);
    ours is the temperature itself, so the importer takes the exponential.
    """
    state = replace_prefix(dict(state), "xcit_transformer.", "transformer.")
    out = {
        "class_token": state.pop("cls_token").reshape(1, 1, -1),
        "pos_embed.weight": state.pop("pos_embedding").reshape(model.pos_embed.weight.shape),
    }
    for key in [k for k in state if k.endswith(".fn.temperature")]:
        state[key] = state[key].exp()
    xca = r"transformer\.layers\.(\d+)"
    rules: Rules = [
        (xca + r"\.0\.fn\.temperature", r"transformer.layers.\1.attn.temperature"),
        (xca + r"\.1\.scale", r"transformer.layers.\1.lpi_scale.gamma"),
        (xca + r"\.1\.fn\.net\.0\.(weight|bias)", r"transformer.layers.\1.lpi_norm.\2"),
        (xca + r"\.1\.fn\.net\.2\.(weight|bias)", r"transformer.layers.\1.lpi.conv1.0.\2"),
        (xca + r"\.1\.fn\.net\.3\.(.*)", r"transformer.layers.\1.lpi.bn.\2"),
        (xca + r"\.1\.fn\.net\.5\.(weight|bias)", r"transformer.layers.\1.lpi.conv2.0.\2"),
        (xca + r"\.2\.scale", r"transformer.layers.\1.ff_scale.gamma"),
        (xca + r"\.2\.fn\.net\.0\.(weight|bias)", r"transformer.layers.\1.ff_norm.\2"),
        (xca + r"\.2\.fn\.net\.1\.(weight|bias)", r"transformer.layers.\1.ff.fc1.\2"),
        (xca + r"\.2\.fn\.net\.4\.(weight|bias)", r"transformer.layers.\1.ff.fc2.\2"),
        (r"final_norm\.(weight|bias)", r"transformer.norm.\1"),
    ]
    out.update(convert(state, [*PATCH_RULES, *HEAD_RULES, *rules, *block_rules()]))
    return out


def import_parallel_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.parallel_vit.ViT`` -> :class:`vit_variants.ParallelViT`."""
    state = dict(state)
    out = class_and_positions(state, model)
    layer = r"transformer\.layers\.(\d+)"
    rules: Rules = [
        (r"to_patch_embedding\.1\.(weight|bias)", r"patch_embed.proj.\1"),
        (layer + r"\.0\.fns\.(\d+)\.norm\.(weight|bias)", r"transformer.layers.\1.attn.norms.\2.\3"),
        (layer + r"\.0\.fns\.(\d+)\.to_qkv\.weight", r"transformer.layers.\1.attn.branches.\2.to_qkv.weight"),
        (layer + r"\.0\.fns\.(\d+)\.to_out\.0\.(weight|bias)", r"transformer.layers.\1.attn.branches.\2.to_out.\3"),
        (layer + r"\.1\.fns\.(\d+)\.net\.0\.(weight|bias)", r"transformer.layers.\1.ff.norms.\2.\3"),
        (layer + r"\.1\.fns\.(\d+)\.net\.1\.(weight|bias)", r"transformer.layers.\1.ff.branches.\2.fc1.\3"),
        (layer + r"\.1\.fns\.(\d+)\.net\.4\.(weight|bias)", r"transformer.layers.\1.ff.branches.\2.fc2.\3"),
    ]
    out.update(rename(state, [*HEAD_RULES, *rules]))
    return out


SPT_RULES: Rules = [
    (r"(.*)to_patch_tokens\.1\.(weight|bias)", r"\1embedding.patch_norm.\2"),
    (r"(.*)to_patch_tokens\.2\.(weight|bias)", r"\1embedding.proj.\2"),
]


def import_spt(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.vit_for_small_dataset.SPT`` -> :class:`vit_variants.SPT`."""
    return rename(state, SPT_RULES)


def import_small_dataset_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.vit_for_small_dataset.ViT`` -> :class:`vit_variants.SmallDatasetViT`.

    vit-pytorch's LSA ``temperature`` is the log of the scale, our ``log_scale``.
    """
    state = replace_prefix(dict(state), "to_patch_embedding.", "patch_embed.")
    out = class_and_positions(state, model)
    out.update(convert(state, [*SPT_RULES, *HEAD_RULES, *block_rules(("temperature", "log_scale"))]))
    return out


def import_learnable_memory_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.learnable_memory_vit.ViT`` -> :class:`vit_variants.LearnableMemoryViT`."""
    state = dict(state)
    out = class_and_positions(state, model)
    out.update(convert(state, [*PATCH_RULES, *HEAD_RULES, *block_rules()]))
    return out


ADAPTER_RULES: Rules = [
    (r"memory_cls_token", "memory_cls_token"),
    (r"memories_per_layer", "memories"),
    (r"mlp_head\.0\.(weight|bias)", r"norm.\1"),
    (r"mlp_head\.1\.(weight|bias)", r"head.\1"),
]


def import_adapter(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.learnable_memory_vit.Adapter`` -> :class:`vit_variants.Adapter` (backbone included).

    The reference's ``attn_mask`` buffer is rebuilt by the adapter, not imported.
    """
    state = dict(state)
    state.pop("attn_mask", None)
    backbone = {k.removeprefix("vit."): state.pop(k) for k in [k for k in state if k.startswith("vit.")]}
    out = {"vit." + k: v for k, v in import_learnable_memory_vit(backbone, model.vit).items()}
    memory_cls = state.pop("memory_cls_token")
    out.update(rename(state, ADAPTER_RULES))
    out["memory_cls_token"] = memory_cls.reshape(1, 1, -1)
    return out
