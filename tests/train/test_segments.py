"""A classifier's segments compose to its forward pass, and the freeze plan's split puts every
frozen parameter in the prefix and every trainable one in the suffix."""

import pytest
import torch
import torchvision

from edgetune.train.freeze import FreezePlan
from edgetune.train.segments import segments_of, split

ARCHS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf",
         "convnext_tiny"]


@pytest.mark.parametrize("arch", ARCHS)
def test_segments_compose_to_the_model(arch):
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    y = x
    for segment in segments_of(model, arch):
        y = segment.module(y)
    torch.testing.assert_close(y, model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("unfreeze", ["head", "1", "2"])
def test_split_prefix_is_frozen_and_suffix_trainable(arch, unfreeze):
    model = torchvision.models.get_model(arch, weights=None, num_classes=5).eval()
    plan = FreezePlan.build(arch, model, unfreeze)
    plan.apply(model)
    s = split(model, arch)
    assert not any(p.requires_grad for p in s.prefix.parameters())
    assert all(p.requires_grad for p in s.suffix.parameters())
    assert sum(p.numel() for p in s.suffix.parameters()) == sum(
        p.numel() for p in model.parameters() if p.requires_grad)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(s.suffix(s.prefix(x)), model(x), rtol=1e-4, atol=1e-5)
