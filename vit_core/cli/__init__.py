"""The ``vit`` command line: list, describe and inspect the models of every installed plugin.

Only ``vit describe`` imports torch (to build the default configuration and count parameters
and FLOPs); ``vit --help``, ``vit list`` and ``vit plugins`` read metadata only.  Errors are one
line on stderr and exit code 1: an unknown, ambiguous or unavailable name, a filter of
``vit list`` that matches nothing, a target that does not import or a configuration that does not
build.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from vit_core.runtime import allocator
from vit_core.registry import (
    ALLOWLIST_ENV,
    KINDS,
    Component,
    ModelInfo,
    ModelLookupError,
    Registry,
    TargetImportError,
    get_registry,
    human,
)

app = typer.Typer(
    name="vit",
    help="Vision transformers: list, describe and inspect the models of every installed plugin.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


RetainFreedMemory = Annotated[
    bool,
    typer.Option(
        help="Keep freed CPU memory in the process for the next step (vit_core.runtime.allocator; glibc: no page faults "
        "per large tensor, 21% of a ViT-B/16 training step on a 2-core VM; peak memory in vit bench is measured "
        "in fresh processes either way).",
    ),
]
"""``vit train`` and ``vit bench``: malloc keeps freed memory (on by default)."""


def _fail(message: str) -> NoReturn:
    errors.print("[red]error:[/red] ", end="")
    errors.print(message, markup=False, highlight=False)
    raise typer.Exit(1)


def _json_value(value: Any) -> Any:
    if isinstance(value, Component):
        return value.to_json()
    return repr(value)


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_value)


def _info_dict(registry: Registry, info: ModelInfo) -> dict[str, Any]:
    return {
        "name": registry.key(info),
        "qualified_name": info.qualified_name,
        "kind": info.kind,
        "preset_of": info.preset_of,
        "plugin": info.plugin,
        "distribution": info.distribution,
        "version": info.version,
        "family": info.family,
        "input_kind": info.input_kind,
        "input_shape": list(info.input_shape),
        "paper_title": info.paper_title,
        "paper_url": info.paper_url,
        "summary": info.summary,
        "target": info.target,
        "default_config": dict(info.default_config),
        "presets": list(info.presets),
        "components": {arg: c.to_json() for arg, c in info.components.items()},
        "takes_labels": info.takes_labels,
        "channels_arg": info.channels_arg,
        "size_arg": info.size_arg,
        "frames_arg": info.frames_arg,
        "plugs_into": info.plugs_into.to_json() if info.plugs_into else None,
        "reference": info.reference,
        "reference_config": dict(info.reference_config),
        "ambiguous": info.name in registry.conflicts,
    }


def _warn_registry(registry: Registry) -> None:
    """One stderr line each: plugins that failed, shared names, allowlist entries naming nothing."""
    failed = [p.name for p in registry.plugins.values() if not p.loaded]
    if failed:
        errors.print(
            f"[yellow]{len(failed)} plugin(s) failed to load: {', '.join(failed)} (see `vit plugins`)[/yellow]"
        )
    partial = [p.name for p in registry.plugins.values() if p.loaded and not p.ok]
    if partial:
        errors.print(
            f"[yellow]{len(partial)} plugin(s) loaded with errors: {', '.join(partial)} (see `vit plugins`)[/yellow]"
        )
    for name, claims in registry.conflicts.items():
        use = " or ".join(c.qualified_name for c in claims)
        errors.print(f"[yellow]name {name!r} is claimed by several plugins; use {use}[/yellow]")
    if registry.unmatched_allowlist:
        installed = sorted({p.split(" (")[0] for p in registry.skipped} | set(registry.plugins) - {"vit-core"})
        errors.print(
            f"[yellow]{ALLOWLIST_ENV} names {', '.join(map(repr, registry.unmatched_allowlist))}, which match no "
            f"installed plugin (entry-point or distribution name); installed: {', '.join(installed) or 'none'}"
            "[/yellow]"
        )


def _check_filters(registry: Registry, plugin: str | None, family: str | None, kind: str | None) -> None:
    """A filter value that no entry could match is an error that lists the valid values."""
    if kind is not None and kind not in KINDS:
        _fail(f"no kind {kind!r}; kinds: {', '.join(KINDS)}")
    if plugin is not None:
        names = {r.name for r in registry.plugins.values()} | {r.distribution for r in registry.plugins.values()}
        if plugin not in names:
            _fail(f"no plugin {plugin!r} is loaded; plugins: {', '.join(registry.plugins)}")
        record = next((r for r in registry.plugins.values() if plugin in (r.name, r.distribution)), None)
        if record is not None and not record.loaded:
            _fail(f"plugin {plugin!r} failed to load, so it lists nothing: {record.cause}")
    if family is not None:
        families = sorted({i.family for i in registry.entries.values()})
        if family not in families:
            _fail(f"no family {family!r}; families: {', '.join(families)}")


@app.command("list")
def list_command(
    pattern: Annotated[str | None, typer.Argument(help="Shell-style wildcard on the name, e.g. 'vit*'.")] = None,
    plugin: Annotated[str | None, typer.Option("--plugin", "-p", help="Only entries of this plugin.")] = None,
    family: Annotated[str | None, typer.Option("--family", "-f", help="Only entries of this family.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", "-k", help=f"Only this kind: {', '.join(KINDS)}.")] = None,
    presets: Annotated[bool, typer.Option(help="Include named architecture presets.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List every registered model, trainer, backend and preset: name, kind, plugin, family, input, paper.

    Exits 1 (with a message on stderr) when nothing matches.
    """
    registry = get_registry()
    _check_filters(registry, plugin, family, kind)
    infos = registry.list(pattern, plugin, kind=kind, family=family, presets=presets)
    if as_json:
        print(_dumps([_info_dict(registry, i) for i in infos]))
    elif infos:
        _print_table(registry, infos)
    _warn_registry(registry)
    if not infos:
        filters = [f"{k}={v!r}" for k, v in (("plugin", plugin), ("family", family), ("kind", kind)) if v is not None]
        what = f"matches {pattern!r}" if pattern is not None else "is registered"
        _fail(f"no entry {what}" + (f" with {', '.join(filters)}" if filters else "") + "; run `vit list` for all")


