"""benchmarks.kernels: the attention-kernel page is generated from recorded SDPA calls and names why a call
falls back."""

from __future__ import annotations

import torch

from benchmarks import kernels


def call(**overrides: object) -> kernels.Call:
    base = dict(q=(2, 4, 16, 32), k=(2, 4, 16, 32), v=(2, 4, 16, 32), strided=False, mask=None, mask_grad=False)
    return kernels.Call(**(base | overrides), dropout=0.0)


def test_torch_rules_pick_flash_in_bf16_and_memory_efficient_in_fp32() -> None:
    assert kernels.chosen(call(), torch.bfloat16)[0] == "flash"
    assert kernels.chosen(call(), torch.float32)[0] == "memory-efficient"


def test_a_masked_call_names_the_mask_as_flash_s_reason() -> None:
    kernel, why = kernels.chosen(call(mask="boolean"), torch.bfloat16)
    assert kernel == "memory-efficient" and why == ["flash: a boolean attention mask (flash takes none)"]
    kernel, why = kernels.chosen(call(mask="float", strided=True), torch.bfloat16)
    assert kernel == "math" and "memory-efficient: a strided last axis" in why


def test_an_unaligned_head_width_falls_back_to_math_in_fp32() -> None:
    kernel, why = kernels.chosen(call(q=(2, 4, 16, 27), k=(2, 4, 16, 27), v=(2, 4, 16, 27)), torch.float32)
    assert kernel == "math" and "memory-efficient: head widths 27/27 not multiples of 4" in why


def test_the_table_generator_runs_on_recorded_calls() -> None:
    calls = kernels.record("levit")
    assert calls and any(c.mask == "float" for c in calls), "LeViT's attention carries a position bias"
    rows = kernels.rows(["vit", "levit"])
    assert [r[0] for r in rows] == ["`vit`", "`levit`"]
    assert rows[0][3] == f"flash x{rows[0][1]}"
    page = kernels.render(rows)
    assert page.startswith("# Attention kernels on CUDA") and "| `levit` |" in page
