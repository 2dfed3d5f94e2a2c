"""vit-ssl against vit-pytorch, where a trainer is deterministic given a seed and weights.

MAE, SimMIM and MPP cannot run at vit-pytorch's latest release (1.26.11 slices its now 2-D
positional table as 3-D); they are compared with 1.16.0, installed side by side: the nox test
session runs ``pip install --no-deps --target DIR vit-pytorch==1.16.0`` and sets
``VIT_PYTORCH_1_16=DIR`` (tests needing it are skipped otherwise).  The distillation wrapper and
the DINO / EsViT loss functions are compared with the latest release.

Where randomness cannot be aligned, no end-to-end parity is claimed:

* DINO and EsViT augment and crop with torchvision's random transforms (ours: batched tensor
  augmentations with per-image parameters); only the per-pair losses, centring and the EMA step
  are compared.
* MP3: vit-pytorch ships its own ViT whose layers attend to the visible patches' *input*
  embeddings; ours masks keys in any encoder's trunk.  Different models, no parity.
* MPP's random-patch replacement draws its donors from a different generator; parity is checked
  with ``random_patch_prob=0`` (mask and keep), the random share in tests/test_ssl.py.

Parity runs in float64 (every model ``.double()`` once the perturbed weights are imported, float64 images,
:data:`~vit_core.testing.oracle.FLOAT64_TOLERANCE`); the importers here only rename and reshape, so the
perturbed float32 weights are the same values in both models.  vit-ssl computes its losses in float32
(``.float()``, so that bfloat16 training reduces in float32), so a loss is compared with
:func:`assert_float32_loss_close`.  ``test_distillation_loss_in_float32`` is the float32 check.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from vit_core import ViT
from vit_core.interop.reference import import_vit, rename_transformer
from vit_core.testing.oracle import assert_float32_close, assert_float64_close, default_dtype, perturb

pytestmark = pytest.mark.oracle
vit_ssl = pytest.importorskip("vit_ssl")
from vit_ssl import MAE, MPP, DistillableViT, DistillWrapper, SimMIM  # noqa: E402

LEGACY_ENV = "VIT_PYTORCH_1_16"
CFG = dict(image_size=16, patch_size=4, num_classes=10, dim=32, depth=2, heads=2, mlp_dim=64, dim_head=16)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models: one thread (many times faster on a loaded host than oversubscribed threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _isolated_vit_pytorch(path: str):
    """Import vit_pytorch from ``path`` without disturbing the installed one."""
    saved = {k: m for k, m in sys.modules.items() if k == "vit_pytorch" or k.startswith("vit_pytorch.")}
    for key in saved:
        del sys.modules[key]
    sys.path.insert(0, path)
    try:
        yield
    finally:
        sys.path.remove(path)
        for key in [k for k in sys.modules if k == "vit_pytorch" or k.startswith("vit_pytorch.")]:
            del sys.modules[key]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def legacy() -> types.SimpleNamespace:
    """vit-pytorch 1.16.0's vit, mae, simmim and mpp modules."""
    path = os.environ.get(LEGACY_ENV)
    if not path or not (Path(path) / "vit_pytorch").is_dir():
        pytest.skip(f"set {LEGACY_ENV} to a `pip install --no-deps --target DIR vit-pytorch==1.16.0` directory")
    path = str(Path(path).resolve())
    with _isolated_vit_pytorch(path):
        modules = {name: importlib.import_module(f"vit_pytorch.{name}") for name in ("vit", "mae", "simmim", "mpp")}
    assert Path(modules["vit"].__file__).is_relative_to(path), "imported the wrong vit-pytorch"
    return types.SimpleNamespace(**modules)


LOSS_ROUNDING = 1e-6
"""Relative tolerance of a vit-ssl loss (float32) against the reference's float64 loss."""


def assert_float32_loss_close(ours: torch.Tensor, expected: torch.Tensor) -> None:
    """vit-ssl's float32 loss of float64 models within :data:`LOSS_ROUNDING` of the reference's float64 loss.

    The loss rounds the models' float64 outputs to float32 (eps 1.2e-7) before its reduction: a few
    roundings, ~1e-7 of the loss, where a wrong weight, mask or normalisation moves it by more than 1e-3."""
    assert (ours.dtype, expected.dtype) == (torch.float32, torch.float64), (ours.dtype, expected.dtype)
    torch.testing.assert_close(ours.double(), expected, rtol=LOSS_ROUNDING, atol=0)


def reference_vit(legacy, **overrides):
    return legacy.vit.ViT(**{**CFG, **overrides})


