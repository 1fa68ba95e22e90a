"""Cluster job arrays: --shard K/N and the schedulers' array variables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glnet_cli.errors import InputError
from glnet_cli.inference.shards import Shard, array_shard, parse_shard
from tests.helpers import run_glnet, write_raster


def test_parse_shard_is_one_based():
    assert parse_shard("2/8") == Shard(1, 8)
    assert parse_shard(" 8 / 8 ").index == 7
    for bad in ("0/8", "9/8", "2-8", "x/8", "1/0"):
        with pytest.raises(InputError):
            parse_shard(bad)


def test_shards_are_disjoint_and_cover_the_batch():
    scenes = [f"s{i}" for i in range(11)]
    parts = [Shard(k, 4).select(scenes) for k in range(4)]
    assert sorted(s for part in parts for s in part) == sorted(scenes)
    assert sum(map(len, parts)) == len(scenes)


def test_report_is_named_after_the_shard():
    assert Shard(1, 8).name("out/run.json") == "out/run.shard-2-of-8.json"
    assert Shard(0, 1).label == "shard-1-of-1"


@pytest.mark.parametrize("environ, expected", [
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}, Shard(3, 8)),
    # --array=1-8: ids start at SLURM_ARRAY_TASK_MIN.
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "8"},
     Shard(0, 8)),
    # --array=0-12:4: ids 0, 4, 8, 12.
    ({"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "4",
      "SLURM_ARRAY_TASK_COUNT": "4"}, Shard(2, 4)),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "0", "AWS_BATCH_JOB_ARRAY_SIZE": "2"}, Shard(0, 2)),
    ({}, None),
])
def test_shard_from_the_array_variables(environ, expected):
    found = array_shard(None, None, environ)
    if expected is None:
        assert found is None
    else:
        assert (found.index, found.count) == (expected.index, expected.count)


def test_kubernetes_needs_the_shard_count():
    with pytest.raises(InputError, match="--shard-count"):
        array_shard(None, None, {"JOB_COMPLETION_INDEX": "2"})
    assert array_shard(None, 5, {"JOB_COMPLETION_INDEX": "2"}) == Shard(2, 5,
                                                                          "JOB_COMPLETION_INDEX")


def test_shard_options_that_cannot_hold():
    with pytest.raises(InputError, match="no array index"):
        array_shard(None, 4, {})
    with pytest.raises(InputError, match="disagree"):
        array_shard(parse_shard("1/4"), 5, {})
    with pytest.raises(InputError, match="does not exist"):
        array_shard(None, None, {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"})
    assert array_shard(parse_shard("2/4"), None, {"SLURM_ARRAY_TASK_ID": "0",
                                                  "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(1, 4)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("shard_archive")
    (folder / "scenes").mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        write_raster(folder / "scenes" / f"s{i}.tif", rng.integers(0, 255, (3, 40, 48), np.uint8))
    return folder, tiny_model()


@pytest.mark.slow
def test_an_array_splits_a_batch_and_a_rerun_is_safe(archive, tmp_path):
    folder, model = archive
    done = []
    for task in (1, 2):  # Slurm --array=1-2
        env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "1",
               "SLURM_ARRAY_TASK_COUNT": "2"}
        result = run_glnet("segment", folder / "scenes", "-o", tmp_path / "masks", "-m", model,
                           "-q", "--skip-existing", "--report", tmp_path / "run.json", env=env)
        assert result.exit_code == 0, result.output
        assert f"shard-{task}-of-2 (SLURM_ARRAY_TASK_ID)" in result.stderr
        report = json.loads((tmp_path / f"run.shard-{task}-of-2.json").read_text())
        done += [r["input"] for r in report if r["status"] == "ok"]
    assert len(done) == len(set(done)) == 5
    assert not (tmp_path / "run.json").exists()
    again = run_glnet("segment", folder / "scenes", "-o", tmp_path / "masks", "-m", model, "-q",
                      "--skip-existing", "--shard", "1/2")
    assert again.exit_code == 0, again.output
    assert "0 ok, 3 skipped, 0 failed" in again.stdout


def test_shard_refuses_a_single_scene(archive, tmp_path):
    folder, model = archive
    result = run_glnet("segment", folder / "scenes" / "s0.tif", "-o", tmp_path / "m.tif", "-m",
                       model, "--shard", "1/2")
    assert result.exit_code == 2
    assert "--shard splits a batch" in result.stderr
