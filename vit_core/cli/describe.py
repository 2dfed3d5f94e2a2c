"""``vit describe``: one entry's summary, paper, signature, size, presets, example and citation.

It builds the default configuration (torch imported here only) to count parameters and FLOPs; a target
that does not import, a configuration that does not fit the signature or does not build is one
``error:`` line naming the plugin and the fix.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.syntax import Syntax

from vit_core.cli.catalog import info_dict
from vit_core.cli.output import console, dumps, fail
from vit_core.registry import Component, ModelInfo, ModelLookupError, Registry, TargetImportError, get_registry
from vit_core.runtime.measure import human


def _fix(info: ModelInfo) -> str:
    where = f"plugin {info.plugin!r} ({info.distribution})" if info.plugin else "its plugin"
    return f"fix the ModelInfo that {where} returns from vit_register_models"


def _checked_signature(info: ModelInfo) -> str:
    """The target's signature, after checking it imports and fits the default configuration (or exit 1)."""
    import inspect

    try:
        signature = info.signature().replace(return_annotation=inspect.Signature.empty)
    except TargetImportError as exc:
        fail(f"{exc}; {_fix(info)}, or install what the target imports")
    except (TypeError, ValueError) as exc:
        fail(f"{info.describe_origin()}: target {info.target!r} is not a class or factory ({exc}); {_fix(info)}")
    try:
        signature.bind_partial(**info.default_config)
    except TypeError as exc:
        what = "preset config" if info.preset_of else "default_config"
        fail(f"{info.describe_origin()}: {what} does not fit {info.target}{signature}: {exc}; {_fix(info)}")
    return str(signature)


def _measure(registry: Registry, info: ModelInfo) -> tuple[int, int | None]:
    """Parameters and FLOPs of the default configuration (FLOPs ``None`` where counting fails); exit 1
    with one line when the configuration does not build.

    Measured on the meta device first (no memory, no arithmetic: a ViT-L preset takes a moment), and
    on real tensors where a model cannot run there (data-dependent shapes such as NaViT's packing).
    """
    import torch

    from vit_core.runtime.measure import count_flops, count_parameters

    try:
        with torch.device("meta"):
            model, parts = registry.create_with_parts(registry.key(info))
            return count_parameters(model), count_flops(model, *registry.example_args(info, parts, 1))
    except Exception:
        pass
    try:
        model, parts = registry.create_with_parts(registry.key(info))
    except Exception as exc:
        what = "its preset config" if info.preset_of else "its default_config"
        fail(f"building {info.describe_origin()} from {what} raised {type(exc).__name__}: {exc}; {_fix(info)}")
    try:
        flops = count_flops(model, *registry.example_args(info, parts, 1))
    except Exception:
        flops = None
    return count_parameters(model), flops


def _kind_lines(registry: Registry, info: ModelInfo) -> list[tuple[str, str]]:
    """What ``vit describe`` says about how a trainer or backend is used."""
    if info.kind == "trainer":
        call = "trainer(images, labels)" if info.takes_labels else "trainer(images)"
        lines = [("kind", f"trainer: {call} returns a scalar loss; backward trains the wrapped model")]
        for arg, component in info.components.items():
            role = "trained" if component.trained else "frozen"
            lines.append(("wraps", f"{arg}={component}  ({role}; pass your own: {arg}=model)"))
        return lines
    if info.kind == "backend":
        host = info.plugs_into
        assert host is not None  # ModelInfo validation guarantees it for backends
        return [
            ("kind", f"backend: {info.input_layout} -> the same shape, a trunk for transformer="),
            ("plugs into", f"{host}: create_model({host.model!r}, transformer=create_model({info.name!r}))"),
        ]
    return [("kind", "model")]


def describe(
    name: Annotated[str, typer.Argument(help="Registered name, bare or 'plugin:name' (see `vit list`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    measure: Annotated[
        bool, typer.Option(help="Build the default configuration to count parameters and FLOPs.")
    ] = True,
) -> None:
    """Summary, paper, citation, signature, parameters and FLOPs of the default configuration, and an example."""
    registry = get_registry()
    try:
        info = registry.info(name)
    except ModelLookupError as exc:
        fail(str(exc))
    signature = _checked_signature(info)
    for arg, component in info.components.items():
        try:
            registry.info(component.model)
        except ModelLookupError as exc:
            fail(f"{info.describe_origin()}: {arg}={component} cannot be built: {exc}; {_fix(info)}")
    params, flops = _measure(registry, info) if measure else (None, None)
    if as_json:
        data = {
            **info_dict(registry, info),
            "signature": signature,
            "num_params": params,
            "flops": flops,
            "citation": info.citation,
            "example": info.example,
            "importer": info.importer,
        }
        print(dumps(data))
        return
    _print_description(registry, info, signature, params, flops)


def _print_description(
    registry: Registry, info: ModelInfo, signature: str, params: int | None, flops: int | None
) -> None:
    def line(label: str, text: str) -> None:
        console.print(f"[bold]{label:<10}[/bold] ", end="")
        console.print(text, markup=False, highlight=False)

    console.rule(f"[bold]{registry.key(info)}[/bold]  ({info.kind}, {info.plugin} {info.version})")
    console.print(info.summary, markup=False)
    if info.preset_of:
        line("preset of", f"{info.preset_of}: a named architecture; `vit describe {info.preset_of}` for its model")
    line("paper", f"{info.paper_title}\n           {info.paper_url}")
    line("class", info.target + (f"   (mirrors {info.reference})" if info.reference else ""))
    for label, text in _kind_lines(registry, info):
        line(label, text)
    line("input", f"{info.input_kind}: {info.input_layout}; default sample {info.input_shape}")
    line("signature", f"{info.name}{signature}")
    config = ", ".join(f"{k}={v}" if isinstance(v, Component) else f"{k}={v!r}" for k, v in info.default_config.items())
    line("preset" if info.preset_of else "default", config)
    if info.presets:
        line("presets", ", ".join(info.presets) + "  (create_model(name) builds one)")
    if params is None:
        line("size", "not measured (--no-measure)")
    else:
        flop_text = f"{human(flops)}FLOPs per sample" if flops is not None else "FLOPs not measured"
        line("size", f"{human(params)} parameters ({params:,}); {flop_text}")
    preset = registry.info(f"{info.plugin}:{info.preset_of}").presets.get(info.name) if info.preset_of else None
    if preset is not None and preset.weights:
        line("weights", f"{preset.weights}: create_model({info.name!r}, pretrained=PATH), docs/pretrained.md")
    if info.importer:
        line("weights", f"vit_core.load_reference_weights(model, state_dict)  via {info.importer}")
        if info.reference_config:
            fixed = ", ".join(f"{k}={v!r}" for k, v in info.reference_config.items())
            line("", f"{info.reference} hard-codes {fixed}: vit convert builds with them")
    if info.example:
        console.print("[bold]example[/bold]")
        console.print(Syntax("import torch\n" + info.example, "python", theme="ansi_dark"))
    if info.citation:
        console.print("[bold]citation[/bold]")
        console.print(info.citation, markup=False, highlight=False)
