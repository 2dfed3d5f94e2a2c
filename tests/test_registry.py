"""Registry, plugin discovery through real entry points, and the `vit` command line."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vit_core import create_model, list_models
from vit_core.cli import app
from vit_core.registry import ModelInfo, Registry, UnknownModelError, count_parameters, get_registry, reset_registry

TOY = """
from vit_core.hookspecs import hookimpl
from vit_core.registry import ModelInfo

@hookimpl
def vit_api_version():
    return {api}

@hookimpl
def vit_register_models():
    return [ModelInfo(
        name="{model}", target="vit_core.models.simple_vit:SimpleViT", family="toy",
        paper_title="A toy", paper_url="https://example.org/toy", summary="A toy model.",
        input_kind="image", input_shape=(3, 16, 16), num_params=1,
        default_config=dict(image_size=16, patch_size=8, num_classes=3, dim=16, depth=1, heads=2, mlp_dim=32),
    )]
"""

PLUGINS = {
    "good": TOY.format(api=1, model="toy-vit"),
    "broken": "raise ImportError('the toy plugin needs a package that is not installed')",
    "collide": TOY.format(api=1, model="vit"),
    "typo": "from vit_core.hookspecs import hookimpl\n\n@hookimpl\ndef vit_register_model():\n    return []\n",
    "future": TOY.format(api=99, model="future-vit"),
    "unversioned": TOY.replace("@hookimpl\ndef vit_api_version():\n    return {api}\n", "").format(model="old-vit"),
}


def install_fake(site: Path, name: str, source: str) -> None:
    """A fake installed distribution: a module plus a dist-info with a real entry point."""
    module = f"fake_{name}_plugin"
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"vit_fake_{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vit-fake-{name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[vit_core.plugins]\n{name} = {module}\n")


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    for name, source in PLUGINS.items():
        install_fake(tmp_path, name, source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VIT_PLUGINS", ",".join(PLUGINS))  # only the fakes, whatever else is installed
    importlib.invalidate_caches()
    reset_registry()
    yield tmp_path
    reset_registry()
    for name in PLUGINS:
        sys.modules.pop(f"fake_{name}_plugin", None)


def test_core_models_are_registered():
    assert {"vit", "simple-vit", "navit"} <= set(list_models())
    assert list_models("simple-*", plugin="vit-core") == ["simple-vit"]
    assert get_registry().plugins["vit-core"].ok


@pytest.mark.parametrize("name", ["vit", "simple-vit", "navit"])
def test_metadata_parameter_count_matches_the_default_model(name):
    info = get_registry().info(name)
    model = create_model(name)
    assert count_parameters(model) == info.num_params
    out = model(info.example_input(2))
    assert out.shape == (2, info.default_config["num_classes"])


def test_create_model_applies_overrides():
    model = create_model("vit", num_classes=3, pool="mean")
    assert model.num_classes == 3 and model.pool == "mean"


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match=r"unknown model 'simple-vt'; did you mean simple-vit"):
        create_model("simple-vt")


def test_metadata_is_validated():
    with pytest.raises(ValueError, match=r"name must be kebab-case.*paper_url must be an http"):
        ModelInfo(
            name="Bad_Name",
            target="a.b:C",
            family="f",
            paper_title="t",
            paper_url="arxiv",
            summary="s",
            input_kind="image",
            default_config={},
            input_shape=(3, 8, 8),
            num_params=1,
        )


def test_plugins_load_in_isolation(fake_site):
    registry = get_registry()
    plugins = registry.plugins
    assert plugins["good"].ok and plugins["good"].models == ["toy-vit"]
    assert plugins["good"].distribution == "vit-fake-good" and plugins["good"].version == "1.2.3"
    assert "ImportError: the toy plugin needs a package" in plugins["broken"].errors[0]
    assert "registered by both plugin 'vit-core'" in plugins["collide"].errors[0]
    assert "vit_register_model" in plugins["typo"].errors[0] and "invalid hooks" in plugins["typo"].errors[0]
    assert "targets hook API version 99" in plugins["future"].errors[0]
    assert "does not implement vit_api_version()" in plugins["unversioned"].errors[0]
    assert registry.info("vit").plugin == "vit-core"
    assert "future-vit" not in registry.models
    assert create_model("toy-vit").num_classes == 3


def test_allowlist_is_applied_before_loading(fake_site, monkeypatch):
    monkeypatch.setenv("VIT_PLUGINS", "good,vit-fake-future")
    registry = get_registry()
    assert set(registry.plugins) == {"vit-core", "good", "future"}
    assert "fake_broken_plugin" not in sys.modules
    reset_registry()
    result = runner.invoke(app, ["plugins"])
    assert "not loaded (VIT_PLUGINS='good,vit-fake-future'):" in result.output
    assert "broken (vit-fake-broken)" in result.output
    reset_registry()
    monkeypatch.setenv("VIT_PLUGINS", "")
    assert set(get_registry().plugins) == {"vit-core"}


def test_registry_rejects_non_modelinfo_results():
    from vit_core.hookspecs import hookimpl

    plugin = types.ModuleType("dicts")
    plugin.vit_api_version = hookimpl(lambda: 1)
    plugin.vit_register_models = hookimpl(lambda: [{"name": "dict-model"}])
    record = Registry().add_plugin(plugin, "dicts")
    assert "must return ModelInfo objects" in record.errors[0]


runner = CliRunner()


def test_cli_list_with_broken_plugins(fake_site):
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    assert "toy-vit" in result.output and "simple-vit" in result.output
    assert "plugin(s) failed to load" in result.output


def test_cli_list_filters_and_json(fake_site):
    result = runner.invoke(app, ["list", "--plugin", "good", "--json"])
    assert [m["name"] for m in json.loads(result.output)] == ["toy-vit"]
    result = runner.invoke(app, ["list", "*vit", "--json"])
    names = [m["name"] for m in json.loads(result.stdout)]
    assert names == ["navit", "simple-vit", "vit", "toy-vit"]


def test_cli_plugins_reports_errors(fake_site):
    result = runner.invoke(app, ["plugins", "--json"])
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert result.exit_code == 0
    assert records["good"]["ok"] and records["good"]["version"] == "1.2.3"
    assert not records["broken"]["ok"]
    table = runner.invoke(app, ["plugins"]).output
    assert "vit-fake-broken" in table and "ImportError" in table


def test_cli_describe():
    result = runner.invoke(app, ["describe", "vit"])
    assert result.exit_code == 0
    for text in ("arxiv.org/abs/2010.11929", "@inproceedings", "image_size", "pool", "'cls'", "81,354", "FLOPs"):
        assert text in result.output


def test_cli_describe_json_counts_flops():
    data = json.loads(runner.invoke(app, ["describe", "navit", "--json"]).stdout)
    assert data["measured_params"] == data["num_params"]
    assert data["flops"] > 0


def test_cli_unknown_model_exits_1_with_close_matches():
    result = runner.invoke(app, ["describe", "simplevit"])
    assert result.exit_code == 1
    assert "did you mean simple-vit" in result.output


def test_help_and_list_do_not_import_torch():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom vit_core.cli import app\n"
        "for args in (['--help'], ['list'], ['plugins']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print('torch' in sys.modules)"
    )
    env = dict(os.environ, VIT_PLUGINS="")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
