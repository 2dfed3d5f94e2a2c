"""The `vit` command line on installed test plugins: the real program (``python -m vit_core.cli`` in a
subprocess) for the collision, failed-plugin and describe-error cases and the JSON schemas, typer's
runner in this process for what builds models.

The plugins are fake distributions (a module plus a ``*.dist-info`` with a real entry point) in a
temporary directory on ``PYTHONPATH``, so discovery goes through ``importlib.metadata`` exactly as for
pip-installed plugins.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.fake_plugins import HEADER, install_fake, registering
from vit_core.cli import app
from vit_core.registry import create_model, reset_registry
from vit_core.runtime.measure import count_parameters

MISFIT = """

class Misfit:
    def __init__(self, *, num_classes: int, dim: int) -> None:
        self.num_classes, self.dim = num_classes, dim
"""
UNMARKED = (
    "\n@hookimpl\ndef vit_api_version():\n    return 2\n\ndef vit_register_models():\n    return [toy('quiet-vit')]\n"
)
TYPO = "\n@hookimpl\ndef vit_api_version():\n    return 2\n\n@hookimpl\ndef vit_register_model():\n    return []\n"
PLUGINS = {
    "alpha": registering("toy('shared-vit')", "toy('alpha-vit')", "toy('vit')"),
    "beta": registering("toy('shared-vit', summary=\"Beta's shared model.\")"),
    "broken": "raise ImportError('alpha-beta-gamma is not installed')",
    "late": registering("toy('late-vit')", "{'name': 'not-a-model-info'}"),
    "ghost": registering("toy('ghost-vit', target='no_such_module:Ghost')"),
    "misfit": registering("toy('misfit-vit', target='fake_misfit_plugin:Misfit')", extra=MISFIT),
    "crasher": registering("toy('crash-vit', target='vit_core.models.vit:ViT', default_config={**TINY, 'heads': 0})"),
    "unmarked": HEADER + UNMARKED,
    "typo": HEADER + TYPO,
}

SUBPROCESS_COMMANDS = {
    "list": ["list", "--json"],
    "list-no-match": ["list", "*3d*"],
    "plugins": ["plugins", "--json"],
    "describe-shared": ["describe", "shared-vit"],
    "describe-late": ["describe", "late-vit"],
    "describe-unknown": ["describe", "nothing-vit"],
    "describe-ghost": ["describe", "ghost-vit"],
    "describe-misfit": ["describe", "misfit-vit"],
}
"""Run as real processes: none imports torch, so together they take a few seconds."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    for name, source in PLUGINS.items():
        install_fake(site, name, source, dist=f"vit-test-{name}")
    return site


