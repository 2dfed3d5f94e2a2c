"""`vit bench` through the real command line (typer's runner): a row per model with every column, one line each
at 80 columns, the thread count it ran on, JSON that parses with every field, and a clear error for an unknown
name.  One timed round: the figures are not checked (timing is for benchmarks, not tests), only that they are
there and positive."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from vit_core.cli import app
from vit_core.runtime.bench import COLUMNS

TINY = ["image_size=16", "patch_size=8", "dim=16", "depth=1", "heads=2", "mlp_dim=32", "dim_head=8", "num_classes=3"]
QUICK = ["--batch", "2", "--rounds", "1", "--warmup", "0", *(a for pair in TINY for a in ("--set", pair))]
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "OMP_NUM_THREADS": None}  # None: unset (vit train's default: 1 thread)
HEADERS = ("model", "kind", "params", "FLOPs", "infer img/s", "train img/s", "peak memory")


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, object]]:
    """The table at 80 columns on the default threads, JSON on ``--threads 2`` (this process's put back after)."""
    import torch

    runner = CliRunner()
    threads = torch.get_num_threads()
    yield {
        "table": runner.invoke(app, ["bench", "vit", "simple-vit", *QUICK], env=ENV | {"COLUMNS": "80"}),
        "json": runner.invoke(app, ["bench", "vit", "simple-vit", *QUICK, "--threads", "2", "--json"], env=ENV),
    }
    torch.set_num_threads(threads)


def test_table_has_a_line_per_model_with_every_column_at_80_columns(runs: dict) -> None:
    result = runs["table"]
    assert result.exit_code == 0, result.output + result.stderr
    title, header, *rows = result.stdout.splitlines()
    assert title == "batch 2 on cpu, 1 thread: FLOPs per sample; medians of interleaved rounds"
    assert re.split(r"\s{2,}", header.strip()) == list(HEADERS)  # whole, not cut to "mod…"
    assert [row.split()[0] for row in rows] == ["vit", "simple-vit"]
    for row in rows:
        cells = re.split(r"\s{2,}", row.strip())
        assert len(cells) == len(HEADERS) and cells[1] == "model" and cells[-1].endswith(" MiB"), row
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    assert not set("│┃━─") & set(result.stdout)  # not a terminal: plain lines


def test_json_parses_with_every_field_and_the_threads_it_ran_on(runs: dict) -> None:
    result = runs["json"]
    assert result.exit_code == 0, result.output + result.stderr
    rows = json.loads(result.stdout)
    assert [r["model"] for r in rows] == ["vit", "simple-vit"]
    for row in rows:
        assert tuple(row) == COLUMNS
        assert row["params"] > 0 and row["flops"] > 0
        assert row["infer_images_per_s"] > 0 and row["train_images_per_s"] > 0 and row["peak_train_memory"] > 0
        assert row["threads"] == 2


def test_threads_takes_a_positive_count() -> None:
    result = CliRunner().invoke(app, ["bench", "vit", *QUICK, "--threads", "0"], env=ENV)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == "error: --threads must be at least 1, got 0"
    with pytest.raises(ValueError, match=r"threads must be a positive int, got 0"):
        from vit_core.runtime.bench import bench

        bench(["vit"], threads=0)


def test_peak_memory_grows_with_the_batch() -> None:
    """Measured in a fresh process: in the timing process the allocator's cache made every increase read 0."""
    from vit_core.runtime.bench import fresh_training_peak

    config = dict(pair.split("=") for pair in TINY)
    overrides = {key: int(value) for key, value in config.items()} | {"image_size": 64}
    small, large = (fresh_training_peak("vit", overrides, batch, "cpu") for batch in (2, 64))
    assert 0 < small < large
    with pytest.raises(RuntimeError, match="measuring no-such-vit's training memory in a fresh process failed"):
        fresh_training_peak("no-such-vit", {}, 2, "cpu")


def test_unknown_set_key_lists_the_valid_ones() -> None:
    result = CliRunner().invoke(app, ["bench", "vit", *QUICK, "--set", "colour=3"], env=ENV)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--set colour" in result.stderr and "valid keys:" in result.stderr and "patch_size" in result.stderr


def test_unknown_model_is_one_error_line() -> None:
    result = CliRunner().invoke(app, ["bench", "vit", "no-such-vit", *QUICK], env=ENV)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == ["error: unknown model 'no-such-vit'; did you mean vit?"] or (
        "unknown model 'no-such-vit'" in result.stderr
    )


def test_inference_is_timed_in_eval_mode_and_training_in_train_mode() -> None:
    """A model's inference rate is that of eval mode (no dropout, running norm statistics); its step trains."""
    import torch

    from vit_core import ViT
    from vit_core.runtime.bench import timed_calls

    model = ViT(image_size=16, patch_size=8, num_classes=3, dim=16, depth=1, heads=2, mlp_dim=32, dropout=0.5)
    modes: list[bool] = []
    model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    infer, step = timed_calls(model, (torch.randn(2, 3, 16, 16),), "model", torch.device("cpu"))
    infer(), step(), infer()
    assert modes == [False, True, False]
