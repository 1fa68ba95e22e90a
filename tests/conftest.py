"""Fixtures shared by every test module: sample-data location, tiny rasters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# One intra-op thread: on this 2-core machine OpenMP's spinning threads make tiny
# convolutions many times slower whenever another process (or our own reader
# and writer threads) wants a core.
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; the test skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a busy 2-core machine, OpenMP's spinning threads slow CPU torch 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _offline_torch_home(tmp_path_factory, monkeypatch):
    """Point torchvision's cache at an empty folder: tests never see real downloads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.delenv("GLNET_MODEL", raising=False)


@pytest.fixture(scope="session")
def rule_model(tmp_path_factory) -> Path:
    """A tiny model trained (once per session, ~10 s) to label pixels by their brightest band."""
    from tests.helpers import make_rule_model

    return make_rule_model(tmp_path_factory.mktemp("rule_model") / "rule.pt")
