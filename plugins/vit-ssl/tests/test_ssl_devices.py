"""vit-ssl's evaluation helpers and trainers under the kit's device recorder (vit_core.testing.devices):
on the meta device no CPU tensor meets the features, and the trainers' forward passes do no host traffic."""

from __future__ import annotations

import pytest
import torch

from vit_core.testing.devices import DeviceHazard, on_device

pytest.importorskip("vit_ssl")
from vit_ssl import knn_accuracy, linear_probe_accuracy
from vit_ssl.augment import Photometric

META = torch.device("meta")


@pytest.mark.parametrize("helper", [knn_accuracy, linear_probe_accuracy], ids=["knn", "probe"])
def test_evaluation_helpers_keep_to_the_features_device(helper):
    features = torch.randn(12, 6, device=META)
    labels = torch.zeros(12, dtype=torch.long, device=META)
    with on_device(host_reads=True):  # a helper returns a number: reading it back is its job
        helper(features[:8], labels[:8], features[8:], labels[8:], num_classes=3)


def test_a_host_constant_in_augmentation_fails_the_recorder():
    augment = Photometric(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)).to(META)
    images = torch.rand(2, 3, 8, 8, device=META)
    with on_device():
        augment(images)  # the normalisation constants are buffers
    augment.mean_values = torch.full((1, 3, 1, 1), 0.5)  # a constant left on the CPU
    with pytest.raises(DeviceHazard, match="mixes a CPU tensor"), on_device():
        augment(images)
