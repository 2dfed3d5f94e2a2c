"""The third-party plugin kit: the conformance kit catches broken models, `vit new-plugin` writes a
plugin that passes it, and (slow) that plugin installs into a fresh virtual environment."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from vit_core import NaViT, ViT
from vit_core.hookspecs import HOOK_API_VERSION, hookimpl
from vit_core.registry import ModelInfo, Preset, Registry
from vit_core.runtime.measure import count_parameters
from vit_core.scaffold import check_name, class_name, generate_plugin, render
from vit_core.testing import CHECKS, ConformanceError, check_model, check_plugin, model_names, parametrize_models

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128, dim_head=16)
VIT_PARAMS = 81_354


class FakePlugin:
    """An in-process plugin registering the given ModelInfo objects."""

    def __init__(self, infos: Iterable[ModelInfo], api_version: int = HOOK_API_VERSION) -> None:
        self.infos, self.api_version = list(infos), api_version

    @hookimpl
    def vit_api_version(self) -> int:
        return self.api_version

    @hookimpl
    def vit_register_models(self) -> list[ModelInfo]:
        return self.infos


def info(name: str, target: str = "vit_core.models.vit:ViT", **changes: Any) -> ModelInfo:
    """Complete metadata for a ViT-sized model of this module, with ``changes``."""
    fields: dict[str, Any] = dict(
        name=name,
        target=target,
        family="test",
        paper_title="A test model",
        paper_url="https://example.org/paper",
        summary="A model for the conformance kit's own tests.",
        input_kind="image",
        default_config=SMALL,
        input_shape=(3, 32, 32),
        citation="@misc{test}",
        example="create_model('x')",
    )
    return ModelInfo(**{**fields, **changes})


def registry_with(*infos: ModelInfo, plugin: str = "fake") -> Registry:
    registry = Registry()
    registry.add_plugin(FakePlugin(infos), plugin)
    return registry


def expect_failure(model: ModelInfo, check: str, *fragments: str, registry: Registry | None = None) -> ConformanceError:
    """``model`` fails exactly ``check`` and the message names the model, the check and each fragment."""
    with pytest.raises(ConformanceError) as caught:
        check_model(model.name, registry=registry or registry_with(model))
    error = caught.value
    assert (error.model, error.check) == (model.name, check), str(error)
    message = str(error)
    for fragment in (repr(model.name), repr(check), *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return error


# Deliberately broken models, each breaking one rule.


class WrongShape(ViT):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).unsqueeze(1)


class DeadParameter(ViT):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unused = nn.Linear(4, 4)


class BareShapeError(ViT):
    def patch_grid(self, x: Tensor) -> tuple[int, ...]:
        return self.grid


class AcceptsAnyRank(ViT):
    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 3:
            x = x.unsqueeze(0)
        return super().forward(x)


class Inconsistent(ViT):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + 1.0


class FixedClassifier(ViT):
    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes


def ignores_num_classes(*, num_classes: int = 10, **config: Any) -> ViT:
    return ViT(**{**config, "num_classes": 10})


class UnpacksTheShape(ViT):
    """Checks channels but not rank: a 3-D input dies in ``b, c, h, w = img.shape`` with a bare ValueError."""

    def forward(self, img: Tensor) -> Tensor:
        _batch, _channels, _height, _width = img.shape
        return super().forward(img)


class NamesOnlyTheShape(ViT):
    def forward(self, img: Tensor) -> Tensor:
        if img.ndim != 4:
            raise ValueError(f"expected a batch of images, got shape {tuple(img.shape)}")
        return super().forward(img)


class ZeroGradient(ViT):
    """The classifier's bias is used, then cancelled out: its gradient is all zeros (not ``None``)."""

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        out = super().forward_head(features, pre_logits)
        return out if pre_logits else out - self.head.bias + self.head.bias.detach()


class NaNOutput(ViT):
    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        return super().forward_head(features, pre_logits) * float("nan")


