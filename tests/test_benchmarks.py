"""The benchmark code: timing harness, work counting and its guard, call arguments per mode,
targets, and a tiny run that writes the docs (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import torch
import torch.nn.functional as F

from benchmarks import cases, harness, report, targets, work
from benchmarks.__main__ import comparisons, main, merge_runs, run
from benchmarks.harness import interleaved
from vit_core import NaViT, SimpleViT, ViT
from vit_core.layers import Attention

SMALL = dict(image_size=32, patch_size=8, num_classes=10, dim=32, depth=1, heads=2, mlp_dim=64, dim_head=16)
NAVIT = dict(image_size=32, patch_size=8, num_classes=10, dim=32, depth=2, heads=2, mlp_dim=64, dim_head=16)


# ---------------------------------------------------------------------------------------------
# Timing harness


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

    monkeypatch.setattr("vit_core.runtime.timing._foreign_cpu", timed)  # the harness moved there
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


def _comparison(seconds: dict[str, list[float]], probe: list[float], flops: dict[str, int], **extra) -> dict:
    """A measured comparison as the run's JSON holds it (one mode, training)."""
    rows = [
        {
            "label": label,
            "about": label,
            "seconds": {"train": times},
            "work": {"train": work.Work(tokens=10, linear_flops=flops[label]).as_dict()},
            "peak_memory": None,
        }
        for label, times in seconds.items()
    ]
    return {
        "section": "vit", "name": "case", "params": {"case": "ViT-B/16"}, "baseline": "timm",
        "pairs": [["ours", "timm"]], "items": 1, "useful": "ours", "modes": ["train"],
        "probe": {"flops": 4.0, "seconds": {"train": probe}}, "discarded": {"train": 0}, "rows": rows,
    } | extra  # fmt: skip


def test_matmul_share_is_taken_round_by_round_against_the_probe():
    # a step of 6 FLOPs every 2 s, then 4 s on a machine half as fast: 3/4 of the probe's rate both times
    c = _comparison({"ours": [2.0, 4.0]}, probe=[1.0, 2.0], flops={"ours": 6})
    share = targets.share(c, "ours", "train")
    assert share.median == pytest.approx(0.75) and share.low == share.high == pytest.approx(0.75)


# ---------------------------------------------------------------------------------------------
# Work counting


def test_cpu_fused_attention_is_counted_like_the_explicit_softmax():
    attn = Attention(32, 2, 16)
    x = torch.randn(1, 24, 32)
    fused = work.count_work(lambda: attn(x), attn)
    explicit = work.count_work(lambda: cases.explicit_attention(attn, x), attn)
    claim = work.attention_layer_claim(32, 2, 16, 24)
    assert fused.attention_flops == explicit.attention_flops == claim.attention_flops == 4 * 32 * 24 * 24
    assert fused.linear_flops == explicit.linear_flops == claim.linear_flops
    assert fused.tokens == 24 and fused.backward_flops == 0


def test_backward_flops_are_counted_apart_from_the_forward():
    model = ViT(**SMALL)
    x = torch.randn(2, 3, 32, 32)
    step = cross_entropy_step(model, x)
    counted = work.count_work(step, model.transformer)
    forward = work.count_work(cases.infer(model, x), model.transformer)
    assert counted.forward_flops == forward.forward_flops > 0
    assert 1.5 * forward.forward_flops < counted.backward_flops < 3 * forward.forward_flops


