"""Fixtures of the training tests: a folder of tiny tiles, tiny run options, one process."""

from __future__ import annotations

import errno
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from glnet_cli.training.config import TrainConfig
from glnet_cli.training.distributed import DistContext
from tests.helpers import make_tiles

#: A ResNet-18 GLNet of FPN width 16 on 64-96 px tiles, random weights, on the CPU.
TINY = dict(backbone="resnet18", width=16, batch_size=2, sub_batch_size=5, pretrained="none",
            num_workers=0, device="cpu", val_split=0.34)


@pytest.fixture(autouse=True)
def _one_thread_offline(one_torch_thread, monkeypatch):
    """One torch thread, and downloads fail at once: no test waits on the network."""
    def fail(url, dst, *args, **kwargs):
        raise URLError(OSError(errno.ENETUNREACH, "Network is unreachable"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


@pytest.fixture(scope="package")
def tiles(tmp_path_factory) -> Path:
    """Six tiles of 64-96 px with classes 0, 1 and 2."""
    return make_tiles(tmp_path_factory.mktemp("training") / "tiles", 6)


@pytest.fixture(scope="package")
def tiny(tiles):
    """``tiny(output, **options)``: the options of a tiny run on :func:`tiles`."""
    def config(output, **options) -> TrainConfig:
        return TrainConfig(output=str(output), **{"tiles": str(tiles), **TINY, **options})
    return config


@pytest.fixture(scope="package")
def cpu() -> DistContext:
    """A one-process run on the CPU."""
    return DistContext(torch.device("cpu"))