class NarrowPreLogits(ViT):
    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        out = super().forward_head(features, pre_logits)
        return out[:, :-1] if pre_logits else out


class NoNumFeatures(ViT):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        del self.num_features


class OwnInputNames(ViT):
    """Takes its input's channels and size under names of its own, as CCT does."""

    def __init__(self, *, n_input_channels: int = 3, img_size: int = 32, num_classes: int = 10, **kwargs: Any) -> None:
        super().__init__(channels=n_input_channels, image_size=img_size, num_classes=num_classes, **kwargs)


class MixesTheBatch(ViT):
    """Centres the pooled vectors over the batch: each output depends on the other examples."""

    def pool_features(self, features: Tensor) -> Tensor:
        pooled = super().pool_features(features)
        return pooled - pooled.mean(0, keepdim=True)


class KeepsStateOutsideTheStateDict(ViT):
    """Adds a random offset to its logits, drawn at construction into a non-persistent buffer: save_model
    does not save it, so the loaded model draws another."""

    def __init__(self, *, num_classes: int = 10, **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        self.register_buffer("offset", torch.randn(()), persistent=False)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        out = super().forward_head(features, pre_logits)
        return out if pre_logits else out + self.offset


class Sharpened(ViT):
    sharpness = 1.0

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        out = super().forward_head(features, pre_logits)
        return out if pre_logits else out * self.sharpness


def sharpened_vit(*, num_classes: int = 10, sharpness: float = 1.0, **config: Any) -> Sharpened:
    """A factory whose ``sharpness`` never reaches the model's recorded constructor arguments (init_config):
    the loaded model is rebuilt with the default."""
    model = Sharpened(num_classes=num_classes, **config)
    model.sharpness = sharpness
    return model


class ReadsPatchTokensToo(ViT):
    """Declares that its head reads the class token alone, but adds the patch tokens' mean: the last block,
    pruned to the class token, would give other logits."""

    def pool_features(self, features: Tensor) -> Tensor:
        return super().pool_features(features) + features[:, 1:].mean(1)

    def head_reads_leading_tokens(self) -> int | None:
        return 1


class ReadsNoToken(ViT):
    def head_reads_leading_tokens(self) -> int | None:
        return 0


class MisnamedClassTrunk(ViT):
    class_attention_trunk = "cls_transformer"


class ClassTrunkWithoutAttention(ViT):
    class_attention_trunk = "to_latent"


class UndecidedTokenAttention(ViT):
    token_attention = "no"  # type: ignore[assignment]


class ThreeBranches(ViT):
    """Two attention layers (depth 2), declared as layers of three branches each."""

    attention_branches = 3


class OutsideParameterAsAString(ViT):
    parameters_outside_forward = "head."  # type: ignore[assignment]


class NoSuchOutsideParameter(ViT):
    parameters_outside_forward = ("distill_token",)


class DeclaresItsExtraToken(NoSuchOutsideParameter):
    """A distillation token that only another method uses, declared outside forward."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.distill_token = nn.Parameter(torch.zeros(1, self.num_features))


NAVIT = dict(SMALL, token_dropout_prob=0.1)


class UncheckedNaViT(NaViT):
    """Skips the per-image check: an image with a channel too many dies in a matmul (a bare RuntimeError)."""

    def _check_image(self, image: object) -> tuple[int, ...]:
        assert isinstance(image, Tensor)
        return tuple(side // self.patch_size for side in image.shape[-2:])


class VagueNaViT(NaViT):
    """Checks each image but says only that something is wrong."""

    def _check_image(self, image: object) -> tuple[int, ...]:
        if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != self.channels:
            raise ValueError("bad image")
        return super()._check_image(image)


def not_a_module(**config: Any) -> Any:
    return lambda x: x


NOT_CALLABLE = 3


class HidingRegistry(Registry):
    """Builds models but lists none of them."""

    def list(self, *args: Any, **kwargs: Any) -> list[ModelInfo]:
        return []


def here(attr: str) -> str:
    return f"{__name__}:{attr}"


def test_a_conforming_model_passes() -> None:
    registry = registry_with(info("good-vit"))
    assert check_plugin("fake", registry=registry) == ["good-vit"]


def test_wrong_output_shape() -> None:
    expect_failure(info("wrong-shape", here("WrongShape")), "forward", "(2, 10)", "(2, 1, 10)")


def test_dead_parameters_are_named() -> None:
    model = info("dead-param", here("DeadParameter"))
    expect_failure(model, "gradients", "unused.weight", "unused.bias", "never used in forward")


def test_preset_config_must_fit_the_signature() -> None:
    presets = {"good-vit-big": Preset({**SMALL, "dim": 128}), "good-vit-bad": Preset({**SMALL, "layers": 3})}
    expect_failure(info("good-vit", presets=presets), "metadata", "preset 'good-vit-bad'", "'layers'")


def test_bare_shape_error_on_bad_input() -> None:
    expect_failure(info("bare-error", here("BareShapeError")), "bad-input", "RuntimeError", "4 channels instead of 3")


def test_bad_input_silently_accepted() -> None:
    expect_failure(info("lenient", here("AcceptsAnyRank")), "bad-input", "wrong rank", "was accepted")


def test_forward_differs_from_forward_head() -> None:
    expect_failure(info("inconsistent", here("Inconsistent")), "interface", "forward_head(forward_features(x))")


def test_reset_classifier_must_change_width() -> None:
    expect_failure(info("fixed-head", here("FixedClassifier")), "interface", "reset_classifier(13)", "(2, 13)")


def test_overrides_must_reach_the_model() -> None:
    expect_failure(info("stubborn", here("ignores_num_classes")), "overrides", "num_classes=15")


def test_bad_input_error_must_name_the_argument_or_the_shape() -> None:
    expect_failure(
        info("unpacks", here("UnpacksTheShape")),
        "bad-input",
        "wrong rank",
        "ValueError: not enough values to unpack",
        "names neither the argument 'img' nor the received shape (3, 32, 32)",
    )


def test_bad_input_error_naming_only_the_shape_passes() -> None:
    model = info("shape-only", here("NamesOnlyTheShape"))
    check_model(model.name, registry=registry_with(model), skip=[c for c in CHECKS if c != "bad-input"])


def test_all_zero_gradient_is_named() -> None:
    error = expect_failure(info("zero-grad", here("ZeroGradient")), "gradients", "all-zero gradient: head.bias", "1 of")
    assert "never used" not in str(error)


def test_non_finite_output() -> None:
    expect_failure(info("nan-output", here("NaNOutput")), "forward", "NaN or inf")


def test_pre_logits_must_have_num_features() -> None:
    expect_failure(
        info("narrow", here("NarrowPreLogits")), "interface", "(batch, num_features) = (2, 64)", "got (2, 63)"
    )


def test_missing_num_features() -> None:
    expect_failure(info("no-width", here("NoNumFeatures")), "interface", "missing VisionModel members", "num_features")


def test_output_must_not_depend_on_the_rest_of_the_batch() -> None:
    expect_failure(
        info("batch-mixer", here("MixesTheBatch")), "batch-independence", "model(x)[:1] differs from model(x[:1])"
    )


def test_state_outside_the_state_dict_fails_save_load() -> None:
    expect_failure(
        info("forgetful", here("KeepsStateOutsideTheStateDict")),
        "save-load",
        "(KeepsStateOutsideTheStateDict) does not give bit-identical outputs",
        "every parameter and persistent buffer must be in the state dict",
    )


def test_a_constructor_argument_that_is_not_recorded_fails_save_load() -> None:
    model = info("sharpened", here("sharpened_vit"), default_config={**SMALL, "sharpness": 3.0})
    expect_failure(model, "save-load", "(Sharpened) does not give bit-identical outputs", "(init_config)")


@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        (
            "ReadsPatchTokensToo",
            ("head_reads_leading_tokens() = 1, but forward_head's output changes when a later token does",),
        ),
        ("ReadsNoToken", ("head_reads_leading_tokens() must be None or a positive int, got 0",)),
        ("MisnamedClassTrunk", ("class_attention_trunk='cls_transformer' names no submodule of MisnamedClassTrunk",)),
        ("ClassTrunkWithoutAttention", ("class_attention_trunk='to_latent' holds no attention a Recorder can record",)),
        ("UndecidedTokenAttention", ("token_attention must be a bool, got 'no'",)),
        ("ThreeBranches", ("attention_branches=3, but a Recorder sees 2 attention layers, not a multiple of it",)),
        ("OutsideParameterAsAString", ("parameters_outside_forward must be a tuple of parameter-name prefixes",)),
        ("NoSuchOutsideParameter", ("prefixes that no parameter has: ['distill_token']",)),
    ],
)
def test_declarations_must_hold(target: str, fragments: tuple[str, ...]) -> None:
    """What a model declares on VisionModel is checked against the model: a wrong declaration fails
    the ``declarations`` check, naming it."""
    expect_failure(info("misdeclared", here(target)), "declarations", *fragments)


def test_true_declarations_pass() -> None:
    """The control of test_declarations_must_hold: ViT's own declarations (the class token alone with
    ``pool="cls"``), and a distillation token declared outside forward."""
    assert ViT(**SMALL).head_reads_leading_tokens() == 1
    model = info("declared", here("DeclaresItsExtraToken"))
    skip = [c for c in CHECKS if c not in ("declarations", "gradients")]
    check_model(model.name, registry=registry_with(model), skip=skip)


@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        ("UncheckedNaViT", ("an image with 4 channels instead of 3 raised a bare RuntimeError",)),
        (
            "VagueNaViT",
            (
                "an image with 4 channels instead of 3 raised ValueError: bad image",
                "names neither the argument 'batched_images' nor the received shape (3, 32, 32) or (4, 32, 32)",
            ),
        ),
    ],
)
def test_image_list_bad_input(target: str, fragments: tuple[str, ...]) -> None:
    model = info("bad-navit", here(target), input_kind="image-list", default_config=NAVIT)
    expect_failure(model, "bad-input", *fragments)


def test_a_conforming_image_list_model_passes() -> None:
    """The control of test_image_list_bad_input: NaViT's own check passes the same inputs."""
    model = info("navit-copy", "vit_core.models.navit:NaViT", input_kind="image-list", default_config=NAVIT)
    check_model(model.name, registry=registry_with(model), skip=[c for c in CHECKS if c != "bad-input"])


