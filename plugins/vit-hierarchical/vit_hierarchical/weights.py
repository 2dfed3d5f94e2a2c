"""Importers of vit-pytorch's hierarchical models (see :mod:`vit_core.interop.reference`).

Use them through ``vit_core.load_reference_weights(model, reference.state_dict())`` with a model
built from the same arguments.  Layout conversions shared by several models:

* vit-pytorch's 1x1 convolutions on channel-first maps are our linear layers on channels-last
  tokens (``(out, in, 1, 1)`` -> ``(out, in)``), and its channel LayerNorm's ``g`` / ``b``
  ``(1, c, 1, 1)`` our LayerNorm's ``weight`` / ``bias``;
* separate ``to_q`` / ``to_kv`` projections of a window attention become one fused ``to_qkv``;
* flattened ``(c p1 p2)`` patches (Twins) are permuted to our ``(p1 p2 c)``;
* vit-pytorch numbers blocks across a model (``layers.7``); we number them per stage
  (``stages.1.blocks.2``): :func:`block_prefixes` lists ours in the same order.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from vit_core.interop.reference import (
    PARAM,
    PATCH_RULES,
    TRANSFORMER_RULES,
    StateDict,
    block_pair_rules,
    permute_patch_dim,
    rename,
)

Rules = list[tuple[str, str]]
BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
TO_OUT = (rf"to_out\.0\.{PARAM}", r"to_out.\1")
"""vit-pytorch's ``to_out = Sequential(Linear, Dropout)`` -> our attention's ``to_out`` linear."""


def subtree(state: StateDict, prefix: str) -> StateDict:
    """Pop the keys under ``prefix`` and return them with the prefix stripped."""
    return {k[len(prefix) :]: state.pop(k) for k in [k for k in state if k.startswith(prefix)]}


def graft(out: StateDict, prefix: str, part: Mapping[str, Tensor]) -> None:
    out.update({prefix + k: v for k, v in part.items()})


def fit_shapes(state: StateDict, model: nn.Module) -> StateDict:
    """Reshape, in place, the values whose layout differs from ours only by unit axes: a 1x1
    convolution ``(out, in, 1, 1)`` (or ``(out, in, 1)``) that is our linear layer ``(out, in)``,
    a channel LayerNorm's ``(1, c, 1, 1)`` gain that is our LayerNorm's ``(c,)``.  Anything else
    is left for ``load_state_dict`` to reject."""
    ours = model.state_dict()
    for key, value in state.items():
        target = ours.get(key)
        if target is None or target.shape == value.shape:
            continue
        if [s for s in value.shape if s != 1] == [s for s in target.shape if s != 1]:
            state[key] = value.reshape(target.shape)
    return state


def channel_norm_names(state: Mapping[str, Tensor]) -> StateDict:
    """vit-pytorch's channel LayerNorm stores ``g`` and ``b``: rename them ``weight`` and ``bias``
    (:func:`fit_shapes` then drops their unit axes)."""
    return {re.sub(r"(^|\.)g$", r"\1weight", re.sub(r"(^|\.)b$", r"\1bias", k)): v for k, v in state.items()}


def block_prefixes(model: nn.Module) -> list[str]:
    """``stages.i.blocks.j.`` of every block of every stage, in order."""
    return [f"stages.{i}.blocks.{j}." for i, stage in enumerate(model.stages) for j in range(len(stage.blocks))]


def import_per_block(state: StateDict, ref_prefix: str, prefixes: Iterable[str], rules: Rules) -> StateDict:
    """Rename ``{ref_prefix}{n}.*`` by ``rules`` to the ``n``-th of ``prefixes``."""
    out: StateDict = {}
    for n, prefix in enumerate(prefixes):
        graft(out, prefix, rename(subtree(state, f"{ref_prefix}{n}."), rules))
    return out


def import_stage_blocks(state: StateDict, model: nn.Module, layers: str, rules: Rules, first: int = 0) -> StateDict:
    """Rename each stage ``i``'s reference layers ``{layers.format(i)}{n}.*`` by ``rules`` to our
    ``stages.{i}.blocks.{first + n}.block.*`` (the stage's blocks from ``first`` on)."""
    out: StateDict = {}
    for i, stage in enumerate(model.stages):
        prefixes = [f"stages.{i}.blocks.{j}.block." for j in range(first, len(stage.blocks))]
        out.update(import_per_block(state, layers.format(i), prefixes, rules))
    return out


def finish(out: StateDict, state: StateDict, rules: Rules, model: nn.Module) -> StateDict:
    """Rename what is left of ``state`` by ``rules`` into ``out``, then :func:`fit_shapes`."""
    out.update(rename(state, rules))
    return fit_shapes(out, model)


def pooled_head_rules(module: str) -> Rules:
    """The reference's ``module = Sequential(pooling, LayerNorm, Linear)`` -> our ``fc_norm`` and ``head``."""
    return [(rf"{module}\.1\.{PARAM}", r"fc_norm.\1"), (rf"{module}\.2\.{PARAM}", r"head.\1")]


def conv_norm_rules(*layers: tuple[str, str, str]) -> Rules:
    """Each ``(conv, norm, ours)``: the patterns of a reference convolution's and its BatchNorm's key
    prefixes -> our :class:`~vit_hierarchical.conv.ConvNormAct` (``conv``, ``norm``) under ``ours``."""
    rules: Rules = []
    for conv, norm, ours in layers:
        rules += [(rf"{conv}\.{PARAM}", rf"{ours}conv.\1"), (rf"{norm}\.{BN}", rf"{ours}norm.\1")]
    return rules


# --- MaxViT ------------------------------------------------------------------------------------


def _maxvit_block_rules() -> Rules:
    mbconv = r"0\.(?:fn\.)?"  # the MBConv, inside a residual wrapper when its shape is kept
    rules = conv_norm_rules(
        (rf"{mbconv}0", rf"{mbconv}1", "mbconv.module.expand."),
        (rf"{mbconv}3", rf"{mbconv}4", "mbconv.module.depthwise."),
        (rf"{mbconv}7", rf"{mbconv}8", "mbconv.module.project."),
    )
    for index, name in ((1, "reduce"), (3, "expand")):
        rules.append((rf"{mbconv}6\.gate\.{index}\.weight", f"mbconv.module.se.{name}.weight"))
    attention = [(r"to_qkv\.weight", "to_qkv.weight"), (r"to_out\.0\.weight", "to_out.weight")]
    attention.append((r"rel_pos_bias\.weight", "relative_bias.table"))
    for attn, ff, ours in (("2", "3", "block_attention"), ("6", "7", "grid_attention")):
        rules += block_pair_rules(rf"{attn}\.fn\.", rf"{ff}\.fn\.net\.", attention, prefix=f"{ours}.block.")
    return rules


def import_max_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.max_vit.MaxViT`` -> :class:`vit_hierarchical.MaxViT`."""
    state = dict(state)
    out = import_per_block(state, "layers.", block_prefixes(model), _maxvit_block_rules())
    rules = [
        (rf"conv_stem\.(\d)\.{PARAM}", r"stem.\1.\2"),
        *pooled_head_rules("mlp_head"),
    ]
    return finish(out, state, rules, model)


# --- CvT -----------------------------------------------------------------------------------------

CVT_PROJECTION = r"(to_q|to_kv)\.net\."
CVT_BLOCK_RULES = block_pair_rules(
    r"0\.",
    r"1\.net\.",
    [
        (rf"{CVT_PROJECTION}([02])\.weight", r"\1.\2.weight"),
        (rf"{CVT_PROJECTION}1\.{BN}", r"\1.1.\2"),
        TO_OUT,
    ],
)


def import_cvt(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.cvt.CvT`` -> :class:`vit_hierarchical.CvT`."""
    state = channel_norm_names(state)
    out = import_stage_blocks(state, model, "layers.{}.2.layers.", CVT_BLOCK_RULES)
    rules = [
        (rf"layers\.(\d)\.0\.{PARAM}", r"stages.\1.downsample.0.module.\2"),
        (rf"layers\.(\d)\.1\.{PARAM}", r"stages.\1.downsample.1.\2"),
        (rf"to_logits\.2\.{PARAM}", r"head.\1"),
    ]
    return finish(out, state, rules, model)


# --- PiT -----------------------------------------------------------------------------------------


def import_pit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.pit.PiT`` -> :class:`vit_hierarchical.PiT`.

    The unfolded patches ``(c p1 p2)`` of the reference's linear embedding are the layout of a
    convolution's kernel, so its weight becomes our patch convolution's.
    """
    state = dict(state)
    dim = model.patch_embed.out_channels
    pos = state.pop("pos_embedding").reshape(-1, dim)
    out: StateDict = {
        "cls_token": state.pop("cls_token"),
        "cls_pos": pos[:1].reshape(1, 1, dim),
        "pos_embed.weight": pos[1:].reshape(model.pos_embed.weight.shape),
        "patch_embed.weight": state.pop("to_patch_embedding.2.weight").reshape(model.patch_embed.weight.shape),
        "patch_embed.bias": state.pop("to_patch_embedding.2.bias"),
    }
    pool_rules = [
        (rf"downsample\.net\.0\.{PARAM}", r"depthwise.\1"),
        (rf"downsample\.net\.1\.{PARAM}", r"pointwise.\1"),
        (rf"cls_ff\.{PARAM}", r"cls.\1"),
    ]
    for i in range(len(model.stages)):  # the reference alternates transformers and pools: layers.0, .1, .2, ...
        graft(out, f"stages.{i}.transformer.", rename(subtree(state, f"layers.{2 * i}."), TRANSFORMER_RULES))
        if i:
            graft(out, f"stages.{i}.pool.", rename(subtree(state, f"layers.{2 * i - 1}."), pool_rules))
    rules = [(rf"mlp_head\.0\.{PARAM}", r"fc_norm.\1"), (rf"mlp_head\.1\.{PARAM}", r"head.\1")]
    return finish(out, state, rules, model)


# --- MobileViT -----------------------------------------------------------------------------------

MV2_EXPANDED = conv_norm_rules(
    (r"conv\.0", r"conv\.1", "expand."), (r"conv\.3", r"conv\.4", "depthwise."), (r"conv\.6", r"conv\.7", "project.")
)
MV2_UNEXPANDED = conv_norm_rules((r"conv\.0", r"conv\.1", "depthwise."), (r"conv\.3", r"conv\.4", "project."))
CONV_BN = conv_norm_rules(("0", "1", ""))
MOBILEVIT_BLOCK_RULES = [
    *conv_norm_rules(
        *(
            (rf"{conv}\.0", rf"{conv}\.1", ours)
            for conv, ours in (
                ("conv1", "local.module.0."),
                ("conv2", "local.module.1."),
                ("conv3", "project.module."),
                ("conv4", "fuse.module."),
            )
        )
    ),
    *((r"transformer\." + pattern, "transformer." + repl) for pattern, repl in TRANSFORMER_RULES),
]


def import_mobile_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.mobile_vit.MobileViT`` -> :class:`vit_hierarchical.MobileViT`."""
    state = dict(state)

    def mv2(ref: str, ours: str) -> None:
        part = subtree(state, ref)
        graft(out, ours, rename(part, MV2_EXPANDED if "conv.6.weight" in part else MV2_UNEXPANDED))

    out: StateDict = {}
    graft(out, "stem.", rename(subtree(state, "conv1."), CONV_BN))
    for n, ours in enumerate(("stages.0.blocks.0", "stages.1.blocks.0", "stages.1.blocks.1", "stages.1.blocks.2")):
        mv2(f"stem.{n}.", f"{ours}.module.")
    for k in range(3):
        mv2(f"trunk.{k}.0.", f"stages.{k + 2}.blocks.0.module.")
        graft(out, f"stages.{k + 2}.blocks.1.", rename(subtree(state, f"trunk.{k}.1."), MOBILEVIT_BLOCK_RULES))
    graft(out, "stages.4.blocks.2.module.", rename(subtree(state, "to_logits.0."), CONV_BN))
    out["head.weight"] = state.pop("to_logits.2.weight")
    return finish(out, state, [], model)


# --- NesT ----------------------------------------------------------------------------------------


def import_nest(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.nest.NesT`` -> :class:`vit_hierarchical.NesT`.

    The reference learns one scalar position per block token, added to every channel; ours is a
    vector per token, which holds that scalar in every channel.
    """
    state = channel_norm_names(state)
    out: StateDict = {}
    for i, stage in enumerate(model.stages):
        pos = state.pop(f"layers.{i}.0.pos_emb")
        block = stage.blocks[0].group
        out[f"stages.{i}.blocks.0.pos_embed.weight"] = pos.reshape(*block, 1).expand(*block, stage.dim).clone()
        graft(out, f"stages.{i}.blocks.0.block.", rename(subtree(state, f"layers.{i}.0."), TRANSFORMER_RULES))
    aggregate_rules = [(rf"0\.{PARAM}", r"conv.module.\1"), (rf"1\.{PARAM}", r"norm.\1")]
    for i in range(1, len(model.stages)):  # the reference aggregates at the end of a level, we at the start of the next
        graft(out, f"stages.{i}.downsample.", rename(subtree(state, f"layers.{i - 1}.1."), aggregate_rules))
    rules = [*PATCH_RULES, (rf"mlp_head\.0\.{PARAM}", r"map_norm.\1"), (rf"mlp_head\.2\.{PARAM}", r"head.\1")]
    return finish(out, state, rules, model)


# --- LeViT ---------------------------------------------------------------------------------------

LEVIT_ATTENTION_RULES = [
    (r"pos_indices", ""),  # recomputed
    (r"pos_bias\.weight", "offset_bias"),
    (r"(to_q|to_k|to_v)\.0\.weight", r"\1.0.weight"),
    (rf"(to_q|to_k|to_v)\.1\.{BN}", r"\1.1.\2"),
    (rf"to_out\.1\.{PARAM}", r"to_out.1.\1"),
    (rf"to_out\.2\.{BN}", r"to_out.2.\1"),
]
LEVIT_BLOCK_RULES = [
    *((r"0\." + pattern, "attn." + repl if repl else "") for pattern, repl in LEVIT_ATTENTION_RULES),
    (rf"1\.net\.0\.{PARAM}", r"ff.fc1.\1"),
    (rf"1\.net\.3\.{PARAM}", r"ff.fc2.\1"),
]


def import_levit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.levit.LeViT`` -> :class:`vit_hierarchical.LeViT`.

    The reference adds its offset bias divided by the attention scale to the scaled scores; ours
    is added as it is, so the imported table is divided by the scale once here.
    """
    state = dict(state)
    out: StateDict = {}
    for i, stage in enumerate(model.stages):  # the reference alternates stages and shrink blocks
        prefixes = [f"stages.{i}.blocks.{j}.block." for j in range(len(stage.blocks))]
        out.update(import_per_block(state, f"backbone.{2 * i}.layers.", prefixes, LEVIT_BLOCK_RULES))
        if i:
            graft(
                out,
                f"stages.{i}.downsample.",
                rename(subtree(state, f"backbone.{2 * i - 1}.layers.0."), LEVIT_BLOCK_RULES),
            )
    for key in [k for k in out if k.endswith("offset_bias")]:
        attn = model.get_submodule(key.removesuffix(".offset_bias"))
        out[key] = out[key] * attn.dim_head**0.5
    rules = [
        (rf"conv_embedding\.(\d)\.{PARAM}", r"stem.\1.\2"),
        (rf"mlp_head\.{PARAM}", r"head.\1"),
        (rf"distill_head\.{PARAM}", r"distill_head.\1"),
    ]
    return finish(out, state, rules, model)


# --- Twins-SVT -----------------------------------------------------------------------------------


def _twins_pair(attn: str, ff: str, fused: bool) -> Rules:
    """Rules for one vit-pytorch (attention, feed-forward) residual pair -> one TransformerBlock."""
    q = [] if fused else [(r"(to_q|to_kv)\.weight", r"\1.weight")]
    return block_pair_rules(rf"{attn}\.fn\.", rf"{ff}\.fn\.net\.", [*q, TO_OUT])


def _twins_patch_embedding(state: StateDict, embed: nn.Module) -> StateDict:
    """A stage's ``LayerNorm -> 1x1 conv -> LayerNorm`` over ``(c p1 p2)`` patches -> our
    :class:`~vit_core.layers.PatchEmbedding` over ``(p1 p2 c)`` patches."""
    p, c = embed.patch_size[0], embed.channels
    to_ours = (("c", "p1", "p2"), {"c": c, "p1": p, "p2": p}, ("p1", "p2", "c"))
    return {
        "patch_norm.weight": permute_patch_dim(state["0.weight"].reshape(-1), 0, *to_ours),
        "patch_norm.bias": permute_patch_dim(state["0.bias"].reshape(-1), 0, *to_ours),
        "proj.weight": permute_patch_dim(state["1.weight"].flatten(1), 1, *to_ours),
        "proj.bias": state["1.bias"],
        "norm.weight": state["2.weight"].reshape(-1),
        "norm.bias": state["2.bias"].reshape(-1),
    }


def import_twins_svt(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.twins_svt.TwinsSVT`` -> :class:`vit_hierarchical.TwinsSVT`.

    A reference stage is a patch embedding (``.0``), a one-layer transformer (``.1``), the PEG
    (``.2``) and a ``depth``-layer transformer (``.3``); each of its layers (local attention,
    feed-forward, global attention, feed-forward; the last stage only the global half) is two of
    our blocks (one), the PEG one more after the first layer.  The local attention's ``to_q`` and
    ``to_kv`` become one ``to_qkv``.
    """
    state = channel_norm_names(state)
    out: StateDict = {}
    for i, stage in enumerate(model.stages):
        blocks = (f"stages.{i}.blocks.{j}." for j in range(len(stage.blocks)))
        local = i < len(model.stages) - 1
        layers = [f"layers.{i}.1.layers.0.", *(f"layers.{i}.3.layers.{n}." for n in range(model.configs[i]["depth"]))]
        for n, layer in enumerate(layers):
            part = subtree(state, layer)
            if local:
                prefix = next(blocks)
                qkv = torch.cat([part.pop("0.fn.to_q.weight"), part.pop("0.fn.to_kv.weight")])
                out[prefix + "block.attn.to_qkv.weight"] = qkv.flatten(1)
                pair = {k: part.pop(k) for k in [k for k in part if k[0] in "01"]}
                graft(out, prefix + "block.", rename(pair, _twins_pair("0", "1", fused=True)))
            graft(out, next(blocks) + "block.", rename(part, _twins_pair("2", "3", fused=False)))
            if n == 0:
                graft(out, next(blocks) + "module.proj.", subtree(state, f"layers.{i}.2.proj.fn."))
        embed = _twins_patch_embedding(subtree(state, f"layers.{i}.0.proj."), stage.downsample)
        graft(out, f"stages.{i}.downsample.", embed)
    last_linear = len(model.stages) + 2  # the reference's Sequential: stages, pool, flatten, linear
    return finish(out, state, [(rf"layers\.{last_linear}\.{PARAM}", r"head.\1")], model)


# --- CrossFormer ---------------------------------------------------------------------------------


def _crossformer_pair(attn: str, ff: str) -> Rules:
    attention = [
        (rf"(to_qkv|to_out)\.{PARAM}", r"\1.\2"),
        (r"dpb\.9\.bias", ""),  # shifts every score alike: no effect on the softmax
        (rf"dpb\.(\d)\.{PARAM}", r"position_bias.mlp.\1.\2"),
    ]
    return block_pair_rules(rf"{attn}\.", rf"{ff}\.", attention)


def reference_bias_offsets(group: int) -> Tensor:
    """The offsets at which vit-pytorch evaluates CrossFormer's position-bias MLP.

    It indexes a table built over offsets in ``[-g, g]`` (``(2g + 1) ** 2`` rows) with indices
    computed for ``[-(g - 1), g - 1]`` (rows of ``2g - 1``), so index ``t`` reads the offset of row
    ``t`` of the larger table instead of offset ``t`` of the smaller one: the first
    ``(2g - 1) ** 2`` rows of the ``[-g, g]`` grid.  Importing these keeps the outputs equal.
    """
    span = torch.arange(-group, group + 1, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1).reshape(-1, 2)
    return grid[: (2 * group - 1) ** 2].clone()


def import_crossformer(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.crossformer.CrossFormer`` -> :class:`vit_hierarchical.CrossFormer`.

    A reference layer (short attention, feed-forward, long attention, feed-forward) is two of our
    blocks.  The position-bias MLP gets the offsets the reference evaluates it at (see
    :func:`reference_bias_offsets`); a model built here uses the true offsets.
    """
    state = channel_norm_names(state)
    out: StateDict = {}
    for i, stage in enumerate(model.stages):
        graft(out, f"stages.{i}.downsample.module.", subtree(state, f"layers.{i}.0."))
        for n in range(len(stage.blocks) // 2):
            part = subtree(state, f"layers.{i}.1.layers.{n}.")
            for j, (attn, ff) in enumerate((("0", "1"), ("2", "3"))):
                prefix = f"stages.{i}.blocks.{2 * n + j}.block."
                group = stage.blocks[2 * n + j].group[0]
                pairs = {k: v for k, v in part.items() if k.split(".", 1)[0] in (attn, ff)}
                if group == 1:  # one token per group: the bias has no effect, and ours has no bias module
                    pairs = {k: v for k, v in pairs.items() if ".dpb." not in k}
                else:
                    out[prefix + "attn.position_bias.offsets"] = reference_bias_offsets(group)
                graft(out, prefix, rename(pairs, _crossformer_pair(attn, ff)))
    return finish(out, state, [(rf"to_logits\.1\.{PARAM}", r"head.\1")], model)


# --- ScalableViT ---------------------------------------------------------------------------------


def _scalable_pair(attn: str, ff: str) -> Rules:
    attention = [
        (r"(to_q|to_k|to_v)\.weight", r"\1.weight"),
        (rf"local_interactive_module\.{PARAM}", r"local_interaction.\1"),
        TO_OUT,
    ]
    return block_pair_rules(rf"{attn}\.", rf"{ff}\.net\.", attention)


def import_scalable_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.scalable_vit.ScalableViT`` -> :class:`vit_hierarchical.ScalableViT`.

    A reference layer holds SSA (``.0``), a feed-forward (``.1``), the PEG (``.2``, first layer),
    a second feed-forward (``.3``) and IWSA (``.4``); they become our SSA block (``.0`` + ``.1``),
    the PEG and our IWSA block (``.4`` + ``.3``).  vit-pytorch 1.26.11 runs ``.3`` before ``.4``
    (its loop unpacks the modules in another order than it stores them); we run the paper's
    order, IWSA then its feed-forward.
    """
    state = channel_norm_names(state)
    out: StateDict = {}
    for i, stage in enumerate(model.stages):
        blocks = iter(range(len(stage.blocks)))
        n = 0
        while f"layers.{i}.0.layers.{n}.0.to_q.weight" in state:
            part = subtree(state, f"layers.{i}.0.layers.{n}.")
            ssa = {k: v for k, v in part.items() if k[0] in "01"}
            graft(out, f"stages.{i}.blocks.{next(blocks)}.block.", rename(ssa, _scalable_pair("0", "1")))
            if n == 0:
                peg = {k: v for k, v in part.items() if k[0] == "2"}
                graft(
                    out, f"stages.{i}.blocks.{next(blocks)}.module.", rename(peg, [(rf"2\.proj\.{PARAM}", r"proj.\1")])
                )
            iwsa = {k: v for k, v in part.items() if k[0] in "34"}
            graft(out, f"stages.{i}.blocks.{next(blocks)}.block.", rename(iwsa, _scalable_pair("4", "3")))
            n += 1
    # the reference downsamples at the end of a stage, we at the start of the next
    for i in range(1, len(model.stages)):
        graft(out, f"stages.{i}.downsample.module.", subtree(state, f"layers.{i - 1}.1.conv."))
    rules = [
        (rf"to_patches\.{PARAM}", r"stem.\1"),
        (rf"layers\.(\d+)\.0\.norm\.{PARAM}", r"stages.\1.norm.\2"),
        *pooled_head_rules("mlp_head"),
    ]
    return finish(out, state, rules, model)


# --- SepViT --------------------------------------------------------------------------------------

SEPVIT_BLOCK_RULES = block_pair_rules(
    r"0\.",
    r"1\.net\.",
    [
        (r"window_tokens", "window_token"),
        (r"to_qkv\.weight", "to_qkv.weight"),
        (rf"window_tokens_to_qk\.0\.{PARAM}", r"window_norm.\1"),
        (rf"window_tokens_to_qk\.3\.{PARAM}", r"window_qk.\1"),
        TO_OUT,
    ],
)


REFERENCE_SEPVIT_WINDOW = 7
"""The window side vit-pytorch's SepViT uses, whatever its ``window_size`` argument."""


def import_sep_vit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.sep_vit.SepViT`` -> :class:`vit_hierarchical.SepViT`.

    vit-pytorch's DSSA always uses 7x7 windows and 32-wide heads, whatever ``window_size`` and
    ``dim_head`` say; the outputs match a model built with ``window_size=7, dim_head=32``.  The
    weights do not depend on the window, so they load into any ``window_size``, with a warning
    that the outputs then differ from the reference's.
    """
    if any(window != REFERENCE_SEPVIT_WINDOW for window in model.windows):
        warnings.warn(
            f"vit-pytorch's SepViT attends in {REFERENCE_SEPVIT_WINDOW}x{REFERENCE_SEPVIT_WINDOW} windows whatever its "
            f"window_size; these weights load into window_size={model.windows}, so the outputs will differ from the "
            f"reference's (build with window_size={REFERENCE_SEPVIT_WINDOW} to reproduce them)",
            stacklevel=2,
        )
    state = channel_norm_names(state)
    out = import_stage_blocks(state, model, "layers.{}.2.layers.", SEPVIT_BLOCK_RULES, first=1)  # 0: the PEG
    rules = [
        (rf"layers\.(\d+)\.0\.conv\.{PARAM}", r"stages.\1.downsample.module.\2"),
        (rf"layers\.(\d+)\.1\.proj\.{PARAM}", r"stages.\1.blocks.0.module.proj.\2"),
        (rf"layers\.(\d+)\.2\.norm\.{PARAM}", r"stages.\1.norm.\2"),
        *pooled_head_rules("mlp_head"),
    ]
    return finish(out, state, rules, model)


# --- RegionViT -----------------------------------------------------------------------------------

REGIONVIT_LAYER_RULES = block_pair_rules(r"0\.", r"1\.", [(r"to_qkv\.weight", "to_qkv.weight"), TO_OUT], "block.")


def import_regionvit(state: Mapping[str, Tensor], model: nn.Module) -> StateDict:
    """``vit_pytorch.regionvit.RegionViT`` -> :class:`vit_hierarchical.RegionViT`.

    The reference indexes its relative-position table column-major (``dy + dx * (2w - 1)``), ours
    row-major: the table is transposed.  Its regional tokenizer (flattened ``(c p1 p2)`` patches
    through a 1x1 convolution) is our strided convolution.
    """
    if not isinstance(model.local_encoder, nn.Sequential) and model.local_patch_size != 4:
        raise ValueError(
            "vit-pytorch's RegionViT embeds local tokens with an 8x8 stride-4 convolution whatever local_patch_size "
            "(ours: 2p x 2p, stride p); its weights fit ours at local_patch_size=4 only, got "
            f"local_patch_size={model.local_patch_size}"
        )
    state = channel_norm_names(state)
    out: StateDict = {}
    span = 2 * model.window_size - 1
    for i, stage in enumerate(model.stages):
        out.update(
            import_per_block(
                state,
                f"layers.{i}.2.layers.",
                [f"stages.{i}.layers.{j}." for j in range(len(stage.layers))],
                REGIONVIT_LAYER_RULES,
            )
        )
        table = state.pop(f"layers.{i}.2.local_rel_pos_bias.weight")
        out[f"stages.{i}.relative_bias.table"] = table.view(span, span, -1).transpose(0, 1).reshape(span * span, -1)
    weight = state.pop("region_encoder.1.weight")
    out["region_encoder.weight"] = weight.reshape(model.region_encoder.weight.shape)
    out["region_encoder.bias"] = state.pop("region_encoder.1.bias")
    if isinstance(model.local_encoder, nn.Sequential):
        local = [
            (rf"local_encoder\.([036])\.{PARAM}", r"local_encoder.\1.module.\2"),
            (rf"local_encoder\.([14])\.{PARAM}", r"local_encoder.\1.\2"),
        ]
    else:
        local = [(rf"local_encoder\.{PARAM}", r"local_encoder.module.\1")]
    rules = [
        *local,
        (rf"layers\.(\d+)\.0\.conv\.{PARAM}", r"stages.\1.downsample.module.\2"),
        (rf"layers\.(\d+)\.1\.proj\.{PARAM}", r"stages.\1.peg.module.proj.\2"),
        *pooled_head_rules("to_logits"),
    ]
    return finish(out, state, rules, model)
