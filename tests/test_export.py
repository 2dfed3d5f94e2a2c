"""torch.export and ONNX export (dynamic batch axis) of every registered model and backend; `vit export`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from vit_core.hookspecs import HOOK_API_VERSION, hookimpl
from vit_core.interop.export import DATA_DEPENDENT, ExportError, check_export, export_onnx, export_program, onnx_names
from vit_core.registry import Registry, get_registry
from vit_core.testing import ConformanceError, check_model, check_plugin, model_names

DOCS = Path(__file__).resolve().parents[1] / "docs" / "interop.md"

EXPORT_BLOCKERS = {
    "navit": "takes list input",
}
"""Models that do not export, with what the kit's message says; docs/interop.md lists each of them."""


def exportable_names() -> list[str]:
    registry = get_registry()
    return [n for n in model_names() if ":" in n or registry.info(n).kind != "trainer"]


def _export_only(name: str) -> None:
    from vit_core.testing import PROFILES

    info = get_registry().info(name)
    check_model(name, export=True, skip=list(PROFILES[info.kind]))


@pytest.mark.parametrize("name", exportable_names())
def test_every_model_exports_or_is_a_documented_blocker(name: str) -> None:
    if name not in EXPORT_BLOCKERS:
        _export_only(name)
        return
    with pytest.raises(ConformanceError, match=rf"(?s)failed conformance check 'export'.*{EXPORT_BLOCKERS[name]}"):
        _export_only(name)


def test_blockers_are_registered_and_documented() -> None:
    docs = DOCS.read_text()
    names = set(exportable_names())
    for name in EXPORT_BLOCKERS:
        assert name in names, f"{name} is no longer registered: drop it from EXPORT_BLOCKERS"
        assert re.search(rf"^\| `{re.escape(name)}` \|", docs, re.MULTILINE), f"{name} is not listed in {DOCS.name}"


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x


def test_a_model_that_cannot_export_is_named_with_the_blocking_operator() -> None:
    with pytest.raises(ExportError, match=r"torch.export failed at operator aten.item .*data-dependent") as caught:
        export_program(DataDependent(), torch.randn(2, 3))
    assert caught.value.op == DATA_DEPENDENT and "in forward" in str(caught.value)


def test_check_export_reports_errors_on_another_batch_size() -> None:
    model = get_registry().create("simple-vit").eval()
    report = check_export(model, torch.randn(2, 3, 32, 32), torch.randn(5, 3, 32, 32))
    assert report.batch == 5 and report.program_error <= 1e-5 and report.onnx_error <= 1e-4


