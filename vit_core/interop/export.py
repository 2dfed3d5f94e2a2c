"""Deployment: ``torch.export`` programs (``.pt2``) and ONNX files with a dynamic batch axis.

:func:`export_program` traces a model into a :class:`torch.export.ExportedProgram` whose batch
axis is symbolic; :func:`export_onnx` converts it to ONNX (``torch.onnx.export``, the dynamo
exporter: needs the ``onnx`` and ``onnxscript`` packages, ``pip install 'vit-core[export]'``), its
input and output named for their role (:func:`onnx_names`: ``image`` -> ``logits`` for an image
classifier) and its batch axis ``batch``.
:func:`check_export` does both and compares the exported program and onnxruntime against eager
PyTorch on another batch size; where a model cannot export, :class:`ExportError` names the
operator that blocked it (e.g. ``aten.nonzero``: a data-dependent shape).
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ONNX_TOLERANCE = 1e-4
"""Largest absolute difference allowed between onnxruntime's outputs and eager PyTorch's."""
PROGRAM_TOLERANCE = 1e-5
"""Largest absolute difference allowed between the exported program's outputs and eager PyTorch's."""
ONNX_INPUT_NAMES = {"image": "image", "video": "video", "tokens": "tokens"}
"""The ONNX input's name for each ``ModelInfo.input_kind`` that exports (an image list has no batch axis)."""
_EXPORTER_LOGGERS = ("torch.onnx._internal.exporter._registration",)
"""Loggers whose warnings are the exporter's internals (e.g. "torchvision is not installed. Skipping
torchvision::nms" for every torchvision operator it could register): nothing a user can act on."""
_OP = re.compile(r"(?:torch\.ops\.)?(aten|prims|onnx)(?:::|\.)([A-Za-z_]\w*)(?:\.(\w+))?")


class ExportError(RuntimeError):
    """A model that does not export (or exports wrong); ``stage`` says where, ``op`` the blocking operator."""

    def __init__(self, stage: str, message: str, op: str | None = None) -> None:
        self.stage, self.op = stage, op
        where = f" at operator {op}" if op else ""
        super().__init__(f"{stage} failed{where}: {message}")


_CALL = re.compile(r'The following call raised this error:\s*\n\s*(File "[^"]*", line \d+, in \w+)(?:\n\s*(\S[^\n]*))?')
DATA_DEPENDENT = "aten.item (a tensor's value used as a Python number or bool: data-dependent control flow)"


def blocking_op(exc: BaseException) -> str | None:
    """The operator an export error names (``aten.nonzero.default``), or :data:`DATA_DEPENDENT` for a guard on
    a tensor's value; ``None`` when the message names none."""
    for error in (exc, exc.__cause__, exc.__context__):
        text = str(error) if error is not None else ""
        if "data-dependent expression" in text:
            return DATA_DEPENDENT
        match = _OP.search(text)
        if match:
            return ".".join(part for part in match.groups() if part)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {text[0] if text else ''}"[:400]
    call = _CALL.search(str(exc))
    if call:
        message += f" (raised by {call.group(1)}" + (f": {call.group(2).strip()}" if call.group(2) else "") + ")"
    return message


def _batch_shapes(x: Any) -> Any:
    if not isinstance(x, Tensor):
        raise ExportError(
            "torch.export",
            f"the model takes {type(x).__name__} input (not one batched tensor), so it has no batch axis to export",
        )
    return ({0: torch.export.Dim("batch", min=1, max=1024)},)