def test_unlisted_model() -> None:
    model = info("hidden")
    registry = HidingRegistry()
    registry.add_plugin(FakePlugin([model]), "fake")
    expect_failure(model, "listing", "not returned by list_models()", registry=registry)


def test_create_must_return_a_module() -> None:
    expect_failure(info("function", here("not_a_module")), "listing", "returned function, not a torch.nn.Module")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"target": here("NOT_CALLABLE")}, "is not a class or factory"),
        ({"importer": here("NOT_CALLABLE")}, "importer 'test_plugin_kit:NOT_CALLABLE' is not callable"),
    ],
    ids=["target", "importer"],
)
def test_target_and_importer_must_be_callable(changes: dict[str, Any], fragment: str) -> None:
    expect_failure(info("not-callable", **changes), "metadata", fragment)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"citation": ""}, "citation must be filled in"),
        ({"example": " "}, "example must be filled in"),
        ({"target": "no_such_module:Model"}, "does not import"),
        ({"default_config": {**SMALL, "num_layers": 3}}, "does not fit the signature"),
        ({"reference_config": {"num_layers": 3}}, "reference_config {'num_layers': 3} does not fit"),
        ({"importer": "vit_core.interop.reference:no_such_importer"}, "importer"),
    ],
)
def test_incomplete_metadata(changes: dict[str, Any], fragment: str) -> None:
    expect_failure(info("bad-metadata", **changes), "metadata", fragment)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({}, "channels_arg='channels' is not an argument of test_plugin_kit:OwnInputNames; its constructor takes "
         "['n_input_channels']"),
        ({"channels_arg": "n_input_channels"}, "size_arg='image_size' is not an argument"),
    ],
    ids=["channels", "size"],
)  # fmt: skip
def test_input_arguments_must_name_the_constructors(changes: dict[str, Any], fragment: str) -> None:
    config = {k: v for k, v in SMALL.items() if k != "image_size"}
    expect_failure(info("own-names", here("OwnInputNames"), default_config=config, **changes), "metadata", fragment)


