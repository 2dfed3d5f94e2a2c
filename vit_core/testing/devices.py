"""The ``devices`` check: a model, trainer or backend runs where its parameters are, without host traffic.

A model that works on the CPU can still fail on a GPU (a tensor made on the CPU inside ``forward`` meets
the device's tensors) or stall it (``.item()``, ``tolist()``, ``if tensor:`` wait for the device; a
``torch.tensor([...], device=...)`` or a CPU index copies from the host every call).  This check finds
both on any CPU machine: it moves the entry to PyTorch's ``meta`` device (shapes, no data) and runs
``forward`` and ``backward`` in train mode and ``forward`` in eval mode under :class:`DeviceRecorder`,
which fails on

* a CPU tensor (other than a 0-dim scalar) meeting a tensor of the device in one call;
* a host read of a device tensor (``item``, ``tolist``, ``__bool__``, ``__int__``, ``__float__``,
  ``numpy``, a copy to the CPU);
* a host-to-device copy (``torch.tensor``/``as_tensor``/``new_tensor`` of host data on the device,
  ``.to(device)`` or ``copy_`` of a CPU tensor, indexing by a Python list).

Counts a model needs on the host come from shapes; constants are buffers (they move with the model) or
Python scalars.  For models the tools run under the same recorder (host reads allowed there, as a tool
returns numbers): ``Recorder``, ``Extractor``, :func:`~vit_core.tools.attention_map.attention_map` for
image models, and ``reset_classifier`` followed by a forward.  A trainer also runs
``update_moving_average`` when it declares it.  :func:`on_device` checks any other code (an evaluation
helper, a tool of a plugin) the same way.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from vit_core.models.base import MovingAverageTrainer
from vit_core.testing.subject import Subject, describe

META = torch.device("meta")

HOST_READS = frozenset(
    {Tensor.item, Tensor.tolist, Tensor.__bool__, Tensor.__int__, Tensor.__float__, Tensor.__index__, Tensor.numpy}
)
"""Methods that wait for a device tensor's data on the host."""
MOVES = frozenset({Tensor.to, Tensor.cuda, Tensor.cpu, Tensor.copy_, Tensor.__getitem__, Tensor.__setitem__})
HOST_DATA = frozenset({torch.tensor, torch.as_tensor, torch.asarray, Tensor.new_tensor})
"""Factories that copy host data (Python lists, scalars) into a tensor: on the device, a host-to-device copy."""
_HERE = str(Path(__file__).resolve())
_TORCH = str(Path(torch.__file__).resolve().parent)


class DeviceHazard(AssertionError):
    """Code under :class:`DeviceRecorder` did something that fails or stalls on an accelerator."""


def _caller() -> str:
    """``file:line`` of the innermost frame outside torch and this module (where the hazard is)."""
    for frame in reversed(traceback.extract_stack()):
        path = str(Path(frame.filename).resolve())
        if path != _HERE and not path.startswith(_TORCH) and "contextlib" not in path:
            return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "unknown location"


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _target(args: tuple, kwargs: dict) -> torch.device | None:
    """The device a ``Tensor.to``/``Tensor.cuda`` call moves to, when it names one."""
    for value in (*args[1:], kwargs.get("device"), kwargs.get("other")):
        if isinstance(value, Tensor):
            return value.device
        if isinstance(value, (torch.device, str)):
            try:
                return torch.device(value)
            except RuntimeError:
                continue
    return None


def _holds_list(index: Any) -> bool:
    if isinstance(index, list):
        return True
    return isinstance(index, tuple) and any(isinstance(i, list) for i in index)


class DeviceRecorder(TorchFunctionMode):
    """While active: raise :class:`DeviceHazard` on any CPU tensor meeting a ``device`` tensor and, unless
    ``host_reads`` is true, on any host read of or host-to-device copy to a ``device`` tensor.

    With ``host_reads`` (for tools, which return numbers) a read of a ``meta`` tensor returns a zero of the
    asked type instead of failing, so the code around it runs on.
    """

    def __init__(self, device: torch.device = META, *, host_reads: bool = False) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.host_reads = host_reads

    def hazard(self, what: str) -> DeviceHazard:
        return DeviceHazard(f"{what} at {_caller()}")

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)]
        on_device = [t for t in tensors if t.device == self.device]
        if func in HOST_READS and on_device and args and args[0] is on_device[0]:
            if not self.host_reads:
                raise self.hazard(f"{_name(func)}() reads a {self.device.type} tensor on the host (a device sync)")
            if self.device.type == "meta":
                return _zero_like(func, args[0])
        if func in HOST_DATA:
            device = kwargs.get("device")
            device = args[0].device if func is Tensor.new_tensor and device is None else device
            data = args[1] if func is Tensor.new_tensor else (args[0] if args else None)
            copies = device is not None and torch.device(device) == self.device and not isinstance(data, Tensor)
            if copies and not self.host_reads:
                raise self.hazard(
                    f"{_name(func)}() copies host data to the {self.device.type} device (a host-to-device "
                    "copy per call): make it a buffer, or use Python scalars"
                )
        if func in MOVES and args and isinstance(args[0], Tensor):
            source = args[0]
            if func is Tensor.copy_ and len(args) > 1 and isinstance(args[1], Tensor):
                moving = args[1].device.type == "cpu" and source.device == self.device
            elif func in (Tensor.__getitem__, Tensor.__setitem__):
                moving = source.device == self.device and _holds_list(args[1] if len(args) > 1 else None)
            elif func is Tensor.cpu:
                moving = False
                if source.device == self.device and not self.host_reads:
                    raise self.hazard(f"cpu() copies a {self.device.type} tensor to the host (a device sync)")
            else:
                moving = source.device.type == "cpu" and _target(args, kwargs) == self.device
            if moving and not self.host_reads:
                raise self.hazard(f"{_name(func)} copies host data to the {self.device.type} device per call")
        if on_device:
            strays = [t for t in tensors if t.device.type == "cpu" and t.ndim > 0]
            if strays and func not in (Tensor.to, Tensor.copy_):
                raise self.hazard(
                    f"{_name(func)}() mixes a CPU tensor of shape {tuple(strays[0].shape)} with a "
                    f"{self.device.type} tensor: make it on the input's device (device=x.device), as a buffer, "
                    "or from Python scalars"
                )
        return func(*args, **kwargs)


