"""Plugin models against timm and vit-pytorch, whole models at one configuration (issues 11 and 12).

The sections of :mod:`benchmarks.variants` and :mod:`benchmarks.hierarchical` are built here.  A
row is a :class:`Spec`: a constructor (``"module:Class"``, or ``"timm:<name>"`` for
``timm.create_model(name, pretrained=False, num_classes=1000)``) and its configuration.

The work guard (:mod:`benchmarks.work`) checks two things:

* **Each row is the model its label states.**  A row's claim is the work counted on a fresh model
  built from the row's own spec (seeded, eval mode, one forward on the comparison's batch); the row
  timed must then do exactly that work in both modes (1% on FLOPs, exact on tokens, masks and
  random draws).  A row whose model was built with another depth, width or image size than its
  label says is refused.  The counted "trunk" is the whole model, so ``tokens`` is the input's
  positions (``batch * 3 * side``), equal for every row of a comparison.
* **The rows compare the same architecture.**  Before a comparison is built, every anchor's
  parameter count and forward FLOPs per image (linear and attention together: timm runs CaiT's
  talking-heads mixes as ``nn.Linear``, we as batched products) are compared with ours.  Against
  vit-pytorch (the same architecture) they must agree within :data:`SAME_ARCHITECTURE`; against
  timm within the case's documented :class:`Difference` (what differs, and the stated tolerance).
  Outside it the builder raises :class:`~benchmarks.work.WorkMismatch`; the measured deviations
  are printed in each row's legend, so nothing is allowed silently.

Where vit-pytorch cannot express the timm-sized configuration (it has no per-stage MLP widths for
PiT, no head counts for Twins), its comparison is a second one, ours and vit-pytorch both at
vit-pytorch's nearest configuration (:attr:`ZooCase.reference_config`), under the same case name.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.cases import CPU_FP32, OURS, Comparison, Row, Setup, _run_fresh, _where, available, infer
from benchmarks.work import Claim, WorkMismatch, count_work

VIT_PYTORCH, TIMM = "vit-pytorch", "timm"
CLASSES = 1000


@dataclass(frozen=True)
class Spec:
    """A model as a row's label states it: ``target`` built with ``config``."""

    target: str
    config: dict

    def build(self) -> nn.Module:
        if self.target.startswith("timm:"):
            import timm

            name = self.target.removeprefix("timm:")
            return timm.create_model(name, pretrained=False, num_classes=CLASSES, **self.config)
        return self.constructor()(**self.config)

    def constructor(self) -> Callable[..., nn.Module]:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)

    @property
    def package(self) -> str:
        return self.target.split(":")[0].split(".")[0]

    def describe(self) -> str:
        if self.target.startswith("timm:"):
            options = "".join(f", {k}={v}" for k, v in self.config.items())
            return f"timm {self.target.removeprefix('timm:')} (pretrained=False{options})"
        config = ", ".join(f"{k}={v}" for k, v in self.config.items())
        return f"{self.target.replace(':', '.')}({config})"


@dataclass(frozen=True)
class Difference:
    """How an anchor's architecture departs from ours (``text``), and how far its parameter count
    and its forward FLOPs per image may stray from ours (relative tolerances)."""

    text: str
    params: float
    flops: float


SAME_ARCHITECTURE = Difference("the same architecture", params=0.01, flops=0.01)


@dataclass(frozen=True)
class ZooCase:
    """One model of a section: ours at ``config`` on ``batch`` images of side ``image``; vit-pytorch's
    class ``reference`` (at ``reference_config`` when given, else ``config``); timm's ``timm`` model,
    whose departures from ours are ``difference``."""

    section: str
    name: str
    ours: str
    config: dict
    image: int
    batch: int
    reference: str | None = None
    reference_config: dict | None = None
    timm: str | None = None
    difference: Difference | None = None
    timm_config: dict | None = None
    reference_difference: Difference = SAME_ARCHITECTURE

    def spec(self, impl: str, *, at_reference: bool = False) -> Spec:
        if impl == TIMM:
            return Spec(f"timm:{self.timm}", dict(self.timm_config or {}))
        config = self.reference_config if at_reference and self.reference_config is not None else self.config
        return Spec(self.reference if impl == VIT_PYTORCH else self.ours, dict(config) | {"num_classes": CLASSES})