def _print_table(registry: Registry, infos: list[ModelInfo]) -> None:
    n_presets = sum(i.preset_of is not None for i in infos)
    counts = [(sum(i.kind == kind and i.preset_of is None for i in infos), kind) for kind in KINDS]
    parts = [f"{n} {kind}{'s' * (n != 1)}" for n, kind in [*counts, (n_presets, "preset")] if n]
    title = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    table = Table(title=title, title_justify="left")
    columns = ["name", "kind", "preset of", "plugin", "family", "input", "paper"]
    if not n_presets:
        columns.remove("preset of")
    for column in columns:  # names stay whole, to be copied
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "preset of"))
    for info in infos:
        row = {
            "name": registry.key(info),
            "kind": info.kind,
            "preset of": info.preset_of or "",
            "plugin": info.plugin,
            "family": info.family,
            "input": info.input_kind,
            "paper": _short_paper(info.paper_url),
        }
        table.add_row(*(row[c] for c in columns))
    console.print(table)


def _short_paper(url: str) -> str:
    """``https://arxiv.org/abs/2010.11929`` -> ``arXiv:2010.11929``; other links unchanged."""
    prefix = "https://arxiv.org/abs/"
    return "arXiv:" + url[len(prefix) :] if url.startswith(prefix) else url


def _fix(info: ModelInfo) -> str:
    where = f"plugin {info.plugin!r} ({info.distribution})" if info.plugin else "its plugin"
    return f"fix the ModelInfo that {where} returns from vit_register_models"


