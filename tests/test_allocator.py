"""vit_core.runtime.allocator: malloc keeping freed memory (page faults per step), and the commands that set it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vit_core.cli import app

FAULTS_SCRIPT = """
import json, resource, sys, torch
from vit_core.runtime import allocator
retained = sys.argv[1] == "retain" and allocator.retain_freed_memory()
torch.set_num_threads(1)
w = torch.randn(1024, 1024, requires_grad=True)
x = torch.randn(16384, 1024)
def step():  # a training step whose activations (64 MiB) are above glibc's largest mmap threshold
    (x @ w).relu().sum().backward()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step()
before = faults()
for _ in range(4):
    step()
print(json.dumps({"retained": retained, "faults": (faults() - before) / 4}))
"""


def run_fresh(script: str, *args: str) -> dict:
    """``script`` in a fresh Python process (its own, untouched malloc); the JSON it prints last."""
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_retained_memory_is_not_faulted_in_again() -> None:
    retained = run_fresh(FAULTS_SCRIPT, "retain")
    if not retained["retained"]:
        pytest.skip("not glibc: the allocator is left as it is")
    default = run_fresh(FAULTS_SCRIPT, "default")
    # three 64 MiB buffers a step (product, its ReLU, their gradient): 3 x 16,384 pages faulted in afresh by
    # default; retained, the half whose freed block is left too small by posix_memalign's slack is faulted in
    assert default["faults"] > 40_000, default
    assert retained["faults"] < 0.7 * default["faults"], (retained, default)


def test_vit_train_retains_freed_memory_unless_told_not_to(
    retained_heap_calls: list[None], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vit_core.training.loop

    monkeypatch.setattr(vit_core.training.loop, "train", lambda cfg, log: type("R", (), {"out": None})())
    runner = CliRunner()
    assert runner.invoke(app, ["train", "vit", "--out", str(tmp_path)]).exit_code == 0
    assert len(retained_heap_calls) == 1
    assert runner.invoke(app, ["train", "vit", "--no-retain-freed-memory", "--out", str(tmp_path)]).exit_code == 0
    assert len(retained_heap_calls) == 1


def test_vit_bench_retains_freed_memory_unless_told_not_to(
    retained_heap_calls: list[None], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vit_core.runtime.bench

    monkeypatch.setattr(vit_core.runtime.bench, "bench", lambda names, **kwargs: [])
    runner = CliRunner()
    assert runner.invoke(app, ["bench", "vit", "--json"]).exit_code == 0
    assert len(retained_heap_calls) == 1
    assert runner.invoke(app, ["bench", "vit", "--json", "--no-retain-freed-memory"]).exit_code == 0
    assert len(retained_heap_calls) == 1


RELEASE_SCRIPT = """
import json, torch
from vit_core.runtime import allocator
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
retained = allocator.retain_freed_memory()
torch.ones(64 << 20)  # 256 MiB, freed at once and kept
kept = resident_mb()
allocator.release_free_memory()
print(json.dumps({"retained": retained, "kept": kept, "released": resident_mb()}))
"""


def test_released_memory_leaves_the_resident_set() -> None:
    figures = run_fresh(RELEASE_SCRIPT)
    if not figures["retained"]:
        pytest.skip("not glibc: the allocator is left as it is")
    assert figures["kept"] - figures["released"] > 200, figures