@pytest.fixture(scope="module")
def runs(site: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every command of :data:`SUBPROCESS_COMMANDS`, started at once: ``python -m vit_core.cli ...``."""
    env = {k: v for k, v in os.environ.items() if k != "VIT_PLUGINS"}
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env |= {"PYTHONPATH": path, "VIT_PLUGINS": ",".join(PLUGINS), "COLUMNS": "200", "NO_COLOR": "1"}
    started = {
        key: subprocess.Popen(
            [sys.executable, "-m", "vit_core.cli", *args],
            env=env,
            cwd=site,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for key, args in SUBPROCESS_COMMANDS.items()
    }
    done = {}
    for key, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        done[key] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert "torch" not in "".join(r.stderr for r in done.values())
    return done


@pytest.fixture
def invoke(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """The same plugins in this process, through typer's runner (for what needs torch: building models)."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("VIT_PLUGINS", ",".join(PLUGINS))
    importlib.invalidate_caches()
    reset_registry()
    yield lambda *args, **env: CliRunner().invoke(app, list(args), env=env or None)
    reset_registry()
    for name in PLUGINS:
        sys.modules.pop(f"fake_{name}_plugin", None)


def one_error_line(result: Any, *, after_warnings: bool = False) -> str:
    """The command (a finished process or typer's result) exited 1 with one stderr line ``error: ...`` (last,
    after the registry's warnings where ``after_warnings``) and no traceback."""
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    assert code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines and (after_warnings or len(lines) == 1), result.stderr
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.stderr
    return lines[-1]


LIST_SCHEMA = {
    "name": str,
    "qualified_name": str,
    "kind": str,
    "preset_of": (str, type(None)),
    "plugin": str,
    "distribution": str,
    "version": str,
    "family": str,
    "input_kind": str,
    "input_shape": list,
    "paper_title": str,
    "paper_url": str,
    "summary": str,
    "target": str,
    "default_config": dict,
    "presets": list,
    "components": dict,
    "takes_labels": bool,
    "channels_arg": str,
    "size_arg": str,
    "frames_arg": str,
    "plugs_into": (dict, type(None)),
    "reference": (str, type(None)),
    "reference_config": dict,
    "ambiguous": bool,
}
DESCRIBE_SCHEMA = {
    **LIST_SCHEMA,
    "signature": str,
    "num_params": (int, type(None)),
    "flops": (int, type(None)),
    "citation": str,
    "example": str,
    "importer": (str, type(None)),
}
PLUGINS_SCHEMA = {
    "name": str,
    "distribution": str,
    "version": str,
    "api_version": (int, type(None)),
    "loaded": bool,
    "ok": bool,
    "models": list,
    "presets": list,
    "errors": list,
    "warnings": list,
}


def check_schema(item: dict[str, Any], schema: dict[str, Any]) -> None:
    assert set(item) == set(schema), set(item) ^ set(schema)
    for key, kind in schema.items():
        assert isinstance(item[key], kind) and not (kind is int and isinstance(item[key], bool)), (key, item[key])


# Through the real program.


def test_list_json_schema(runs: dict[str, Any]) -> None:
    result = runs["list"]
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)
    for item in items:
        check_schema(item, LIST_SCHEMA)
        assert all(isinstance(n, int) for n in item["input_shape"]) and all(isinstance(p, str) for p in item["presets"])
    assert '"distribution": "vit-test-alpha"' in result.stdout  # what noxfile's plugin_install greps for
    by_name = {i["qualified_name"]: i for i in items}
    assert by_name["vit-core:vit"]["presets"][:4] == ["vit-ti-16", "vit-s-16", "vit-b-16", "vit-l-16"]
    assert "dinov2-s-14-reg4" in by_name["vit-core:vit"]["presets"]  # the pretrained presets (docs/pretrained.md)
    assert by_name["vit-core:vit-b-16"]["preset_of"] == "vit" and by_name["vit-core:vit-b-16"]["name"] == "vit-b-16"
    assert by_name["alpha:alpha-vit"]["name"] == "alpha-vit" and not by_name["alpha:alpha-vit"]["ambiguous"]
    assert (
        by_name["alpha:alpha-vit"]["distribution"] == "vit-test-alpha"
        and by_name["alpha:alpha-vit"]["version"] == "1.2.3"
    )


def test_a_shared_name_is_listed_qualified_and_asking_for_it_bare_lists_both(runs: dict[str, Any]) -> None:
    items = json.loads(runs["list"].stdout)
    shared = [i for i in items if i["qualified_name"].endswith(":shared-vit")]
    assert [(i["name"], i["ambiguous"]) for i in shared] == [("alpha:shared-vit", True), ("beta:shared-vit", True)]
    assert "name 'shared-vit' is claimed by several plugins; use alpha:shared-vit or beta:shared-vit" in (
        runs["list"].stderr
    )
    line = one_error_line(runs["describe-shared"])
    assert "model name 'shared-vit' is claimed by plugin 'alpha' (vit-test-alpha 1.2.3) and plugin 'beta'" in line
    assert "use 'alpha:shared-vit' or 'beta:shared-vit'" in line


