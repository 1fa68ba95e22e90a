"""Claims: many batch runs over one archive do each scene once; a dead run's claim is taken."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import rasterio
import torch

from glnet_cli.errors import OutputExistsError
from glnet_cli.inference.batch import SceneJob, batch_exit_code, segment_many
from glnet_cli.inference.engine import Segmenter
from glnet_cli.io import claims
from glnet_cli.io.claims import (
    CLAIM_MARK,
    EXISTS,
    STALE_AFTER_S,
    TAKEN,
    Holder,
    claim_path,
    claim_unless_done,
    process_start,
    read_holder,
    try_claim,
)
from glnet_cli.io.model.checkpoint import load_model
from tests.helpers import glnet_command, rule_scene, write_raster


def write_claim(target: Path, holder: Holder | None, age: float = 0.0) -> Path:
    """A claim as another run would have left it, last refreshed ``age`` seconds ago."""
    path = Path(claim_path(str(target)))
    path.write_text(json.dumps(dataclasses.asdict(holder)) if holder else "")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def claim_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if CLAIM_MARK in p.name)


@pytest.fixture
def sleeper():
    """Another live process on this host (killed and reaped at the end)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


# -- the claim module --------------------------------------------------------------------

def test_a_claim_records_its_holder_and_is_released(tmp_path):
    target = tmp_path / "a_mask.tif"
    claim = try_claim(str(target))
    assert claim is not None
    assert claim_files(tmp_path) == [f".a_mask.tif{CLAIM_MARK}"]
    holder = read_holder(claim.path)
    assert (holder.host, holder.pid) == (Holder.me().host, os.getpid())
    assert holder.started == process_start(os.getpid()) is not None
    assert abs(holder.claimed_at - time.time()) < 60
    assert try_claim(str(target)) is None  # this process is alive: it still holds it
    claim.release()
    assert claim_files(tmp_path) == []


def test_a_live_process_keeps_its_claim_and_a_dead_ones_is_taken_over(tmp_path, sleeper):
    target = tmp_path / "a_mask.tif"
    other = dataclasses.replace(Holder.me(), pid=sleeper.pid, started=process_start(sleeper.pid))
    write_claim(target, other, age=10 * STALE_AFTER_S)  # old, but its process still runs
    assert try_claim(str(target)) is None
    sleeper.kill()
    sleeper.wait()
    claim = try_claim(str(target))
    assert claim is not None and read_holder(claim.path).pid == os.getpid()
    assert claim_files(tmp_path) == [f".a_mask.tif{CLAIM_MARK}"]  # no leftover of the old one
    claim.release()


def test_a_reused_pid_does_not_keep_a_claim(tmp_path):
    target = tmp_path / "a_mask.tif"
    write_claim(target, dataclasses.replace(Holder.me(), started="1"))  # this pid, another start
    claim = try_claim(str(target))
    assert claim is not None
    claim.release()


@pytest.mark.parametrize("holder", [
    dataclasses.replace(Holder.me(), host="node-17.elsewhere", pid=1),
    None,  # a claim whose record was never written (its run died at once)
], ids=["other host", "empty"])
def test_a_claim_that_cannot_be_checked_is_stale_only_when_not_refreshed(tmp_path, holder):
    target = tmp_path / "a_mask.tif"
    write_claim(target, holder, age=STALE_AFTER_S / 2)
    assert try_claim(str(target)) is None
    write_claim(target, holder, age=STALE_AFTER_S + 5)
    claim = try_claim(str(target))
    assert claim is not None
    claim.release()
    write_claim(target, holder, age=60)
    assert try_claim(str(target), stale_after=30) is not None  # the horizon is a parameter


def test_the_holder_refreshes_its_claim_while_it_works(tmp_path):
    claim = try_claim(str(tmp_path / "a_mask.tif"), heartbeat=0.05)
    os.utime(claim.path, (0, 0))
    threads = threading.active_count()
    with claim:
        assert threading.active_count() == threads + 1
        deadline = time.monotonic() + 10
        while os.stat(claim.path).st_mtime < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert time.time() - os.stat(claim.path).st_mtime < 60
    assert threading.active_count() == threads
    assert claim_files(tmp_path) == []