def _checked_signature(info: ModelInfo) -> str:
    """The target's signature, after checking it imports and fits the default configuration (or exit 1)."""
    import inspect

    try:
        signature = info.signature().replace(return_annotation=inspect.Signature.empty)
    except TargetImportError as exc:
        _fail(f"{exc}; {_fix(info)}, or install what the target imports")
    except (TypeError, ValueError) as exc:
        _fail(f"{info.describe_origin()}: target {info.target!r} is not a class or factory ({exc}); {_fix(info)}")
    try:
        signature.bind_partial(**info.default_config)
    except TypeError as exc:
        what = "preset config" if info.preset_of else "default_config"
        _fail(f"{info.describe_origin()}: {what} does not fit {info.target}{signature}: {exc}; {_fix(info)}")
    return str(signature)


def _measure(registry: Registry, info: ModelInfo) -> tuple[int, int | None]:
    """Parameters and FLOPs of the default configuration (FLOPs ``None`` where counting fails); exit 1
    with one line when the configuration does not build.

    Measured on the meta device first (no memory, no arithmetic: a ViT-L preset takes a moment), and
    on real tensors where a model cannot run there (data-dependent shapes such as NaViT's packing).
    """
    import torch

    from vit_core.registry import count_flops, count_parameters

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
        _fail(f"building {info.describe_origin()} from {what} raised {type(exc).__name__}: {exc}; {_fix(info)}")
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


