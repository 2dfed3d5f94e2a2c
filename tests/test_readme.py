"""The reference README's examples, run as they are written.

Every ```python block of vit-pytorch's README (``../shared/reference/vit-pytorch-README.md`` beside the
checkout) runs at the README's sizes, with only its import lines changed: each ``from vit_pytorch.X import Y``
binds what :data:`IMPORTS` names instead (a statement that imports anything else runs as written).  A block
without imports continues the one before it (the README's ``v = v.to_vit()`` after the distillation example).
Only the examples that train in a loop are scaled down, as :data:`SCALED` says.  A comment that gives a shape
at the end of a statement (``preds = v(img) # (5, 1000)``) is checked against the value.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.readme

README = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vit-pytorch-README.md"
"""vit-pytorch's README, kept beside the checkout (not shipped with it)."""

IMPORTS = {
    "vit_pytorch.ViT": "vit_core:ViT",
    "vit_pytorch.SimpleViT": "vit_core:SimpleViT",
    "vit_pytorch.MAE": "vit_ssl:MAE",
    "vit_pytorch.Dino": "vit_ssl:Dino",
    "vit_pytorch.vit.ViT": "vit_core:ViT",
    "vit_pytorch.na_vit.NaViT": "vit_core:NaViT",
    "vit_pytorch.na_vit_nested_tensor.NaViT": "vit_core:NaViT.nested_tensor_flavour",
    "vit_pytorch.recorder.Recorder": "vit_core:Recorder",
    "vit_pytorch.extractor.Extractor": "vit_core:Extractor",
    "vit_pytorch.efficient.ViT": "vit_core:ViT",
    "vit_pytorch.distill.DistillableViT": "vit_ssl:DistillableViT",
    "vit_pytorch.distill.DistillWrapper": "vit_ssl:DistillWrapper",
    "vit_pytorch.simmim.SimMIM": "vit_ssl:SimMIM",
    "vit_pytorch.mpp.MPP": "vit_ssl:MPP",
    "vit_pytorch.mp3.ViT": "vit_core:ViT",
    "vit_pytorch.mp3.MP3": "vit_ssl:MP3",
    "vit_pytorch.es_vit.EsViTTrainer": "vit_ssl:EsViTTrainer",
    "vit_pytorch.deepvit.DeepViT": "vit_variants:DeepViT",
    "vit_pytorch.cait.CaiT": "vit_variants:CaiT",
    "vit_pytorch.t2t.T2TViT": "vit_variants:T2TViT",
    "vit_pytorch.cct.CCT": "vit_variants:CCT",
    "vit_pytorch.cct.cct_14": "vit_variants:cct_14",
    "vit_pytorch.cross_vit.CrossViT": "vit_variants:CrossViT",
    "vit_pytorch.xcit.XCiT": "vit_variants:XCiT",
    "vit_pytorch.parallel_vit.ViT": "vit_variants:ParallelViT",
    "vit_pytorch.vit_for_small_dataset.ViT": "vit_variants:SmallDatasetViT",
    "vit_pytorch.vit_for_small_dataset.SPT": "vit_variants:SPT",
    "vit_pytorch.learnable_memory_vit.ViT": "vit_variants:LearnableMemoryViT",
    "vit_pytorch.learnable_memory_vit.Adapter": "vit_variants:Adapter",
    "vit_pytorch.pit.PiT": "vit_hierarchical:PiT",
    "vit_pytorch.levit.LeViT": "vit_hierarchical:LeViT",
    "vit_pytorch.cvt.CvT": "vit_hierarchical:CvT",
    "vit_pytorch.twins_svt.TwinsSVT": "vit_hierarchical:TwinsSVT",
    "vit_pytorch.regionvit.RegionViT": "vit_hierarchical:RegionViT",
    "vit_pytorch.crossformer.CrossFormer": "vit_hierarchical:CrossFormer",
    "vit_pytorch.scalable_vit.ScalableViT": "vit_hierarchical:ScalableViT",
    "vit_pytorch.sep_vit.SepViT": "vit_hierarchical:SepViT",
    "vit_pytorch.max_vit.MaxViT": "vit_hierarchical:MaxViT",
    "vit_pytorch.nest.NesT": "vit_hierarchical:NesT",
    "vit_pytorch.mobile_vit.MobileViT": "vit_hierarchical:MobileViT",
    "vit_pytorch.ats_vit.ViT": "vit_efficient:ATSViT",
    "vit_pytorch.vit_with_patch_merger.ViT": "vit_efficient:PatchMergerViT",
    "vit_pytorch.vit_with_patch_merger.PatchMerger": "vit_efficient:PatchMerger",
    "vit_pytorch.vit_3d.ViT": "vit_video:ViT3D",
    "vit_pytorch.simple_vit_3d.SimpleViT": "vit_video:SimpleViT3D",
    "vit_pytorch.cct_3d.CCT": "vit_video:CCT3D",
    "vit_pytorch.vivit.ViT": "vit_video:ViViT",
    "torchvision.models.resnet50": f"{__name__}:resnet50",
}
"""``module.name`` a README example imports -> ``our_module:attribute`` bound in its place."""