def test_a_frames_argument_of_its_own_name_must_be_named() -> None:
    """CCT3D takes its clip length as ``num_frames``: the default ``frames_arg`` is refused."""
    pytest.importorskip("vit_video")
    clip = dict(img_size=16, num_frames=4, embedding_dim=16, n_conv_layers=1, kernel_size=3, num_layers=1, num_heads=2)
    model = info(
        "own-frames", "vit_video.cct_3d:CCT3D", default_config=clip, input_kind="video", input_shape=(3, 4, 16, 16),
        channels_arg="n_input_channels", size_arg="img_size",
    )  # fmt: skip
    expect_failure(model, "metadata", "frames_arg='frames' is not an argument", "['num_frames']")


def test_input_arguments_of_their_own_names_pass() -> None:
    config = {k: v for k, v in SMALL.items() if k != "image_size"}
    named = info("own-names", here("OwnInputNames"), default_config=config, channels_arg="n_input_channels")
    check_model("own-names", registry=registry_with(dataclasses.replace(named, size_arg="img_size")))


def test_malformed_metadata_fails_the_plugin() -> None:
    registry = Registry()
    registry.add_plugin(FakePlugin([{"name": "not-a-model-info"}]), "malformed")  # type: ignore[list-item]
    with pytest.raises(ConformanceError, match=r"plugin 'malformed' failed conformance check 'plugin'.*ModelInfo"):
        check_plugin("malformed", registry=registry)