def test_a_claim_taken_over_meanwhile_is_left_to_its_new_holder(tmp_path):
    target = tmp_path / "a_mask.tif"
    with try_claim(str(target)) as claim:
        os.remove(claim.path)
        newcomer = write_claim(target, dataclasses.replace(Holder.me(), host="other"))
    assert newcomer.exists() and read_holder(str(newcomer)).host == "other"


def test_a_claim_renewed_while_judged_stale_is_put_back(tmp_path, monkeypatch):
    """Two runs judge one claim stale; the slower must not move the faster one's fresh claim."""
    target = tmp_path / "a_mask.tif"
    write_claim(target, None, age=2 * STALE_AFTER_S)
    fresh = dataclasses.replace(Holder.me(), host="faster-run")
    judge = claims.is_stale

    def faster_run_takes_it_first(path, holder, **kwargs):
        stale = judge(path, holder, **kwargs)
        os.remove(path)
        write_claim(target, fresh)
        return stale

    monkeypatch.setattr(claims, "is_stale", faster_run_takes_it_first)
    assert try_claim(str(target)) is None
    assert claim_files(tmp_path) == [f".a_mask.tif{CLAIM_MARK}"]
    assert read_holder(claim_path(str(target))) == fresh


def test_claim_unless_done(tmp_path):
    done, target = tmp_path / "done.tif", tmp_path / "a_mask.tif"
    done.write_text("")
    with claim_unless_done(str(done)) as busy:
        assert busy == EXISTS
    write_claim(target, dataclasses.replace(Holder.me(), host="other"))
    with claim_unless_done(str(target)) as busy:
        assert busy == TAKEN
    os.remove(claim_path(str(target)))
    with claim_unless_done(str(target)) as busy:
        assert busy is None and claim_files(tmp_path) == [f".a_mask.tif{CLAIM_MARK}"]
    assert claim_files(tmp_path) == []


# -- segment_many under claims -----------------------------------------------------------

class FakeSegmenter:
    """Writes a mask named after the scene; ``on_run`` runs first (another run's move)."""

    def __init__(self, on_run=lambda output: None):
        self.runs, self.on_run = [], on_run

    def run(self, scene, output, **options):
        self.runs.append(os.path.basename(scene))
        self.on_run(output)
        if os.path.exists(output):
            raise OutputExistsError(f"{output}: already exists (another run wrote it meanwhile; "
                                    "use --overwrite to replace it)")
        Path(output).write_text(scene)
        return SimpleNamespace(seconds=1.0, mpx_per_s=1.0, output=output)


def jobs_for(folder: Path, names: list[str]) -> list[SceneJob]:
    return [SceneJob(str(folder / n), str(folder / f"{n}_mask.tif")) for n in names]


def test_a_scene_another_run_holds_is_skipped(tmp_path):
    write_claim(tmp_path / "b_mask.tif", dataclasses.replace(Holder.me(), host="other"))
    segmenter = FakeSegmenter()
    reports = segment_many(segmenter, jobs_for(tmp_path, ["a", "b", "c"]), skip_existing=True)
    assert [(r.status, r.reason) for r in reports] == \
        [("ok", None), ("skipped", "another run has it"), ("ok", None)]
    assert segmenter.runs == ["a", "c"] and batch_exit_code(reports) == 0
    assert claim_files(tmp_path) == [f".b_mask.tif{CLAIM_MARK}"]  # the other run's, untouched


def test_claims_are_released_after_failures_too(tmp_path):
    def fails(output):
        raise OutputExistsError("not a publishing race: the mask is not there")

    reports = segment_many(FakeSegmenter(fails), jobs_for(tmp_path, ["a"]), skip_existing=True)
    assert reports[0].status == "failed" and batch_exit_code(reports) == 2
    assert claim_files(tmp_path) == []


def test_without_skip_existing_nothing_is_claimed(tmp_path):
    seen = []
    segment_many(FakeSegmenter(lambda output: seen.extend(claim_files(tmp_path))),
                 jobs_for(tmp_path, ["a"]))
    assert seen == []