SCALED = {
    # README section: (text in its block, replacement), each found exactly once.  Only examples that train at
    # full model size: a loop of 100 or 1000 optimizer steps on 8-20 images would take hours here, so one step
    # on a small batch runs every line of the loop once.  The models keep the README's sizes.
    # MPP: 100 steps x 20 images -> 1 step x 2 images.
    "Masked Patch Prediction": (("range(100)", "range(1)"), ("FloatTensor(20,", "FloatTensor(2,")),
    # MP3: one training step on 8 images of 1024 patches (68 s on two cores) -> one image.
    "Masked Position Prediction": (("torch.randn(8,", "torch.randn(1,"),),
    # DINO: 100 steps x 20 images -> 1 step x 2 images.
    "Dino": (("range(100)", "range(1)"), ("torch.randn(20,", "torch.randn(2,")),
    # EsViT: 1000 steps x 8 images -> 1 step x 1 image (64 regions x 65336 prototypes per view and image).
    "EsViT": (("range(1000)", "range(1)"), ("torch.randn(8,", "torch.randn(1,")),
}
"""The examples run smaller than written, by README section: which text, replaced by what, and why."""

SHAPE_COMMENT = re.compile(r"#\s*(\((?:[\d\s,()])+\))\s*(?:$|-|<-)")
"""A comment giving a shape, ``# (1, 1000)``, or a tuple of shapes, ``# ((1, 257, 192), (1, 17, 384))``, alone
or before ``-`` and an explanation.  Other comments (``# (4, 1000), (4, <=8)``) are not checked."""

WRONG_SHAPE_COMMENTS = {
    # the example passes 4 images: (4, 1000), as the other examples' comments say for their batches
    ("Vision Transformer for Small Datasets", "preds = v(img) # (1, 1000)"): (4, 1000),
}
"""Shape comments of the README that are wrong, by section and line: the shape the example really gives."""


def resnet50(pretrained: bool = False) -> nn.Module:
    """Stand-in for torchvision's ``resnet50``, the distillation example's teacher: a ``(batch, 1000)``
    classifier.  torchvision's wheels do not import beside every torch build, and its pretrained weights need
    a download; the example only needs a teacher's logits."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000))


@dataclass
class Block:
    """One ```python block: its first line in the README, its code, the section it is in."""

    line: int
    code: str
    section: str


def read_blocks(text: str) -> list[Block]:
    """Every ```python block of the README with the nearest heading above it (headings in code do not count)."""
    blocks: list[Block] = []
    section, start, code = "", 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        if start and line.strip() == "```":
            blocks.append(Block(start, "\n".join(code), section))
            start, code = 0, []
        elif start:
            code.append(line)
        elif line.startswith("```python"):
            start = number + 1
        elif line.startswith("#"):
            section = line.lstrip("#").strip()
    return blocks


def has_imports(code: str) -> bool:
    return any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.parse(code).body)


def examples() -> list[list[Block]]:
    """The README's examples: a block with imports, then the blocks without imports that continue it."""
    if not README.is_file():
        return []
    grouped: list[list[Block]] = []
    for block in read_blocks(README.read_text()):
        if has_imports(block.code) or not grouped:
            grouped.append([block])
        else:
            grouped[-1].append(block)
    return grouped