def test_invalid_model_info_fails_the_plugin() -> None:
    class Plugin(FakePlugin):
        @hookimpl
        def vit_register_models(self) -> list[ModelInfo]:
            return [info("bad-url", paper_url="arxiv 2010.11929")]

    registry = Registry()
    registry.add_plugin(Plugin([]), "bad-url-plugin")
    with pytest.raises(ConformanceError, match=r"failed to load.*paper_url must be an http"):
        check_plugin("bad-url-plugin", registry=registry)


def test_other_api_version_fails_the_plugin() -> None:
    registry = Registry()
    registry.add_plugin(FakePlugin([info("future")], api_version=HOOK_API_VERSION + 1), "future")
    with pytest.raises(ConformanceError, match=f"targets hook API version {HOOK_API_VERSION + 1}"):
        check_plugin("future", registry=registry)
    assert "future" not in registry.models


def test_plugin_lookup_errors() -> None:
    registry = registry_with(info("good-vit"))
    with pytest.raises(ConformanceError, match="no plugin named 'missing'"):
        check_plugin("missing", registry=registry)
    with pytest.raises(ConformanceError, match="registered no models"):
        check_plugin("empty", registry=registry_with(plugin="empty"))
    with pytest.raises(ConformanceError, match=r"unknown model 'good-vt'.*good-vit"):
        check_model("good-vt", registry=registry)
    with pytest.raises(ValueError, match="unknown checks"):
        check_model("good-vit", registry=registry, skip=["gradient"])


