import os

import pytest
import torch

from models.backbone import (
    PretrainedWeightsUnavailable,
    ResNetTrunk,
    build_backbone,
    imagenet_weights_path,
    list_backbones,
)


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


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_trunk_computes_what_torchvision_resnet_computes(name):
    from torchvision import models
    reference = getattr(models, name)(weights=None).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    trunk = ResNetTrunk(name, 3).eval()
    assert trunk.state_dict().keys() == state.keys()
    trunk.load_state_dict(state)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ours = trunk(x)
        stem = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        expected = []
        for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
            stem = layer(stem)
            expected.append(stem)
    for a, b in zip(ours, expected):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_importing_the_network_does_not_import_torchvision():
    import subprocess
    import sys
    code = "import sys, models.glnet; print('torchvision' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