@app.command()
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
        _fail(str(exc))
    signature = _checked_signature(info)
    for arg, component in info.components.items():
        try:
            registry.info(component.model)
        except ModelLookupError as exc:
            _fail(f"{info.describe_origin()}: {arg}={component} cannot be built: {exc}; {_fix(info)}")
    params, flops = _measure(registry, info) if measure else (None, None)
    if as_json:
        data = {
            **_info_dict(registry, info),
            "signature": signature,
            "num_params": params,
            "flops": flops,
            "citation": info.citation,
            "example": info.example,
            "importer": info.importer,
        }
        print(_dumps(data))
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


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Installed plugins: version, hook API version, what each registers, load errors and name conflicts."""
    from vit_core import __version__
    from vit_core.hookspecs import HOOK_API_VERSION

    registry = get_registry()
    records = list(registry.plugins.values())
    if as_json:
        print(_dumps([r.to_json() for r in records]))
        _warn_registry(registry)
        return
    console.print(f"vit-core {__version__}, hook API version {HOOK_API_VERSION}")
    table = Table(title_justify="left")
    for column in ("plugin", "distribution", "version", "api", "registers", "status"):
        table.add_column(column, overflow="fold")
    for r in records:
        status = "[green]ok[/green]" if r.ok else f"[red]{len(r.errors)} error(s)[/red]"
        if r.warnings:
            status += f", [yellow]{len(r.warnings)} warning(s)[/yellow]"
        registers = ", ".join(r.models) + (f" (+{len(r.presets)} presets)" if r.presets else "")
        table.add_row(r.name, r.distribution, r.version, str(r.api_version or "-"), registers or "-", status)
    console.print(table)
    if registry.skipped:
        allowlist = os.environ.get(ALLOWLIST_ENV, "")
        console.print(f"not loaded ({ALLOWLIST_ENV}={allowlist!r}): {', '.join(registry.skipped)}", markup=False)
    for r in records:
        where = f"plugin {r.name} ({r.distribution} {r.version})".replace(" )", ")")
        for label, messages in (("[red]error[/red]", r.errors), ("[yellow]warning[/yellow]", r.warnings)):
            for message in messages:
                console.print(f"{label} in {where}: ", end="")
                console.print(message, markup=False, highlight=False)
    _warn_registry(registry)


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="Kebab-case plugin name, e.g. 'acme-vit' (package acme_vit).")],
    directory: Annotated[str | None, typer.Option("--dir", help="Where to write it (default: ./NAME).")] = None,
) -> None:
    """Write a ready-to-install plugin: pyproject with the entry point, hooks, one model, conformance tests."""
    from vit_core.scaffold import generate_plugin, next_steps, plugin_root

    try:
        written = generate_plugin(name, directory)
    except (ValueError, FileExistsError) as exc:
        _fail(str(exc))
    root = plugin_root(name, directory)
    console.print(f"created plugin {name} in {root} ({len(written)} files); next:", highlight=False)
    console.print(next_steps(name, root), markup=False, highlight=False)


@app.command()
def train(
    name: Annotated[str, typer.Argument(help="A registered model or trainer (see `vit list`).")],
    encoder: Annotated[
        str | None, typer.Option(help="Trainers: the registered model inside, e.g. `vit train mae --encoder vit`.")
    ] = None,
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Model argument as key=value (a Python literal); repeatable.")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="digits (bundled, no download; default), synthetic, or folder:PATH; --resume: the run's."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Global batch (split over torchrun's processes).")] = 64,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 3e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.05,
    warmup: Annotated[float, typer.Option(help="Linear warm-up, a fraction of the steps; cosine decay after.")] = 0.1,
    label_smoothing: Annotated[float, typer.Option(help="Cross-entropy label smoothing (classifiers).")] = 0.0,
    clip: Annotated[float, typer.Option(help="Gradient-norm clipping (0: off).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights, the batch order and dropout.")] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps in all.")] = None,
    out: Annotated[str, typer.Option(help="Folder for metrics.jsonl and checkpoint/.")] = "runs/{name}",
    resume: Annotated[str | None, typer.Option(help="Continue the run in this folder from its checkpoint.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda when present).")] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads per process (default: OMP_NUM_THREADS, else 1).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    log_every: Annotated[int, typer.Option(help="Write a train line to metrics.jsonl every N steps.")] = 10,
    retain_freed_memory: RetainFreedMemory = True,
) -> None:
    """Train a registered model (classifiers: accuracy on a held-out split) or a trainer around an encoder.

    AdamW with linear warm-up and cosine decay, gradient clipping, metrics as JSON lines in
    OUT/metrics.jsonl and a checkpoint in OUT/checkpoint (vit_core.load_model reads it). Under
    `torchrun --nproc-per-node N` the same command trains with DistributedDataParallel.
    """
    from pathlib import Path

    from vit_core.training.loop import TrainConfig, TrainError, parse_sets, print_summary
    from vit_core.training.loop import train as run

    if retain_freed_memory:
        allocator.retain_freed_memory()
    try:
        cfg = TrainConfig(
            name=name,
            encoder=encoder,
            overrides=parse_sets(sets or []),
            data=data,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup=warmup,
            label_smoothing=label_smoothing,
            clip=clip,
            seed=seed,
            max_steps=max_steps,
            out=Path(out.format(name=name.replace(":", "-"))),
            resume=Path(resume) if resume is not None else None,
            device=device,
            threads=threads,
            progress=progress,
            log_every=log_every,
        )
        result = run(cfg, log=lambda text: console.print(text, markup=False, highlight=False))
    except ModelLookupError as exc:
        _fail(str(exc))
    except (TrainError, ValueError, TypeError, ImportError) as exc:
        _fail(f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrainError) else str(exc))
    if result.out is not None:
        print_summary(console, result)


def _settings(pairs: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs of a constructor (values as ``vit train`` reads them: ``parse_sets``)."""
    from vit_core.training.loop import TrainError, parse_sets

    bad = [pair for pair in pairs or [] if not pair.partition("=")[0].strip().isidentifier() or "=" not in pair]
    if bad:
        _fail(f"--set takes key=value with key an argument name (e.g. --set dim=64), got {bad[0]!r}")
    try:
        return parse_sets(pairs or [])
    except TrainError as exc:
        _fail(str(exc))


def _convert_help(ctx: typer.Context, value: bool) -> None:
    """``vit convert --help``: the usual help, then the models that register a vit-pytorch importer."""
    if not value or ctx.resilient_parsing:
        return
    from vit_core.interop.saving import importer_models

    console.print(ctx.get_help(), markup=False, highlight=False)
    console.print("\nModels with a vit-pytorch importer (NAME: the reference class it reads):")
    for name, reference in importer_models():
        console.print(f"  {name}: {reference or '-'}", markup=False, highlight=False)
    raise typer.Exit()