def example_id(example: list[Block]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", example[0].section.lower()).strip("-")
    return f"{slug}-line{example[0].line}"


def scaled(block: Block) -> str:
    """The block's code with its :data:`SCALED` replacements."""
    code = block.code
    for old, new in SCALED.get(block.section, ()):
        assert code.count(old) == 1, f"README line {block.line}: {old!r} no longer occurs once; update SCALED"
        code = code.replace(old, new)
    return code


def bind_imports(node: ast.ImportFrom, namespace: dict[str, Any]) -> None:
    """``from vit_pytorch.X import Y`` (or another module :data:`IMPORTS` maps) binds our counterpart of Y."""
    for alias in node.names:
        source = f"{node.module}.{alias.name}"
        if source not in IMPORTS:
            pytest.fail(f"README line {node.lineno} imports {source}, which IMPORTS does not map")
        module_name, _, attribute = IMPORTS[source].partition(":")
        distribution = module_name.split(".")[0]
        value: Any = pytest.importorskip(module_name, reason=f"{distribution} is not installed")
        for part in attribute.split("."):
            value = getattr(value, part)
        namespace[alias.asname or alias.name] = value


def mapped(node: ast.stmt) -> bool:
    """Whether ``node`` is an import line that goes through :data:`IMPORTS`."""
    return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {"vit_pytorch", "torchvision"}


def shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)):
        return tuple(shape_of(v) for v in value)
    return type(value).__name__


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Run the block statement by statement (README line numbers in tracebacks), checking documented shapes."""
    readme_lines = README.read_text().splitlines()
    tree = ast.parse(scaled(block))
    ast.increment_lineno(tree, block.line - 1)
    for node in tree.body:
        if mapped(node):
            bind_imports(node, namespace)
            continue
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), str(README), "eval"), namespace)
        else:
            exec(compile(ast.Module([node], type_ignores=[]), str(README), "exec"), namespace)
            single = isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            value = namespace[node.targets[0].id] if single else None
        line = readme_lines[node.end_lineno - 1]
        documented = SHAPE_COMMENT.search(line)
        if documented:
            expected = ast.literal_eval(documented.group(1))
            expected = WRONG_SHAPE_COMMENTS.get((block.section, line.strip()), expected)
            assert shape_of(value) == expected, f"README line {node.end_lineno}: {shape_of(value)} != {expected}"


EXAMPLES = examples()


@pytest.mark.skipif(not README.is_file(), reason=f"the reference README is not at {README}")
@pytest.mark.parametrize("example", EXAMPLES, ids=[example_id(e) for e in EXAMPLES])
def test_readme_example(example: list[Block], tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the examples save their weights to ./trained-vit.pt
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    for block in example:
        run_block(block, namespace)


@pytest.mark.skipif(not README.is_file(), reason=f"the reference README is not at {README}")
def test_every_block_runs_and_every_import_is_mapped() -> None:
    """Every python block is in one example, every scaled section exists, and the map covers every import."""
    blocks = read_blocks(README.read_text())
    assert sum(len(e) for e in EXAMPLES) == len(blocks) > 40
    assert set(SCALED) | {section for section, _ in WRONG_SHAPE_COMMENTS} <= {b.section for b in blocks}
    sources = {
        f"{node.module}.{alias.name}"
        for b in blocks
        for node in ast.parse(b.code).body
        if mapped(node)
        for alias in node.names
    }
    assert sources == set(IMPORTS)


def test_a_missing_readme_gives_no_examples(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(f"{__name__}.README", tmp_path / "absent.md")
    assert examples() == []