def test_core_names_cannot_be_taken(runs: dict[str, Any]) -> None:
    records = {r["name"]: r for r in json.loads(runs["plugins"].stdout)}
    assert "model name 'vit' is reserved by vit-core; not registered: rename it" in records["alpha"]["errors"]
    assert records["alpha"]["models"] == ["shared-vit", "alpha-vit"] and records["alpha"]["loaded"]
    vit = [i for i in json.loads(runs["list"].stdout) if i["qualified_name"].endswith(":vit")]
    assert [i["plugin"] for i in vit] == ["vit-core"]


def test_plugins_json_schema_and_hook_diagnostics(runs: dict[str, Any]) -> None:
    result = runs["plugins"]
    assert result.returncode == 0, result.stderr
    records = {r["name"]: r for r in json.loads(result.stdout)}
    for record in records.values():
        check_schema(record, PLUGINS_SCHEMA)
    assert set(records) == {"vit-core", *PLUGINS}
    core = records["vit-core"]
    assert core["ok"] and core["api_version"] == 2 and core["models"] == ["vit", "simple-vit", "navit"]
    assert len(core["presets"]) == 14
    assert records["beta"]["distribution"] == "vit-test-beta" and records["beta"]["version"] == "1.2.3"
    assert records["beta"]["ok"] and records["beta"]["warnings"] == [
        "name 'shared-vit' is also claimed by plugin 'alpha' (vit-test-alpha 1.2.3): no plugin gets the bare "
        "name; use 'beta:shared-vit'"
    ]
    assert not records["broken"]["loaded"] and "ImportError: alpha-beta-gamma" in records["broken"]["errors"][0]
    assert records["unmarked"]["errors"][0].startswith("function vit_register_models is not marked as a hook")
    assert records["typo"]["errors"][0].endswith("did you mean 'vit_register_models'?")


def test_a_model_of_a_failed_plugin_is_reported_as_such(runs: dict[str, Any]) -> None:
    line = one_error_line(runs["describe-late"])
    assert line.startswith(
        "error: model 'late-vit' belongs to plugin 'late' which failed to load: vit_register_models must return "
        "ModelInfo objects"
    )
    unknown = one_error_line(runs["describe-unknown"])
    assert unknown.startswith("error: unknown model 'nothing-vit'")
    assert "plugin 'broken' failed to load and may provide it: import of fake_broken_plugin failed: ImportError" in (
        unknown
    )


def test_describe_errors_are_one_line_naming_plugin_model_and_fix(runs: dict[str, Any]) -> None:
    ghost = one_error_line(runs["describe-ghost"])
    assert "model 'ghost-vit' of plugin 'ghost' (vit-test-ghost 1.2.3): target 'no_such_module:Ghost' does not" in ghost
    assert "ModuleNotFoundError: No module named 'no_such_module'" in ghost
    assert "fix the ModelInfo that plugin 'ghost' (vit-test-ghost) returns from vit_register_models" in ghost
    misfit = one_error_line(runs["describe-misfit"])
    assert "model 'misfit-vit' of plugin 'misfit' (vit-test-misfit 1.2.3): default_config does not fit" in misfit
    assert "fake_misfit_plugin:Misfit(*, num_classes: int, dim: int)" in misfit
    assert "unexpected keyword argument 'image_size'" in misfit and "fix the ModelInfo that plugin 'misfit'" in misfit


def test_a_filter_that_matches_nothing_says_so_and_exits_1(runs: dict[str, Any]) -> None:
    assert (
        one_error_line(runs["list-no-match"], after_warnings=True)
        == "error: no entry matches '*3d*'; run `vit list` for all"
    )


# In this process (building models needs torch, which the real program would import once per command).