@app.command(context_settings={"help_option_names": []})
def convert(
    name: Annotated[str, typer.Argument(help="A registered model with an importer (listed below).")],
    state_dict: Annotated[str, typer.Argument(help="A vit-pytorch state dict file: torch.save(model.state_dict()).")],
    out_dir: Annotated[str, typer.Argument(help="The folder to write (config.json and model.safetensors).")],
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="key=value constructor argument of the reference model (a Python literal or JSON value, e.g. "
            "--set dim=64 --set image_size=[32,48]); repeat for each argument differing from the default "
            "configuration.",
        ),
    ] = None,
    _help: Annotated[
        bool,
        typer.Option("--help", is_eager=True, expose_value=True, callback=_convert_help, help="Show this and exit."),
    ] = False,
) -> None:
    """Convert a vit-pytorch state dict into a folder vit_core.load_model reads.

    The file is read with torch.load(weights_only=True) (tensors only: never a pickle that runs code),
    imported through the model's registered importer, checked tensor by tensor, and saved with
    vit_core.save_model.
    """
    from vit_core.interop.saving import convert_reference

    try:
        folder = convert_reference(name, state_dict, out_dir, **_settings(settings))
    except ModelLookupError as exc:
        _fail(str(exc))
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    console.print(f"wrote {folder} ({name} from {state_dict})", markup=False, highlight=False)