def _zero_like(func: Any, tensor: Tensor) -> Any:
    """What a host read of ``tensor`` returns, as zeros (``meta`` holds no data)."""
    if func is Tensor.tolist:
        return torch.zeros(tensor.shape, dtype=tensor.dtype).tolist()
    if func is Tensor.numpy:
        return torch.zeros(tensor.shape, dtype=tensor.dtype).numpy()
    if tensor.dtype == torch.bool or func is Tensor.__bool__:
        return False
    if func in (Tensor.__int__, Tensor.__index__) or not tensor.is_floating_point():
        return 0
    return 0.0


@contextmanager
def on_device(device: torch.device = META, *, host_reads: bool = False) -> Iterator[DeviceRecorder]:
    """Run the block under a :class:`DeviceRecorder` (see the module docstring); ``host_reads=True`` for
    tools, which may read their results back."""
    with DeviceRecorder(device, host_reads=host_reads) as recorder:
        yield recorder


def to_device(value: Any, device: torch.device = META) -> Any:
    """``value`` (a tensor or nested lists/tuples/dicts of them) with every tensor moved to ``device``."""
    return tree_map(lambda t: t.to(device) if isinstance(t, Tensor) else t, value)


def _scalar(out: Any) -> Tensor:
    """A scalar depending on every floating-point tensor ``out`` holds (its backward reaches them all)."""
    tensors = [t for t in tree_flatten(out)[0] if isinstance(t, Tensor) and t.is_floating_point()]
    tokens = getattr(out, "tokens", None)  # packed features (NaViT) carry their tensor as ``tokens``
    if isinstance(tokens, Tensor):
        tensors.append(tokens)
    if not tensors:
        raise TypeError(f"the output holds no floating-point tensor ({type(out).__name__})")
    return torch.stack([t.float().sum() for t in tensors]).sum()


def _run(s: Subject, what: str, call: Callable[[], Any], *, host_reads: bool = False) -> Any:
    try:
        with on_device(META, host_reads=host_reads):
            return call()
    except DeviceHazard as exc:
        raise s.fail("devices", f"{what}: {exc}") from exc
    except Exception as exc:
        raise s.fail(
            "devices",
            f"{what} on the meta device raised {describe(exc)} (a data-dependent operation such as nonzero(), "
            "or a tensor left off the module: plain tensor attributes do not follow .to(device); register "
            "them as buffers)",
        ) from exc


def check_devices(s: Subject) -> None:
    """On the ``meta`` device: forward and backward in train mode, forward in eval mode, no CPU tensor
    meeting the device's and no host traffic; then, for models, the tools (see the module docstring)."""
    if s.info.kind == "trainer":
        module, parts = s.create_with_parts()
        args = s.active_registry.example_args(s.info, parts, s.batch)
    else:
        module, args = s.create(), (s.example(),)
    module, args = module.to(META), to_device(args)
    module.train()
    out = _run(s, "forward (train mode)", lambda: module(*args))
    _run(s, "backward", lambda: _scalar(out).backward())
    if isinstance(module, MovingAverageTrainer):
        _run(s, "update_moving_average()", module.update_moving_average)
    module.eval()
    with torch.no_grad():
        _run(s, "forward (eval mode)", lambda: module(*args))
    if s.info.kind == "model":
        _check_tools(s, module, args[0])


def _check_tools(s: Subject, model: nn.Module, x: Any) -> None:
    """Recorder, Extractor, attention maps (image models) and ``reset_classifier`` on the ``meta`` model;
    a tool that refuses the model (a TypeError/ValueError naming why) is not a device fault."""
    from vit_core.tools.attention_map import attention_map
    from vit_core.tools.extractor import Extractor
    from vit_core.tools.recorder import Recorder

    with torch.no_grad():
        for name, tool in (("Recorder(model)(x)", Recorder), ("Extractor(model)(x)", Extractor)):
            try:
                wrapped = tool(model)
            except (TypeError, ValueError):
                continue
            try:
                _run(s, name, lambda wrapped=wrapped: wrapped(x), host_reads=True)
            finally:
                wrapped.eject()
        if s.info.input_kind == "image":
            _run(s, "attention_map(model, x)", lambda: _unless_refused(attention_map, model, x[:1]), host_reads=True)
        if callable(getattr(model, "reset_classifier", None)) and getattr(model, "num_classes", 0):
            model.reset_classifier(3)
            _run(s, "reset_classifier(3), then forward", lambda: model(x), host_reads=True)


def _unless_refused(tool: Callable[..., Any], *args: Any) -> None:
    """``tool(*args)``; a model the tool refuses (a TypeError/ValueError naming why) is not a device fault."""
    with suppress(TypeError, ValueError):
        tool(*args)
