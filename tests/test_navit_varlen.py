"""NaViT's packed attention: one variable-length kernel call per layer where torch's varlen attention runs
(CUDA, flash dtypes), the per-run path elsewhere; both give the same outputs."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import vit_core.layers.packing as attention_module
from vit_core import NaViT, Recorder
from vit_core.layers import SequencePacking

CONFIG = dict(image_size=32, patch_size=4, num_classes=5, dim=32, depth=2, heads=4, mlp_dim=64, dim_head=8)
SIZES = [(32, 16), (8, 8), (16, 16), (32, 16), (8, 24), (16, 16), (8, 8)]


def images(device: torch.device | str = "cpu") -> list[torch.Tensor]:
    return [torch.randn(3, h, w, device=device) for h, w in SIZES]


def cpu_varlen(calls: list[tuple[int, int]]):
    """A CPU stand-in for ``varlen_attn`` (one SDPA per sequence, from the cumulative lengths it is given)
    that records each call's sequence count and longest query."""

    def varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale):
        assert q.ndim == 3 and cu_q.dtype == cu_k.dtype == torch.int32
        starts_q, starts_k = cu_q.tolist(), cu_k.tolist()
        assert max_q == max(b - a for a, b in itertools.pairwise(starts_q))
        assert max_k == max(b - a for a, b in itertools.pairwise(starts_k))
        calls.append((len(starts_q) - 1, max_q))
        outs = []
        for (q0, q1), (k0, k1) in zip(itertools.pairwise(starts_q), itertools.pairwise(starts_k)):
            heads = (t.transpose(0, 1) for t in (q[q0:q1], k[k0:k1], v[k0:k1]))
            outs.append(F.scaled_dot_product_attention(*heads, scale=scale).transpose(0, 1))
        return torch.cat(outs)

    return varlen


def test_cumulative_lengths_are_the_sequence_starts_then_the_total() -> None:
    packing = SequencePacking.from_sorted_lengths([2, 2, 5, 7, 7, 7])
    offsets = packing.cumulative_lengths(torch.device("cpu"))
    assert offsets.dtype == torch.int32 and offsets.tolist() == [0, 2, 4, 9, 16, 23, 30]
    assert packing.cumulative_lengths(torch.device("cpu")) is offsets, "made once per device"
    assert packing.max_length == 7


def test_on_cpu_the_per_run_path_runs(monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(attention_module, "varlen_attn", cpu_varlen(calls))
    q = torch.randn(1, 4, 10, 8)
    assert not attention_module.varlen_supported(q, q, q), "CPU tensors never take the varlen kernel"
    NaViT(**CONFIG).eval()(images())
    assert calls == []


@torch.no_grad()
def test_where_varlen_is_supported_each_layer_is_one_call_equal_to_the_per_run_path(monkeypatch) -> None:
    torch.manual_seed(0)
    model = NaViT(**CONFIG).eval()
    x = images()
    per_run = model(x)
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(attention_module, "varlen_attn", cpu_varlen(calls))
    monkeypatch.setattr(attention_module, "varlen_supported", lambda q, k, v: True)
    varlen = model(x)
    longest = max((h // 4) * (w // 4) for h, w in SIZES)
    assert calls == [(len(SIZES), longest)] * CONFIG["depth"] + [(len(SIZES), 1)], "one call per layer, one to pool"
    torch.testing.assert_close(varlen, per_run, atol=1e-5, rtol=1e-5)


def test_recorder_and_attention_dropout_keep_the_per_run_path(monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(attention_module, "varlen_attn", cpu_varlen(calls))
    monkeypatch.setattr(attention_module, "varlen_supported", lambda q, k, v: True)
    model = NaViT(**CONFIG).eval()
    with torch.no_grad():
        _, maps = Recorder(model)(images())
    assert maps and calls == [(len(SIZES), 1)], "the recorded layers run per run; the pool stays on varlen"
    calls.clear()
    NaViT(**CONFIG, dropout=0.1).train()(images())
    assert calls == [(len(SIZES), 1)], "attention dropout in training: per run (the pool has no dropout)"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_varlen_equals_the_per_run_path_on_cuda(monkeypatch, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = NaViT(**dict(CONFIG, dim=64, dim_head=16)).cuda().to(dtype)
    x = [image.to(dtype) for image in images("cuda")]
    probe = torch.randn(1, 4, 8, 16, device="cuda", dtype=dtype)
    assert attention_module.varlen_supported(probe, probe, probe), "this GPU should run varlen attention"
    calls = []
    real = attention_module.varlen_attn
    monkeypatch.setattr(attention_module, "varlen_attn", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    varlen = model(x)
    varlen.float().sum().backward()
    varlen_grads = [p.grad.clone() for p in model.parameters()]
    assert len(calls) == CONFIG["depth"] + 1
    model.zero_grad()
    with monkeypatch.context() as patch:
        patch.setattr(attention_module, "varlen_supported", lambda q, k, v: False)
        per_run = model(x)
        per_run.float().sum().backward()
    tol = dict(atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(varlen.float(), per_run.float(), **tol)
    for got, expected in zip(varlen_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got.float(), expected.float(), **tol)
