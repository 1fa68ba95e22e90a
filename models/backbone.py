"""ResNet trunks that return C2..C5 for any number of input bands.

The layers, their order and their attribute names are those of torchvision's
ResNet (``conv1``, ``bn1``, ``layer1`` ...), so torchvision and reference
checkpoints load key for key. They are defined here rather than imported:
importing torchvision pulls in sympy and triton, 160 MB and a second of
start-up that inference never uses.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import NamedTuple, Optional, Union

import torch
from torch import nn

log = logging.getLogger(__name__)


class ImageNetWeights(NamedTuple):
    """Where torchvision publishes a trunk's ImageNet weights (the file it caches them in)."""

    url: str


def _conv(inplanes: int, planes: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel, stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += shortcut
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (with the stride, as torchvision's "v1.5"), 1x1 expand, and a shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += shortcut
        return self.relu(out)


Block = Union[type[BasicBlock], type[Bottleneck]]
_URL = "https://download.pytorch.org/models/"

_RESNETS: dict[str, tuple[tuple[Block, tuple[int, ...]], ImageNetWeights]] = {
    "resnet18": ((BasicBlock, (2, 2, 2, 2)), ImageNetWeights(_URL + "resnet18-f37072fd.pth")),
    "resnet34": ((BasicBlock, (3, 4, 6, 3)), ImageNetWeights(_URL + "resnet34-b627a593.pth")),
    "resnet50": ((Bottleneck, (3, 4, 6, 3)), ImageNetWeights(_URL + "resnet50-0676ba61.pth")),
    "resnet101": ((Bottleneck, (3, 4, 23, 3)),
                  ImageNetWeights(_URL + "resnet101-63fe2227.pth")),
}


#: Seconds a stalled download may wait for the server before it counts as offline.
DOWNLOAD_TIMEOUT = 30


class PretrainedWeightsUnavailable(FileNotFoundError):
    """ImageNet weights were asked for and can be neither read from the cache nor downloaded."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        #: The short cause (``not cached and the download failed: ...``), for a warning.
        self.reason = reason or message


def list_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone`."""
    return list(_RESNETS)


def imagenet_weights_path(name: str) -> str:
    """Where torchvision keeps the ImageNet weights of backbone ``name``."""
    _, weights = _resolve(name)
    filename = os.path.basename(weights.url)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def fetch_imagenet(name: str, progress: bool = True) -> str:
    """Make sure torchvision's cache holds the ImageNet weights of ``name``; return the path.

    Downloads them when missing, as torchvision does (same cache file, same
    hash check, a temp file renamed when complete); a stalled connection gives
    up after :data:`DOWNLOAD_TIMEOUT` seconds of silence.

    Raises:
        PretrainedWeightsUnavailable: Not cached, and the download failed.
    """
    path = imagenet_weights_path(name)
    if os.path.isfile(path):
        return path
    _, weights = _resolve(name)
    log.info("downloading %s to %s", weights.url, path)
    match = torch.hub.HASH_REGEX.search(os.path.basename(path))
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.hub.download_url_to_file(weights.url, path, match.group(1) if match else None,
                                       progress=progress)
    except (OSError, RuntimeError) as exc:  # offline, refused, timed out, bad hash, no space
        reason = f"not cached, and downloading {weights.url} failed: {_why(exc)}"
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for {name} could not be loaded: {reason} (on a machine without "
            f"internet, copy that file to {path}, or use --pretrained none)", reason) from None
    finally:
        socket.setdefaulttimeout(previous)
    return path


def _why(exc: Exception) -> str:
    """The cause of a failed download in a few words (urllib nests it in ``reason``)."""
    cause = getattr(exc, "reason", None) or exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause)


def _resolve(name: str) -> tuple[tuple[Block, tuple[int, ...]], ImageNetWeights]:
    try:
        return _RESNETS[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}"
        ) from None


class ResNetTrunk(nn.Module):
    """A ResNet without its pooling head, returning (C2, C3, C4, C5)."""

    #: Set in ``__init__`` under torchvision's names, so that its weights load key for key.
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, name: str = "resnet50", in_channels: int = 3) -> None:
        super().__init__()
        (block, depths), _ = _resolve(name)
        self.name = name
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(_conv(inplanes, planes * block.expansion, 1, stride),
                                           nn.BatchNorm2d(planes * block.expansion))
            blocks = [block(inplanes, planes, stride, downsample)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes) for _ in range(1, depth)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.out_channels = tuple(c * block.expansion for c in (64, 128, 256, 512))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]

    def load_imagenet(self) -> None:
        """Load torchvision's ImageNet weights from the local cache, never the network.

        For ``in_channels != 3`` the first conv is rebuilt: with more than three
        bands, the first three keep the RGB filters and every extra band starts
        from their mean; with fewer (panchromatic, say) every band is that mean.
        """
        path = imagenet_weights_path(self.name)
        if not os.path.isfile(path):
            _, weights = _resolve(self.name)
            raise PretrainedWeightsUnavailable(
                f"ImageNet weights for {self.name} are not cached: expected {path} "
                f"(download {weights.url} there on a machine with internet access, "
                "or use --pretrained none)", f"not cached at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch.load raises assorted types on a damaged file
            raise PretrainedWeightsUnavailable(
                f"ImageNet weights for {self.name}: cannot read {path} ({type(exc).__name__}); "
                "delete it to download it again", f"{path} is damaged") from None
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        rgb = state["conv1.weight"]
        if self.in_channels != 3:
            conv1 = rgb.mean(dim=1, keepdim=True).repeat(1, self.in_channels, 1, 1)
            if self.in_channels > 3:
                conv1[:, :3] = rgb
            state["conv1.weight"] = conv1
        self.load_state_dict(state)


def build_backbone(name: str = "resnet50", in_channels: int = 3,
                   pretrained: str | None = None) -> ResNetTrunk:
    """Build a trunk; ``pretrained="imagenet"`` loads cached ImageNet weights."""
    trunk = ResNetTrunk(name, in_channels)
    if pretrained == "imagenet":
        trunk.load_imagenet()
    elif pretrained not in (None, "none"):
        raise ValueError(f"unknown pretrained weights {pretrained!r}; use 'imagenet' or None")
    return trunk
