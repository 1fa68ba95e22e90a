"""Batch runs: input expansion, sharding, skipping, failures, the JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from glnet_cli.cli import main
from glnet_cli.errors import InputError, OutputExistsError
from glnet_cli.inference.batch import (SceneReport, check_batch_outputs, expand_inputs, shard,
                                       write_report)
from tests.helpers import corrupt_raster, make_tiny_model, rule_scene, write_raster


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "m.pt", size_p=32, context=128,
                           l2g=False)


@pytest.fixture
def archive(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i, name in enumerate(["a.tif", "b.tif", "c.tif"]):
        write_raster(folder / name, rule_scene(70, 90, seed=i))
    return folder


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5])
def test_sharding_assigns_every_scene_exactly_once(world_size):
    scenes = [f"scene_{i:03d}.tif" for i in range(23)]
    shares = [shard(scenes, rank, world_size) for rank in range(world_size)]
    assigned = [s for share in shares for s in share]
    assert sorted(assigned) == scenes
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_expand_inputs(archive, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("scenes/b.tif\n# a comment\n\nscenes/a.tif\n")
    assert [os.path.basename(p) for p in expand_inputs([str(archive)])] == \
        ["a.tif", "b.tif", "c.tif"]
    assert [os.path.basename(p) for p in expand_inputs([f"@{listing}"])] == ["b.tif", "a.tif"]
    globbed = expand_inputs([str(archive / "[ab].tif"), str(archive / "a.tif")])
    assert [os.path.basename(p) for p in globbed] == ["a.tif", "b.tif"]
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(archive / "*.jp2")])
    with pytest.raises(InputError, match="list file not found"):
        expand_inputs(["@missing.txt"])


def test_batch_outputs_are_checked_by_file_identity(archive, tmp_path):
    scenes = expand_inputs([str(archive)])
    out = tmp_path / "out"

    def masks(scene):
        return [str(out / (os.path.basename(scene)[0] + "_mask.tif"))]

    check_batch_outputs(scenes, masks, [str(tmp_path / "report.json")])
    os.link(archive / "a.tif", tmp_path / "a_link.tif")
    with pytest.raises(InputError, match=r"b\.tif: is the same file as the input .*b\.tif"):
        check_batch_outputs(scenes, lambda s: [str(archive / "b.tif")]
                            if s.endswith("a.tif") else [None])
    with pytest.raises(InputError, match=r"a_link\.tif: is the same file as the input"):
        check_batch_outputs(scenes, masks, [str(tmp_path / "a_link.tif")])
    with pytest.raises(InputError, match=r"b\.tif and .*a\.tif would both be written to "
                                         r".*same\.tif; rename one or run them separately"):
        check_batch_outputs(scenes, lambda s: [str(out / "same.tif")])
    with pytest.raises(InputError, match=r"report\.json: is named as two outputs"):
        check_batch_outputs(scenes, lambda s: [str(tmp_path / "report.json")]
                            if s.endswith("a.tif") else [None], [str(tmp_path / "report.json")])


def test_the_report_is_written_whole_and_never_replaced_unasked(tmp_path):
    report = tmp_path / "report.json"
    write_report(str(report), [SceneReport("a.tif", "a_mask.tif", "ok")], overwrite=False)
    assert json.loads(report.read_text())[0]["status"] == "ok"
    with pytest.raises(OutputExistsError, match="already exists"):
        write_report(str(report), [], overwrite=False)
    write_report(str(report), [], overwrite=True)
    assert json.loads(report.read_text()) == []
    assert os.listdir(tmp_path) == ["report.json"]


def test_batch_reports_every_scene_and_survives_a_corrupt_one(archive, model, tmp_path):
    corrupt_raster(archive / "b.tif")
    out, report = tmp_path / "masks", tmp_path / "report.json"
    result = CliRunner().invoke(main, ["segment", str(archive), "-o", str(out), "-m", str(model),
                                       "--report", str(report), "-q"])
    assert result.exit_code == 2, result.output
    assert "b.tif: reading rows" in result.stderr
    assert sorted(os.listdir(out)) == ["a_mask.tif", "c_mask.tif"]
    entries = json.loads(report.read_text())
    assert [(os.path.basename(e["input"]), e["status"]) for e in entries] == \
        [("a.tif", "ok"), ("b.tif", "failed"), ("c.tif", "ok")]
    assert set(entries[0]) == {"input", "output", "status", "error", "seconds", "mpx_per_s",
                               "exit_code"}
    assert entries[0]["mpx_per_s"] > 0 and entries[1]["error"]
    assert "2 ok, 0 skipped, 1 failed" in result.stdout

    stopped = CliRunner().invoke(main, ["segment", str(archive), "-o", str(tmp_path / "ff"),
                                        "-m", str(model), "--fail-fast", "-q"])
    assert stopped.exit_code == 2
    assert sorted(os.listdir(tmp_path / "ff")) == ["a_mask.tif"]


def test_skip_existing_resumes_and_does_nothing_the_second_time(archive, model, tmp_path):
    out, report = tmp_path / "masks", tmp_path / "report.json"
    args = ["segment", str(archive / "*.tif"), "-o", str(out), "-m", str(model), "-q",
            "--skip-existing", "--report", str(report)]
    assert CliRunner().invoke(main, args).exit_code == 0
    stamps = {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)}
    assert len(stamps) == 3
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2
    assert refused.stderr == f"glnet: error: {report}: already exists (use --overwrite to " \
                             "replace it)\n"
    again = CliRunner().invoke(main, args + ["--overwrite"])  # masks are skipped all the same
    assert again.exit_code == 0
    assert {e["status"] for e in json.loads(report.read_text())} == {"skipped"}
    assert {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)} == stamps
    refused = CliRunner().invoke(main, args[:-3])
    assert refused.exit_code == 2 and "already exists" in refused.stderr
    assert {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)} == stamps


def test_torchrun_ranks_share_the_scenes(archive, model, tmp_path):
    out, report = tmp_path / "masks", tmp_path / "report.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--standalone", "-m", "glnet_cli", "segment", str(archive), "-o", str(out),
               "-m", str(model), "--device", "cpu", "--report", str(report), "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    entries = json.loads(report.read_text())
    assert sorted(os.path.basename(e["input"]) for e in entries) == ["a.tif", "b.tif", "c.tif"]
    assert all(e["status"] == "ok" for e in entries)
    assert sorted(os.listdir(out)) == ["a_mask.tif", "b_mask.tif", "c_mask.tif"]
