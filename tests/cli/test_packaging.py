"""The package metadata: the license it claims ships, the build floor fits it, sane caps."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the metadata is the same on 3.10

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_the_mit_license_ships(project):
    assert project["project"]["license"] == "MIT"
    assert project["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the glnet authors\n")


def test_build_floor_knows_license_expressions(project):
    """``license = "MIT"`` (PEP 639) needs setuptools 77 or newer."""
    [setuptools] = [Requirement(r) for r in project["build-system"]["requires"]
                    if Requirement(r).name == "setuptools"]
    assert not setuptools.specifier.contains("76.1") and setuptools.specifier.contains("77.0")


@pytest.mark.parametrize("name, next_series", [("torch", "2.15.0"), ("torchvision", "0.30.0")])
def test_torch_is_capped_at_a_series_not_a_patch(project, name, next_series):
    [spec] = [Requirement(r).specifier for r in project["project"]["dependencies"]
              if Requirement(r).name == name]
    installed = Version(importlib.metadata.version(name)).base_version
    series = Version(installed).release[:2]
    assert spec.contains(installed)
    assert spec.contains(f"{series[0]}.{series[1]}.99")  # a later patch of the same series
    assert not spec.contains(next_series)
