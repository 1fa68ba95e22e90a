"""``--dry-run``'s estimates against what a run then does: empty crops, peak memory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from glnet_cli.inference.engine import Segmenter, SegmentOptions
from glnet_cli.io.model.checkpoint import load_model
from tests.helpers import rule_scene, run_glnet_process, write_raster

#: How far the estimated peak may be from the measured one, as a fraction of the measured.
#: On the paper's network the estimate came within 1% of a measured run (4896 px: 1,254 MB
#: estimated, 1,258 measured); on this tiny model it overshoots by up to ~7% (GDAL's block
#: cache and the threads' slack are counted in full, a 300 px scene fills neither) and comes
#: within 1% at stage 2. 20% leaves room for other machines' thread counts and allocators,
#: and still fails an estimate that lost its largest part: torch, GDAL and Python are ~70%
#: of this run's peak.
TOLERANCE = 0.20


@pytest.fixture(scope="module")
def model(tiny_model) -> Path:
    return tiny_model()


def _glnet(*args: object) -> str:
    """``glnet`` in a fresh process, so that its peak memory is its own; its stdout."""
    done = run_glnet_process(*args, env={"COLUMNS": "200", "PYTHONIOENCODING": "utf-8"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def _megabytes(pattern: str, text: str) -> list[float]:
    found = [float(mb) for mb in re.findall(pattern + r"\D*?(\d+) MB", text)]
    assert found, f"no {pattern!r} in:\n{text}"
    return found


@pytest.mark.slow
def test_estimated_peak_memory_is_the_measured_peak(model, tmp_path):
    """The dry run's total, and its parts alone.

    The total never falls below the peak that loading the model reached (the
    ``reached`` floor), which on a tiny model is most of a run's peak: the total
    alone would survive an estimate that lost its torch+GDAL baseline. The sum
    of the parts, without that floor, would not.
    """
    scene = write_raster(tmp_path / "scene.tif", rule_scene(300, 300), tiled=True)
    common = (scene, "-o", tmp_path / "mask.tif", "-m", model, "--device", "cpu")
    plan = _glnet("segment", *common, "--dry-run")
    run = _glnet("segment", *common, "-q")
    estimated, = _megabytes("estimated peak memory", plan)
    parts = sum(_megabytes(r"memory: (?!loading)[^\n]*?", plan))
    measured, = _megabytes("peak memory", run)
    assert abs(estimated - measured) <= TOLERANCE * measured, (estimated, measured, plan)
    assert abs(parts - measured) <= TOLERANCE * measured, (parts, measured, plan)


def test_estimated_empty_crops_are_the_crops_a_run_skips(model, tmp_path):
    """Exact for a scene under 1024 px a side: its mask is read at full resolution."""
    image = rule_scene(200, 260, seed=4)
    image[image == 0] = 1
    image[:, 40:130, :150] = 0  # a nodata hole that swallows a few whole crops
    scene = str(write_raster(tmp_path / "holes.tif", image, nodata=0))
    segmenter = Segmenter(load_model(model), torch.device("cpu"), SegmentOptions(stage=2))
    summary = segmenter.dry_run(scene)
    result = segmenter.run(scene, str(tmp_path / "mask.tif"))
    assert summary.crops_empty == result.crops_skipped > 0
    assert summary.crops_to_run == result.crops_run
    assert result.crops_run + result.crops_skipped == len(summary.plan.crops)
