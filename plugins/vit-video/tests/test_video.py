"""vit-video: ViT3D, SimpleViT3D, CCT3D and ViViT (README examples, parity, training, input checks)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from vit_core import Extractor, Recorder, create_model, list_models, load_reference_weights
from vit_core.registry import get_registry
from vit_core.testing.oracle import (
    FIXED_TABLE_ROUNDING,
    assert_bf16_close,
    assert_float32_close,
    assert_float64_close,
    perturb,
    share_fixed_table,
)

vit_video = pytest.importorskip("vit_video")

VIDEO = dict(image_size=16, image_patch_size=8, frames=4, frame_patch_size=2, num_classes=5)
SMALL = dict(VIDEO, dim=32, heads=2, mlp_dim=64, dim_head=16)
CCT_SMALL = dict(
    img_size=16,
    num_frames=4,
    embedding_dim=32,
    n_conv_layers=1,
    kernel_size=3,
    stride=1,
    padding=1,
    pooling_kernel_size=3,
    pooling_stride=2,
    pooling_padding=1,
    num_layers=2,
    num_heads=2,
    mlp_ratio=2.0,
    num_classes=5,
)

# (our class, vit-pytorch module and class, constructor arguments shared by both)
MODELS = {
    "vit3d-cls": ("ViT3D", "vit_3d", "ViT", dict(SMALL, depth=2)),
    "vit3d-mean": ("ViT3D", "vit_3d", "ViT", dict(SMALL, depth=2, pool="mean")),
    "simple-vit3d": ("SimpleViT3D", "simple_vit_3d", "SimpleViT", dict(SMALL, depth=2)),
    "simple-vit3d-pad": ("SimpleViT3D", "simple_vit_3d", "SimpleViT", dict(SMALL, depth=1, dim=40)),
    "cct3d-learnable": ("CCT3D", "cct_3d", "CCT", dict(CCT_SMALL, positional_embedding="learnable")),
    "cct3d-sine": ("CCT3D", "cct_3d", "CCT", dict(CCT_SMALL, positional_embedding="sine")),
    "cct3d-none": ("CCT3D", "cct_3d", "CCT", dict(CCT_SMALL, positional_embedding="none", n_conv_layers=2)),
    "vivit-encoder-cls": ("ViViT", "vivit", "ViViT", dict(SMALL, spatial_depth=2, temporal_depth=1)),
    "vivit-encoder-mean": (
        "ViViT",
        "vivit",
        "ViViT",
        dict(SMALL, spatial_depth=1, temporal_depth=2, pool="mean"),
    ),
    "vivit-fsa-cls": (
        "ViViT",
        "vivit",
        "ViViT",
        dict(SMALL, spatial_depth=2, temporal_depth=2, variant="factorized_self_attention"),
    ),
    "vivit-fsa-mean": (
        "ViViT",
        "vivit",
        "ViViT",
        dict(SMALL, spatial_depth=1, temporal_depth=1, variant="factorized_self_attention", pool="mean"),
    ),
}
PATCH_MODELS = ["vit3d-cls", "simple-vit3d", "vivit-encoder-cls", "vivit-fsa-cls"]


def build(key: str, **overrides) -> nn.Module:
    cls, _, _, kwargs = MODELS[key]
    return getattr(vit_video, cls)(**{**kwargs, **overrides})


def video(
    batch: int = 2, channels: int = 3, frames: int = 4, size: int = 16, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    return torch.randn(batch, channels, frames, size, size, dtype=dtype)


# --- README examples -------------------------------------------------------------------------


@pytest.mark.readme
@torch.no_grad()
def test_readme_vit_3d() -> None:
    from vit_video import ViT3D

    v = ViT3D(
        image_size=128,
        frames=16,
        image_patch_size=16,
        frame_patch_size=2,
        num_classes=1000,
        dim=1024,
        depth=6,
        heads=8,
        mlp_dim=2048,
        dropout=0.1,
        emb_dropout=0.1,
    ).eval()
    preds = v(torch.randn(4, 3, 16, 128, 128))
    assert preds.shape == (4, 1000)


@pytest.mark.readme
@torch.no_grad()
def test_readme_simple_vit_3d() -> None:
    from vit_video import SimpleViT3D

    v = SimpleViT3D(
        image_size=128,
        frames=16,
        image_patch_size=16,
        frame_patch_size=2,
        num_classes=1000,
        dim=1024,
        depth=6,
        heads=8,
        mlp_dim=2048,
    ).eval()
    preds = v(torch.randn(4, 3, 16, 128, 128))
    assert preds.shape == (4, 1000)


@pytest.mark.readme
@torch.no_grad()
def test_readme_cct_3d() -> None:
    from vit_video import CCT3D

    cct = CCT3D(
        img_size=224,
        num_frames=8,
        embedding_dim=384,
        n_conv_layers=2,
        frame_kernel_size=3,
        kernel_size=7,
        stride=2,
        padding=3,
        pooling_kernel_size=3,
        pooling_stride=2,
        pooling_padding=1,
        num_layers=14,
        num_heads=6,
        mlp_ratio=3.0,
        num_classes=1000,
        positional_embedding="learnable",
    ).eval()
    pred = cct(torch.randn(1, 3, 8, 224, 224))
    assert pred.shape == (1, 1000)


@pytest.mark.readme
@torch.no_grad()
@pytest.mark.parametrize("variant", ["factorized_encoder", "factorized_self_attention"])
def test_readme_vivit(variant: str) -> None:
    from vit_video import ViViT

    v = ViViT(
        image_size=128,
        frames=16,
        image_patch_size=16,
        frame_patch_size=2,
        num_classes=1000,
        dim=1024,
        spatial_depth=6,
        temporal_depth=6,
        heads=8,
        mlp_dim=2048,
        variant=variant,
    ).eval()
    preds = v(torch.randn(4, 3, 16, 128, 128))
    assert preds.shape == (4, 1000)


# --- parity with vit-pytorch ------------------------------------------------------------------
# In float64 (both models ``.double()`` before the weights convert, float64 inputs, FLOAT64_TOLERANCE), where
# the order a processor's kernels sum in no longer matters; test_vivit_in_float32 is the float32 check.


def reference(oracle, key: str) -> nn.Module:
    import importlib

    _, module, name, kwargs = MODELS[key]
    cls = getattr(importlib.import_module(f"vit_pytorch.{module}"), name)
    if module == "cct_3d":
        kwargs = {("n_input_channels" if k == "channels" else k): v for k, v in kwargs.items()}
    return cls(**kwargs)


FIXED_BUFFERS = ("positional_emb",)
"""Reference buffers fixed by construction, left unperturbed: vit-pytorch's CCT keeps its sine table as a buffer."""


