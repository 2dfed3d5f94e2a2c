"""The data side of training: sources listed up front and decoded in loader workers, augmentation, batch steps.

* :mod:`~vit_core.training.data.decode`: one image file (any suffix, EXIF orientation, any mode) or a named error;
* :mod:`~vit_core.training.data.folders`: class folders, the ImageNet layout, stratified held-out splits;
* :mod:`~vit_core.training.data.datasets`: datasets of paths (not pixels) and the DataLoader around them;
* :mod:`~vit_core.training.data.shards`: WebDataset shards, written from a folder and streamed per rank/worker;
* :mod:`~vit_core.training.data.transforms`, :mod:`~vit_core.training.data.randaugment`: per-image transforms;
* :mod:`~vit_core.training.data.batch`: normalisation, Mixup / CutMix, random erasing on batches;
* :mod:`~vit_core.training.data.augment`: the ``--augment`` presets;
* :mod:`~vit_core.training.data.pipeline`: a ``--data`` source into loaders and batch steps;
* :mod:`~vit_core.training.data.preprocess`: a ``pretrained_cfg`` into the evaluation transform.
"""

from vit_core.training.data.preprocess import create_transform

__all__ = ["create_transform"]