@app.command()
def bench(
    names: Annotated[list[str], typer.Argument(help="Registered models, trainers or backends to compare.")],
    batch: Annotated[int, typer.Option(help="Samples per call.")] = 8,
    rounds: Annotated[int, typer.Option(help="Timed rounds kept (medians are reported).")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed calls of each model first.")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    sets: Annotated[
        list[str] | None, typer.Option("--set", help="Argument for every model, key=value (a Python literal).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    retain_freed_memory: RetainFreedMemory = True,
) -> None:
    """Parameters, FLOPs, inference and training images/s and peak training memory, side by side.

    The models are timed interleaved in one process (round after round, one call of each), so that a
    busy shared machine slows every row alike; rounds during which other processes used the CPU are
    repeated.
    """
    from vit_core.runtime.bench import bench as run
    from vit_core.runtime.bench import print_table
    from vit_core.training.loop import TrainError, parse_sets

    if retain_freed_memory:
        allocator.retain_freed_memory()
    try:
        rows = run(names, batch=batch, rounds=rounds, warmup=warmup, device=device, overrides=parse_sets(sets or []))
    except ModelLookupError as exc:
        _fail(str(exc))
    except (TrainError, ValueError, TypeError, RuntimeError) as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print_table(console, rows, batch, device)


@app.command()
def attention(
    name: Annotated[str, typer.Argument(help="A registered ViT-like model (patches and a class token).")],
    image: Annotated[str, typer.Option(help="The input image (any format Pillow reads).")],
    out: Annotated[str, typer.Option(help="The PNG to write (the input's size).")],
    checkpoint: Annotated[
        str | None, typer.Option(help="Weights: a save_model folder or a `vit train` run folder.")
    ] = None,
    method: Annotated[str, typer.Option(help="rollout (through every layer) or last (the last layer).")] = "rollout",
    sets: Annotated[list[str] | None, typer.Option("--set", help="Model argument key=value (no checkpoint).")] = None,
) -> None:
    """Draw where the model's class token attends (attention rollout or the last layer) over the image."""
    from pathlib import Path

    from vit_core.tools.attention_map import draw
    from vit_core.interop.saving import CONFIG_FILE, load_model
    from vit_core.training.loop import TrainError, parse_sets

    registry = get_registry()
    try:
        info = registry.info(name)
        if checkpoint is not None and sets:
            _fail("--set configures a fresh model; --checkpoint loads the saved configuration (drop --set)")
        if checkpoint is None:
            errors.print("[yellow]no --checkpoint: drawing the attention of untrained (random) weights[/yellow]")
            model = registry.create(name, **parse_sets(sets or []))
        else:
            folder = Path(checkpoint)
            folder = folder / "checkpoint" if (folder / "checkpoint" / CONFIG_FILE).is_file() else folder
            if not (folder / CONFIG_FILE).is_file():
                _fail(f"--checkpoint {checkpoint}: no {CONFIG_FILE} (expected a vit_core.save_model folder)")
            saved = json.loads((folder / CONFIG_FILE).read_text()).get("model")
            if not registry.saved_as(saved, info.qualified_name):
                _fail(f"--checkpoint {checkpoint}: the checkpoint is of model {saved!r}, not {name!r}")
            model = load_model(folder)
        heat = draw(model, image, out, method)
    except ModelLookupError as exc:
        _fail(str(exc))
    except (TrainError, ValueError, TypeError, OSError) as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    peak = divmod(int(heat.flatten().argmax()), heat.shape[1])
    console.print(f"wrote {out}: {method} attention over a {tuple(heat.shape)} patch grid, peak at patch {peak}")


EXPORT_FORMATS = ("onnx", "pt2")


@app.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help="A registered model or backend (see `vit list`).")],
    out: Annotated[str, typer.Option("--out", "-o", help="The file to write (.onnx or .pt2).")],
    format_: Annotated[
        str | None,
        typer.Option("--format", "-f", help="onnx (onnxruntime) or pt2 (torch.export); default: from --out's suffix."),
    ] = None,
    weights: Annotated[
        str | None, typer.Option("--from", help="A folder written by vit_core.save_model (default: fresh weights).")
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="key=value constructor argument (a Python literal or JSON value); repeatable."),
    ] = None,
) -> None:
    """Export a model with a dynamic batch axis: torch.export (.pt2, torch.export.load reads it) or ONNX.

    The model is built from its default configuration (updated by --set) or loaded with --from, and
    traced on an input of the shape its configuration takes (channels, frames, image size: the saved
    configuration with --from, a resized model's included); ONNX needs pip install 'vit-core\\[export]'.
    """
    from pathlib import Path

    import torch

    from vit_core.interop.export import ExportError, export_onnx, export_program, save_program
    from vit_core.training.loop import sample_shape

    suffix = Path(out).suffix.lstrip(".")
    format_ = format_ or (suffix if suffix in EXPORT_FORMATS else "onnx")
    if format_ not in EXPORT_FORMATS:
        _fail(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {format_!r}")
    if suffix in EXPORT_FORMATS and suffix != format_:
        _fail(f"--out {out} names a .{suffix} file but --format is {format_}: drop --format or change the suffix")
    if weights is not None and settings:
        _fail(
            "--set configures a fresh model; --from loads the saved configuration (resize a saved model with "
            "set_input_size before save_model)"
        )
    registry = get_registry()
    try:
        info = registry.info(name)
        if info.kind == "trainer":
            _fail(f"{name!r} is a trainer (a training-time wrapper returning a loss); export the model it trains")
        if weights is not None:
            from vit_core.interop.saving import load_model

            model = load_model(weights)
            saved = registry.info_for_class(type(model))
            if saved.target != info.target:
                _fail(f"--from {weights} holds {saved.name!r}, not {name!r}; run vit export {saved.name} --from ...")
            info, config = saved, getattr(model, "init_config", {})
        else:
            config = {**info.default_config, **_settings(settings)}
            model = registry.create(name, **config)
        shape = sample_shape(info, config)
        example = [torch.randn(shape) for _ in range(2)] if info.input_kind == "image-list" else torch.randn(2, *shape)
        program = export_program(model.eval(), example)
        path = save_program(program, out) if format_ == "pt2" else export_onnx(program, example, out)
    except ModelLookupError as exc:
        _fail(str(exc))
    except (ExportError, ValueError, TypeError, ImportError) as exc:
        _fail(f"{type(exc).__name__}: {exc}" if isinstance(exc, ImportError) else str(exc))
    console.print(f"wrote {path} ({name}, {format_}, dynamic batch axis)", markup=False, highlight=False)


def main() -> None:
    app()

