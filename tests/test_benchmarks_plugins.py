"""The plugin benchmark sections (benchmarks/variants.py, benchmarks/hierarchical.py, benchmarks/efficient.py)
at tiny sizes: the work guard passes, every target row is present, and mislabelled rows are refused.  No
timing is asserted.  Here, not in the plugins' own tests: benchmarks/ is no part of a plugin distribution."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from benchmarks import cases, efficient, hierarchical, report, targets, variants, work, zoo
from benchmarks.__main__ import run

pytest.importorskip("vit_variants")
pytest.importorskip("vit_hierarchical")
pytest.importorskip("vit_efficient")

SECTIONS = (variants.SECTION, hierarchical.SECTION)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared machine: one intra-op thread (more only spin), restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quick_results():
    """Both sections at tiny sizes, on one thread (tiny models on a shared machine: more threads only spin)."""
    pytest.importorskip("vit_pytorch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(quick=True, only=SECTIONS, command="python -m benchmarks --quick --only variants,hierarchical")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.oracle
def test_quick_run_passes_the_guard_and_writes_every_target_row(quick_results, tmp_path):
    measured = {(c["section"], c["params"]["case"]) for c in quick_results["comparisons"]}
    expected = {(variants.SECTION, c.name) for c in variants.FULL} | {
        (hierarchical.SECTION, c.name) for c in hierarchical._full()
    }
    assert measured == expected
    for c in quick_results["comparisons"]:
        assert [r["label"] for r in c["rows"]] == ["ours", "vit-pytorch"], c["name"]
        for row in c["rows"]:
            assert row["work"]["infer"]["tokens"] == c["params"]["batch"] * 3 * c["params"]["image"]
            assert row["work"]["train"]["random_draws"] == 0, f"{c['name']} {row['label']}: dropout left on"
    page = report.write_docs(quick_results, tmp_path).read_text()
    assert "<!--" not in page
    assert "## ViT variants (vit-variants)" in page and "## Hierarchical models (vit-hierarchical)" in page
    plugin_targets = [t for t in targets.TARGETS if t.section in SECTIONS]
    assert {t.issue for t in plugin_targets} == {11, 12} and len(plugin_targets) == 14
    for target in plugin_targets:
        assert f"| #{target.issue} | {target.text} |" in page, target.text
    outcomes = targets.evaluate(quick_results, plugin_targets)
    others = [o for o in outcomes if o.target.cases in (variants.OTHER_CASES, hierarchical.OTHER_CASES)]
    assert others and all(o.status != "not measured in this run" for o in others)


def test_target_cases_name_the_sections_cases():
    for module, full in ((variants, variants.FULL), (hierarchical, hierarchical._full())):
        assert set(module.TIMM_CASES) == {c.name for c in full if c.timm}
        assert set(module.OTHER_CASES) == {c.name for c in full if not c.timm}
        assert all(c.difference is not None for c in full if c.timm)


def test_full_configurations_are_the_requested_ones():
    cait, xcit, crossvit = (next(c for c in variants.FULL if c.name == n) for n in variants.TIMM_CASES)
    assert cait.timm == "cait_xxs24_224" and cait.config["depth"] == 24 and cait.config["dim"] == 192
    assert xcit.timm == "xcit_tiny_12_p16_224" and xcit.config["depth"] == 12
    assert crossvit.timm == "crossvit_tiny_240" and crossvit.image == 240 and crossvit.config["lg_enc_depth"] == 4
    pit = next(c for c in hierarchical._full() if c.name == "PiT-Ti")
    assert pit.config == hierarchical._preset("pit-ti") and pit.timm == "pit_ti_224"


def _quick_case(name: str) -> zoo.ZooCase:
    return next(c for c in variants.QUICK if c.name == name)


def _refused(comparison: cases.Comparison, monkeypatch) -> str:
    monkeypatch.setattr(cases, "interleaved", lambda *a, **k: pytest.fail("timed a refused comparison"))
    with pytest.raises(work.WorkMismatch) as error:
        cases.measure(comparison, cases.QUICK_TIMER, probe_side=16)
    return str(error.value)


@pytest.mark.oracle
def test_guard_refuses_a_row_whose_model_is_not_its_label(oracle, monkeypatch):
    case = _quick_case("CaiT-XXS24")
    (comparison,) = zoo.case_comparisons(case, memory=False)
    mislabelled = replace(case.spec("vit-pytorch"), config=case.spec("vit-pytorch").config | {"depth": 2})
    comparison.row("vit-pytorch").model = mislabelled.build()  # its label and claim still say depth 1
    message = _refused(comparison, monkeypatch)
    assert "vit-pytorch (infer): linear_flops" in message and "vit-pytorch (train): linear_flops" in message
    assert "ours (" not in message


@pytest.mark.oracle
def test_guard_refuses_dropout_left_on_in_one_row(oracle, monkeypatch):
    case = _quick_case("CrossViT-Ti")
    (comparison,) = zoo.case_comparisons(case, memory=False)
    spec = case.spec("vit-pytorch")
    comparison.row("vit-pytorch").model = replace(spec, config=spec.config | {"dropout": 0.1}).build()
    message = _refused(comparison, monkeypatch)
    assert "vit-pytorch (train): random_draws" in message and "(infer)" not in message


@pytest.mark.oracle
def test_size_check_refuses_another_architecture_under_the_same_name(oracle):
    case = _quick_case("DeepViT-S/16")
    x, loss = zoo._inputs(case, cases.CPU_FP32)
    wider = replace(case.spec("vit-pytorch"), config=case.spec("vit-pytorch").config | {"mlp_dim": 128})
    rows = [zoo._row(label, spec, case, x, loss, cases.CPU_FP32, False)
            for label, spec in (("ours", case.spec("ours")), ("vit-pytorch", wider))]  # fmt: skip
    with pytest.raises(
        work.WorkMismatch, match=r"vit-pytorch: parameters [\d,]+ vs ours [\d,]+ \(\+\d+\.\d%\), beyond"
    ):
        zoo.check_sizes("wider", rows, {"vit-pytorch": zoo.SAME_ARCHITECTURE}, case.batch)
    rows[1] = zoo._row("vit-pytorch", case.spec("vit-pytorch"), case, x, loss, cases.CPU_FP32, False)
    zoo.check_sizes("same", rows, {"vit-pytorch": zoo.SAME_ARCHITECTURE}, case.batch)
    assert "params +0.0%, forward FLOPs per image +0.0% vs ours" in rows[1].about


def test_size_problems_name_the_difference_and_its_tolerance():
    allowed = zoo.Difference("a conv stem", params=0.02, flops=0.05)
    assert zoo.size_problems("timm", (1000, 10_000), (1019, 10_499), allowed) == []
    assert zoo.size_problems("timm", (1000, 10_000), (1021, 10_000), allowed) == [
        "timm: parameters 1,021 vs ours 1,000 (+2.1%), beyond 2.0% (a conv stem)"
    ]
    assert zoo.size_problems("timm", (1000, 10_000), (1000, 9_400), allowed) == [
        "timm: forward FLOPs per image 9,400 vs ours 10,000 (-6.0%), beyond 5.0% (a conv stem)"
    ]


@pytest.mark.oracle
def test_timm_anchor_within_its_documented_difference_and_refused_beyond_it(oracle):
    pytest.importorskip("timm")
    case = replace(next(c for c in hierarchical._full() if c.name == "LeViT-128S"), batch=2, reference=None)
    (comparison,) = zoo.case_comparisons(case, memory=False)  # its size check passes
    about = comparison.row("timm").about
    assert "timm levit_128s (pretrained=False)" in about and "compared with ours" in about and "allowed" in about
    strict = {"timm": zoo.Difference("nothing differs", params=0.0, flops=0.0)}
    with pytest.raises(work.WorkMismatch, match=r"timm: parameters .* beyond 0\.0% \(nothing differs\)"):
        zoo.check_sizes("strict", comparison.rows, strict, case.batch)


@pytest.mark.oracle
def test_training_peak_memory_of_a_spec_is_measured_in_a_fresh_process(oracle):
    case = _quick_case("DeepViT-S/16")
    assert zoo.training_peak_memory(case.spec("vit-pytorch"), case.batch, case.image) > 0


# --- benchmarks/efficient.py: its cases run and do the work they claim ----------------------------


def test_benchmark_comparisons_run_and_do_the_work_they_claim() -> None:
    results = run(quick=True, only=efficient.SECTIONS, command="python -m benchmarks --quick")
    sections = [c["section"] for c in results["comparisons"]]
    assert sections.count(efficient.TRUNKS_SECTION) == len(efficient.QUICK_TOKENS)
    assert sections.count(efficient.REDUCTION_SECTION) == 2
    trunks = next(c for c in results["comparisons"] if c["section"] == efficient.TRUNKS_SECTION)
    assert [r["label"] for r in trunks["rows"]] == ["dense", "nystrom", "x-transformers"]
    ours = {o.target.text: o.status for o in targets.evaluate(results) if o.target.issue == 14}
    assert len(ours) == 3
    assert all(status in ("met", "not met") for text, status in ours.items() if "memory" not in text)


def test_benchmark_claims_catch_a_mislabelled_trunk() -> None:
    comparison = efficient.trunk_comparison(64, efficient.QUICK_TRUNKS, memory=False)
    nystrom = comparison.row("nystrom")
    nystrom.claim = efficient.nystrom_trunk_claim(efficient.TrunkCase(32, 1, 2, landmarks=32), 64)
    with pytest.raises(work.WorkMismatch, match="nystrom"):
        cases.measure(comparison, cases.QUICK_TIMER, probe_side=32)
