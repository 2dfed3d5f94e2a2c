"""`vit attention` through the real command line and the map behind it: a PNG of the input's size, and a model
whose class token is forced to attend one patch shows that patch (both methods, and in the picture)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vit_core import ViT, save_model
from vit_core.cli import app
from vit_core.layers import Attention
from vit_core.tools.attention_map import attention_map, draw

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
TINY = dict(image_size=32, patch_size=8, num_classes=3, dim=16, depth=2, heads=2, mlp_dim=32, dim_head=8)
PATCH = 5  # row 1, column 1 of the 4 x 4 grid


class ForcedAttention(Attention):
    """Every query attends only to the token of patch ``PATCH`` (after the class token)."""

    def transform_weights(self, weights: torch.Tensor) -> torch.Tensor:
        forced = torch.zeros_like(weights)
        forced[..., 1 + PATCH] = 1.0
        return forced


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "input.jpg"
    Image.new("RGB", (48, 40), (120, 120, 120)).save(path)
    return path


def test_run_folder_checkpoint_and_other_input_channels(tmp_path: Path, image: Path) -> None:
    """``--checkpoint`` takes a `vit train` run folder (its checkpoint/ inside); a one-channel model reads the
    image as grey."""
    save_model(ViT(**TINY, channels=1), tmp_path / "run" / "checkpoint", name="vit")
    out = tmp_path / "grey.png"
    args = ["attention", "vit", "--image", image, "--out", out, "--checkpoint", tmp_path / "run"]
    result = CliRunner().invoke(app, [str(a) for a in args], env=ENV)
    assert result.exit_code == 0, result.output + result.stderr
    with Image.open(out) as written:
        assert written.size == (40, 40)  # the square centre the model sees (48x40 resized and cropped to 32x32)


def test_writes_a_png_of_the_part_the_model_sees(tmp_path: Path, image: Path) -> None:
    torch.manual_seed(0)
    model = ViT(**TINY)
    save_model(model, tmp_path / "model", name="vit")
    for method in ("rollout", "last"):
        out = tmp_path / f"{method}.png"
        args = ["attention", "vit", "--image", image, "--out", out, "--checkpoint", tmp_path / "model"]
        result = CliRunner().invoke(app, [str(a) for a in [*args, "--method", method]], env=ENV)
        assert result.exit_code == 0, result.output + result.stderr
        with Image.open(out) as written:
            assert written.format == "PNG" and written.size == (40, 40)


def test_forced_attention_highlights_its_patch(tmp_path: Path, image: Path) -> None:
    torch.manual_seed(0)
    model = ViT(**TINY, attention=ForcedAttention).eval()
    x = torch.randn(1, 3, 32, 32)
    for method in ("rollout", "last"):
        heat = attention_map(model, x, method)
        assert heat.shape == (4, 4) and int(heat.flatten().argmax()) == PATCH
        assert heat.flatten()[PATCH] > 0.9
    out = tmp_path / "forced.png"
    draw(model, image, out, "last")
    with Image.open(out) as picture:
        red = [picture.getpixel((x, y))[0] for x, y in ((15, 15), (5, 5), (35, 35))]  # centre of patch (1, 1), others
    assert red[0] > red[1] + 60 and red[0] > red[2] + 60


def test_bad_input(tmp_path: Path, image: Path) -> None:
    from vit_core import SimpleViT

    save_model(SimpleViT(**TINY), tmp_path / "simple", name="simple-vit")
    runner = CliRunner()

    def error(*args: object) -> str:
        result = runner.invoke(app, ["attention", *map(str, args)], env=ENV)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        return result.stderr.strip().splitlines()[-1]

    out = tmp_path / "out.png"
    assert "unknown model 'no-such-vit'" in error("no-such-vit", "--image", image, "--out", out)
    message = error("vit", "--image", image, "--out", out, "--checkpoint", tmp_path / "simple")
    assert "checkpoint is of model 'simple-vit', not 'vit'" in message
    assert "no config.json" in error("vit", "--image", image, "--out", out, "--checkpoint", tmp_path)
    assert "method must be one of" in error("vit", "--image", image, "--out", out, "--method", "mean")
    assert "missing.png" in error("vit", "--image", tmp_path / "missing.png", "--out", out)
    if "ats-vit" in runner.invoke(app, ["list"], env=ENV).stdout:  # drops tokens: its layers differ in size
        assert "different token counts" in error("ats-vit", "--image", image, "--out", out)


class MisdeclaredClassAttention(ViT):
    """Names its self-attention trunk as class-attention layers: its maps are token to token, not one row."""

    class_attention_trunk = "transformer"


def test_a_class_attention_trunk_must_record_the_class_tokens_row() -> None:
    with pytest.raises(TypeError, match=r"class attention is over \(17, 17\), not the class token over itself and 16"):
        attention_map(MisdeclaredClassAttention(**TINY).eval(), torch.randn(1, 3, 32, 32))
