"""The registry: kinds, presets, measured counts, the name rule, failed plugins, plugin discovery
through real entry points and the allowlist (in-process; tests/test_cli.py runs the real command line)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import types
from collections.abc import Iterable
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from tests.fake_plugins import HEADER, install_fake, registering
from vit_core import __version__, create_model, list_models
from vit_core.cli import app
from vit_core.hookspecs import HOOK_API_VERSION, SUPPORTED_API_VERSIONS, hookimpl
from vit_core.registry import (
    AmbiguousModelError,
    Component,
    FailedPluginError,
    MetadataError,
    ModelInfo,
    Preset,
    Registry,
    UnknownModelError,
    get_registry,
    reset_registry,
    set_registry,
)
from vit_core.runtime.measure import count_flops, count_parameters
from vit_core.testing import ConformanceError, check_model, model_names, parametrize_models

SMALL = dict(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128, dim_head=16)


class Plugin:
    """An in-process plugin registering the given ModelInfo objects."""

    def __init__(self, infos: Iterable[ModelInfo], api_version: int = HOOK_API_VERSION) -> None:
        self.infos, self.api_version = list(infos), api_version

    @hookimpl
    def vit_api_version(self) -> int:
        return self.api_version

    @hookimpl
    def vit_register_models(self) -> list[ModelInfo]:
        return self.infos


def toy(name: str, **changes: Any) -> ModelInfo:
    fields: dict[str, Any] = dict(
        name=name,
        target="vit_core.models.vit:ViT",
        family="toy",
        paper_title="A toy",
        paper_url="https://example.org/toy",
        summary="A toy model.",
        input_kind="image",
        default_config=SMALL,
        input_shape=(3, 32, 32),
        citation="@misc{toy}",
        example="create_model('toy')",
    )
    return ModelInfo(**{**fields, **changes})


def core_registry() -> Registry:
    from vit_core.registry import core_models as core_plugin

    registry = Registry()
    registry.add_plugin(core_plugin, "vit-core", "vit-core", "0.1.0")
    return registry


runner = CliRunner()


# The core's entries.


def test_core_models_and_presets_are_registered():
    assert {"vit", "simple-vit", "navit"} <= set(list_models(presets=False))
    assert list_models("vit-*-16", plugin="vit-core") == ["vit-ti-16", "vit-s-16", "vit-b-16", "vit-l-16"]
    pretrained = ["vit-b-16-augreg", "vit-s-16-augreg", "deit-s-16", "deit-s-16-distilled"]
    pretrained += ["dinov2-s-14", "dinov2-s-14-reg4", "clip-b-16", "siglip-b-16"]
    assert set(pretrained) <= set(list_models(plugin="vit-core"))
    assert list_models("simple-*", plugin="vit-core", presets=False) == ["simple-vit"]
    assert list_models("simple-vit-*", plugin="vit-core") == ["simple-vit-s-16", "simple-vit-b-16"]
    record = get_registry().plugins["vit-core"]
    assert record.ok and record.models == ["vit", "simple-vit", "navit"] and len(record.presets) == 6 + len(pretrained)


def test_a_preset_is_built_by_name_and_the_default_config_stays_small():
    registry = get_registry()
    vit = registry.info("vit")
    assert vit.default_config["dim"] == 64 and vit.preset_of is None
    assert {"vit-ti-16", "vit-s-16", "vit-b-16", "vit-l-16"} <= set(vit.presets)
    preset = registry.info("vit-ti-16")
    assert preset.preset_of == "vit" and preset.target == vit.target and preset.input_shape == (3, 224, 224)
    assert preset.default_config == dict(
        image_size=224, patch_size=16, num_classes=1000, dim=192, depth=12, heads=3, mlp_dim=768, dim_head=64
    )
    model = create_model("vit-ti-16", num_classes=10)
    assert model.num_classes == 10 and model.num_features == 192 and len(model.transformer.layers) == 12
    assert create_model("simple-vit-s-16").num_features == 384


def test_presets_follow_the_timm_sizes():
    expected = {"ti": (192, 12, 3, 768), "s": (384, 12, 6, 1536), "b": (768, 12, 12, 3072), "l": (1024, 24, 16, 4096)}
    for size, (dim, depth, heads, mlp_dim) in expected.items():
        config = get_registry().info(f"vit-{size}-16").default_config
        assert (config["dim"], config["depth"], config["heads"], config["mlp_dim"]) == (dim, depth, heads, mlp_dim)
    for size in ("s", "b"):
        simple = get_registry().info(f"simple-vit-{size}-16")
        assert simple.default_config == get_registry().info(f"vit-{size}-16").default_config
        assert simple.preset_of == "simple-vit"


def test_create_model_applies_overrides():
    model = create_model("vit", num_classes=3, pool="mean")
    assert model.num_classes == 3 and model.pool == "mean"


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match=r"unknown model 'simple-vt'; did you mean simple-vit"):
        create_model("simple-vt")


# Measured parameter counts.


def test_num_params_is_not_metadata_any_more():
    with pytest.raises(TypeError, match="num_params"):
        toy("counted", num_params=81_354)


@pytest.mark.parametrize("name", ["vit", "navit", "vit-ti-16"])
def test_describe_measures_parameters_and_flops(name):
    data = json.loads(runner.invoke(app, ["describe", name, "--json"]).stdout)
    info = get_registry().info(name)
    model = create_model(name)
    assert data["num_params"] == count_parameters(model)  # counted on the meta device, equal to the real one
    assert data["flops"] == count_flops(model, info.example_input(1)) > 0


def test_flops_count_attention():
    """The fused CPU attention kernel has no FLOP formula: counting runs it on the math backend."""
    model = create_model("vit")
    dense = count_flops(model, torch.randn(1, 3, 32, 32))
    tokens, dim_head, heads, depth = 17, 16, 4, 2
    attention = depth * heads * 2 * (2 * tokens * tokens * dim_head)  # q @ k^T and weights @ v
    linear_only = sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert dense >= attention + linear_only


def test_describe_without_measuring():
    data = json.loads(runner.invoke(app, ["describe", "vit-l-16", "--json", "--no-measure"]).stdout)
    assert data["num_params"] is None and data["flops"] is None and data["preset_of"] == "vit"


# Metadata validation.


def test_metadata_is_validated():
    with pytest.raises(ValueError, match=r"name must be kebab-case.*paper_url must be an http"):
        toy("Bad_Name", paper_url="arxiv")
    with pytest.raises(TypeError):
        ModelInfo("positional", "a.b:C")  # type: ignore[misc]  # keyword-only


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"kind": "classifier"}, "kind must be one of 'model', 'trainer', 'backend'"),
        ({"kind": "trainer"}, "a trainer's default_config names the model it trains"),
        ({"kind": "trainer", "default_config": {"encoder": Component("vit", trained=False)}}, "names the model"),
        ({"kind": "backend", "input_kind": "tokens", "input_shape": (17, 64)}, "must say what it plugs into"),
        ({"kind": "backend", "plugs_into": Component("vit")}, "a backend takes input_kind='tokens'"),
        (
            {"kind": "backend", "input_kind": "tokens", "input_shape": (2, 17, 64), "plugs_into": Component("vit")},
            "input_shape is (tokens, dim)",
        ),
        ({"input_kind": "tokens", "input_shape": (17, 64)}, "'tokens' is for backends"),
        ({"plugs_into": Component("vit")}, "plugs_into is for backends"),
        ({"takes_labels": True}, "takes_labels must be a bool and is for trainers"),
        ({"presets": {"Big": Preset(SMALL)}}, "preset name must be kebab-case"),
        ({"presets": {"toy": Preset(SMALL)}}, "differ from the model's"),
        ({"presets": {"toy-big": SMALL}}, "must be a Preset(config, ...)"),
    ],
)
def test_kind_and_preset_metadata_is_validated(changes, fragment):
    with pytest.raises(MetadataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        toy("toy", **changes)


def test_component_and_preset_are_validated():
    with pytest.raises(MetadataError, match="model must be a registered name"):
        Component("Not A Name")
    with pytest.raises(MetadataError, match="config must be a mapping"):
        Component("vit", [1])  # type: ignore[arg-type]
    with pytest.raises(MetadataError, match="input_shape must be None or a tuple"):
        Preset(SMALL, input_shape=(3, 0, 0))
    assert str(Component("vit", {"dim": 32}, trained=False)) == "vit(dim=32) [frozen]"


def test_registry_rejects_non_modelinfo_results():
    plugin = types.ModuleType("dicts")
    plugin.vit_api_version = hookimpl(lambda: HOOK_API_VERSION)
    plugin.vit_register_models = hookimpl(lambda: [{"name": "dict-model"}])
    record = Registry().add_plugin(plugin, "dicts")
    assert "must return ModelInfo objects" in record.errors[0] and not record.loaded


# Trainers and backends: how their default configuration builds.


class ToyTrainer(torch.nn.Module):
    """Reconstructs each patch from the encoder's token for it (a tiny MAE without masking)."""

    def __init__(self, encoder: torch.nn.Module, hidden: int = 8) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = torch.nn.Linear(encoder.num_features, encoder.patch_embed.patch_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.forward_features(images)[:, self.encoder.num_prefix_tokens :]
        return (self.decoder(tokens) - self.encoder.patches(images)[0]).pow(2).mean()


def test_a_trainer_builds_its_components():
    trainer_info = toy(
        "toy-trainer",
        kind="trainer",
        target=f"{__name__}:ToyTrainer",
        default_config={"encoder": Component("vit", {"dim": 32}), "hidden": 4},
    )
    registry = core_registry()
    registry.add_plugin(Plugin([trainer_info]), "toys")
    trainer, parts = registry.create_with_parts("toy-trainer")
    assert isinstance(trainer, ToyTrainer) and parts == {"encoder": trainer.encoder}
    assert trainer.encoder.num_features == 32 and trainer.encoder.num_classes == 10  # vit's default, updated
    mine = create_model("vit", dim=48)
    assert registry.create("toy-trainer", encoder=mine).encoder is mine
    assert registry.info("toy-trainer").components == {"encoder": Component("vit", {"dim": 32})}


def test_components_that_do_not_resolve_or_form_a_cycle():
    registry = core_registry()
    missing = toy(
        "lost-trainer", kind="trainer", target=f"{__name__}:ToyTrainer", default_config={"encoder": Component("vitt")}
    )
    looped = toy("loop-model", default_config={**SMALL, "transformer": Component("loop-model")})
    registry.add_plugin(Plugin([missing, looped]), "toys")
    with pytest.raises(MetadataError, match=r"encoder=vitt\(\) names no buildable model: unknown model 'vitt'"):
        registry.create("lost-trainer")
    with pytest.raises(MetadataError, match="builds itself"):
        registry.create("loop-model")


# The name rule.


def shared_plugins() -> dict[str, Plugin]:
    return {
        "plugin-a": Plugin([toy("foo"), toy("a-only"), toy("vit"), toy("a-big", presets={"vit-b-16": Preset(SMALL)})]),
        "plugin-b": Plugin([toy("foo", summary="B's foo.")]),
    }


def state(registry: Registry) -> dict[str, Any]:
    return {
        "entries": {q: (i.plugin, i.summary) for q, i in sorted(registry.entries.items())},
        "models": sorted(registry.models),
        "conflicts": {n: [i.plugin for i in c] for n, c in registry.conflicts.items()},
        "errors": {p: r.errors for p, r in sorted(registry.plugins.items())},
        "warnings": {p: sorted(r.warnings) for p, r in sorted(registry.plugins.items())},
    }


@pytest.mark.parametrize("order", [("plugin-a", "plugin-b"), ("plugin-b", "plugin-a")])
def test_a_shared_name_belongs_to_no_plugin_and_both_stay_reachable(order):
    registry = core_registry()
    plugins = shared_plugins()
    for name in order:
        registry.add_plugin(plugins[name], name, f"dist-{name}", "1.0")
    with pytest.raises(AmbiguousModelError) as caught:
        registry.info("foo")
    message = str(caught.value)
    assert "plugin 'plugin-a' (dist-plugin-a 1.0) and plugin 'plugin-b' (dist-plugin-b 1.0)" in message
    assert "'plugin-a:foo' or 'plugin-b:foo'" in message
    assert registry.info("plugin-b:foo").summary == "B's foo." and registry.info("plugin-a:foo").plugin == "plugin-a"
    assert registry.create("plugin-a:foo").num_classes == 10
    assert registry.info("a-only").plugin == "plugin-a"
    assert [registry.key(i) for i in registry.list("foo")] == ["plugin-a:foo", "plugin-b:foo"]
    for name in ("plugin-a", "plugin-b"):
        assert any("'foo' is also claimed by plugin" in w for w in registry.plugins[name].warnings)


def test_the_outcome_does_not_depend_on_the_loading_order():
    outcomes = []
    for order in (
        ("vit-core", "plugin-a", "plugin-b"),
        ("plugin-b", "plugin-a", "vit-core"),
        ("plugin-a", "vit-core", "plugin-b"),
    ):
        from vit_core.registry import core_models as core_plugin

        registry = Registry()
        plugins = {**shared_plugins(), "vit-core": core_plugin}
        for name in order:
            registry.add_plugin(plugins[name], name, f"dist-{name}", "1.0")
        outcomes.append(state(registry))
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_core_names_and_presets_are_reserved():
    registry = core_registry()
    plugins = shared_plugins()
    record = registry.add_plugin(plugins["plugin-a"], "plugin-a")
    assert registry.info("vit").plugin == "vit-core" and registry.info("vit-b-16").plugin == "vit-core"
    assert "model name 'vit' is reserved by vit-core; not registered: rename it" in record.errors
    assert "preset (of 'a-big') name 'vit-b-16' is reserved by vit-core; not registered: rename it" in record.errors
    assert "plugin-a:vit" not in registry.entries and record.models == ["foo", "a-only", "a-big"]
    with pytest.raises(UnknownModelError, match="plugin 'plugin-a' claimed it but model name 'vit' is reserved"):
        registry.info("plugin-a:vit")
    assert registry.info("vit-core:vit").plugin == "vit-core"


def test_a_plugin_registering_a_name_twice():
    record = core_registry().add_plugin(Plugin([toy("twice"), toy("twice", summary="again")]), "twice")
    assert "model name 'twice' is registered twice by this plugin; kept the first" in record.errors


def test_qualified_lookup_errors():
    registry = core_registry()
    with pytest.raises(UnknownModelError, match="no plugin named 'nobody'"):
        registry.info("nobody:vit")
    with pytest.raises(UnknownModelError, match="unknown model 'vit-core:vt'; did you mean vit-core:vit"):
        registry.info("vit-core:vt")


def test_set_registry_replaces_the_process_wide_registry():
    mine = core_registry()
    mine.add_plugin(Plugin([toy("mine-vit")]), "mine")
    previous = set_registry(mine)
    try:
        assert get_registry() is mine and "mine-vit" in list_models()
    finally:
        assert set_registry(previous) is mine
    assert "mine-vit" not in list_models()
    with pytest.raises(TypeError, match="registry must be a Registry or None, got dict"):
        set_registry({})  # type: ignore[arg-type]


# Plugins that failed to load.


def test_a_failed_plugin_names_its_models():
    registry = core_registry()
    record = registry.add_plugin(
        Plugin([toy("old-vit"), toy("old-big", presets={"old-huge": Preset(SMALL)})], 1), "old"
    )
    assert record.claims == ["old-vit", "old-big", "old-huge"] and not record.loaded
    with pytest.raises(FailedPluginError) as caught:
        registry.info("old-huge")
    assert str(caught.value).startswith(
        "model 'old-huge' belongs to plugin 'old' which failed to load: plugin 'old' targets hook API version 1"
    )
    with pytest.raises(FailedPluginError, match="belongs to plugin 'old'"):
        registry.info("old:old-vit")
    with pytest.raises(ConformanceError, match="model 'old-vit' belongs to plugin 'old' which failed to load"):
        check_model("old-vit", registry=registry)
    assert model_names(plugin="old", registry=registry) == ["old:old-vit", "old:old-big", "old:old-huge"]


def test_a_plugin_that_failed_before_saying_what_it_holds_is_named_in_unknown_model_errors():
    registry = core_registry()
    broken = types.ModuleType("broken")
    broken.vit_api_version = hookimpl(lambda: HOOK_API_VERSION)

    def register() -> list[ModelInfo]:
        raise RuntimeError("no models today")

    broken.vit_register_models = hookimpl(register)
    registry.add_plugin(broken, "broken")
    with pytest.raises(UnknownModelError) as caught:
        registry.info("broken-vit")
    assert (
        "plugin 'broken' failed to load and may provide it: vit_register_models failed: RuntimeError: no models"
        in str(caught.value)
    )
    assert model_names(registry=registry)[-1] == "broken:broken"
    with pytest.raises(ConformanceError, match="belongs to plugin 'broken' which failed to load: vit_register_models"):
        check_model("broken:broken", registry=registry)
    mark = parametrize_models(plugin="broken", registry=registry)
    assert mark.args == ("model_name", ["broken:broken"])


# Hooks that are not marked or misspelled.


def plugin_module(**functions: Any) -> types.ModuleType:
    module = types.ModuleType("hooks")
    for name, function in functions.items():
        setattr(module, name, function)
    return module


def test_an_unmarked_hook_is_reported():
    def vit_register_models() -> list[ModelInfo]:
        return [toy("unmarked-vit")]

    registry = core_registry()
    record = registry.add_plugin(
        plugin_module(vit_api_version=hookimpl(lambda: HOOK_API_VERSION), vit_register_models=vit_register_models),
        "unmarked",
    )
    assert record.errors == [
        "function vit_register_models is not marked as a hook: decorate it with @hookimpl "
        "(from vit_core.hookspecs import hookimpl); vit-core ignores it as it is"
    ]
    with pytest.raises(FailedPluginError, match=r"'unmarked-vit' belongs to plugin 'unmarked' .* not marked as a hook"):
        registry.info("unmarked-vit")


def test_a_misspelled_hook_gets_a_did_you_mean():
    marked = core_registry().add_plugin(
        plugin_module(vit_api_version=hookimpl(lambda: HOOK_API_VERSION), vit_register_model=hookimpl(lambda: [])),
        "marked-typo",
    )
    assert "unknown hook 'vit_register_model'" in marked.errors[0]
    assert marked.errors[0].endswith("did you mean 'vit_register_models'?")
    unmarked = core_registry().add_plugin(
        plugin_module(vit_api_version=hookimpl(lambda: HOOK_API_VERSION), vit_regster_models=lambda: []),
        "unmarked-typo",
    )
    assert unmarked.errors[0] == (
        "function vit_regster_models is not a hook: did you mean 'vit_register_models', marked with @hookimpl?"
    )


def test_a_helper_named_like_a_hook_is_fine_next_to_the_real_hook():
    record = core_registry().add_plugin(
        plugin_module(
            vit_api_version=hookimpl(lambda: HOOK_API_VERSION),
            vit_register_models=hookimpl(lambda: [toy("helped-vit")]),
            vit_register_model=lambda name: toy(name),
        ),
        "helped",
    )
    assert record.ok and record.models == ["helped-vit"]


def test_a_hook_calling_sys_exit_does_not_stop_the_host():
    def register() -> list[ModelInfo]:
        raise SystemExit(4)

    registry = core_registry()
    record = registry.add_plugin(
        plugin_module(vit_api_version=hookimpl(lambda: HOOK_API_VERSION), vit_register_models=hookimpl(register)),
        "exiting",
    )
    assert record.errors[0].startswith("vit_register_models failed: SystemExit: 4") and not record.loaded
    assert registry.info("vit").plugin == "vit-core"


def test_a_plugin_without_the_register_hook():
    record = core_registry().add_plugin(plugin_module(vit_api_version=hookimpl(lambda: HOOK_API_VERSION)), "empty")
    assert record.errors == ["implements no vit_register_models() hook, so it registers nothing"]


# The hook API version a plugin was written for.

VERSIONED = {
    "older": registering("toy('older-vit')", api=SUPPORTED_API_VERSIONS[0] - 1),
    "inside": registering("toy('inside-vit')", api=SUPPORTED_API_VERSIONS[-1]),
    "newer": registering("toy('newer-vit')", api=SUPPORTED_API_VERSIONS[-1] + 1),
}


@pytest.fixture
def versioned_site(tmp_path, monkeypatch):
    modules = [install_fake(tmp_path, name, source) for name, source in VERSIONED.items()]
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VIT_PLUGINS", ",".join(VERSIONED))
    importlib.invalidate_caches()
    reset_registry()
    yield tmp_path
    reset_registry()
    for module in modules:
        sys.modules.pop(module, None)


def test_the_host_supports_the_version_it_provides():
    assert HOOK_API_VERSION in SUPPORTED_API_VERSIONS and SUPPORTED_API_VERSIONS.step == 1


def test_a_plugin_outside_the_supported_hook_api_versions_is_refused(versioned_site):
    plugins = get_registry().plugins
    assert plugins["inside"].loaded and plugins["inside"].models == ["inside-vit"] and plugins["inside"].ok
    assert create_model("inside-vit").num_classes == 3
    older, newer = SUPPORTED_API_VERSIONS[0] - 1, SUPPORTED_API_VERSIONS[-1] + 1
    assert plugins["older"].api_version == older and not plugins["older"].loaded
    assert plugins["older"].errors == [
        f"plugin 'older' targets hook API version {older}, but vit-core {__version__} supports hook API version 2: "
        "port the plugin to hook API version 2, or use the older vit-core it was written for"
    ]
    assert plugins["newer"].api_version == newer and not plugins["newer"].loaded
    assert plugins["newer"].errors == [
        f"plugin 'newer' targets hook API version {newer}, but vit-core {__version__} supports hook API version 2: "
        "upgrade vit-core, or install a release of the plugin written for hook API version 2"
    ]
    with pytest.raises(FailedPluginError, match=f"'newer-vit' belongs to plugin 'newer' .* version {newer}, but"):
        create_model("newer-vit")
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert f"vit-core {__version__}, hook API version 2 (loads plugins of version 2)" in result.output
    assert f"error in plugin older (vit-fake-older 1.2.3): plugin 'older' targets hook API version {older}" in (
        result.output
    )
    assert f"error in plugin newer (vit-fake-newer 1.2.3): plugin 'newer' targets hook API version {newer}" in (
        result.output
    )


def test_a_host_supporting_several_versions_names_the_range(monkeypatch):
    monkeypatch.setattr("vit_core.hookspecs.SUPPORTED_API_VERSIONS", range(2, 4))
    registry = core_registry()
    assert registry.add_plugin(Plugin([toy("three-vit")], 3), "three").loaded
    refused = registry.add_plugin(Plugin([toy("four-vit")], 4), "four")
    assert refused.errors == [
        f"plugin 'four' targets hook API version 4, but vit-core {__version__} supports hook API versions 2 to 3: "
        "upgrade vit-core, or install a release of the plugin written for hook API versions 2 to 3"
    ]
    texty = registry.add_plugin(Plugin([toy("text-vit")], "2"), "texty")  # type: ignore[arg-type]
    assert texty.errors == [
        f"plugin 'texty': vit_api_version() returned '2', not an int; vit-core {__version__} supports hook API "
        "versions 2 to 3"
    ]


# Discovery through entry points, the allowlist and isolation.

PLUGINS = {
    "good": registering("toy('toy-vit')"),
    "broken": "raise ImportError('the toy plugin needs a package that is not installed')",
    "exits": "import sys\nsys.exit(3)",
    "api-raises": HEADER
    + "\n@hookimpl\ndef vit_api_version():\n    raise RuntimeError('version unknown')\n"
    + "\n@hookimpl\ndef vit_register_models():\n    return [toy('api-raises-vit')]\n",
    "typo": "from vit_core.hookspecs import hookimpl\n\n@hookimpl\ndef vit_register_model():\n    return []\n",
    "future": registering("toy('future-vit')", api=99),
    "unversioned": HEADER + "\n@hookimpl\ndef vit_register_models():\n    return [toy('old-vit')]\n",
}


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    modules = [install_fake(tmp_path, name, source) for name, source in PLUGINS.items()]
    modules += [
        install_fake(tmp_path, "twin", registering("toy('twin-one')"), dist="vit-twin-one", module="twin_one"),
        install_fake(tmp_path, "twin", registering("toy('twin-two')"), dist="vit-twin-two", module="twin_two"),
    ]
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VIT_PLUGINS", ",".join([*PLUGINS, "twin"]))  # only the fakes, whatever else is installed
    importlib.invalidate_caches()
    reset_registry()
    yield tmp_path
    reset_registry()
    for module in modules:
        sys.modules.pop(module, None)


def test_plugins_load_in_isolation(fake_site):
    registry = get_registry()
    plugins = registry.plugins
    assert plugins["good"].ok and plugins["good"].models == ["toy-vit"]
    assert plugins["good"].distribution == "vit-fake-good" and plugins["good"].version == "1.2.3"
    assert "ImportError: the toy plugin needs a package" in plugins["broken"].errors[0]
    assert "import of fake_exits_plugin failed: SystemExit: 3" in plugins["exits"].errors[0]
    assert "vit_api_version failed: RuntimeError: version unknown" in plugins["api-raises"].errors[0]
    assert "vit_register_model" in plugins["typo"].errors[0] and "invalid hooks" in plugins["typo"].errors[0]
    assert "targets hook API version 99" in plugins["future"].errors[0]
    assert "does not implement vit_api_version()" in plugins["unversioned"].errors[0]
    assert "future-vit" not in registry.models
    assert create_model("toy-vit").num_classes == 3
    with pytest.raises(FailedPluginError, match="'api-raises-vit' belongs to plugin 'api-raises'"):
        create_model("api-raises-vit")


def test_two_distributions_with_one_entry_point_name_are_both_refused(fake_site, monkeypatch):
    record = get_registry().plugins["twin"]
    assert not record.loaded and record.distribution == "vit-twin-one, vit-twin-two"
    assert (
        "entry point name 'twin' is declared by 2 distributions: vit-twin-one 1.2.3 (twin_one); vit-twin-two"
        in (record.errors[0])
    )
    assert "twin_one" not in sys.modules and "twin_two" not in sys.modules
    reset_registry()
    monkeypatch.setenv("VIT_PLUGINS", "vit-twin-two")  # the allowlist by distribution name picks one
    assert get_registry().plugins["twin"].models == ["twin-two"] and "twin_one" not in sys.modules


def test_allowlist_is_applied_before_loading(fake_site, monkeypatch):
    monkeypatch.setenv("VIT_PLUGINS", "future,vit-fake-broken")
    registry = get_registry()
    assert set(registry.plugins) == {"vit-core", "future", "broken"}
    assert "fake_future_plugin" in sys.modules  # allowed: imported
    assert "fake_good_plugin" not in sys.modules  # importable, but outside the allowlist: never imported
    assert "good (vit-fake-good)" in registry.skipped
    with pytest.raises(UnknownModelError, match=r"not loaded because of VIT_PLUGINS='future,vit-fake-broken': .*good"):
        registry.info("toy-vit")
    reset_registry()
    result = runner.invoke(app, ["plugins"])
    assert "not loaded (VIT_PLUGINS='future,vit-fake-broken'):" in result.output
    assert "good (vit-fake-good)" in result.output
    reset_registry()
    monkeypatch.setenv("VIT_PLUGINS", "")
    assert set(get_registry().plugins) == {"vit-core"}


def test_allowlist_naming_no_installed_plugin(fake_site, monkeypatch):
    monkeypatch.setenv("VIT_PLUGINS", "good,goood")
    assert get_registry().unmatched_allowlist == ["goood"]
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    assert "VIT_PLUGINS names 'goood', which match no installed plugin" in result.stderr
    assert "installed: " in result.stderr and "good" in result.stderr


def test_help_and_list_do_not_import_torch():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom vit_core.cli import app\n"
        "for args in (['--help'], ['list'], ['list', '--kind', 'model', '--json'], ['plugins']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print('torch' in sys.modules)"
    )
    env = dict(os.environ, VIT_PLUGINS="")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