def _inputs(case: ZooCase, setup: Setup) -> tuple[torch.Tensor, Callable]:
    torch.manual_seed(0)
    x = torch.randn(case.batch, 3, case.image, case.image, device=setup.device)
    target = torch.randint(0, CLASSES, (case.batch,), device=setup.device)
    return x, functools.partial(F.cross_entropy, target=target)


def spec_claim(spec: Spec, x: torch.Tensor, setup: Setup = CPU_FP32, mode: str = "infer") -> Claim:
    """The work of ``spec``'s model on ``x``: counted on a fresh, seeded build (one forward in
    ``mode``; in training a learned attention bias takes the explicit score path, which hands no
    mask to a kernel, so the two modes may differ in mask elements)."""
    torch.manual_seed(0)
    model = spec.build().to(setup.device).train(mode == "train")

    def training_forward() -> None:
        with torch.enable_grad():
            model(x)

    work = count_work(training_forward if mode == "train" else infer(model, x, setup), model)
    return Claim(work.tokens, work.linear_flops, work.attention_flops, work.mask_elements, work.random_draws)


class ModelRow(Row):
    """A row whose counted trunk is the whole model (timm's, vit-pytorch's and our models name their
    trunks differently, and hierarchical ones have several)."""

    @property
    def trunk(self) -> nn.Module:
        return self.model


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_problems(label: str, ours: tuple[int, int], theirs: tuple[int, int], allowed: Difference) -> list[str]:
    """How ``theirs`` (parameters, forward FLOPs per image) strays from ``ours`` beyond ``allowed``."""
    out = []
    measured = (("parameters", ours[0], theirs[0], allowed.params),
                ("forward FLOPs per image", ours[1], theirs[1], allowed.flops))  # fmt: skip
    for what, a, b, tolerance in measured:
        if abs(b - a) > tolerance * a:
            out.append(
                f"{label}: {what} {b:,} vs ours {a:,} ({b / a - 1:+.1%}), beyond {tolerance:.1%} ({allowed.text})"
            )
    return out


def _deviation(ours: tuple[int, int], theirs: tuple[int, int]) -> str:
    return f"params {theirs[0] / ours[0] - 1:+.1%}, forward FLOPs per image {theirs[1] / ours[1] - 1:+.1%} vs ours"


def _size(model: nn.Module, claim: Claim, batch: int) -> tuple[int, int]:
    return parameters(model), (claim.linear_flops + claim.attention_flops) // batch


MEMORY_SCRIPT = """
import functools, json, sys, torch
import torch.nn.functional as F
sys.path[:0] = {paths!r}
from benchmarks.cases import Setup, train_step
from benchmarks.memory import peak_increase
from benchmarks.zoo import Spec
setup = Setup({device!r}, getattr(torch, {dtype!r}))
torch.manual_seed(0)
model = Spec({target!r}, {config!r}).build().to(setup.device)
x = torch.randn({batch}, 3, {image}, {image}, device=setup.device)
y = torch.randint(0, {classes}, ({batch},), device=setup.device)
step = train_step(model, x, functools.partial(F.cross_entropy, target=y), setup)
print(json.dumps(peak_increase(lambda: (step(), step()), setup.device)))
"""


def training_peak_memory(spec: Spec, batch: int, image: int, setup: Setup = CPU_FP32) -> int:
    """Peak memory increase (bytes) of two training steps of ``spec``'s model in a fresh process."""
    script = MEMORY_SCRIPT.format(
        paths=sys.path, target=spec.target, config=spec.config, batch=batch, image=image, classes=CLASSES,
        **_where(setup),
    )  # fmt: skip
    return _run_fresh(script)


