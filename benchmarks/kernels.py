"""``python -m benchmarks.kernels [--write DIR]``: which fused attention kernel every registered model's
``scaled_dot_product_attention`` calls would get on CUDA, in float32 and in bfloat16 autocast, and why a
call falls back.  No timing: each model's default configuration runs one forward pass on the
``meta`` device in train mode (the path a GPU takes: no CPU-only shortcut), the calls are recorded with a
``TorchFunctionMode``, and torch's documented eligibility rules (``torch/backends/cuda``,
``sdp_utils``) are applied to the recorded shapes, dtypes, masks, strides and dropout.  torch picks the
first eligible kernel in its priority order (``torch._C._get_sdp_priority_order``: flash,
memory-efficient, math, then cuDNN)."""

from __future__ import annotations

import argparse
import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from vit_core.registry import get_registry
from vit_core.testing.devices import to_device
from vit_core.testing.subject import Subject

PAGE = "attention-kernels.md"
META = torch.device("meta")
FLASH_MAX_HEAD_WIDTH = 256
CUDNN_MAX_HEAD_WIDTH = 128
HALF = (torch.float16, torch.bfloat16)
NAMES = {"FLASH_ATTENTION": "flash", "EFFICIENT_ATTENTION": "memory-efficient", "CUDNN_ATTENTION": "cuDNN"}


@dataclass(frozen=True)
class Call:
    """One recorded ``scaled_dot_product_attention`` call: what the kernel choice depends on."""

    q: tuple[int, ...]
    k: tuple[int, ...]
    v: tuple[int, ...]
    strided: bool
    mask: str | None
    mask_grad: bool
    dropout: float

    @classmethod
    def of(cls, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: Any, dropout_p: float) -> Call:
        mask = None if attn_mask is None else ("boolean" if attn_mask.dtype == torch.bool else "float")
        return cls(
            tuple(q.shape),
            tuple(k.shape),
            tuple(v.shape),
            any(t.stride(-1) != 1 for t in (q, k, v)),
            mask,
            attn_mask is not None and attn_mask.requires_grad,
            float(dropout_p),
        )


class SdpaRecorder(TorchFunctionMode):
    """Records every ``F.scaled_dot_product_attention`` call made under it (and runs it)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v, *rest = args
            attn_mask = kwargs.get("attn_mask", rest[0] if rest else None)
            dropout_p = kwargs.get("dropout_p", rest[1] if len(rest) > 1 else 0.0)
            self.calls.append(Call.of(q, k, v, attn_mask, dropout_p))
        return func(*args, **kwargs)


def refusals(call: Call, dtype: torch.dtype) -> dict[str, str | None]:
    """For each fused kernel, why it does not take ``call`` in ``dtype`` (``None``: it does)."""
    d, e = call.q[-1], call.v[-1]
    mask = f"a {call.mask} attention mask" if call.mask else None
    shape = "not 4-D" if len(call.q) != 4 else None
    strided = "a strided last axis" if call.strided else None
    flash = (
        shape
        or (f"{str(dtype).removeprefix('torch.')} (flash takes float16/bfloat16)" if dtype not in HALF else None)
        or (f"{mask} (flash takes none)" if mask else None)
        or (f"values {e} wide, keys {d}" if e != d or call.k[-1] != d else None)
        or (f"head width {d} > {FLASH_MAX_HEAD_WIDTH}" if d > FLASH_MAX_HEAD_WIDTH else None)
        or strided
    )
    align = 8 if dtype in HALF else 4
    efficient = (
        shape
        or (f"head widths {d}/{e} not multiples of {align}" if d % align or e % align or call.k[-1] != d else None)
        or strided
    )
    cudnn = (
        shape
        or (f"{str(dtype).removeprefix('torch.')} (cuDNN takes float16/bfloat16)" if dtype not in HALF else None)
        or (f"values {e} wide, keys {d}" if e != d else None)
        or (
            f"head width {d} not a multiple of 8 up to {CUDNN_MAX_HEAD_WIDTH}"
            if d % 8 or d > CUDNN_MAX_HEAD_WIDTH
            else None
        )
        or ("a mask that needs a gradient" if call.mask_grad else None)
        or strided
    )
    return {"flash": flash, "memory-efficient": efficient, "cuDNN": cudnn}


def priority() -> list[str]:
    """torch's kernel priority order, as kernel names (``math`` included)."""
    from torch.nn.attention import SDPBackend

    order = [SDPBackend(i).name for i in torch._C._get_sdp_priority_order()]
    return [NAMES.get(name, "math") for name in order if name in NAMES or name == "MATH"]