def imported(oracle, key: str, dtype: torch.dtype = torch.float64) -> tuple[nn.Module, nn.Module]:
    """(ours, the perturbed reference), both in ``dtype`` and eval mode, the weights converted in ``dtype``."""
    ref = perturb(reference(oracle, key), constants=FIXED_BUFFERS).to(dtype).eval()
    ours = load_reference_weights(build(key).to(dtype), ref.state_dict()).eval()
    if key == "cct3d-sine":
        share_fixed_table(ref, "classifier.positional_emb", ours.pos_embed.table)
    return ours, ref


def share_sincos_3d(oracle, ours: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """vit-pytorch's SimpleViT3D computes its sin-cos table in float32 inside ``forward`` (``posemb_sincos_3d``,
    then cast to the input's dtype); ours is the float64 table rounded to float32.  They differ by float32
    rounding, ~1e-8 of the float64 outputs: the reference runs on ours, checked against its own on each call."""
    module = oracle.simple_vit_3d
    own = module.posemb_sincos_3d

    def ours_checked(patches: torch.Tensor) -> torch.Tensor:
        theirs = own(patches)
        table = ours.pos_embed.table.reshape(theirs.shape).to(theirs.dtype)
        torch.testing.assert_close(theirs, table, atol=FIXED_TABLE_ROUNDING, rtol=0)
        return table

    monkeypatch.setattr(module, "posemb_sincos_3d", ours_checked)


@pytest.mark.oracle
@pytest.mark.parametrize("key", list(MODELS))
def test_parity_with_vit_pytorch(oracle, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ours, ref = imported(oracle, key)
    if key.startswith("simple-vit3d"):
        share_sincos_3d(oracle, ours, monkeypatch)
    x = video(dtype=torch.float64)
    with torch.no_grad():
        assert_float64_close(ours(x), ref(x))


@pytest.mark.oracle
def test_vivit_in_float32(oracle) -> None:
    """The float32 check: within a tolerance relative to the output scale."""
    ours, ref = imported(oracle, "vivit-fsa-cls", dtype=torch.float32)
    x = video()
    with torch.no_grad():
        assert_float32_close(ours(x), ref(x))


@pytest.mark.oracle
@pytest.mark.parametrize("key", ["vivit-encoder-cls", "vivit-fsa-cls"])
def test_vivit_frame_mask_parity(oracle, key: str) -> None:
    ours, ref = imported(oracle, key)
    x = video(dtype=torch.float64)
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    with torch.no_grad():
        assert_float64_close(ours(x, mask=mask), ref(x, mask=mask))


# --- training -----------------------------------------------------------------------------------


STEP = 2
"""Columns the blob moves per frame."""


def moving_blob(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """1-channel 4-frame 16x16 clips of a bright 3x3 blob moving right (label 1), or such a clip played
    backwards (label 0: moving left).

    Every label-0 clip is the time reversal of a label-1 clip, so both labels show the same frames:
    no frame, and no set of frames, tells the direction; only their order does.
    """
    labels = torch.randint(0, 2, (n,), generator=generator)
    clips = 0.1 * torch.randn(n, 1, 4, 16, 16, generator=generator)
    start = torch.randint(0, 16 - 3 - 3 * STEP + 1, (n,), generator=generator)
    rows = torch.randint(0, 14, (n,), generator=generator)
    for i in range(n):
        for t in range(4):
            col = int(start[i]) + STEP * t
            clips[i, 0, t, rows[i] : rows[i] + 3, col : col + 3] += 1.0
    backwards = labels == 0
    clips[backwards] = clips[backwards].flip(2)
    return clips, labels


class OrderBlind(nn.Module):
    """A control that cannot see frame order: ``model`` gets every frame replaced by the clip's mean frame."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.mean(dim=2, keepdim=True).expand_as(x))


TRAIN = {
    "vit3d-cls": dict(SMALL, depth=2, channels=1, num_classes=2),
    "simple-vit3d": dict(SMALL, depth=2, channels=1, num_classes=2),
    "cct3d-learnable": dict(CCT_SMALL, channels=1, num_classes=2, stride=2, positional_embedding="learnable"),
    "vivit-encoder-cls": dict(SMALL, spatial_depth=1, temporal_depth=1, channels=1, num_classes=2),
    "vivit-fsa-cls": dict(
        SMALL, spatial_depth=1, temporal_depth=1, channels=1, num_classes=2, variant="factorized_self_attention"
    ),
}


def train_and_evaluate(model: nn.Module, steps: int = 40) -> tuple[list[float], float]:
    """A few dozen Adam steps on :func:`moving_blob` clips; returns the losses and held-out accuracy."""
    g = torch.Generator().manual_seed(0)
    x, y = moving_blob(256, g)
    x_test, y_test = moving_blob(128, g)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(-1) == y_test).float().mean().item()
    return losses, accuracy


def train_model(key: str) -> nn.Module:
    cls = MODELS[key][0]
    kwargs = dict(TRAIN[key])
    if cls == "CCT3D":
        kwargs["n_input_channels"] = kwargs.pop("channels")
        kwargs["stochastic_depth_rate"] = 0.0
        kwargs["attention_dropout"] = 0.0
    return getattr(vit_video, cls)(**kwargs)


ACCURACY = {
    "vit3d-cls": 0.85,
    "simple-vit3d": 0.8,
    "cct3d-learnable": 0.95,
    "vivit-encoder-cls": 0.8,
    "vivit-fsa-cls": 0.8,
}
"""Held-out accuracy each model must beat; measured (seed 0; seeds 1, 2): ViT3D 0.93 (0.95, 0.91), SimpleViT3D
0.88 (0.94, 0.90), CCT3D 1.00 (1.00, 1.00), ViViT encoder 0.89 (0.84, 0.84), ViViT FSA 0.90 (0.84, 0.89)."""


@pytest.mark.parametrize("key", list(TRAIN))
def test_learns_motion_direction(key: str) -> None:
    """The mean of the last ten losses below 0.4 of the first ten's (measured: at most 0.22, ViViT's
    encoder variant) and held-out accuracy above :data:`ACCURACY`."""
    losses, accuracy = train_and_evaluate(train_model(key))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.4 * first, f"{key}: mean loss of the first ten steps {first:.3f}, of the last ten {last:.3f}"
    assert accuracy > ACCURACY[key], f"{key}: held-out accuracy {accuracy:.3f} (chance is 0.5)"


def test_motion_clips_tell_the_direction_by_frame_order_only() -> None:
    """The data cannot be solved without frame order: an order-blind model stays at chance."""
    _, accuracy = train_and_evaluate(OrderBlind(train_model("vit3d-cls")))
    assert accuracy < 0.65, f"an order-blind model reached {accuracy:.2f}: the clips leak the label"


@pytest.mark.parametrize("key", list(MODELS))
def test_gradients_reach_every_parameter(key: str) -> None:
    model = build(key).train()
    model(video()).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", PATCH_MODELS)
def test_frames_not_divisible_by_frame_patch_size(key: str) -> None:
    with pytest.raises(ValueError, match=r"frames=5 must be divisible by frame_patch_size=2"):
        build(key, frames=5)
    model = build(key)
    with pytest.raises(ValueError, match=r"video has 3 frames, not divisible by frame_patch_size=2"):
        model(video(frames=3))


@pytest.mark.parametrize("key", PATCH_MODELS)
def test_image_size_not_divisible(key: str) -> None:
    with pytest.raises(ValueError, match=r"image_size \(18, 18\) must be divisible by image_patch_size"):
        build(key, image_size=18)
    with pytest.raises(ValueError, match=r"video frames are 12x12, not divisible by image_patch_size \(8, 8\)"):
        build(key)(video(size=12))


@pytest.mark.parametrize("key", [*PATCH_MODELS, "cct3d-learnable", "cct3d-none"])
def test_image_input_rejected(key: str) -> None:
    with pytest.raises(ValueError, match=r"video must have 5 dimensions \(batch, channels, frames, height, width\)"):
        build(key)(torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize("key", [*PATCH_MODELS, "cct3d-learnable", "cct3d-none"])
def test_wrong_channels(key: str) -> None:
    with pytest.raises(ValueError, match=r"video must have channels=3 .*got shape \(2, 1, 4, 16, 16\)"):
        build(key)(video(channels=1))


@pytest.mark.parametrize("key", PATCH_MODELS)
def test_video_larger_than_built_for(key: str) -> None:
    with pytest.raises(ValueError, match=r"video has 6 frames, more than frames=4"):
        build(key)(video(frames=6))
    with pytest.raises(ValueError, match=r"larger than image_size \(16, 16\)"):
        build(key)(video(size=24))


def test_smaller_video_uses_position_window() -> None:
    model = build("vit3d-cls").eval()
    assert model(video(frames=2, size=8)).shape == (2, 5)


def test_cct_input_checks() -> None:
    with pytest.raises(ValueError, match=r"embedding_dim=30 must be divisible by num_heads=4"):
        vit_video.CCT3D(**dict(CCT_SMALL, embedding_dim=30, num_heads=4))
    with pytest.raises(ValueError, match=r"positional_embedding must be one of"):
        vit_video.CCT3D(**dict(CCT_SMALL, positional_embedding="rope"))
    with pytest.raises(ValueError, match=r"pooling_padding=2 must be at most half of pooling_kernel_size=3"):
        vit_video.CCT3D(**dict(CCT_SMALL, pooling_padding=2))
    with pytest.raises(ValueError, match=r"too small for the tokenizer"):
        vit_video.CCT3D(**dict(CCT_SMALL, img_size=2, kernel_size=7, padding=0))
    with pytest.raises(ValueError, match=r"video must be 4 frames of 16x16"):
        build("cct3d-learnable")(video(size=8))
    assert build("cct3d-none").eval()(video(frames=3, size=12)).shape == (2, 5)


def test_vivit_argument_checks() -> None:
    with pytest.raises(ValueError, match=r"variant must be one of 'factorized_encoder', 'factorized_self_attention'"):
        build("vivit-encoder-cls", variant="joint")
    with pytest.raises(ValueError, match=r"needs spatial_depth == temporal_depth"):
        build("vivit-fsa-cls", temporal_depth=1)
    with pytest.raises(ValueError, match=r"mask must be \(batch, frames\)=\(2, 4\)"):
        build("vivit-encoder-cls")(video(), mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"heads must be a positive int, got 0"):
        build("vivit-encoder-cls", heads=0)


def test_simple_vit3d_dim_check() -> None:
    with pytest.raises(ValueError, match=r"dim must be at least 6"):
        build("simple-vit3d", dim=4)


# --- interface, registry, tools -----------------------------------------------------------------


@pytest.mark.parametrize("key", list(MODELS))
def test_vision_model_interface(key: str) -> None:
    model = build(key).eval()
    x = video()
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        assert torch.allclose(model.forward_head(features), model(x))
        model.reset_classifier(7)
        assert model(x).shape == (2, 7) and model.num_classes == 7
        model.reset_classifier(0)
        assert torch.equal(model(x), features)


def test_registry_metadata() -> None:
    assert {"vit-3d", "simple-vit-3d", "cct-3d", "vivit"} <= set(list_models(plugin="vit-video"))
    registry = get_registry()
    assert registry.plugins["video"].ok
    for name in ("vit-3d", "simple-vit-3d", "cct-3d", "vivit"):
        info = registry.info(name)
        assert info.input_kind == "video" and info.importer and info.reference and info.citation
        model = create_model(name).eval()
        with torch.no_grad():
            assert model(info.example_input(2)).shape == (2, info.default_config["num_classes"])


def test_plugin_import_is_lazy() -> None:
    code = "import sys, vit_video, vit_video.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("key", "stacked"),
    [("vit3d-cls", (2, 2, 2, 9, 9)), ("cct3d-sine", (2, 2, 2, 256, 256)), ("vivit-fsa-cls", None)],
)
def test_recorder_and_extractor(key: str, stacked: tuple[int, ...] | None) -> None:
    model = build(key).eval()
    x = video()
    with torch.no_grad():
        preds, attn = Recorder(model)(x)
        assert preds.shape == (2, 5)
        if stacked is None:
            assert [a.shape for a in attn] == [(4, 2, 5, 5), (10, 2, 2, 2)] * 2
        else:
            assert attn.shape == stacked
        _, embeddings = Extractor(model)(x)
        assert torch.equal(embeddings, model.forward_features(x))


@pytest.mark.parametrize("name", ["vit-3d", "simple-vit-3d", "cct-3d", "vivit"])
def test_bf16_autocast(name: str) -> None:
    """Autocast reaches the model (bfloat16 logits) and moves them by at most 5% of the largest fp32 logit
    (bfloat16 rounding moves them about 1%)."""
    x = get_registry().info(name).example_input(2)
    model = create_model(name).eval()
    assert_bf16_close(model, x, (2, 10))


@pytest.mark.parametrize("key", list(MODELS))
def test_extractor_reads_every_video_model(key: str) -> None:
    """The default Extractor reads ``model.transformer``: the features the head pools, next to the logits."""
    model = build(key).eval()
    x = video()
    with torch.no_grad():
        logits, embeddings = Extractor(model)(x)
        torch.testing.assert_close(logits, model(x))
        torch.testing.assert_close(embeddings, model.forward_features(x))
        torch.testing.assert_close(model.forward_head(embeddings), logits)


@pytest.mark.parametrize("key", ["vivit-encoder-cls", "vivit-fsa-cls"])
def test_vivit_masked_frames_do_not_change_the_output(key: str) -> None:
    """A tubelet (2 frames here) is attended to when all its frames are; the class token never sees a masked one."""
    model = build(key).eval()
    x = video()
    changed = x.clone()
    changed[0, :, 2] = 5 * torch.randn_like(changed[0, :, 2])  # frame 2 of the first video
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    with torch.no_grad():
        torch.testing.assert_close(model(changed, mask=mask), model(x, mask=mask))
        assert not torch.allclose(model(changed)[0], model(x)[0], atol=1e-3)  # unmasked, the frame matters
        assert not torch.allclose(model(x, mask=mask)[0], model(x)[0], atol=1e-3)
        torch.testing.assert_close(model(x, mask=torch.ones(2, 4, dtype=torch.bool)), model(x))


def test_conformance_kit() -> None:
    from vit_core.testing import check_plugin

    assert check_plugin("video") == ["vit-3d", "simple-vit-3d", "cct-3d", "vivit"]


@pytest.mark.parametrize("key", ["vit3d-cls", "simple-vit3d"])
@pytest.mark.parametrize("argument", ["heads", "dim_head", "mlp_dim", "channels"])
def test_patch_video_models_reject_non_positive_sizes(key: str, argument: str) -> None:
    with pytest.raises(ValueError, match=rf"{argument} must be a positive int, got 0"):
        build(key, **{argument: 0})