def test_skip_and_parametrize_helpers() -> None:
    presets = {"good-vit-wide": Preset({**SMALL, "dim": 96})}
    registry = registry_with(info("lenient", here("AcceptsAnyRank")), info("good-vit", presets=presets))
    check_model("lenient", registry=registry, skip=["bad-input"])
    assert model_names("good-*", registry=registry) == ["good-vit"]  # presets are checked through their model
    mark = parametrize_models(plugin="fake", registry=registry)
    assert mark.args == ("model_name", ["good-vit", "lenient"])
    with pytest.raises(LookupError, match="no models registered by plugin 'nobody'"):
        parametrize_models(plugin="nobody", registry=registry)
    assert issubclass(ConformanceError, AssertionError)
    assert next(iter(CHECKS)) == "metadata"


# The scaffold.


def test_plugin_names() -> None:
    assert check_name("acme-vit") == "acme_vit"
    assert class_name("acme-vit") == "AcmeViT"
    for bad, fragment in [
        ("Acme", "kebab-case"),
        ("9lives", "kebab-case"),
        ("acme_vit", "kebab-case"),
        ("torch", "already importable"),
        ("vit", "already registered"),
        ("class", "keyword"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            check_name(bad)


def test_render_refuses_unknown_fields() -> None:
    assert render("{{ a }}-{{b}}", {"a": "x", "b": "y"}) == "x-y"
    with pytest.raises(KeyError, match="nope"):
        render("{{nope}}", {})


def test_generated_plugin_passes_the_kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = generate_plugin("kit-sample", tmp_path / "kit-sample")
    root = tmp_path / "kit-sample"
    assert {p.relative_to(root).as_posix() for p in written} == {
        "pyproject.toml",
        "README.md",
        "tests/test_conformance.py",
        "kit_sample/__init__.py",
        "kit_sample/plugin.py",
        "kit_sample/model.py",
        "kit_sample/py.typed",
    }
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."vit_core.plugins"]\nkit-sample = "kit_sample.plugin"' in pyproject
    assert "{{" not in "".join(p.read_text() for p in written)
    with pytest.raises(FileExistsError):
        generate_plugin("kit-sample", root)
    monkeypatch.syspath_prepend(str(root))
    from kit_sample import plugin  # type: ignore[import-not-found]

    registry = Registry()
    registry.add_plugin(plugin, "kit-sample")
    assert check_plugin("kit-sample", registry=registry) == ["kit-sample"]
    model = registry.create("kit-sample", num_registers=2)
    assert count_parameters(model) == VIT_PARAMS + 2 * 64


SECOND_MODEL = """

class WideViT(ViT):
    \"\"\"The author's second model: vit_core.ViT, registered with a wider default configuration.\"\"\"
"""

SECOND_ENTRY = """        ModelInfo(
            name="{name}-wide",
            target="{package}.model:WideViT",
            family="vit",
            paper_title="An Image is Worth 16x16 Words",
            paper_url="https://arxiv.org/abs/2010.11929",
            summary="ViT, wider.",
            input_kind="image",
            default_config=dict(image_size=32, patch_size=8, num_classes=10, dim=96, depth=2, heads=4, mlp_dim=128),
            input_shape=(3, 32, 32),
            citation="@article{{dosovitskiy2020vit}}",
            example="v = WideViT(image_size=32, patch_size=8, num_classes=10, dim=96, depth=2, heads=4, mlp_dim=128)",
        ),
    ]
"""


def _install_in_place(root: Path, name: str, package: str, site: Path) -> dict[str, str]:
    """Make the generated project at ``root`` discoverable as an installed plugin without pip: a
    ``.dist-info`` folder declaring its entry point in ``site``, and the environment that puts ``root``
    and ``site`` on ``sys.path`` (and loads that plugin alone)."""
    info = site / f"{package}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[vit_core.plugins]\n{name} = {package}.plugin\n")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    return env | {"PYTHONPATH": os.pathsep.join([str(root), str(site)]), "VIT_PLUGINS": name}


