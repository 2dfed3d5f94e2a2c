"""The registry's metadata schema: what a plugin registers and how each field is validated.

Metadata is plain data: models are named by ``"module:attr"`` targets and imported only when built or
described (:func:`resolve`), so ``vit list`` does not import torch.  Parameter counts are measured from
the built model (``vit describe``), never typed into the metadata.  Every class validates itself when
created and raises :class:`MetadataError` naming each field that is wrong.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = {
    "model": "a classifier or backbone: input -> (batch, num_classes)",
    "trainer": "an SSL or distillation wrapper around a model: trainer(images[, labels]) -> scalar loss",
    "backend": "a trunk for a model's transformer= argument: (batch, tokens, dim) -> (batch, tokens, dim)",
}
"""What each ``ModelInfo.kind`` registers."""
INPUT_KINDS = {
    "image": "(batch, channels, height, width)",
    "video": "(batch, channels, frames, height, width)",
    "image-list": "list of (channels, height, width) images of any size",
    "tokens": "(batch, tokens, dim)",
}
"""``ModelInfo.input_kind`` values and the layout each stands for (``tokens``: backends only)."""
_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class MetadataError(ValueError):
    """A plugin registered incomplete or malformed metadata."""


class TargetImportError(ImportError):
    """A registered target (or importer) does not import; the message names the model and its plugin."""


def _check_shape(shape: Any) -> bool:
    return isinstance(shape, tuple) and bool(shape) and all(type(s) is int and s > 0 for s in shape)


@dataclass(frozen=True)
class Component:
    """A registered model built for one argument of another entry's configuration.

    A trainer's ``default_config`` names the model it wraps this way:
    ``{"encoder": Component("vit"), "decoder_dim": 32}`` builds ``vit`` from its default
    configuration and passes it as ``encoder=``.  ``config`` updates that configuration
    (``Component("vit", {"image_size": 64})``); ``model`` may be a preset (``"vit-b-16"``) or a
    qualified name (``"plugin:name"``).  ``trained=False`` marks a frozen part (a distillation
    teacher) that a trainer's loss need not reach.  ``create_model(name, encoder=my_model)``
    replaces the component with a model of your own.
    """

    model: str
    config: Mapping[str, Any] = field(default_factory=dict)
    trained: bool = True

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.model, str) or not _NAME.match(self.model.rpartition(":")[2]):
            problems.append(f"model must be a registered name, got {self.model!r}")
        if not isinstance(self.config, Mapping):
            problems.append(f"config must be a mapping of that model's arguments, got {self.config!r:.60}")
        if not isinstance(self.trained, bool):
            problems.append(f"trained must be a bool, got {self.trained!r}")
        if problems:
            raise MetadataError("Component: " + "; ".join(problems))

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{self.model}({args})" + ("" if self.trained else " [frozen]")

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "config": dict(self.config), "trained": self.trained}


@dataclass(frozen=True)
class Preset:
    """A named architecture (``"vit-b-16"``): the complete keyword arguments of the entry's target.

    ``config`` is not merged with the small ``default_config``: constructor defaults fill what it
    leaves out.  ``input_shape`` is one sample for the preset (default: the entry's
    ``input_shape``); ``summary`` replaces the entry's summary in ``vit describe``.  ``weights`` says
    where pretrained weights for the preset come from (shown by ``vit describe``; loaded with
    ``create_model(name, pretrained=PATH)``), and ``pretrained_cfg`` is their preprocessing (timm's
    vocabulary), given to a model loaded from a bare weights file that does not describe it.
    """

    config: Mapping[str, Any]
    input_shape: tuple[int, ...] | None = None
    summary: str = ""
    weights: str = ""
    pretrained_cfg: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.config, Mapping):
            problems.append("config must be a mapping of constructor arguments")
        if self.input_shape is not None and not _check_shape(self.input_shape):
            problems.append(f"input_shape must be None or a tuple of positive ints, got {self.input_shape!r}")
        if not isinstance(self.summary, str):
            problems.append("summary must be a string")
        if not isinstance(self.weights, str):
            problems.append("weights must be a string")
        if not isinstance(self.pretrained_cfg, Mapping):
            problems.append("pretrained_cfg must be a mapping (timm's vocabulary)")
        if problems:
            raise MetadataError("Preset: " + "; ".join(problems))


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """Everything ``vit list`` and ``vit describe`` show about one registered entry.

    Attributes:
        name: kebab-case registry name (``"vit"``, ``"simple-vit"``).
        target: ``"module:attr"`` of the class or factory.
        family: grouping such as ``"vit"``, ``"hierarchical"``, ``"video"``, ``"ssl"``.
        paper_title, paper_url: the paper the entry implements.
        summary: one line on what the entry changes.
        input_kind: ``"image"``, ``"video"``, ``"image-list"``, or ``"tokens"`` (backends).
        default_config: keyword arguments of a small configuration that builds in about a second;
            :class:`Component` values are registered models built for that argument.
        input_shape: one sample's shape for the default configuration, e.g. ``(3, 32, 32)``;
            ``(tokens, dim)`` for a backend.
        kind: ``"model"`` (default), ``"trainer"`` or ``"backend"`` (see :data:`KINDS`).
        presets: named architectures, ``{"vit-b-16": Preset({...})}``, registered as names of
            their own (``create_model("vit-b-16")``).
        takes_labels: trainers only: called as ``trainer(images, labels)``, not ``trainer(images)``.
        channels_arg, size_arg, frames_arg: the constructor arguments holding the input's channel
            count (``"channels"``; MobileViT's is ``"in_channels"``), its ``(height, width)`` or side
            (``"image_size"``; CCT's is ``"img_size"``) and, for video, its frame count (``"frames"``;
            CCT3D's is ``"num_frames"``): ``vit train``, ``vit bench`` and ``vit export`` read them to
            shape the input of a configuration that changes them.
        plugs_into: backends only (required): the model it is a ``transformer=`` for, with the
            configuration that fits the backend's default ``dim`` and token count.
        citation: BibTeX of the paper.
        example: a short Python example.
        importer: ``"module:function"`` converting a vit-pytorch state dict (see ``vit_core.interop.reference``).
        reference: the vit-pytorch class the entry mirrors, e.g. ``"vit_pytorch.vit.ViT"``.
        reference_config: constructor arguments the reference does not take (or ignores), at the
            values it hard-codes (vit-pytorch's CvT: ``{"dim_head": 64}``): ``vit convert`` builds
            the model with them, over ``default_config`` and under the user's ``--set``.
        timm_importer, timm_architectures: ``"module:function"`` loading timm weights of the timm
            architectures whose names match one of the shell-style ``timm_architectures`` (``("pit_*",)``)
            into this entry, for :func:`vit_core.load_pretrained`: called as ``function(arch, model_args,
            tensors, where, **overrides)``, it returns the loaded model with timm's ``pretrained_cfg`` of
            ``arch`` (see docs/pretrained.md).  Both or neither.
        plugin, distribution, version, preset_of: filled in by the registry.
    """

    name: str
    target: str
    family: str
    paper_title: str
    paper_url: str
    summary: str
    input_kind: str
    default_config: Mapping[str, Any]
    input_shape: tuple[int, ...]
    kind: str = "model"
    presets: Mapping[str, Preset] = field(default_factory=dict)
    takes_labels: bool = False
    channels_arg: str = "channels"
    size_arg: str = "image_size"
    frames_arg: str = "frames"
    plugs_into: Component | None = None
    citation: str = ""
    example: str = ""
    importer: str | None = None
    reference: str | None = None
    reference_config: Mapping[str, Any] = field(default_factory=dict)
    timm_importer: str | None = None
    timm_architectures: tuple[str, ...] = ()
    plugin: str = ""
    distribution: str = ""
    version: str = ""
    preset_of: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            problems.append(f"name must be kebab-case (e.g. 'my-vit'), got {self.name!r}")
        for attr in ("target", "importer", "timm_importer"):
            value = getattr(self, attr)
            if (value is not None or attr == "target") and not (isinstance(value, str) and _TARGET.match(value)):
                problems.append(f"{attr} must be a 'module:attr' string, got {value!r}")
        for attr in ("family", "paper_title", "summary", "channels_arg", "size_arg", "frames_arg"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr).strip():
                problems.append(f"{attr} must be a non-empty string")
        if not isinstance(self.paper_url, str) or not self.paper_url.startswith(("http://", "https://")):
            problems.append(f"paper_url must be an http(s) link, got {self.paper_url!r}")
        if self.input_kind not in INPUT_KINDS:
            problems.append(f"input_kind must be one of {sorted(INPUT_KINDS)}, got {self.input_kind!r}")
        if not isinstance(self.default_config, Mapping):
            problems.append("default_config must be a mapping of constructor arguments")
        if not isinstance(self.reference_config, Mapping):
            problems.append("reference_config must be a mapping of constructor arguments")
        if not isinstance(self.timm_architectures, tuple) or not all(
            isinstance(p, str) and p for p in self.timm_architectures
        ):
            problems.append(f"timm_architectures must be a tuple of name patterns, got {self.timm_architectures!r}")
        elif bool(self.timm_architectures) != (self.timm_importer is not None):
            problems.append("timm_importer and timm_architectures go together: set both or neither")
        if not _check_shape(self.input_shape):
            problems.append(f"input_shape must be a tuple of positive ints, got {self.input_shape!r}")
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(map(repr, KINDS))}, got {self.kind!r}")
        else:
            problems += self._kind_problems()
        problems += self._preset_problems()
        if problems:
            raise MetadataError(f"model {self.name!r}: " + "; ".join(problems))

    def _kind_problems(self) -> list[str]:
        problems = []
        if (self.input_kind == "tokens") != (self.kind == "backend"):
            problems.append(
                "a backend takes input_kind='tokens' with input_shape=(tokens, dim)"
                if self.kind == "backend"
                else "input_kind 'tokens' is for backends (kind='backend')"
            )
        if self.kind == "backend" and _check_shape(self.input_shape) and len(self.input_shape) != 2:
            problems.append(f"a backend's input_shape is (tokens, dim), got {self.input_shape!r}")
        if self.kind == "backend" and not isinstance(self.plugs_into, Component):
            problems.append(
                "a backend must say what it plugs into: plugs_into=Component('vit', {...}), the model "
                "whose transformer= it fills"
            )
        if self.kind != "backend" and self.plugs_into is not None:
            problems.append("plugs_into is for backends (kind='backend')")
        if not isinstance(self.takes_labels, bool) or (self.takes_labels and self.kind != "trainer"):
            problems.append(f"takes_labels must be a bool and is for trainers, got {self.takes_labels!r}")
        if (
            self.kind == "trainer"
            and isinstance(self.default_config, Mapping)
            and not any(c.trained for c in self.components.values())
        ):
            problems.append("a trainer's default_config names the model it trains: {'encoder': Component('vit'), ...}")
        return problems

    def _preset_problems(self) -> list[str]:
        if not isinstance(self.presets, Mapping):
            return [f"presets must be a mapping of name to Preset, got {self.presets!r:.60}"]
        problems = []
        for name, preset in self.presets.items():
            if not isinstance(name, str) or not _NAME.match(name) or name == self.name:
                problems.append(f"preset name must be kebab-case and differ from the model's, got {name!r}")
            if not isinstance(preset, Preset):
                problems.append(f"preset {name!r} must be a Preset(config, ...), got {type(preset).__name__}")
        return problems

    @property
    def qualified_name(self) -> str:
        """``"plugin:name"``: reaches this entry even when another plugin claims the same name."""
        return f"{self.plugin}:{self.name}"

    @property
    def input_layout(self) -> str:
        return INPUT_KINDS[self.input_kind]

    @property
    def components(self) -> dict[str, Component]:
        """The arguments of ``default_config`` that are registered models built for it."""
        return {arg: value for arg, value in self.default_config.items() if isinstance(value, Component)}

    def load_class(self) -> Any:
        """Import the target; a failure is a :class:`TargetImportError` naming the model and its plugin."""
        try:
            return resolve(self.target)
        except Exception as exc:
            raise TargetImportError(
                f"{self.describe_origin()}: target {self.target!r} does not import ({type(exc).__name__}: {exc})"
            ) from exc

    def describe_origin(self) -> str:
        """``"model 'x' of plugin 'p' (dist 1.0)"``, for messages."""
        origin = f"{self.kind} {self.name!r}"
        if self.plugin:
            origin += f" of plugin {self.plugin!r} ({self.distribution} {self.version})".replace(" )", ")")
        return origin

    def signature(self) -> inspect.Signature:
        return inspect.signature(self.load_class())

    def example_input(self, batch: int = 1) -> Any:
        """A random input of the default configuration: a tensor, or a list for ``image-list``."""
        import torch

        if self.input_kind == "image-list":
            return [torch.randn(self.input_shape) for _ in range(batch)]
        return torch.randn(batch, *self.input_shape)


def resolve(target: str) -> Any:
    """Import ``"package.module:attr.sub"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