class _Dispatched(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the overload packet of every op dispatched under it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func._overloadpacket)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", work.MODES)
def test_products_alone_replays_every_counted_product_and_nothing_else(mode):
    model = NaViT(**SMALL, token_dropout_prob=None)
    row = cases.Row(
        "ours", model, [torch.randn(3, 32, 24), torch.randn(3, 16, 16)], None, "", loss=cases.logsumexp_loss
    )
    call = row.call(mode)
    counted = work.count_work(call, model.transformer)
    replay = work.products_alone(call)
    replayed = work.count_work(replay, model.transformer)
    total = counted.forward_flops + counted.backward_flops
    assert replayed.forward_flops == total > 0 and replayed.tokens == 0  # the trunk does not run
    dispatched = _Dispatched()
    with dispatched:
        replay()
    products = {torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.convolution}
    products |= {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu}
    products |= {
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward,
        torch.ops.aten.convolution_backward,
    }
    assert dispatched.ops and set(dispatched.ops) <= products
    # CPU training at these lengths computes the scores explicitly (EXPLICIT_CPU_TRAINING_KEYS): bmm, not the
    # fused kernel, whose backward would be the slow half
    fused = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu} & set(dispatched.ops)
    assert torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward not in dispatched.ops
    assert bool(fused) == (mode != "train") and (torch.ops.aten.bmm in dispatched.ops) == (mode == "train")


def test_the_ceiling_share_is_read_from_the_products_timed_alone():
    # the step's 6 FLOPs take 2 s, its products alone 1 s; the probe's 4 FLOPs 1 s: shares 75% and 150%
    ceiling = {"label": "ours", "seconds": {"train": [1.0, 1.0]}}
    c = _comparison({"ours": [2.0, 2.0]}, probe=[1.0, 1.0], flops={"ours": 6}, ceiling=ceiling)
    assert targets.ceiling_share(c, "ours", "train").median == pytest.approx(1.5)
    assert targets.ceiling_share(c, "theirs", "train") is None
    assert targets.ceiling_share(_comparison({"ours": [2.0]}, [1.0], {"ours": 6}), "ours", "train") is None
    line = report._ceiling_line(c)
    assert len(line) == 1 and "`ours`'s matrix products and attention kernels alone" in line[0]
    assert "150% (150%-150%) (infer / train)" in line[0]
    assert report._ceiling_line(c | {"ceiling": None}) == []


def zero_class_loss(logits: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long))


def cross_entropy_step(model, x):
    return cases.train_step(model, x, zero_class_loss)


def test_counting_tokens_leaves_the_class_token_only_last_block_on():
    """A module hook on the trunk would switch the pruning off; the counter must not."""
    model = ViT(**SMALL).eval()
    x = torch.randn(2, 3, 32, 32)
    counted = work.count_work(cases.infer(model, x), model.transformer)
    encoder = work.Encoder(32, 1, 2, 16, 64, 3 * 64, 10)
    assert counted == work.count_work(cases.infer(model, x), model.transformer)
    assert work.mismatches(work.vit_claim(encoder, 2, 16, 1, pruned_last_block=True), counted) == []
    assert work.mismatches(work.vit_claim(encoder, 2, 16, 1), counted) != []
    assert "forward" not in vars(model.transformer)  # the wrapper is gone