def test_generated_plugin_tests_pass_with_a_second_model(tmp_path: Path) -> None:
    """The template's own tests keep passing when the author registers a second model, and they check it:
    run (as the author would, with pytest in the project) before and after adding it.  The export tests
    are left out (the same kit check, slow; test_exports in the template runs them per model)."""
    root = tmp_path / "kit-pair"
    generate_plugin("kit-pair", root)
    env = _install_in_place(root, "kit-pair", "kit_pair", tmp_path / "site")
    pytest_run = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not exports")
    assert "3 passed" in _run(*pytest_run, cwd=root, env=env).stdout

    model = root / "kit_pair" / "model.py"
    model.write_text(model.read_text() + SECOND_MODEL)
    plugin = root / "kit_pair" / "plugin.py"
    text = plugin.read_text()
    assert text.count("\n        ),\n    ]\n") == 1
    plugin.write_text(
        text.replace(
            "\n        ),\n    ]\n", "\n        ),\n" + SECOND_ENTRY.format(name="kit-pair", package="kit_pair")
        )
    )
    done = _run(*pytest_run, "-rA", cwd=root, env=env)
    assert "4 passed" in done.stdout, done.stdout
    assert "PASSED tests/test_conformance.py::test_conformance[kit-pair-wide]" in done.stdout, done.stdout