def test_a_mask_published_by_another_run_is_skipped_not_failed(tmp_path):
    def other_run_publishes(output):
        Path(output).write_text("the other run's mask")

    jobs = jobs_for(tmp_path, ["a"])
    reports = segment_many(FakeSegmenter(other_run_publishes), jobs, skip_existing=True)
    assert [(r.status, r.reason, r.error) for r in reports] == \
        [("skipped", "another run published it", None)]
    assert batch_exit_code(reports) == 0
    os.remove(jobs[0].mask)
    reports = segment_many(FakeSegmenter(other_run_publishes), jobs)  # no --skip-existing
    assert reports[0].status == "failed" and "already exists" in reports[0].error
    assert batch_exit_code(reports) == 2


def test_a_real_publishing_race_is_skipped(model, tmp_path):
    scene = write_raster(tmp_path / "a.tif", rule_scene(70, 90))
    job = SceneJob(str(scene), str(tmp_path / "a_mask.tif"))

    def other_run_finishes(*args, **kwargs):
        if not os.path.exists(job.mask):
            Path(job.mask).write_bytes(b"the other run's mask")

    segmenter = Segmenter(load_model(model), torch.device("cpu"))
    reports = segment_many(segmenter, [job], skip_existing=True,
                           progress=lambda scene: contextlib.nullcontext(other_run_finishes))
    assert [(r.status, r.reason) for r in reports] == [("skipped", "another run published it")]
    assert Path(job.mask).read_bytes() == b"the other run's mask"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "a_mask.tif"]


# -- many processes over one archive -----------------------------------------------------

def _worker(model: Path, scenes: Path, out: Path, report: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(glnet_command("segment", scenes, "-o", out, "-m", model,
                                          "--skip-existing", "--report", report, "--device",
                                          "cpu", "-q", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture
def archive(tmp_path) -> Path:
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i in range(8):
        write_raster(folder / f"s{i:02d}.tif", rule_scene(160, 200, seed=i))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_on_one_archive_do_each_scene_once(model, archive, tmp_path, workers):
    out = tmp_path / "out"
    reports = [tmp_path / f"run{i}.json" for i in range(workers)]
    processes = [_worker(model, archive, out, report) for report in reports]
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, (stdout, stderr)
        assert "failed" not in stderr
    entries = [e for report in reports for e in json.loads(report.read_text())]
    ok = sorted(os.path.basename(e["input"]) for e in entries if e["status"] == "ok")
    assert ok == sorted(p.name for p in archive.iterdir())  # each scene computed exactly once
    skipped = [e for e in entries if e["status"] == "skipped"]
    assert len(skipped) == (workers - 1) * 8 and len(entries) == workers * 8
    assert sorted(p.name for p in out.iterdir()) == [f"s{i:02d}_mask.tif" for i in range(8)]
    for mask in out.iterdir():
        with rasterio.open(mask) as src:
            assert src.read(1).shape == (160, 200)


def _wait_for_claim(out: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_dir() and claim_files(out) and any(".glnet-partial-" in p.name
                                                     for p in out.iterdir()):
            time.sleep(0.3)  # well into the scene
            return
        time.sleep(0.05)
    pytest.fail(f"no claim appeared: {process.communicate()}")


@pytest.mark.slow
def test_the_claim_of_a_killed_run_is_taken_over(model, tmp_path):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    scenes.mkdir()
    write_raster(scenes / "big.tif", rule_scene(400, 400))
    killed = _worker(model, scenes, out, tmp_path / "killed.json", "--batch-size", "1")
    _wait_for_claim(out, killed)
    killed.kill()
    killed.communicate(timeout=60)
    assert claim_files(out) == [f".big_mask.tif{CLAIM_MARK}"]
    assert read_holder(str(out / f".big_mask.tif{CLAIM_MARK}")).pid == killed.pid
    report = tmp_path / "next.json"
    stdout, stderr = _worker(model, scenes, out, report).communicate(timeout=300)
    assert [e["status"] for e in json.loads(report.read_text())] == ["ok"], (stdout, stderr)
    assert sorted(p.name for p in out.iterdir()) == ["big_mask.tif"]  # claim and temp files gone
