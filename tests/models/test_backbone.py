import os

import pytest
import torch

from models.backbone import (PretrainedWeightsUnavailable, ResNetTrunk, build_backbone,
                             imagenet_weights_path, list_backbones)


def test_unknown_backbone_lists_the_valid_names():
    with pytest.raises(ValueError, match="resnet18, resnet34, resnet50, resnet101"):
        build_backbone("vgg16")


def test_missing_imagenet_weights_name_the_expected_file():
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        build_backbone("resnet18", pretrained="imagenet")
    assert imagenet_weights_path("resnet18") in str(info.value)
    assert "resnet18-f37072fd.pth" in str(info.value)


def _fake_cache(name: str) -> dict:
    """Put a torchvision-format state dict where torchvision caches ImageNet weights."""
    from torchvision import models
    net = getattr(models, name)(weights=None)
    state = net.state_dict()
    path = imagenet_weights_path(name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state, path)
    return state


@pytest.mark.parametrize("bands", [1, 3, 4])
def test_cached_imagenet_weights_load_offline(bands):
    state = _fake_cache("resnet18")
    trunk = build_backbone("resnet18", bands, pretrained="imagenet")
    rgb = state["conv1.weight"]
    conv1 = trunk.conv1.weight.detach()
    assert conv1.shape[1] == bands
    if bands == 3:
        assert torch.equal(conv1, rgb)
    if bands == 4:
        assert torch.equal(conv1[:, :3], rgb)
        assert torch.allclose(conv1[:, 3], rgb.mean(dim=1))
    if bands == 1:
        assert torch.allclose(conv1[:, 0], rgb.mean(dim=1))
    assert torch.equal(trunk.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_trunk_returns_c2_to_c5_at_strides_4_to_32():
    for name in list_backbones():
        trunk = ResNetTrunk(name, 3).eval()
        with torch.no_grad():
            feats = trunk(torch.rand(1, 3, 64, 64))
        assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
        assert tuple(f.shape[1] for f in feats) == trunk.out_channels