def _row(label: str, spec: Spec, case: ZooCase, x: torch.Tensor, loss: Callable, setup: Setup, memory: bool) -> Row:
    torch.manual_seed(0)
    model = spec.build().to(setup.device)
    peak = functools.partial(training_peak_memory, spec, case.batch, case.image, setup) if memory else None
    claim, train_claim = (spec_claim(spec, x, setup, mode) for mode in ("infer", "train"))
    return ModelRow(label, model, x, claim, spec.describe(), loss=loss, memory=peak, train_claim=train_claim)


def check_sizes(name: str, rows: list[Row], allowed: dict[str, Difference], batch: int) -> None:
    """Raise :class:`WorkMismatch` when an anchor's parameters or FLOPs per image stray from ours
    beyond its allowed difference; else append the measured deviation to each anchor's legend."""
    ours = next(r for r in rows if r.label == OURS)
    base = _size(ours.model, ours.claim, batch)
    problems = []
    for row in rows:
        if row.label == OURS:
            continue
        theirs = _size(row.model, row.claim, batch)
        difference = allowed[row.label]
        problems += size_problems(row.label, base, theirs, difference)
        row.about += (
            f"; compared with ours ({difference.text}): {_deviation(base, theirs)} "
            f"(allowed {difference.params:.1%} / {difference.flops:.1%})"
        )
    if problems:
        raise WorkMismatch(f"{name}: the rows are not the same architecture:\n" + "\n".join(f"  {p}" for p in problems))


def implementations(case: ZooCase) -> list[str]:
    impls = [OURS]
    if case.reference and available("vit_pytorch"):
        impls.append(VIT_PYTORCH)
    if case.timm and available("timm"):
        impls.append(TIMM)
    return impls


def case_comparisons(case: ZooCase, setup: Setup = CPU_FP32, *, memory: bool = True) -> list[Comparison]:
    """Ours against timm and vit-pytorch at ``case`` (two comparisons when vit-pytorch needs its own
    configuration)."""
    x, loss = _inputs(case, setup)
    impls = implementations(case)
    split = case.reference_config is not None and VIT_PYTORCH in impls
    groups = [[i for i in impls if not (split and i == VIT_PYTORCH)]]
    if split:
        groups.append([OURS, VIT_PYTORCH])
    out = []
    for index, group in enumerate(groups):
        at_reference = index == 1
        rows = [_row(impl, case.spec(impl, at_reference=at_reference), case, x, loss, setup, memory) for impl in group]
        suffix = " at vit-pytorch's configuration" if at_reference else ""
        name = f"{case.name}{suffix}, batch {case.batch}"
        check_sizes(name, rows, {VIT_PYTORCH: case.reference_difference, TIMM: case.difference}, case.batch)
        anchors = [a for a in (TIMM, VIT_PYTORCH) if a in group]
        out.append(
            Comparison(
                section=case.section,
                name=name,
                rows=rows,
                pairs=[(OURS, a) for a in anchors],
                params={"case": case.name, "batch": case.batch, "image": case.image},
                baseline=anchors[0] if anchors else OURS,
                items=case.batch,
                useful=OURS,
            )
        )
    return out


def comparisons(
    section: str, cases: list[ZooCase], setup: Setup = CPU_FP32, *, memory: bool = True
) -> list[tuple[str, Callable]]:
    """``(name, builder)`` pairs as ``benchmarks.__main__`` takes them; a case needing a plugin
    that is not installed is left out."""
    out: list[tuple[str, Callable]] = []
    for case in cases:
        if not available(case.ours.split(".")[0]):
            continue
        built = functools.cache(functools.partial(case_comparisons, case, setup, memory=memory))
        count = 2 if case.reference_config is not None and VIT_PYTORCH in implementations(case) else 1
        for index in range(count):
            out.append((f"{section} {case.name} {index}", lambda built=built, index=index: built()[index]))
    return out
