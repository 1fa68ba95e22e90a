"""Batch runs: input expansion, sharding, skipping, failures, the JSON report."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from glnet_cli.errors import InputError, OutputError, OutputExistsError, OutputWriteError
from glnet_cli.inference.batch import (
    SceneJob,
    SceneReport,
    batch_exit_code,
    check_batch_outputs,
    expand_inputs,
    resolve_outputs,
    segment_many,
    shard,
    write_report,
)
from tests.helpers import corrupt_raster, rule_scene, run_glnet, write_raster


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

    def jobs(mask_for):
        return [SceneJob(scene, mask_for(scene)) for scene in scenes]

    def masks(scene):
        return str(out / (os.path.basename(scene)[0] + "_mask.tif"))

    check_batch_outputs(jobs(masks), [str(tmp_path / "report.json")])
    os.link(archive / "a.tif", tmp_path / "a_link.tif")
    with pytest.raises(InputError, match=r"b\.tif: is the same file as the input .*b\.tif"):
        check_batch_outputs(jobs(lambda s: str(archive / "b.tif") if s.endswith("a.tif")
                                 else None))
    with pytest.raises(InputError, match=r"a_link\.tif: is the same file as the input"):
        check_batch_outputs(jobs(masks), [str(tmp_path / "a_link.tif")])
    with pytest.raises(InputError, match=r"b\.tif and .*a\.tif would both be written to "
                                         r".*same\.tif; rename one or run them separately"):
        check_batch_outputs(jobs(lambda s: str(out / "same.tif")))
    with pytest.raises(InputError, match=r"report\.json: is named as two outputs"):
        check_batch_outputs(jobs(lambda s: str(tmp_path / "report.json") if s.endswith("a.tif")
                                 else None), [str(tmp_path / "report.json")])
    with pytest.raises(InputError, match=r"a_probs\.tif: is named as two outputs"):
        check_batch_outputs([SceneJob(scenes[0], str(out / "a_probs.tif"),
                                      str(out / "a_probs.tif"))])


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
    result = run_glnet("segment", archive, "-o", out, "-m", model, "--report", report, "-q")
    assert result.exit_code == 2, result.output
    assert "b.tif: reading rows" in result.stderr
    assert sorted(os.listdir(out)) == ["a_mask.tif", "c_mask.tif"]
    entries = json.loads(report.read_text())
    assert [(os.path.basename(e["input"]), e["status"]) for e in entries] == \
        [("a.tif", "ok"), ("b.tif", "failed"), ("c.tif", "ok")]
    assert set(entries[0]) == {"input", "output", "status", "error", "seconds", "mpx_per_s",
                               "exit_code", "reason"}
    assert entries[0]["mpx_per_s"] > 0 and entries[1]["error"]
    assert "2 ok, 0 skipped, 1 failed" in result.stdout

    stopped = run_glnet("segment", archive, "-o", tmp_path / "ff", "-m", model, "--fail-fast",
                        "-q")
    assert stopped.exit_code == 2
    assert sorted(os.listdir(tmp_path / "ff")) == ["a_mask.tif"]


def test_skip_existing_resumes_and_does_nothing_the_second_time(archive, model, tmp_path):
    out, report = tmp_path / "masks", tmp_path / "report.json"
    args = ["segment", archive / "*.tif", "-o", out, "-m", model, "-q", "--skip-existing",
            "--report", report]
    assert run_glnet(*args).exit_code == 0
    stamps = {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)}
    assert len(stamps) == 3
    refused = run_glnet(*args)
    assert refused.exit_code == 2
    assert refused.stderr == f"glnet: error: {report}: already exists (use --overwrite to " \
                             "replace it)\n"
    again = run_glnet(*args, "--overwrite")  # masks are skipped all the same
    assert again.exit_code == 0
    assert {e["status"] for e in json.loads(report.read_text())} == {"skipped"}
    assert {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)} == stamps
    refused = run_glnet(*args[:-3])
    assert refused.exit_code == 2 and "already exists" in refused.stderr
    assert {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)} == stamps


@pytest.mark.slow
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


# -- resolve_outputs -----------------------------------------------------------

def test_one_scene_names_its_mask_and_a_folder_makes_a_batch(archive, tmp_path):
    one = resolve_outputs([str(archive / "a.tif")], str(tmp_path / "mask.tif"),
                          str(tmp_path / "probs.tif"))
    assert not one.batch
    assert one.jobs == [SceneJob(str(archive / "a.tif"), str(tmp_path / "mask.tif"),
                                 str(tmp_path / "probs.tif"))]
    for inputs, output in [([str(archive)], "masks"), ([str(archive / "*.tif")], "masks"),
                           ([str(archive / "a.tif")], "masks/"),
                           ([str(archive / "a.tif"), str(archive / "b.tif")], "masks")]:
        assert resolve_outputs(inputs, f"{tmp_path}/{output}", prepare=False).batch, inputs


def test_a_batch_names_each_scenes_outputs_and_makes_their_folders(archive, tmp_path):
    masks, probs = tmp_path / "masks", tmp_path / "probs"
    resolved = resolve_outputs([str(archive)], str(masks), str(probs),
                               str(tmp_path / "run.json"))
    assert resolved.batch and masks.is_dir() and probs.is_dir()
    assert [(os.path.basename(j.scene), j.mask, j.probabilities) for j in resolved.jobs] == [
        (f"{n}.tif", str(masks / f"{n}_mask.tif"), str(probs / f"{n}_probs.tif"))
        for n in "abc"]


def test_a_dry_run_prepares_and_checks_nothing(archive, tmp_path):
    (tmp_path / "run.json").write_text("[]")
    resolved = resolve_outputs([str(archive)], str(tmp_path / "masks"), None,
                               str(tmp_path / "run.json"), prepare=False)
    assert len(resolved.jobs) == 3 and not (tmp_path / "masks").exists()
    with pytest.raises(OutputExistsError, match=r"run\.json: already exists"):
        resolve_outputs([str(archive)], str(tmp_path / "masks"), None, str(tmp_path / "run.json"))


def test_unusable_output_folders_and_outputs_that_are_inputs_are_refused(archive, tmp_path):
    with pytest.raises(OutputError, match=r"masks: its parent folder .*nope does not exist"):
        resolve_outputs([str(archive)], str(tmp_path / "nope" / "masks"))
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"masks: its parent folder .*file is not a folder"):
        resolve_outputs([str(archive)], str(tmp_path / "file" / "masks"))
    with pytest.raises(InputError, match=r"a\.tif: is the same file as the input"):
        resolve_outputs([str(archive / "a.tif")], str(archive / "a.tif"))
    with pytest.raises(InputError, match="matches no file"):
        resolve_outputs([str(archive / "*.jp2")], str(tmp_path / "masks"))


# -- segment_many (a stand-in segmenter: no network) ---------------------------

class FakeSegmenter:
    """Writes a mask named after the scene; scenes named ``bad*`` or ``full*`` fail."""

    def __init__(self):
        self.calls = []

    def run(self, scene, output, **options):
        self.calls.append((os.path.basename(scene), options))
        name = os.path.basename(scene)
        if name.startswith("bad"):
            raise InputError(f"{scene}: cannot be read\n  (corrupt)")
        if name.startswith("full"):
            raise OutputWriteError(f"{output}: no space left on device")
        with open(output, "w") as f:
            f.write(name)
        return SimpleNamespace(seconds=1.5, mpx_per_s=2.0, output=output)


def jobs_for(folder, names):
    return [SceneJob(str(folder / n), str(folder / (n + ".mask"))) for n in names]


def test_segment_many_reports_each_scene_and_goes_on_after_a_failure(tmp_path):
    segmenter, results, failures = FakeSegmenter(), [], []
    reports = segment_many(segmenter, jobs_for(tmp_path, ["a", "bad", "c"]),
                           on_result=results.append, on_failure=failures.append,
                           report=str(tmp_path / "run.json"), cog=True)
    assert [(os.path.basename(r.input), r.status, r.exit_code) for r in reports] == \
        [("a", "ok", 0), ("bad", "failed", 2), ("c", "ok", 0)]
    assert reports[0].seconds == 1.5 and reports[0].mpx_per_s == 2.0
    assert reports[1].error == f"{tmp_path / 'bad'}: cannot be read (corrupt)"
    assert [r.output for r in results] == [str(tmp_path / "a.mask"), str(tmp_path / "c.mask")]
    assert failures == [reports[1]]
    assert segmenter.calls[0][1] == {"probabilities": None, "overwrite": False,
                                     "progress": None, "cog": True}
    assert [e["status"] for e in json.loads((tmp_path / "run.json").read_text())] == \
        ["ok", "failed", "ok"]
    assert batch_exit_code(reports) == 2


def test_fail_fast_stops_and_skip_existing_skips(tmp_path):
    with pytest.raises(InputError):
        segment_many(FakeSegmenter(), jobs_for(tmp_path, ["a", "bad", "c"]), fail_fast=True)
    assert not (tmp_path / "c.mask").exists()
    segmenter = FakeSegmenter()
    reports = segment_many(segmenter, jobs_for(tmp_path, ["a", "c"]), skip_existing=True)
    assert [r.status for r in reports] == ["skipped", "ok"]
    assert [name for name, _ in segmenter.calls] == ["c"]
    assert batch_exit_code(reports) == 0


def test_a_full_disk_outranks_bad_input_in_the_exit_code(tmp_path):
    reports = segment_many(FakeSegmenter(), jobs_for(tmp_path, ["bad", "full"]))
    assert [r.exit_code for r in reports] == [2, 1]
    assert batch_exit_code(reports) == 1


def test_each_rank_runs_its_share_and_only_rank_0_writes_the_report(tmp_path):
    class Rank:
        def __init__(self, rank):
            self.rank, self.world_size, self.gathered = rank, 2, None

        def gather(self, items):
            self.gathered = list(items)
            return everyone

    everyone = [SceneReport("every rank's", "scene", "ok")]
    jobs, segmenter, report = jobs_for(tmp_path, ["a", "b", "c"]), FakeSegmenter(), tmp_path / "r"
    second = Rank(1)
    assert segment_many(segmenter, jobs, team=second, report=str(report)) == everyone
    assert [os.path.basename(r.input) for r in second.gathered] == ["b"]
    assert not report.exists()
    first = Rank(0)
    segment_many(segmenter, jobs, team=first, report=str(report))
    assert [os.path.basename(r.input) for r in first.gathered] == ["a", "c"]
    assert [e["input"] for e in json.loads(report.read_text())] == ["every rank's"]


def test_each_scene_runs_inside_its_own_progress_context(tmp_path):
    seen = []

    @contextlib.contextmanager
    def progress(scene):
        seen.append(("enter", os.path.basename(scene)))
        yield f"callback for {os.path.basename(scene)}"
        seen.append(("exit", os.path.basename(scene)))

    segmenter = FakeSegmenter()
    segment_many(segmenter, jobs_for(tmp_path, ["a", "b"]), progress=progress,
                 on_result=lambda result: seen.append(("done", os.path.basename(result.output))))
    assert seen == [("enter", "a"), ("exit", "a"), ("done", "a.mask"),
                    ("enter", "b"), ("exit", "b"), ("done", "b.mask")]
    assert [options["progress"] for _, options in segmenter.calls] == \
        ["callback for a", "callback for b"]