def chosen(call: Call, dtype: torch.dtype) -> tuple[str, list[str]]:
    """The kernel torch picks for ``call`` in ``dtype`` and why each kernel before it refused."""
    refused = refusals(call, dtype)
    why = []
    for kernel in priority():
        if kernel == "math":
            return kernel, why
        if refused[kernel] is None:
            return kernel, why
        why.append(f"{kernel}: {refused[kernel]}")
    return "math", why


def record(name: str) -> list[Call]:
    """The SDPA calls of ``name``'s default configuration, one forward in train mode on ``meta``."""
    subject = Subject(get_registry().info(name))
    model, x = subject.create().to(META).train(), to_device(subject.example())
    with SdpaRecorder() as recorder:
        model(x)
    return recorder.calls


def summary(calls: list[Call], dtype: torch.dtype) -> tuple[str, list[str]]:
    """``calls``' kernels (``"flash x6, math x1"``) and the distinct reasons a kernel was skipped."""
    kernels: collections.Counter[str] = collections.Counter()
    reasons: dict[str, None] = {}
    for call in calls:
        kernel, why = chosen(call, dtype)
        kernels[kernel] += 1
        if kernel == "math":
            reasons.update(dict.fromkeys(w for w in why if "float32 (" not in w))
    return ", ".join(f"{k} x{n}" for k, n in kernels.most_common()), list(reasons)


def rows(names: list[str] | None = None) -> list[list[str]]:
    """One row per registered model: name, calls, fp32 kernels, bf16 kernels, why a call falls back to math."""
    registry = get_registry()
    names = names or [registry.key(i) for i in registry.list(presets=False, kind="model")]
    out = []
    for name in names:
        try:
            calls = record(name)
        except Exception as exc:
            out.append([f"`{name}`", "-", "-", "-", f"not recorded: {type(exc).__name__}: {exc}"[:160]])
            continue
        if not calls:
            out.append([f"`{name}`", "0", "-", "-", "no SDPA call (explicit scores)"])
            continue
        fp32, why32 = summary(calls, torch.float32)
        bf16, why16 = summary(calls, torch.bfloat16)
        why = "; ".join(dict.fromkeys([*why16, *why32])) or "-"
        out.append([f"`{name}`", str(len(calls)), fp32, bf16, why])
    return out


def render(table: list[list[str]]) -> str:
    """The generated page."""
    header = ["model", "SDPA calls", "float32", "bfloat16 autocast", "why a call falls back to math"]
    lines = [
        "# Attention kernels on CUDA",
        "",
        "<!-- generated by `python -m benchmarks.kernels --write docs` (or `python -m benchmarks --kernel-table`):"
        " do not edit -->",
        "",
        "W" + (__doc__ or "").split(":", 1)[1].strip().replace("\n", " ")[1:],
        "",
        "Counts are calls per forward pass (train mode) of the model's small default configuration.",
        "NaViT's packed attention is one `varlen_attn` (flash) call per layer on CUDA in float16/bfloat16 and is",
        "recorded here as its per-run fallback. A model with no call computes its scores explicitly",
        "(it transforms them, or records them).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table),
        "",
    ]
    return "\n".join(lines)


def write(directory: Path) -> Path:
    """Write the page into ``directory``; returns its path."""
    path = Path(directory) / PAGE
    path.write_text(render(rows()))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__)
    parser.add_argument("--write", type=Path, metavar="DIR", help=f"write {PAGE} into DIR instead of printing it")
    args = parser.parse_args(argv)
    print(f"wrote {write(args.write)}" if args.write else render(rows()))


if __name__ == "__main__":
    main()
