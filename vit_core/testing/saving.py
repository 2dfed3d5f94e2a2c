"""The checks of what leaves the process: ``save-load`` (``save_model`` then ``load_model`` is bit-identical)
and, on request, ``export`` (``torch.export`` and ONNX)."""

from __future__ import annotations

import tempfile

import torch

from vit_core.testing.subject import Subject, build, describe, run_forward


def check_save_load(s: Subject) -> None:
    """``vit_core.save_model`` then ``vit_core.load_model`` rebuilds the same class with bit-identical outputs."""
    from vit_core.interop.saving import load_model, save_model

    model = build(s, "save-load").eval()
    x = s.example()
    with tempfile.TemporaryDirectory() as folder:
        try:
            save_model(model, folder, name=s.key, registry=s.registry)
            loaded = load_model(folder, registry=s.registry)
        except Exception as exc:
            raise s.fail("save-load", f"save_model/load_model raised {describe(exc)}") from exc
    with torch.no_grad():
        before = run_forward(s, "save-load", model, x)
        after = run_forward(s, "save-load", loaded, x)
    if type(loaded) is not type(model) or not torch.equal(before, after):
        raise s.fail(
            "save-load",
            f"the model loaded from save_model's folder ({type(loaded).__name__}) does not give bit-identical "
            "outputs: every parameter and persistent buffer must be in the state dict, and the recorded "
            "constructor arguments (init_config) must rebuild the same architecture",
        )


def check_export_model(s: Subject) -> None:
    """``torch.export`` and ONNX export with a dynamic batch axis match eager PyTorch on another batch size."""
    from vit_core.interop.export import ExportError, check_export

    model = build(s, "export").eval()
    try:
        check_export(model, s.info.example_input(s.batch), s.info.example_input(s.batch + 1))
    except ExportError as exc:
        raise s.fail("export", str(exc)) from exc
    except ImportError as exc:
        raise s.fail("export", f"{describe(exc)}; the export check needs pip install 'vit-core[export]'") from exc