def our_encoder(reference, cls=ViT, **overrides):
    ours = cls(**{**CFG, **overrides})
    ours.load_state_dict(import_vit(reference.state_dict(), ours))
    return ours


def test_mae_loss_with_the_same_mask(legacy):
    """pool="mean": no class token in either, so both encode the same visible tokens."""
    reference_encoder = reference_vit(legacy, pool="mean")
    reference = perturb(legacy.mae.MAE(encoder=reference_encoder, decoder_dim=16, decoder_heads=2, decoder_dim_head=8))
    encoder = our_encoder(reference_encoder, pool="mean")
    ours = MAE(encoder=encoder, decoder_dim=16, decoder_heads=2, decoder_dim_head=8)
    shared = ("encoder.", "patch_to_emb.")  # the reference also registers the encoder's patch embedding
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith(shared)}
    state["decoder_pos.weight"] = state.pop("decoder_pos_emb.weight").reshape(4, 4, 16)
    state = rename_transformer(state, prefix="decoder.")
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("encoder.") for k in missing)
    reference.double(), ours.double()

    img = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    # vit-pytorch 1.16.0 allocates its decoder tokens in the default type: float64 for its forward, and for
    # the replay of its mask draw (a float64 draw gives other numbers)
    with default_dtype(torch.float64):
        torch.manual_seed(7)
        order = torch.rand(3, 16).argsort(dim=-1)  # the reference's own draw, replayed
        torch.manual_seed(7)
        expected = reference(img)
    assert_float32_loss_close(ours(img, keep_ids=order[:, 12:]), expected)


class PrefixFreeViT(ViT):
    """A ViT encoding patch tokens only (vit-pytorch's SimMIM never feeds its encoder the class token)."""

    num_prefix_tokens = 0

    def prepend_prefix(self, tokens):
        return tokens


def test_simmim_loss_with_the_same_mask(legacy):
    reference_encoder = reference_vit(legacy)
    reference = perturb(legacy.simmim.SimMIM(encoder=reference_encoder, masking_ratio=0.5))
    ours = SimMIM(encoder=our_encoder(reference_encoder, PrefixFreeViT), masking_ratio=0.5)
    ours.mask_token.data.copy_(reference.mask_token)
    ours.to_pixels.load_state_dict(reference.to_pixels.state_dict())
    reference.double(), ours.double()
    img = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    torch.manual_seed(3)
    masked = torch.rand(3, 16).topk(k=8, dim=-1).indices
    torch.manual_seed(3)
    expected = reference(img)
    # vit-pytorch divides the mean L1 by the number of masked patches once more
    assert_float32_loss_close(ours(img, masked_ids=masked), expected * 8)


def test_mpp_loss_with_the_same_masking(legacy, monkeypatch):
    reference_encoder = reference_vit(legacy)
    args = dict(patch_size=4, dim=32, mask_prob=0.25, replace_prob=0.5, random_patch_prob=0.0)
    reference = perturb(legacy.mpp.MPP(transformer=reference_encoder, **args))
    ours = MPP(our_encoder(reference_encoder), **args)
    ours.mask_token.data.copy_(reference.mask_token.reshape(-1))
    ours.to_bits.load_state_dict(reference.to_bits.state_dict())
    reference.double(), ours.double()

    img = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    picked = torch.rand(3, 16).topk(4, dim=-1).indices
    chosen = torch.zeros(3, 16, dtype=torch.bool).scatter_(1, picked, True)
    corruption = torch.rand(3, 16)
    monkeypatch.setattr(legacy.mpp, "get_mask_subset_with_prob", lambda patches, prob: chosen)
    monkeypatch.setattr(legacy.mpp, "prob_mask_like", lambda t, prob: corruption < prob)
    assert_float32_loss_close(ours(img, picked_ids=picked, corruption=corruption), reference(img))


def test_latest_release_cannot_run_its_masked_trainers(oracle):
    """The fix over the reference: vit-pytorch 1.26.11's MAE and SimMIM fail on a class-token ViT."""
    from vit_pytorch.mae import MAE as ReferenceMAE
    from vit_pytorch.simmim import SimMIM as ReferenceSimMIM
    from vit_pytorch.vit import ViT as ReferenceViT

    img = torch.rand(2, 3, 16, 16)
    for build in (
        lambda v: ReferenceMAE(encoder=v, decoder_dim=16),
        lambda v: ReferenceSimMIM(encoder=v),
    ):
        with pytest.raises((RuntimeError, ValueError, IndexError)):
            build(ReferenceViT(**CFG))(img)
    assert torch.isfinite(MAE(encoder=ViT(**CFG), decoder_dim=16)(img))
    assert torch.isfinite(SimMIM(encoder=ViT(**CFG))(img))