def test_claims_match_the_counted_work_of_every_implementation(oracle):
    from vit_pytorch.na_vit import NaViT as Padded
    from vit_pytorch.na_vit_nested_tensor import NaViT as Nested
    from vit_pytorch.simple_vit import SimpleViT as SimpleReference
    from vit_pytorch.vit import ViT as Reference

    encoder = work.Encoder(32, 1, 2, 16, 64, 3 * 64, 10)
    x = torch.randn(2, 3, 32, 32)
    for model, claim in [
        (ViT(**SMALL), work.vit_claim(encoder, 2, 16, 1, pruned_last_block=True)),
        (Reference(**SMALL), work.vit_claim(encoder, 2, 16, 1)),
        (SimpleViT(**SMALL), work.vit_claim(encoder, 2, 16, 0)),
        (SimpleReference(**SMALL), work.vit_claim(encoder, 2, 16, 0)),
    ]:
        assert work.mismatches(claim, work.count_work(cases.infer(model.eval(), x), model.transformer)) == []
    images = cases.mixed_resolution_images(9, 8, 32, 8)
    lengths = [(i.shape[1] // 8) * (i.shape[2] // 8) for i in images]
    encoder = work.Encoder(32, 2, 2, 16, 64, 3 * 64, 10)
    packed = work.packed_navit_claim(encoder, lengths)
    for model, kwargs, claim in [
        (NaViT(**NAVIT), {}, packed),
        (NaViT.nested_tensor_flavour(**NAVIT), {}, packed),
        (Nested(**NAVIT, token_dropout_prob=0.0), {}, packed),
        (Padded(**NAVIT), dict(group_images=True, group_max_seq_len=32), work.padded_navit_claim(encoder, lengths, 32)),
    ]:
        counted = work.count_work(cases.infer(model.eval(), images, **kwargs), model.transformer)
        assert work.mismatches(claim, counted) == [], type(model)


def test_padded_claim_counts_padding_and_dense_masks():
    encoder = work.Encoder(8, 2, 1, 8, 8, 8, 2)
    assert work.pack_greedily([4, 1, 3, 2], 5) == [[4, 1], [3, 2]]
    claim = work.padded_navit_claim(encoder, [4, 1, 3], max_len=4)  # groups [4], [1, 3]: 2 x 4 positions
    assert claim.tokens == 8
    assert claim.mask_elements == 2 * (2 * 4 * 4) + 2 * 2 * 4  # per layer (2, 1, 4, 4); pooling (2, 1, 2, 4)
    packed = work.packed_navit_claim(encoder, [4, 1, 3])
    assert packed.tokens == 8 and packed.mask_elements == 0
    assert packed.attention_flops == 2 * encoder.scores(16 + 1 + 9) + encoder.scores(8)


def test_token_positions_of_dense_and_jagged_inputs():
    assert work.token_positions(torch.zeros(3, 5, 4)) == 15
    jagged = torch.nested.nested_tensor([torch.zeros(2, 4), torch.zeros(5, 4)], layout=torch.jagged)
    assert work.token_positions(jagged) == 7
    with pytest.raises(TypeError, match="must be a tensor, got list"):
        work.token_positions([1])


# ---------------------------------------------------------------------------------------------
# The guard: a comparison whose rows do not do the work their labels claim is refused


def _navit_rows(images, **padded_kwargs):
    from vit_pytorch.na_vit import NaViT as Padded

    encoder = work.Encoder(32, 2, 2, 16, 64, 3 * 64, 10)
    lengths = [(i.shape[1] // 8) * (i.shape[2] // 8) for i in images]
    ours = cases.Row("ours", NaViT(**NAVIT), images, work.packed_navit_claim(encoder, lengths), "ours")
    claim = work.padded_navit_claim(encoder, lengths, 32)
    padded = cases.Row("na_vit@32", Padded(**NAVIT), images, claim, "padded at 32", kwargs=padded_kwargs)
    for row in (ours, padded):
        row.loss = cases.logsumexp_loss
    return ours, padded


class DropsPackingInTraining(cases.Row):
    """The bug of issue 17: the packing arguments reach the inference call only."""

    def call(self, mode, setup=cases.CPU_FP32, *, counted=False):
        if mode == "infer":
            return super().call(mode, setup, counted=counted)
        self.model.train()
        return cases.train_step(self.model, self.inputs, self.loss, setup)


def _refused(comparison: cases.Comparison, monkeypatch) -> str:
    monkeypatch.setattr(cases, "interleaved", lambda *a, **k: pytest.fail("timed a refused comparison"))
    with pytest.raises(work.WorkMismatch) as error:
        cases.measure(comparison, cases.QUICK_TIMER, probe_side=16)
    return str(error.value)


def test_guard_refuses_a_packing_length_other_than_the_label(oracle, monkeypatch):
    images = cases.mixed_resolution_images(9, 8, 32, 8)
    ours, padded = _navit_rows(images, group_images=True, group_max_seq_len=64)  # labelled @32
    message = _refused(
        cases.Comparison("navit", "mislabelled", [ours, padded], [("ours", "na_vit@32")], {}), monkeypatch
    )
    assert "na_vit@32 (infer): tokens" in message and "na_vit@32 (train): tokens" in message
    assert "ours (" not in message


def test_guard_refuses_packing_dropped_in_training(oracle, monkeypatch):
    images = cases.mixed_resolution_images(9, 8, 32, 8)
    ours, padded = _navit_rows(images, group_images=True, group_max_seq_len=32)
    buggy = DropsPackingInTraining(**vars(padded))
    comparison = cases.Comparison("navit", "issue 17", [ours, buggy], [("ours", "na_vit@32")], {})
    message = _refused(comparison, monkeypatch)
    assert "na_vit@32 (train): tokens" in message and "attention_flops" in message
    assert "(infer)" not in message
    # called as its label says, the same pair passes
    monkeypatch.undo()
    ok = cases.Comparison("navit", "fixed", [ours, padded], [("ours", "na_vit@32")], {})
    measured = cases.measure(ok, cases.QUICK_TIMER, probe_side=16)
    assert [r["label"] for r in measured["rows"]] == ["ours", "na_vit@32"]


def test_guard_refuses_token_dropout_in_one_row_only(oracle, monkeypatch):
    from vit_pytorch.na_vit import NaViT as Padded

    images = cases.mixed_resolution_images(9, 8, 32, 8)
    ours, padded = _navit_rows(images, group_images=True, group_max_seq_len=32)
    padded.model = Padded(**NAVIT, token_dropout_prob=0.0)  # still draws a keep-mask per image in training
    message = _refused(cases.Comparison("navit", "dropout", [ours, padded], [], {}), monkeypatch)
    assert f"na_vit@32 (train): random_draws {len(images)} where the label claims 0" in message
    assert "(infer)" not in message


def test_guard_refuses_a_model_of_another_depth(oracle, monkeypatch):
    from vit_pytorch.vit import ViT as Reference

    case = cases.ViTCase("tiny", 32, 8, 32, 1, 2, 64, None)
    x = torch.randn(2, 3, 32, 32)
    rows = [
        cases.Row("ours", ViT(**case.kwargs), x, cases._vit_claim("ours", case, 2), "ours", loss=zero_class_loss),
        cases.Row("vit-pytorch", Reference(**(case.kwargs | {"depth": 2})), x, cases._vit_claim("vit-pytorch", case, 2),
                  "labelled as the same configuration", loss=zero_class_loss),
    ]  # fmt: skip
    message = _refused(cases.Comparison("vit", "depth", rows, [("ours", "vit-pytorch")], {}), monkeypatch)
    assert re.search(r"vit-pytorch \(infer\): linear_flops [\d,]+ where the label claims [\d,]+ \(1\.\d+x", message)


def test_tolerance_lets_one_percent_through_and_nothing_more():
    claim = work.Claim(tokens=10, linear_flops=1000, attention_flops=0)
    assert work.mismatches(claim, work.Work(tokens=10, linear_flops=1010)) == []
    assert work.mismatches(claim, work.Work(tokens=10, linear_flops=1011)) != []
    assert work.mismatches(claim, work.Work(tokens=10, linear_flops=1000, attention_flops=1)) == [
        "attention_flops 1 where the label claims 0 (where the label claims none)"
    ]


# ---------------------------------------------------------------------------------------------
# Call arguments per mode: what every row's label promises


def promised_kwargs(label: str) -> dict:
    """Read from the label alone: ``na_vit@N`` packs greedily at N; everything else takes its defaults."""
    if match := re.fullmatch(r"na_vit@(\d+)", label):
        return {"group_images": True, "group_max_seq_len": int(match.group(1))}
    return {}


def broken_promises(row: cases.Row, modes: tuple[str, ...]) -> list[str]:
    """Call ``row`` once per mode, recording what reaches its model; how that departs from its label."""
    seen = []

    def record(module, args, kwargs):
        seen.append((args, kwargs))

    handle = row.model.register_forward_pre_hook(record, with_kwargs=True)
    broken = []
    try:
        for mode in modes:
            seen.clear()
            row.call(mode)()
            if len(seen) != 1:
                broken.append(f"{row.label} ({mode}): {len(seen)} calls of its model")
                continue
            ((args, kwargs),) = seen
            if args[0] is not row.inputs:
                broken.append(f"{row.label} ({mode}): other inputs")
            if kwargs != promised_kwargs(row.label):
                broken.append(f"{row.label} ({mode}): called with {kwargs}")
            if row.model.training != (mode == "train"):
                broken.append(f"{row.label} ({mode}): training={row.model.training}")
    finally:
        handle.remove()
    return broken


def test_every_row_gets_the_inputs_and_arguments_its_label_promises_in_every_mode(oracle):
    for _, build in comparisons(True, ("vit", "navit", "long"), cases.CPU_FP32):
        comparison = build()
        assert len({id(row.inputs) for row in comparison.rows}) == 1, f"{comparison.name}: rows fed different inputs"
        for row in comparison.rows:
            assert broken_promises(row, comparison.modes) == []


def test_the_argument_record_catches_packing_dropped_in_training(oracle):
    images = cases.mixed_resolution_images(4, 8, 16, 8)
    _, padded = _navit_rows(images, group_images=True, group_max_seq_len=32)
    assert broken_promises(DropsPackingInTraining(**vars(padded)), cases.MODES) == ["na_vit@32 (train): called with {}"]


def test_no_navit_row_drops_tokens(oracle):
    comparison = next(b() for name, b in comparisons(True, ("navit",), cases.CPU_FP32))
    models = {row.label: row.model for row in comparison.rows}
    assert models["ours"].token_dropout_prob is None and models["ours (nested flavour)"].token_dropout_prob is None
    assert models["na_vit@1024"].calc_token_dropout is None  # 0.0 would still draw a keep-mask per image
    assert models["na_vit_nested"].token_dropout_prob == 0.0  # its "off": it refuses None in training
    p = comparison.params
    cfg = dict(image_size=64, patch_size=p["patch"], num_classes=10, dim=p["dim"], depth=p["depth"],
               heads=p["heads"], dim_head=p["dim_head"], mlp_dim=p["mlp_dim"])  # fmt: skip
    flavour, default = NaViT.nested_tensor_flavour(**cfg), NaViT(**cfg)
    keys = set(models["ours (nested flavour)"].state_dict())
    assert keys == set(flavour.state_dict()) != set(default.state_dict())  # biased patch norms, LayerNorm QK-norm


def test_row_call_refuses_an_unknown_mode():
    row = cases.Row("ours", ViT(**SMALL), torch.randn(1, 3, 32, 32), work.Claim(0, 0, 0), "ours")
    with pytest.raises(ValueError, match=r"mode must be one of \('infer', 'train'\), got 'eval'"):
        row.call("eval")


# ---------------------------------------------------------------------------------------------
# The explicit attention row is the layer's own computation


@pytest.mark.parametrize(
    "options",
    [{}, {"scale": 0.3}, {"qk_norm": "rms"}, {"qk_norm": "layer", "scale": 1.0}, {"qkv_bias": True, "dropout": 0.2}],
    ids=["default", "scale", "rms-qk-norm", "layer-qk-norm", "bias-dropout-eval"],
)
def test_explicit_attention_equals_the_layer(options):
    attn = Attention(32, 2, 16, **options).eval()
    for p in attn.parameters():
        p.data.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 10, 32)
    torch.testing.assert_close(cases.explicit_attention(attn, x), attn(x), atol=1e-5, rtol=1e-5)
    assert "explicit_scores" not in vars(attn) and not attn.explicit_scores


def test_explicit_attention_materialises_the_scores_and_applies_dropout(monkeypatch):
    attn = Attention(32, 2, 16, dropout=0.5).train()
    x = torch.randn(1, 10, 32)
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: pytest.fail("took the fused kernel"))
    first, second = cases.explicit_attention(attn, x), cases.explicit_attention(attn, x)
    assert not torch.allclose(first, second)  # dropout drew twice
    attn.eval()
    torch.testing.assert_close(cases.explicit_attention(attn, x), cases.explicit_attention(attn, x))


# ---------------------------------------------------------------------------------------------
# Targets


def test_targets_are_read_from_the_run():
    c = _comparison({"ours": [1.0, 1.0, 1.0], "timm": [1.1, 1.02, 1.2]}, probe=[1.0] * 3, flops={"ours": 4, "timm": 4})
    results = {"comparisons": [c]}
    at_least = targets.Target(17, "fast", "vit", "speedup", "train", anchor="timm", at_least=1.05)
    iqr = targets.Target(17, "iqr", "vit", "speedup", "train", anchor="timm", above=1.0, on="low")
    share = targets.Target(5, "share", "vit", "share", "train", at_least=0.9)
    other = targets.Target(5, "elsewhere", "navit", "padded_tokens", "train", at_most=0)
    outcomes = targets.evaluate(results, [at_least, iqr, share, other])
    assert [(o.measured, o.status) for o in outcomes] == [
        ("1.10x (1.06-1.15)", "met"),
        ("1.10x (1.06-1.15)", "met"),
        ("100% (100%-100%)", "met"),
        ("-", "not measured in this run"),
    ]
    strict = targets.Target(17, "strict", "vit", "speedup", "train", anchor="timm", above=1.06, on="low")
    assert targets.evaluate(results, [strict])[0].status == "not met"


def test_training_targets_count_the_start_up_and_a_never_reached_accuracy():
    run = {"name": "vit train vit", "wall_seconds": 50.0, "accuracy": 0.95, "seconds_to_090": 30.0,
           "loop_overhead": 0.12, "curve": [{"seconds": 40.0}]}  # fmt: skip
    fast = targets.Target(16, "fast", "train", "seconds_to_accuracy", at_most=35.0)
    cheap = targets.Target(16, "cheap", "train", "loop_overhead", at_most=0.10)
    outcomes = targets.evaluate({"comparisons": [], "training": [run]}, [fast, cheap])
    assert [o.status for o in outcomes] == ["not met", "not met"]  # 10 s of start-up + 30 s into training = 40
    assert outcomes[0].measured.startswith("40.0 s from launch") and outcomes[1].measured == "12.0%"
    never = targets.evaluate({"comparisons": [], "training": [run | {"seconds_to_090": None}]}, [fast])[0]
    assert never.status == "not met" and never.measured.startswith("never")
    assert targets.evaluate({"comparisons": []}, [fast])[0].status == "not measured in this run"


def test_a_target_needs_exactly_one_bound_and_a_known_metric():
    with pytest.raises(ValueError, match="give exactly one of at_least, above, at_most"):
        targets.Target(1, "x", "vit", "speedup", at_least=1.0, at_most=2.0)
    with pytest.raises(ValueError, match="metric must be one of"):
        targets.Target(1, "x", "vit", "speed", at_least=1.0)


def test_memory_growth_is_the_log_log_slope():
    def at(tokens, peak):
        return {"params": {"tokens": tokens}, "rows": [{"label": "ours", "peak_memory": peak}]}

    assert targets.memory_growth([at(1024, 10), at(2048, 20), at(4096, 40)], "ours") == pytest.approx(1.0)
    assert targets.memory_growth([at(1024, 10), at(2048, 40)], "ours") == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------
# A tiny run that writes the docs


@pytest.fixture(scope="module")
def quick_results():
    return run(quick=True, only=("vit", "navit", "long", "train"), command="python -m benchmarks --quick")


def test_quick_run_writes_the_docs_tables_plot_and_every_target_row(quick_results, tmp_path):
    page = report.write_docs(quick_results, tmp_path).read_text()
    assert "<!--" not in page
    headings = ("## ViT and SimpleViT, eager", "## NaViT", "## One attention layer", "## `vit train`", "## Targets")
    for heading in headings:
        assert heading in page
    trained = quick_results["training"][0]
    assert trained["command"] == "vit train vit --epochs 1 --max-steps 4 --set depth=1"
    assert [p["step"] for p in trained["curve"]] == [4] and 0 <= trained["accuracy"] <= 1
    assert "| 1 | 4 |" in page and trained["wall_seconds"] > trained["curve"][-1]["seconds"] > 0
    assert "| tiny | 2 | ours |" in page and "| tiny-simple | 2 | ours |" in page
    assert "vs vit-pytorch (infer / train)" in page  # the tiny cases have no timm anchor: the header says so
    assert "| ours (nested flavour) |" in page and "| na_vit@256 |" in page
    assert "- `ours`'s matrix products and attention kernels alone" in page and "; its products alone: " in page
    for target in targets.TARGETS:
        assert f"| #{target.issue} | {target.text} |" in page, target.text
    assert "Generated by `python -m benchmarks --quick`" in page and quick_results["meta"]["machine"] in page
    assert (tmp_path / report.plot_name()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({report.plot_name()})" in page
    assert json.loads((tmp_path / "benchmarks.json").read_text()) == quick_results
    navit = next(c for c in quick_results["comparisons"] if c["section"] == "navit")
    padded = targets.row_of(navit, "na_vit@256")["work"]
    forward = ("tokens", "linear_flops", "attention_flops", "mask_elements")
    assert [padded["train"][k] for k in forward] == [padded["infer"][k] for k in forward]  # the same packing
    assert targets.padded_tokens(navit, "na_vit@256", "train") > 0 == targets.padded_tokens(navit, "ours", "train")


def test_docs_regenerate_from_the_saved_json(quick_results, tmp_path, capsys):
    report.write_docs(quick_results, tmp_path / "first")
    main(["--from-json", str(tmp_path / "first" / "benchmarks.json"), "--write-docs", str(tmp_path / "second")])
    assert (tmp_path / "second" / "benchmarks.md").read_text() == (tmp_path / "first" / "benchmarks.md").read_text()
    assert "## Targets" in capsys.readouterr().out
    named = ["--from-json", str(tmp_path / "first" / "benchmarks.json"), "--write-docs", str(tmp_path / "third")]
    main([*named, "--page-name", "benchmarks-other"])
    assert sorted(p.name for p in (tmp_path / "third").iterdir()) == [
        "benchmarks-other-ratios.png", "benchmarks-other.json", "benchmarks-other.md",
    ]  # fmt: skip
    page = (tmp_path / "third" / "benchmarks-other.md").read_text()
    assert "([benchmarks-other.json](benchmarks-other.json))" in page and "](benchmarks-other-ratios.png)" in page


def test_cases_and_batches_select_the_vit_comparisons():
    names = [name for name, _ in comparisons(False, ("vit",), cases.CPU_FP32, ("ViT-B/16",), (32,))]
    assert names == ["ViT-B/16 b32"]
    assert len(comparisons(False, ("vit",), cases.CPU_FP32)) == 2 * len(cases.FULL)
    with pytest.raises(ValueError, match="unknown --cases"):
        comparisons(False, ("vit",), cases.CPU_FP32, ("ViT-H/14",))
    if importlib.util.find_spec("vit_variants") is not None:  # a plugin section's cases are selected the same way
        picked = comparisons(False, ("vit", "variants"), cases.CPU_FP32, ("ViT-S/16", "CaiT-XXS24"), (8,))
        assert [name for name, _ in picked] == ["ViT-S/16 b8", "variants CaiT-XXS24 0"]


def test_runs_of_separate_sections_merge_into_one_page(quick_results, tmp_path, capsys):
    vit_part = {"meta": quick_results["meta"], "comparisons": quick_results["comparisons"][:2]}
    rest = {
        "meta": quick_results["meta"]
        | {"command": "python -m benchmarks --quick --only navit,long", "date": "later", "rounds": 3},
        "comparisons": quick_results["comparisons"][2:],
    }
    for name, part in (("a.json", vit_part), ("b.json", rest)):
        (tmp_path / name).write_text(json.dumps(part))
    main(["--from-json", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--write-docs", str(tmp_path / "docs")])
    merged = json.loads((tmp_path / "docs" / "benchmarks.json").read_text())
    assert merged["comparisons"] == quick_results["comparisons"]
    assert merged["meta"]["command"] == "python -m benchmarks --quick && python -m benchmarks --quick --only navit,long"
    page = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "## NaViT" in page and "## ViT and SimpleViT, eager" in page and " to later" in page
    assert f"{quick_results['meta']['rounds']}, 3 (run by run" in page
    with pytest.raises(ValueError, match="--from-json runs must share machine"):
        merge_runs([vit_part, rest | {"meta": rest["meta"] | {"machine": "another"}}])


def test_the_json_holds_each_comparison_as_it_completes(tmp_path, monkeypatch):
    seen = []
    real = cases.measure

    def measure_and_look(*args, **kwargs):
        if (tmp_path / "run.json").exists():
            seen.append(len(json.loads((tmp_path / "run.json").read_text())["comparisons"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(cases, "measure", measure_and_look)
    results = run(quick=True, only=("long",), json_path=tmp_path / "run.json")
    assert seen == [1] and len(results["comparisons"]) == 2
    assert json.loads((tmp_path / "run.json").read_text()) == results


def test_retained_freed_memory_is_stated_in_the_machine_line(retained_heap_calls, tmp_path, monkeypatch, capsys):
    from vit_core.runtime import allocator

    releases: list[None] = []
    monkeypatch.setattr(allocator, "retain_freed_memory", lambda: retained_heap_calls.append(None) or True)
    monkeypatch.setattr(allocator, "release_free_memory", lambda: releases.append(None))
    main(["--quick", "--only", "long", "--rounds", "1", "--retain-freed-memory", "--json", str(tmp_path / "r.json")])
    results = json.loads((tmp_path / "r.json").read_text())
    assert len(retained_heap_calls) == 1
    assert len(releases) == len(results["comparisons"]) == 2  # before each comparison
    assert results["meta"]["machine"].endswith(
        ", malloc keeping freed memory (vit_core.runtime.allocator.retain_freed_memory)"
    )
    run(quick=True, only=("long",), json_path=tmp_path / "plain.json")
    assert len(releases) == 2 and "malloc" not in json.loads((tmp_path / "plain.json").read_text())["meta"]["machine"]
    monkeypatch.setattr(allocator, "retain_freed_memory", lambda: False)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--quick", "--only", "long", "--retain-freed-memory"])
    assert "--retain-freed-memory needs glibc's malloc" in capsys.readouterr().err


def test_quick_run_at_lower_precision():
    results = run(quick=True, only=("vit",), setup=cases.Setup("cpu", torch.bfloat16), vit_names=("tiny",))
    assert "bfloat16 autocast" in results["meta"]["machine"]
    assert results["comparisons"][0]["rows"][0]["label"] == "ours"


def test_unknown_case_names_and_sections_are_refused():
    with pytest.raises(ValueError, match=r"unknown --cases \['ViT-Z/1'\]; choose from \['tiny', 'tiny-simple'\]"):
        run(quick=True, only=("vit",), vit_names=("ViT-Z/1",))
    with pytest.raises(ValueError, match=r"unknown --only \['vits'\]"):
        run(quick=True, only=("vits",))


def test_training_peak_memory_is_measured_in_a_fresh_process():
    assert cases.training_peak_memory("ours", cases.QUICK[0], 2) > 0


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


def test_a_later_run_replaces_the_comparisons_it_measured_again(quick_results):
    first = {"meta": quick_results["meta"], "comparisons": quick_results["comparisons"], "training": []}
    again = json.loads(json.dumps(quick_results["comparisons"][1]))
    again["rows"][0]["seconds"] = {mode: [9.0] * 3 for mode in again["rows"][0]["seconds"]}
    later = {"meta": quick_results["meta"] | {"date": "later"}, "comparisons": [again],
             "training": quick_results["training"]}  # fmt: skip
    merged = merge_runs([first, later])
    assert [c["name"] for c in merged["comparisons"]] == [c["name"] for c in quick_results["comparisons"]]
    assert merged["comparisons"][1] == again and merged["comparisons"][0] == quick_results["comparisons"][0]
    assert merged["training"] == quick_results["training"]
