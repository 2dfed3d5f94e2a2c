"""The conformance kit's trainer and backend profiles, on tiny in-process plugins: a conforming trainer
and backend pass, and each deliberately broken one fails exactly the check that names its fault."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from vit_core.hookspecs import HOOK_API_VERSION, hookimpl
from vit_core.layers import Transformer
from vit_core.models.base import MovingAverageTrainer
from vit_core.registry import Component, ModelInfo, Registry
from vit_core.testing import BACKEND_CHECKS, PROFILES, TRAINER_CHECKS, ConformanceError, check_model, check_plugin

TRUNK = dict(dim=64, depth=1, heads=4, dim_head=16, mlp_dim=128)
TOKENS = 17  # vit's default configuration: 16 patches and the class token


class Plugin:
    def __init__(self, *infos: ModelInfo) -> None:
        self.infos = list(infos)

    @hookimpl
    def vit_api_version(self) -> int:
        return HOOK_API_VERSION

    @hookimpl
    def vit_register_models(self) -> list[ModelInfo]:
        return self.infos


def registry_with(*infos: ModelInfo) -> Registry:
    from vit_core.registry import core_models as core_plugin

    registry = Registry()
    registry.add_plugin(core_plugin, "vit-core")
    registry.add_plugin(Plugin(*infos), "kinds")
    assert registry.plugins["kinds"].ok, registry.plugins["kinds"].errors
    return registry


def here(attr: str) -> str:
    return f"{__name__}:{attr}"


def trainer(name: str, target: str, **changes: Any) -> ModelInfo:
    fields: dict[str, Any] = dict(
        name=name,
        target=here(target),
        kind="trainer",
        family="test",
        paper_title="A test trainer",
        paper_url="https://example.org/trainer",
        summary="A trainer for the kit's own tests.",
        input_kind="image",
        input_shape=(3, 32, 32),
        default_config={"encoder": Component("vit"), "hidden": 8},
        citation="@misc{trainer}",
        example="loss = create_model('x')(images)",
    )
    return ModelInfo(**{**fields, **changes})


def backend(name: str, target: str, **changes: Any) -> ModelInfo:
    fields: dict[str, Any] = dict(
        name=name,
        target=here(target),
        kind="backend",
        family="test",
        paper_title="A test backend",
        paper_url="https://example.org/backend",
        summary="A backend for the kit's own tests.",
        input_kind="tokens",
        input_shape=(TOKENS, TRUNK["dim"]),
        default_config=TRUNK,
        plugs_into=Component("vit"),
        citation="@misc{backend}",
        example="create_model('vit', transformer=create_model('x'))",
    )
    return ModelInfo(**{**fields, **changes})


def expect_failure(info: ModelInfo, check: str, *fragments: str) -> None:
    with pytest.raises(ConformanceError) as caught:
        check_model(info.name, registry=registry_with(info))
    error = caught.value
    assert (error.model, error.check) == (info.name, check), str(error)
    assert str(error).startswith(f"{info.kind} {info.name!r} failed conformance check {check!r}: ")
    for fragment in fragments:
        assert fragment in str(error), f"{fragment!r} not in {error}"


# Trainers.


class Reconstruct(nn.Module):
    """Predicts each patch's pixels from the encoder's token for it (a tiny MAE without masking)."""

    def __init__(self, encoder: nn.Module, hidden: int = 8) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = nn.Sequential(
            nn.Linear(encoder.num_features, hidden), nn.Linear(hidden, encoder.patch_embed.patch_dim)
        )

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.encoder.forward_features(images)[:, self.encoder.num_prefix_tokens :]
        return (self.decoder(tokens) - self.encoder.patches(images)[0]).pow(2).mean()


class Distill(nn.Module):
    """Cross-entropy on the labels plus a KL term towards a frozen teacher."""

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float = 2.0) -> None:
        super().__init__()
        self.student, self.teacher, self.temperature = student, teacher, temperature
        self.teacher.requires_grad_(False)
        self.mix = nn.Parameter(torch.tensor(0.5))

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        logits = self.student(images)
        with torch.no_grad():
            target = (self.teacher(images) / self.temperature).softmax(-1)
        soft = nn.functional.kl_div((logits / self.temperature).log_softmax(-1), target, reduction="batchmean")
        return nn.functional.cross_entropy(logits, labels) + self.mix.sigmoid() * soft


class IgnoresItsEncoder(Reconstruct):
    """Trains a copy of the encoder, not the one it was given."""

    def __init__(self, encoder: nn.Module, hidden: int = 8) -> None:
        import copy

        super().__init__(copy.deepcopy(encoder), hidden)


class SkipsTheEmbedding(Reconstruct):
    """Feeds detached patch tokens to the trunk: the patch embedding never learns."""

    def forward(self, images: Tensor) -> Tensor:
        tokens, grid = self.encoder.tokenize(images)
        tokens = self.encoder.prepend_prefix(self.encoder.add_positions(tokens.detach(), grid))
        out = self.encoder.encode(tokens)[:, self.encoder.num_prefix_tokens :]
        return (self.decoder(out) - self.encoder.patches(images)[0]).pow(2).mean()


class LossPerExample(Reconstruct):
    def forward(self, images: Tensor) -> Tensor:
        return super().forward(images).expand(images.shape[0])


class NaNLoss(Reconstruct):
    def forward(self, images: Tensor) -> Tensor:
        return super().forward(images) * float("nan")


class DeadHead(Reconstruct):
    def __init__(self, encoder: nn.Module, hidden: int = 8) -> None:
        super().__init__(encoder, hidden)
        self.unused = nn.Linear(2, 2)


class AveragesItsEncoder(Reconstruct):
    """Keeps a moving average of its encoder's patch embedding (a DINO-style teacher): it declares
    ``update_moving_average()`` (the ``MovingAverageTrainer`` protocol)."""

    def __init__(self, encoder: nn.Module, hidden: int = 8) -> None:
        super().__init__(encoder, hidden)
        self.register_buffer("average", encoder.patch_embed.proj.weight.detach().clone())

    def update_moving_average(self) -> None:
        self.average.lerp_(self.encoder.patch_embed.proj.weight.detach(), 0.1)


class AveragesWithAnArgument(AveragesItsEncoder):
    """Wants the decay as an argument, which a training loop does not pass."""

    def update_moving_average(self, decay: float) -> None:  # type: ignore[override]
        self.average.lerp_(self.encoder.patch_embed.proj.weight.detach(), 1 - decay)


def test_conforming_trainers_pass() -> None:
    labelled = trainer(
        "toy-distill",
        "Distill",
        takes_labels=True,
        default_config={"student": Component("vit"), "teacher": Component("simple-vit", trained=False)},
    )
    averaging = trainer("toy-ema", "AveragesItsEncoder")
    registry = registry_with(trainer("toy-mae", "Reconstruct"), labelled, averaging)
    assert check_plugin("kinds", registry=registry) == ["toy-mae", "toy-distill", "toy-ema"]
    assert isinstance(registry.create("toy-ema"), MovingAverageTrainer)
    assert not isinstance(registry.create("toy-mae"), MovingAverageTrainer)
    assert (
        list(TRAINER_CHECKS) == ["metadata", "listing", "loss", "gradients", "devices"]
        and PROFILES["trainer"] is TRAINER_CHECKS
    )


@pytest.mark.parametrize(
    ("target", "check", "fragments"),
    [
        ("IgnoresItsEncoder", "gradients", ("does not reach encoder=vit()", "train the model passed as encoder=")),
        ("SkipsTheEmbedding", "gradients", ("not its patch embedding (encoder.patch_embed)",)),
        ("LossPerExample", "loss", ("must return a scalar floating-point loss tensor, got (2,)",)),
        ("NaNLoss", "loss", ("returned a non-finite loss nan",)),
        ("DeadHead", "gradients", ("2 of the trainer's own 6 trainable parameters", "unused.weight, unused.bias")),
        (
            "AveragesWithAnArgument",
            "gradients",
            ("update_moving_average() after a backward pass raised TypeError", "missing 1 required positional"),
        ),
    ],
)
def test_broken_trainers(target: str, check: str, fragments: tuple[str, ...]) -> None:
    expect_failure(trainer("broken-trainer", target), check, *fragments)


def test_a_trainer_called_with_the_wrong_arguments() -> None:
    expect_failure(
        trainer(
            "no-labels",
            "Distill",
            takes_labels=False,
            default_config={"student": Component("vit"), "teacher": Component("vit", trained=False)},
        ),
        "loss",
        "trainer(images) on a batch of 2 raised TypeError",
    )


def test_a_trainer_component_must_name_a_registered_model() -> None:
    expect_failure(
        trainer("lost", "Reconstruct", default_config={"encoder": Component("no-such-vit")}),
        "metadata",
        "encoder=no-such-vit() names no registered model: unknown model 'no-such-vit'",
    )


# Backends.


class Trunk(Transformer):
    """vit-core's own trunk as a backend (it checks its input's dim)."""


class Unchecked(nn.Module):
    """A token mixer that does not validate its input: a wrong dim is a bare matmul error."""

    def __init__(self, dim: int, **_: Any) -> None:
        super().__init__()
        self.mix = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(x)


class Vague(Unchecked):
    """Checks its input but says only that something is wrong."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.mix.in_features:
            raise ValueError("unexpected tokens")
        return super().forward(x)


