"""The benchmark code runs (tiny configurations, no timing assertions), and compiled graphs are whole."""

from __future__ import annotations

import pytest
import torch

from benchmarks import cases, harness
from benchmarks.__main__ import run
from benchmarks.harness import interleaved
from vit_core import NaViT, SimpleViT, ViT

SMALL = dict(image_size=32, patch_size=8, num_classes=10, dim=32, depth=1, heads=2, mlp_dim=64, dim_head=16)


def test_interleaved_never_runs_one_implementation_twice_in_a_row():
    calls = []
    timing = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1)
    assert len(timing.rounds["a"]) == len(timing.rounds["b"]) == 3
    # warm-up, three kept rounds, and any round discarded because another process was busy meanwhile
    assert calls == ["a", "b"] * (1 + 3 + timing.discarded)


def test_a_busy_call_discards_its_whole_round(monkeypatch):
    foreign = iter([0.0, 5.0, 0.0, 0.0, 0.0, 0.0])  # the second call of the first round saw another process
    seconds = iter(range(6))  # each call reports its position as its duration

    def timed(fn):
        fn()
        return float(next(seconds)), next(foreign)

    monkeypatch.setattr(harness, "_foreign_cpu", timed)
    timing = interleaved({"a": lambda: None, "b": lambda: None}, rounds=2, warmup=0)
    assert timing.discarded == 1
    assert timing.rounds == {"a": [2.0, 4.0], "b": [3.0, 5.0]}  # the two rounds after the busy one


def test_speedup_is_the_median_of_per_round_ratios():
    timing = harness.Timing({"ours": [1.0, 2.0, 1.0], "theirs": [2.0, 3.0, 1.0]})
    ratio = timing.speedup("ours", "theirs")  # per round: 2, 1.5, 1
    assert (ratio.median, ratio.low, ratio.high) == pytest.approx((1.5, 1.25, 1.75))
    assert str(ratio) == "1.50x (1.25-1.75)"
    assert timing.speedup("theirs", "theirs") == harness.Ratio(1.0, 1.0, 1.0)
    assert str(harness.Timing({"a": [1.0], "b": [3.0]}).speedup("a", "b")) == "3.00x (3.00-3.00)"
    assert ratio.scaled(0.5).as_share() == "75% (62%-88%)"


def test_matmul_share_is_taken_round_by_round_against_the_probe():
    # (a step of 6 units every 2 s, then 4 s on a machine half as fast: 3/4 of the probe's rate both times)
    timing = harness.Timing({"ours": [2.0, 4.0], cases.MATMUL_PROBE: [1.0, 2.0]})
    share = cases.matmul_share(timing, "ours", work=6.0, probe_work=4.0)
    assert share.median == pytest.approx(0.75) and share.low == share.high == pytest.approx(0.75)


def test_padding_waste_of_padded_packing():
    images = [torch.zeros(3, 16, 16), torch.zeros(3, 8, 8)]  # 4 and 1 patches of 8
    waste = cases.navit_padding_waste(images, patch=8, max_len=4)
    assert waste["padded_token_share"] == pytest.approx(1 - 5 / 8)
    assert waste["wasted_attention_share"] == pytest.approx(1 - 17 / 32)


def test_quick_report_has_every_section():
    report = run(quick=True, only=("vit", "navit", "long"))
    for heading in ("## ViT and SimpleViT, eager", "## NaViT", "## One attention layer"):
        assert heading in report
    assert "| tiny | 2 | ours |" in report
    assert "| tiny-simple | 2 | ours |" in report


def test_quick_report_runs_at_lower_precision():
    report = run(quick=True, only=("vit", "long"), setup=cases.Setup("cpu", torch.bfloat16))
    assert "bfloat16 autocast" in report
    assert "| tiny | 2 | ours |" in report and "| 64 |" in report


def test_unknown_case_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown --cases \['ViT-Z/1'\]; choose from \['tiny', 'tiny-simple'\]"):
        run(quick=True, only=("vit",), vit_names=("ViT-Z/1",))


@pytest.mark.parametrize(
    ("model", "example"),
    [
        (ViT(**SMALL), torch.randn(2, 3, 32, 32)),
        (SimpleViT(**SMALL), torch.randn(2, 3, 32, 32)),
        (NaViT(**SMALL), [torch.randn(3, 32, 32), torch.randn(3, 16, 24), torch.randn(3, 8, 8)]),
    ],
    ids=["vit", "simple-vit", "navit"],
)
def test_no_graph_breaks(model, example):
    explanation = torch._dynamo.explain(model.eval())(example)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