def test_describe_a_qualified_name(invoke: Callable[..., Any]) -> None:
    result = invoke("describe", "beta:shared-vit", "--json")
    data = json.loads(result.stdout)
    check_schema(data, DESCRIBE_SCHEMA)
    assert data["summary"] == "Beta's shared model." and data["num_params"] > 0 and data["flops"] > 0
    assert data["name"] == "beta:shared-vit" and data["ambiguous"]


def test_describe_a_configuration_that_does_not_build(invoke: Callable[..., Any]) -> None:
    crash = one_error_line(invoke("describe", "crash-vit"))
    assert "building model 'crash-vit' of plugin 'crasher' (vit-test-crasher 1.2.3) from its default_config" in crash
    assert "raised ValueError: heads" in crash and "fix the ModelInfo that plugin 'crasher'" in crash
    quiet = one_error_line(invoke("describe", "quiet-vit"))
    assert "model 'quiet-vit' belongs to plugin 'unmarked' which failed to load: function vit_register_models" in quiet


def test_describe_a_preset(invoke: Callable[..., Any]) -> None:
    result = invoke("describe", "vit-s-16")
    assert result.exit_code == 0, result.output
    assert "preset of  vit: a named architecture" in result.stdout
    assert "preset     image_size=224, patch_size=16, num_classes=1000, dim=384, depth=12, heads=6" in result.stdout
    assert f"parameters ({count_parameters(create_model('vit-s-16')):,})" in result.stdout
    assert "Warning" not in result.stderr, result.stderr  # torch's "Failed to initialize NumPy" and the like


def test_list_table_and_filters(invoke: Callable[..., Any]) -> None:
    family = json.loads(invoke("list", "--family", "toy", "--json").stdout)
    assert {i["family"] for i in family} == {"toy"} and {"alpha-vit", "alpha:shared-vit"} <= {i["name"] for i in family}
    models = json.loads(invoke("list", "--kind", "model", "--no-presets", "--json").stdout)
    assert {i["kind"] for i in models} == {"model"} and all(i["preset_of"] is None for i in models)
    table = invoke("list")
    assert table.exit_code == 0 and "preset of" in table.stdout and "alpha:shared-vit" in table.stdout
    assert "4 plugin(s) failed to load: broken, late, typo, unmarked (see `vit plugins`)" in table.stderr
    assert "1 plugin(s) loaded with errors: alpha" in table.stderr  # it claimed 'vit'; its other models work
    plugins = invoke("plugins")
    assert plugins.exit_code == 0 and "did you mean 'vit_register_models'?" in plugins.stdout
    assert "vit-test-broken" in plugins.stdout and "warning in plugin beta (vit-test-beta 1.2.3)" in plugins.stdout


ANSI = re.compile(r"\x1b\[[0-9;]*m")
BOX = set("│┃━┏┓┗┛┡┩╇╈┳┻")
LIST_HEADERS = ["name", "kind", "preset of", "plugin", "family", "input", "paper"]


def table_lines(stdout: str) -> list[str]:
    """The printed lines without colour codes, trailing blanks and a terminal table's header rule."""
    lines = [ANSI.sub("", line).rstrip() for line in stdout.splitlines()]
    return [line for line in lines if line and not set(line) <= {"─", " "}]


def test_list_is_one_line_per_entry_at_80_columns_on_a_terminal_or_piped(invoke: Callable[..., Any]) -> None:
    names = [i["name"] for i in json.loads(invoke("list", "--json").stdout)]
    terminal = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1"}  # what rich takes for a terminal
    for env in ({"COLUMNS": "80"}, {"COLUMNS": "80", **terminal}, {"COLUMNS": "200", **terminal}):
        result = invoke("list", **env)
        assert result.exit_code == 0, result.stderr
        title, header, *rows = table_lines(result.stdout)
        assert re.fullmatch(r"\d+ models.* and \d+ presets", title), title
        assert [row.split()[0] for row in rows] == names, env  # every name whole, one line each
        assert all(len(line) <= int(env["COLUMNS"]) for line in result.stdout.splitlines()), env
        shown = [h for h in LIST_HEADERS if h in header]
        assert shown[:4] == LIST_HEADERS[:4] and header.split()[0] == "name", header
        if env["COLUMNS"] == "200":
            assert shown == LIST_HEADERS
    piped = invoke("list", COLUMNS=None)  # not a terminal and no width: plain whole lines, for grep and cut
    title, header, *rows = piped.stdout.splitlines()
    assert re.split(r"\s{2,}", header) == LIST_HEADERS and not BOX & set(piped.stdout)
    assert [row.split()[0] for row in rows] == names and "arXiv:2010.11929" in piped.stdout


