"""Fixtures shared by the test rooms: sample data, one torch thread, offline, tiny models.

Each room (io/, inference/, training/, ...) keeps its own fixtures in its own
conftest.py; functions (rasters, models, glnet runs) live in helpers.py.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Callable

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
    """A tiny model trained to label pixels by their brightest band.

    Made once per session (about 35 s on one thread): only slow tests ask for it.
    """
    from tests.helpers import make_rule_model

    return make_rule_model(tmp_path_factory.mktemp("rule_model") / "rule.pt")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Callable[..., Path]:
    """``tiny_model(**options)``: a random tiny model file (:func:`tests.helpers.make_tiny_model`).

    Made once per session for each set of options and shared: tests read it and
    never change it. ``tiny_model(path, **options)`` puts a copy of it at ``path``.
    """
    from tests.helpers import make_tiny_model

    defaults = {name: p.default for name, p in inspect.signature(make_tiny_model).parameters.items()
                if p.default is not inspect.Parameter.empty}
    made: dict[tuple, Path] = {}

    def get(path: Path | str | None = None, **options) -> Path:
        key = tuple(sorted({**defaults, **options}.items()))
        if key not in made:
            made[key] = make_tiny_model(tmp_path_factory.mktemp("tiny_model") / "tiny.pt",
                                        **options)
        if path is not None:
            shutil.copyfile(made[key], path)
            return Path(path)
        return made[key]

    return get


@pytest.fixture(scope="session")
def model(tiny_model) -> Path:
    """The stage-2 tiny model of most segment runs: 32 px crops in a 128 px context, quick."""
    return tiny_model(size_p=32, context=128, l2g=False)