class Lenient(nn.Module):
    """Scales whatever it is given: any width, any rank."""

    def __init__(self, dim: int, **_: Any) -> None:
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class Pools(Trunk):
    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return super().forward(x, *args, **kwargs).mean(1)


class DeadWeights(Trunk):
    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.spare = nn.Parameter(torch.zeros(3))


def test_a_conforming_backend_passes() -> None:
    registry = registry_with(backend("toy-trunk", "Trunk"))
    assert check_plugin("kinds", registry=registry) == ["toy-trunk"]
    assert list(BACKEND_CHECKS) == ["metadata", "listing", "shape", "gradients", "bad-input", "plugs-into", "devices"]


@pytest.mark.parametrize(
    ("target", "changes", "check", "fragments"),
    [
        ("Pools", {}, "shape", ("(2, 17, 64) gave (2, 64)",)),
        ("DeadWeights", {}, "gradients", ("spare",)),
        ("Unchecked", {}, "bad-input", ("dim 65 instead of 64", "bare RuntimeError")),
        (
            "Vague",
            {},
            "bad-input",
            ("dim 65 instead of 64 raised ValueError: unexpected tokens, which names neither dim nor (2, 17, 65)",),
        ),
        ("Lenient", {}, "bad-input", ("input with dim 65 instead of 64 ((2, 17, 65)) was accepted",)),
        (
            "Trunk",
            {"plugs_into": Component("vit", {"dim": 32})},
            "plugs-into",
            ("building vit(dim=32) with transformer=<this backend> raised", "fit the backend's default"),
        ),
        ("Trunk", {"plugs_into": Component("vvit")}, "metadata", ("plugs_into=vvit() names no registered model",)),
    ],
)
def test_broken_backends(target: str, changes: dict[str, Any], check: str, fragments: tuple[str, ...]) -> None:
    expect_failure(backend("broken-trunk", target, **changes), check, *fragments)