def distillation_pair(hard: bool, mlp_layernorm: bool, dtype: torch.dtype) -> tuple:
    """(our wrapper, our student, vit-pytorch's wrapper, its student) on one perturbed teacher, in ``dtype``."""
    from vit_pytorch.distill import DistillableViT as ReferenceStudent
    from vit_pytorch.distill import DistillWrapper as ReferenceWrapper
    from vit_pytorch.vit import ViT as ReferenceViT

    teacher = perturb(ReferenceViT(**CFG), seed=1)
    student = ReferenceStudent(**CFG)
    args = dict(temperature=3.0, alpha=0.3, hard=hard, mlp_layernorm=mlp_layernorm)
    reference = perturb(ReferenceWrapper(teacher=teacher, student=student, **args))
    ours_student = DistillableViT(**CFG)
    ours = DistillWrapper(teacher=teacher, student=ours_student, **args)
    state = import_vit(student.state_dict(), ours_student)
    state["distill_token"] = reference.distillation_token.detach().clone()
    for key, value in reference.distill_mlp.state_dict().items():  # (LayerNorm,) Linear
        index, name = key.split(".")
        state[f"distill_head.{index}.{name}" if mlp_layernorm else f"distill_head.{name}"] = value
    ours_student.load_state_dict(state)
    return ours.to(dtype), ours_student, reference.to(dtype), student


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("mlp_layernorm", [False, True])
def test_distillation_loss(oracle, hard, mlp_layernorm):
    ours, ours_student, reference, student = distillation_pair(hard, mlp_layernorm, torch.float64)
    img, labels = torch.rand(4, 3, 16, 16, dtype=torch.float64), torch.tensor([1, 2, 3, 4])
    assert_float32_loss_close(ours(img, labels), reference(img, labels))
    assert_float64_close(ours_student(img), student(img))


def test_distillation_loss_in_float32(oracle):
    """The float32 check: the loss and the student's logits within a tolerance relative to their scale."""
    ours, ours_student, reference, student = distillation_pair(False, True, torch.float32)
    img, labels = torch.rand(4, 3, 16, 16), torch.tensor([1, 2, 3, 4])
    assert_float32_close(ours(img, labels), reference(img, labels))
    assert_float32_close(ours_student(img), student(img))


def test_dino_and_esvit_pair_losses(oracle):
    from vit_pytorch.dino import loss_fn
    from vit_pytorch.es_vit import region_loss_fn
    from vit_ssl.dino import cross_entropy, teacher_targets
    from vit_ssl.esvit import region_loss

    f64 = dict(dtype=torch.float64)
    teacher, student, centre = torch.randn(6, 20, **f64), torch.randn(6, 20, **f64), torch.randn(1, 20, **f64)
    expected = loss_fn(teacher, student, 0.04, 0.1, centre)
    assert_float32_loss_close(cross_entropy(teacher_targets(teacher, centre, 0.04), student, 0.1), expected)

    # theirs: log(softmax + 1e-20), ours: log_softmax; student logits of scale 0.1 (at temperature 0.1) keep every
    # student probability above 1e-3, where the two agree to ~1e-17
    t_logits, s_logits = torch.randn(2, 5, 20, **f64), 0.1 * torch.randn(2, 7, 20, **f64)
    unit = lambda t: torch.nn.functional.normalize(t, dim=-1)  # noqa: E731 - with unit features cosine == dot product
    t_latent, s_latent = unit(torch.randn(2, 5, 8, **f64)), unit(torch.randn(2, 7, 8, **f64))
    expected = region_loss_fn(t_logits, s_logits, t_latent, s_latent, 0.04, 0.1, centre)
    ours = region_loss(teacher_targets(t_logits, centre, 0.04), s_logits, t_latent, s_latent, 0.1)
    assert_float32_loss_close(ours, expected)


def test_ema_step(oracle):
    from vit_pytorch.dino import EMA, update_moving_average
    from vit_ssl import EMATeacher

    student, reference_teacher = perturb(ViT(**CFG), seed=2).double(), ViT(**CFG).double()
    ours = EMATeacher(reference_teacher, decay=0.9)
    update_moving_average(EMA(0.9), reference_teacher, student)
    ours.update(student)
    for a, b in zip(ours.module.parameters(), reference_teacher.parameters()):
        assert_float64_close(a, b)
