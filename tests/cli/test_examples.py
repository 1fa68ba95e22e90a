"""The example scripts run as a user would run them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import fiona
import pytest
import torch

from tests.helpers import rule_scene, write_raster
from tests.models.reference_layout import reference_state_dict

#: The examples run whole pipelines (training included): the full lane only.
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an example with this interpreter's ``glnet`` first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(EXAMPLES / name), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_batch_archive_makes_masks_and_shapefiles_and_resumes(tiny_model, tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for i in range(2):
        write_raster(scenes / f"tile_{i}.tif", rule_scene(600, 560, seed=i))
    model = tiny_model(size_p=64, context=512, l2g=False)
    out = tmp_path / "out"
    first = run_example("batch_archive.sh", scenes, out, model)
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(os.listdir(out / "masks")) == ["tile_0_mask.tif", "tile_1_mask.tif"]
    shapefiles = sorted(p.name for p in (out / "vectors").glob("*.shp"))
    assert shapefiles == ["tile_0.shp", "tile_1.shp"]
    with fiona.open(out / "vectors" / "tile_0.shp") as layer:
        assert layer.crs.to_epsg() == 32616 and len(layer) > 0
    second = run_example("batch_archive.sh", scenes, out, model)
    assert second.returncode == 0, second.stderr[-3000:]
    report = json.loads((out / "segment_report.json").read_text())
    assert [r["status"] for r in report] == ["skipped", "skipped"]


def test_reference_checkpoints_example_runs_released_layout(tmp_path):
    """Reference-layout files (random weights, real ResNet-50 shapes) convert and segment."""
    s1 = reference_state_dict(seed=1)
    s2 = {**reference_state_dict(seed=2), **{k: v for k, v in s1.items() if "_global." in k}}
    s3 = {**reference_state_dict(seed=3), **{k: v for k, v in s2.items() if "_local." in k}}
    names = ["fpn_deepglobe_global.pth", "fpn_deepglobe_global2local.pth",
             "fpn_deepglobe_local2global.pth"]
    for name, state in zip(names, (s1, s2, s3)):
        torch.save(state, tmp_path / name)
    del s1, s2, s3
    scene = write_raster(tmp_path / "scene.tif", rule_scene(560, 600))
    done = run_example("reference_checkpoints.sh", tmp_path, scene, tmp_path / "out.tif")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fits" in done.stdout
    assert (tmp_path / "out.tif").exists() and (tmp_path / "out.gpkg").exists()


def test_quickstart_learns_the_sample_scene(tmp_path):
    """The one-command quickstart: data, training, segmentation, polygons, scores.

    On the 2-core development machine it takes about 80 s and prints
    mIoU 0.910 against an all-majority-class baseline of 0.149.
    """
    done = run_example("quickstart.sh", tmp_path / "qs", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("quickstart mIoU:"))
    miou, baseline = map(float, re.findall(r"(?:mIoU|baseline): ([0-9.]+)", line))
    assert miou > baseline + 0.3, line
    for name in ("model.pt", "model.best.pt", "mask.tif", "landcover.gpkg", "scores.json"):
        assert (tmp_path / "qs" / name).exists()
