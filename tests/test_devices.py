"""The kit's ``devices`` check (vit_core.testing.devices): every first-party entry runs on the meta device
without host traffic, and each hazard the check exists for makes it fail."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vit_core import ViT
from vit_core.registry import get_registry
from vit_core.testing.devices import DeviceHazard, check_devices, on_device, to_device
from vit_core.testing.subject import Subject
from vit_core.tools.attention_map import attention_map

META = torch.device("meta")
NAMES = [get_registry().key(info) for info in get_registry().list(presets=False)]


class CpuArange(nn.Module):
    """Adds a position ramp made on the CPU: fails on any accelerator."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.arange(x.shape[-1])


class ItemInForward(nn.Module):
    """Reads a count back to the host every call: a device sync."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : int((x > 0).sum().item()) + 1]


class ConstantCopy(nn.Module):
    """Copies a host constant to the device every call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tensor([1.0, 2.0, 3.0, 4.0], device=x.device)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (CpuArange(), r"mixes a CPU tensor of shape \(4,\) with a meta tensor.*test_devices.py"),
        (ItemInForward(), r"item\(\) reads a meta tensor on the host"),
        (ConstantCopy(), r"tensor\(\) copies host data to the meta device"),
    ],
    ids=["cpu-arange", "item", "host-constant"],
)
def test_each_hazard_in_a_forward_fails(module, match):
    x = torch.randn(2, 4, device=META)
    with pytest.raises(DeviceHazard, match=match), on_device():
        module(x)


def test_the_fixed_forms_pass():
    x = torch.randn(2, 4, device=META)
    with on_device():
        (x + torch.arange(4, device=x.device)) * 2.0
        x[:, : x.shape[1] - 1]


def test_a_tool_building_its_tensors_on_the_cpu_fails():
    def rollout(maps: torch.Tensor) -> torch.Tensor:
        return maps + torch.eye(maps.shape[-1])  # the old attention_map: a CPU identity

    with pytest.raises(DeviceHazard, match="mixes a CPU tensor"), on_device(host_reads=True):
        rollout(torch.rand(3, 5, 5, device=META))


def test_tools_on_a_meta_model():
    model = ViT(image_size=16, patch_size=4, num_classes=5, dim=16, depth=2, heads=2, mlp_dim=32, dim_head=8)
    model = model.to(META).eval()
    x = to_device(torch.randn(1, 3, 16, 16))
    with torch.no_grad(), on_device(host_reads=True):
        assert attention_map(model, x).device == META
        model.reset_classifier(7)
        assert model(x).shape == (1, 7)
    assert model.head.weight.device == META


@pytest.mark.parametrize("name", NAMES)
def test_every_first_party_entry_passes(name):
    check_devices(Subject(get_registry().info(name)))