def test_vit_export_writes_pt2_and_onnx_with_a_dynamic_batch(tmp_path: Path) -> None:
    import onnxruntime
    from typer.testing import CliRunner

    from vit_core import load_model, save_model
    from vit_core.cli import app

    model = get_registry().create("vit", num_classes=4).eval()
    save_model(model, tmp_path / "saved")
    runner = CliRunner()
    result = runner.invoke(
        app, ["export", "vit", "--from", str(tmp_path / "saved"), "-f", "pt2", "--out", str(tmp_path / "m.pt2")]
    )
    assert result.exit_code == 0, result.output
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        expected = load_model(tmp_path / "saved")(x)
        torch.testing.assert_close(torch.export.load(str(tmp_path / "m.pt2")).module()(x), expected)
    result = runner.invoke(app, ["export", "vit", "--set", "num_classes=4", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {session.get_inputs()[0].name: x.numpy()})[0].shape == (5, 4)
    assert session.get_inputs()[0].shape == ["batch", 3, 32, 32] and session.get_outputs()[0].shape == ["batch", 4]
    bad = runner.invoke(app, ["export", "vit", "-f", "tflite", "--out", str(tmp_path / "m")])
    assert bad.exit_code == 1 and "--format must be one of onnx, pt2" in bad.output
    trainer = runner.invoke(app, ["export", "mae", "--out", str(tmp_path / "m")])
    assert trainer.exit_code == 1 and "is a trainer" in trainer.output


def _onnx_input(path: Path) -> tuple[object, object]:
    """The ONNX file's first input (name, shape) and an onnxruntime session on it."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.get_inputs()[0], session


def test_vit_export_traces_the_input_the_configuration_takes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vit_core import save_model
    from vit_core.cli import app

    runner = CliRunner()
    for settings, shape in [(["image_size=48"], (3, 48, 48)), (["channels=1", "image_size=[32,48]"], (1, 32, 48))]:
        args = ["export", "vit", "--out", str(tmp_path / "set.onnx")]
        result = runner.invoke(app, args + [f"--set={s}" for s in settings])
        assert result.exit_code == 0, result.output
        first, session = _onnx_input(tmp_path / "set.onnx")
        assert tuple(first.shape[1:]) == shape, first.shape
        assert session.run(None, {first.name: torch.randn(3, *shape).numpy()})[0].shape == (3, 10)

    resized = get_registry().create("vit").eval()
    resized.set_input_size((48, 32))
    save_model(resized, tmp_path / "resized")
    x = torch.randn(4, 3, 48, 32)
    with torch.no_grad():
        expected = resized(x)
    for format_, out in [("pt2", "r.pt2"), ("onnx", "r.onnx")]:
        args = ["export", "vit", "--from", str(tmp_path / "resized"), "-f", format_, "--out", str(tmp_path / out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    torch.testing.assert_close(torch.export.load(str(tmp_path / "r.pt2")).module()(x), expected)
    first, session = _onnx_input(tmp_path / "r.onnx")
    assert tuple(first.shape[1:]) == (3, 48, 32)
    got = torch.from_numpy(session.run(None, {first.name: x.numpy()})[0])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)

    both = runner.invoke(
        app, ["export", "vit", "--from", str(tmp_path / "resized"), "--set", "dim=32", "--out", str(tmp_path / "m")]
    )
    assert both.exit_code == 1 and "--set configures a fresh model; --from loads the saved configuration" in both.output
    other = runner.invoke(app, ["export", "cait", "--from", str(tmp_path / "resized"), "--out", str(tmp_path / "m")])
    assert other.exit_code == 1 and "holds 'vit', not 'cait'" in other.output


class OnePlugin:
    """An in-process plugin registering one ModelInfo."""

    def __init__(self, info: object) -> None:
        self.info = info

    @hookimpl
    def vit_api_version(self) -> int:
        return HOOK_API_VERSION

    @hookimpl
    def vit_register_models(self) -> list[object]:
        return [self.info]


def test_check_plugin_export_adds_the_export_check() -> None:
    import dataclasses

    navit = get_registry().info("navit")  # exports nowhere: list input
    registry = Registry()
    registry.add_plugin(OnePlugin(dataclasses.replace(navit, name="acme-navit")), "acme")
    assert check_plugin("acme", registry=registry) == ["acme-navit"]
    with pytest.raises(ConformanceError, match=r"model 'acme-navit' failed conformance check 'export'.*list input"):
        check_plugin("acme", registry=registry, export=True)
    with pytest.raises(TypeError, match=r"export must be a bool .*got 1"):
        check_plugin("acme", registry=registry, export=1)


def test_vit_export_takes_the_format_from_the_suffix_and_refuses_a_contradiction(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vit_core.cli import app

    runner = CliRunner()
    tiny = ["--set", "image_size=16", "--set", "patch_size=8", "--set", "dim=16", "--set", "depth=1"]
    result = runner.invoke(app, ["export", "vit", "--out", str(tmp_path / "m.pt2"), *tiny])
    assert result.exit_code == 0, result.output
    assert torch.export.load(str(tmp_path / "m.pt2")) is not None
    refused = runner.invoke(app, ["export", "vit", "--out", str(tmp_path / "m.pt2"), "--format", "onnx", *tiny])
    assert refused.exit_code == 1 and "names a .pt2 file but --format is onnx" in refused.stderr


def test_vit_export_names_the_onnx_input_and_output_quietly_and_the_docs_example_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real program, as docs/interop.md runs it: no exporter noise on stderr (torchvision operators it
    skips, torch's FutureWarnings), ``image`` -> ``logits`` in the file, and the docs' onnxruntime block runs."""
    import onnx

    env = {k: v for k, v in os.environ.items() if k != "VIT_PLUGINS"} | {"COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "vit_core.cli", "export", "vit", "--out", "vit.onnx"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == (
        "wrote vit.onnx (vit, onnx, dynamic batch axis; input 'image' (batch, 3, 32, 32), output 'logits')\n"
    )
    graph = onnx.load(str(tmp_path / "vit.onnx")).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["logits"]
    text = DOCS.read_text()
    block = text.split("<!-- onnxruntime-example:", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    printed: list[tuple] = []
    exec(block, {"print": lambda *args: printed.append(args)})
    assert printed[0] == ([("image", ["batch", 3, 32, 32])],)
    assert printed[1][0] == (4, 10) and printed[1][1].shape == (4,)


def test_onnx_names_follow_the_input_kind_and_bad_names_are_refused(tmp_path: Path) -> None:
    assert onnx_names("model", "image") == ("image", "logits")
    assert onnx_names("model", "video") == ("video", "logits")
    assert onnx_names("backend", "tokens") == ("tokens", "features")
    with pytest.raises(ValueError, match=r"input_kind='image-list' does not export; expected one of image, video"):
        onnx_names("model", "image-list")
    model, x = nn.Linear(4, 2), torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"output_name='2 logits': expected an identifier"):
        export_onnx(model, x, tmp_path / "m.onnx", output_name="2 logits")
    with pytest.raises(ValueError, match=r"input_name and output_name are both 'x': ONNX needs two names"):
        export_onnx(model, x, tmp_path / "m.onnx", input_name="x", output_name="x")