def test_new_plugin_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vit_core.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["new-plugin", "cli-sample", "--dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "created plugin cli-sample" in result.output and "pip install -e" in result.output
    assert (tmp_path / "out" / "cli_sample" / "plugin.py").is_file()
    again = runner.invoke(app, ["new-plugin", "cli-sample", "--dir", str(tmp_path / "out")])
    assert again.exit_code == 1 and "already exists" in again.output
    bad = runner.invoke(app, ["new-plugin", "Bad_Name"])
    assert bad.exit_code == 1 and "kebab-case" in bad.output


# End to end: a generated plugin installed into a fresh virtual environment.

DEPENDENCIES = ("torch", "einops", "pluggy", "typer", "rich", "numpy", "safetensors", "pytest")
"""vit-core's runtime dependencies, and pytest for the generated plugin's own tests."""


def _closure(names: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` and, recursively, their unconditional requirements."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo, seen, out = list(names), set(), []
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        out.append(dist)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return out


def _dependency_overlay(target: Path) -> None:
    """Symlink the top-level files of every dependency (and its dist-info) into ``target``."""
    target.mkdir()
    for dist in _closure(DEPENDENCIES):
        assert not dist.entry_points.select(group="vit_core.plugins"), dist.metadata["Name"]
        root = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in sorted(tops - {"..", "__pycache__"}):
            if not top.endswith(".pth") and (root / top).exists() and not (target / top).exists():
                (target / top).symlink_to(root / top)


def _run(*args: str | Path, cwd: Path, env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    command = " ".join(map(str, args))
    assert done.returncode == code, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def _build_wheels(sources: Iterable[Path], wheels: Path, env: dict[str, str]) -> None:
    pip_wheel = (sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q")
    _run(*pip_wheel, "-w", wheels, *sources, cwd=wheels.parent, env=env)


def _fresh_venv(root: Path, env: dict[str, str]) -> Path:
    """A new venv under ``root`` whose site-packages also sees the dependency overlay; return its bin dir."""
    venv.create(root / "env", with_pip=True)
    python = root / "env" / "bin" / "python"
    # Python < 3.12 seeds an old setuptools that would shadow the one torch requires.
    _run(python, "-m", "pip", "uninstall", "-y", "-q", "setuptools", cwd=root, env=env)
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=root, env=env)
    _dependency_overlay(root / "deps")
    (Path(site.stdout.strip()) / "vit-kit-dependencies.pth").write_text(f"{root / 'deps'}\n")
    return python.parent


def _vit_core_source(root: Path) -> Path:
    """A copy of this checkout's vit-core project (so building a wheel writes nothing into the repository)."""
    src = root / "vit-core"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "vit_core", src / "vit_core", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    return src


def _listed(vit: Path, cwd: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in json.loads(_run(vit, "list", "--json", cwd=cwd, env=env).stdout)}


@pytest.mark.slow
def test_generated_plugin_installs_and_uninstalls(tmp_path: Path) -> None:
    """`vit new-plugin` -> wheel -> pip install into a fresh venv -> discovered; uninstalled -> gone.

    The venv is a real, fresh one (``python -m venv``, no ``--system-site-packages``): pip installs
    vit-core (a wheel built from this checkout) and the generated plugins' wheels into it with
    ``--no-index``, and entry-point discovery sees only what pip installed there.  Installing torch
    into it would cost about a minute, so vit-core's third-party dependencies (torch, einops,
    pluggy, typer, rich, and pytest for the plugin's own tests) come from a ``.pth`` overlay of
    symlinks to those distributions of the interpreter running this test, and nothing else: never
    vit-core or a plugin.  (``--system-site-packages`` would expose the base interpreter instead,
    which has no torch here and may hold anything.)  pip sees the overlay's dist-infos, so it
    still checks that every declared dependency is satisfied.
    """
    env = {k: v for k, v in os.environ.items() if k not in {"VIT_PLUGINS", "PYTHONPATH", "PYTHONHOME"}}
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _build_wheels([_vit_core_source(tmp_path)], wheels, env)
    bin_dir = _fresh_venv(tmp_path, env)
    python, vit = bin_dir / "python", bin_dir / "vit"
    pip = (python, "-m", "pip", "-q")
    _run(*pip, "install", "--no-index", "--find-links", wheels, "vit-core", cwd=tmp_path, env=env)

    # The templates ship in the vit-core wheel: generate with the installed `vit`.
    _run(vit, "new-plugin", "acme-vit", "--dir", tmp_path / "acme-vit", cwd=tmp_path, env=env)
    _run(vit, "new-plugin", "broken-vit", "--dir", tmp_path / "broken-vit", cwd=tmp_path, env=env)
    broken = tmp_path / "broken-vit" / "broken_vit" / "plugin.py"
    broken.write_text(broken.read_text() + '\nraise ImportError("broken-vit is deliberately broken")\n')
    _build_wheels([tmp_path / "acme-vit", tmp_path / "broken-vit"], wheels, env)
    _run(*pip, "install", "--no-index", "--find-links", wheels, "acme-vit", "broken-vit", cwd=tmp_path, env=env)

    listed = _listed(vit, tmp_path, env)
    assert listed["acme-vit"]["plugin"] == "acme-vit" and listed["acme-vit"]["version"] == "0.1.0"
    assert {"vit", "simple-vit", "navit"} <= set(listed)
    table = _run(vit, "list", cwd=tmp_path, env=env)
    assert "acme-vit" in table.stdout and "broken-vit" in table.stderr
    plugins = _run(vit, "plugins", cwd=tmp_path, env=env).stdout
    assert "acme-vit" in plugins and "ImportError" in plugins and "deliberately broken" in plugins
    described = _run(vit, "describe", "acme-vit", cwd=tmp_path, env=env)
    assert "Vision Transformers Need Registers" in described.stdout and "81,610" in described.stdout
    assert "Warning" not in described.stderr, described.stderr  # e.g. torch's "Failed to initialize NumPy"
    script = (
        "import torch, vit_core\n"
        "from vit_core import create_model\n"
        "from acme_vit import AcmeViT\n"
        "model = create_model('acme-vit', num_classes=7)\n"
        "assert isinstance(model, AcmeViT)\n"
        "print(vit_core.__file__, tuple(model(torch.randn(2, 3, 32, 32)).shape), sep='|')\n"
    )
    where, shape = _run(python, "-c", script, cwd=tmp_path, env=env).stdout.strip().split("|")
    assert where.startswith(str(tmp_path / "env")) and shape == "(2, 7)"
    _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path / "acme-vit", env=env)

    _run(*pip, "uninstall", "-y", "acme-vit", cwd=tmp_path, env=env)
    assert "acme-vit" not in _listed(vit, tmp_path, env)
    gone = _run(vit, "describe", "acme-vit", cwd=tmp_path, env=env, code=1)
    assert "unknown model 'acme-vit'" in gone.stderr