def test_plugins_is_one_line_per_plugin_at_80_columns(invoke: Callable[..., Any]) -> None:
    records = json.loads(invoke("plugins", "--json").stdout)
    for env in ({"COLUMNS": "80"}, {"COLUMNS": "80", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}):
        result = invoke("plugins", **env)
        assert result.exit_code == 0, result.stderr
        version, header, *rest = table_lines(result.stdout)
        rows = rest[: len(records)]
        assert version.startswith("vit-core ") and header.split()[0] == "plugin" and "registers" in header
        assert [row.split()[0] for row in rows] == [r["name"] for r in records]
        assert all(len(row) <= 80 for row in [header, *rows]), env
        assert "vit, simple-vit, navit (+14 presets)" in rows[0]
        broken = next(row for row in rows if row.startswith("broken "))
        assert broken.endswith("1 error(s)")


def test_every_help_screen_fits_80_columns_with_whole_option_names() -> None:
    import typer

    command = typer.main.get_command(app)
    top = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert top.exit_code == 0 and all(len(line) <= 80 for line in top.output.splitlines())
    for name, sub in command.commands.items():
        summary = re.search(rf"^  {name} +(\S.*)$", top.output, re.M)
        assert summary and not summary.group(1).endswith("..."), (name, top.output)  # whole, not cut
        result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, (name, result.output)
        assert all(len(line) <= 80 for line in result.output.splitlines()), (name, result.output)
        assert "…" not in result.output, name
        for param in sub.params:
            for option in [*param.opts, *param.secondary_opts]:
                if option.startswith("-"):
                    assert re.search(rf"(^|[ ,/]){re.escape(option)}([ ,=/]|$)", result.output, re.M), (name, option)


def test_list_filters_that_match_nothing_say_so_and_exit_1(invoke: Callable[..., Any]) -> None:
    empty = invoke("list", "*3d*", "--json")
    assert empty.exit_code == 1 and json.loads(empty.stdout) == []
    assert "no entry matches '*3d*'" in empty.stderr
    assert one_error_line(invoke("list", "--family", "toy", "--kind", "trainer"), after_warnings=True) == (
        "error: no entry is registered with family='toy', kind='trainer'; run `vit list` for all"
    )
    plugin = one_error_line(invoke("list", "--plugin", "gamma"))
    assert plugin.startswith("error: no plugin 'gamma' is loaded; plugins: vit-core, alpha, beta, broken")
    failed = one_error_line(invoke("list", "--plugin", "broken"))
    assert failed.startswith("error: plugin 'broken' failed to load, so it lists nothing: import of fake_broken")
    assert one_error_line(invoke("list", "--family", "toys")) == "error: no family 'toys'; families: toy, vit"
    assert one_error_line(invoke("list", "--kind", "trainers")) == (
        "error: no kind 'trainers'; kinds: model, trainer, backend"
    )


def test_an_allowlist_naming_no_installed_plugin_says_so(invoke: Callable[..., Any]) -> None:
    result = invoke("list", "--json", VIT_PLUGINS="alpha,betta")
    assert result.exit_code == 0
    assert "VIT_PLUGINS names 'betta', which match no installed plugin" in result.stderr
    assert {i["plugin"] for i in json.loads(result.stdout)} == {"vit-core", "alpha"}