def export_program(model: nn.Module, example: Tensor) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` (in eval mode) on ``example``, with a dynamic batch axis."""
    model = model.eval()
    shapes = _batch_shapes(example)
    try:
        with torch.no_grad():
            return torch.export.export(model, (example,), dynamic_shapes=shapes, strict=False)
    except Exception as exc:
        raise ExportError("torch.export", _first_line(exc), blocking_op(exc)) from exc


def onnx_names(kind: str, input_kind: str) -> tuple[str, str]:
    """The ONNX input and output names of a registered entry of ``kind`` taking ``input_kind``: a model's
    input is named by its kind (``image``, ``video``) and its output ``logits``; a backend maps ``tokens``
    to ``features``."""
    if input_kind not in ONNX_INPUT_NAMES:
        raise ValueError(f"input_kind={input_kind!r} does not export; expected one of {', '.join(ONNX_INPUT_NAMES)}")
    return ONNX_INPUT_NAMES[input_kind], "features" if kind == "backend" else "logits"


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence, while the exporter runs, its internal warnings: :data:`_EXPORTER_LOGGERS` and the
    ``FutureWarning`` deprecations its own code triggers in torch (e.g. ``isinstance(treespec, LeafSpec)``)."""
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(
    model: nn.Module | torch.export.ExportedProgram,
    example: Tensor,
    path: str | Path,
    *,
    input_name: str = "image",
    output_name: str = "logits",
) -> Path:
    """Write ``model`` (a module, or a program from :func:`export_program`) as ONNX with a dynamic batch axis
    named ``batch``, its input called ``input_name`` and its (first) output ``output_name``
    (:func:`onnx_names` gives a registered entry's)."""
    for arg, value in (("input_name", input_name), ("output_name", output_name)):
        if not isinstance(value, str) or not value.isidentifier():
            raise ValueError(f"{arg}={value!r}: expected an identifier such as 'image' or 'logits'")
    if input_name == output_name:
        raise ValueError(f"input_name and output_name are both {input_name!r}: ONNX needs two names")
    program = model if isinstance(model, torch.export.ExportedProgram) else export_program(model, example)
    path = Path(path)
    try:
        with _quiet_exporter():
            onnx_program = torch.onnx.export(
                program,
                (example,),
                dynamo=True,
                optimize=False,
                input_names=[input_name],
                output_names=[output_name],
                verbose=False,
            )
        _name_batch_axis(onnx_program.model.graph)
        onnx_program.save(str(path))
    except Exception as exc:
        raise ExportError("torch.onnx.export", _first_line(exc), blocking_op(exc)) from exc
    return path


def _name_batch_axis(graph: Any) -> None:
    """Call the input's dynamic first axis ``batch`` wherever it appears (the exporter names it after
    its internal symbol, e.g. ``s45``), so onnxruntime users see which axis is dynamic."""
    import onnx_ir as ir

    symbol = graph.inputs[0].shape.dims[0] if graph.inputs and graph.inputs[0].shape is not None else None
    if not isinstance(symbol, ir.SymbolicDim):
        return
    values = [*graph.inputs, *graph.outputs, *(out for node in graph for out in node.outputs)]
    for value in values:
        if value.shape is not None and any(d == symbol for d in value.shape.dims):
            value.shape = ir.Shape([ir.SymbolicDim("batch") if d == symbol else d for d in value.shape.dims])


def save_program(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    """Write an exported program (``.pt2``; load it with ``torch.export.load``)."""
    torch.export.save(program, str(path))
    return Path(path)


@dataclass
class ExportReport:
    """How far an exported model is from eager PyTorch, on a batch of ``batch`` (not the traced one)."""

    batch: int
    program_error: float
    onnx_error: float


def _max_error(a: Tensor, b: Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def check_export(model: nn.Module, example: Tensor, other: Tensor, *, onnx: bool = True) -> ExportReport:
    """Export ``model`` traced on ``example`` and compare on ``other`` (another batch size): the exported
    program within :data:`PROGRAM_TOLERANCE`, onnxruntime within :data:`ONNX_TOLERANCE`; an
    :class:`ExportError` otherwise."""
    model = model.eval()
    with torch.no_grad():
        expected = model(other)
    program = export_program(model, example)
    try:
        with torch.no_grad():
            got = program.module()(other)
    except Exception as exc:
        raise ExportError("the exported program", _first_line(exc), blocking_op(exc)) from exc
    program_error = _max_error(got, expected)
    if got.shape != expected.shape or not program_error <= PROGRAM_TOLERANCE:
        raise ExportError(
            "the exported program",
            f"batch {other.shape[0]} gives {tuple(got.shape)}, max abs difference {program_error:.2e} from eager "
            f"(tolerance {PROGRAM_TOLERANCE})",
        )
    onnx_error = float("nan")
    if onnx:
        onnx_error = _onnx_error(program, example, other, expected)
    return ExportReport(int(other.shape[0]), program_error, onnx_error)


def _onnx_error(program: torch.export.ExportedProgram, example: Tensor, other: Tensor, expected: Tensor) -> float:
    import onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(program, example, Path(folder) / "model.onnx")
        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            got = torch.from_numpy(session.run(None, {name: other.numpy()})[0])
        except Exception as exc:
            raise ExportError("onnxruntime", _first_line(exc), blocking_op(exc)) from exc
    error = _max_error(got, expected)
    if got.shape != expected.shape or not error <= ONNX_TOLERANCE:
        raise ExportError(
            "onnxruntime",
            f"batch {other.shape[0]} gives {tuple(got.shape)}, max abs difference {error:.2e} from eager "
            f"(tolerance {ONNX_TOLERANCE})",
        )
    return error
