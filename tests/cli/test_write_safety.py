"""segment never loses data or reports a false success.

Full disks are simulated without root with ``RLIMIT_FSIZE``: Python ignores
SIGXFSZ, so a write past the limit fails with EFBIG as on a full file system,
in this process or in a child.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
import rasterio.shutil
import torch

from glnet_cli.errors import OutputExistsError
from glnet_cli.inference.engine import Segmenter
from glnet_cli.io.model.checkpoint import load_model
from glnet_cli.io.paths import PARTIAL_MARK
from glnet_cli.io.raster.writer import MaskWriter
from tests.helpers import (
    FILE_TOO_LARGE,
    file_size_limit,
    glnet_command,
    rule_scene,
    run_glnet,
    run_glnet_process,
    write_raster,
)

#: A 70 x 90 mask takes about 3 kB, its four-band probabilities about 7 kB.
MASK_DOES_NOT_FIT, PROBABILITIES_DO_NOT_FIT = 2048, 4608


@pytest.fixture
def scene(tmp_path) -> Path:
    return write_raster(tmp_path / "scene.tif", rule_scene(70, 90))


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- 1. failed writes ------------------------------------------------------------

def test_full_disk_fails_and_keeps_the_old_mask(model, scene, tmp_path):
    mask = tmp_path / "mask.tif"
    assert run_glnet("segment", "-q", scene, "-o", mask, "-m", model).exit_code == 0
    good = mask.read_bytes()
    with file_size_limit(MASK_DOES_NOT_FIT):
        result = run_glnet("segment", "-q", scene, "-o", mask, "-m", model, "--overwrite")
    assert result.exit_code == 1
    assert result.stderr == (f"glnet: error: {mask}: writing failed: {FILE_TOO_LARGE}; "
                             "nothing was written\n")
    assert mask.read_bytes() == good
    assert names(tmp_path) == ["mask.tif", "scene.tif"]


@pytest.mark.slow
def test_full_disk_in_a_child_process(model, scene, tmp_path):
    mask = tmp_path / "mask.tif"
    done = run_glnet_process("segment", scene, "-o", mask, "-m", model, "-q",
                             env={"OMP_NUM_THREADS": "1"}, file_size_limit=MASK_DOES_NOT_FIT)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"glnet: error: {mask}: writing failed: {FILE_TOO_LARGE}; "
                           "nothing was written\n")
    assert names(tmp_path) == ["scene.tif"]


def test_probabilities_that_do_not_fit_publish_nothing(model, scene, tmp_path):
    mask, probs = tmp_path / "mask.tif", tmp_path / "probs.tif"
    with file_size_limit(PROBABILITIES_DO_NOT_FIT):
        result = run_glnet("segment", "-q", scene, "-o", mask, "--probabilities", probs, "-m",
                           model)
    assert result.exit_code == 1
    assert result.stderr == (f"glnet: error: {probs}: writing failed: {FILE_TOO_LARGE}; "
                             "nothing was written\n")
    assert names(tmp_path) == ["scene.tif"]


def test_a_write_error_gdal_only_logs_fails_the_run(model, scene, tmp_path, monkeypatch):
    """GDAL flushing its cache at close may report a lost block only as a message."""
    write = MaskWriter.write

    def write_and_lose(self, tile):
        logging.getLogger("rasterio._env").info("GDAL signalled an error: err_no=%r, msg=%r", 1,
                                                "TIFFAppendToStrip:Write error at scanline 0")
        write(self, tile)

    monkeypatch.setattr(MaskWriter, "write", write_and_lose)
    mask = tmp_path / "mask.tif"
    result = run_glnet("segment", "-q", scene, "-o", mask, "-m", model)
    assert result.exit_code == 1
    assert result.stderr == (f"glnet: error: {mask}: writing failed: TIFFAppendToStrip:Write "
                             "error at scanline 0; nothing was written\n")
    assert names(tmp_path) == ["scene.tif"]


def test_a_finished_file_is_read_back_before_publishing(model, scene, tmp_path, monkeypatch):
    copy = rasterio.shutil.copy

    def copy_cut_short(source, target, **options):
        copy(source, target, **options)
        os.truncate(target, os.path.getsize(target) // 2)

    monkeypatch.setattr(rasterio.shutil, "copy", copy_cut_short)
    mask = tmp_path / "mask.tif"
    result = run_glnet("segment", "-q", scene, "-o", mask, "-m", model, "--cog")
    assert result.exit_code == 1
    assert re.fullmatch(f"glnet: error: {re.escape(str(mask))}: writing failed: the finished "
                        r"file is cut short: block 0,0 of band 1 ends at byte \d+, the file has "
                        r"\d+; nothing was written\n", result.stderr)
    assert names(tmp_path) == ["scene.tif"]


def test_a_batch_scene_on_a_full_disk_fails_and_is_not_skipped_later(model, tmp_path):
    archive = tmp_path / "scenes"
    archive.mkdir()
    write_raster(archive / "a.tif", rule_scene(70, 90))
    out, report = tmp_path / "masks", tmp_path / "report.json"
    args = [archive, "-o", out, "-m", model, "--skip-existing", "--report", report]
    with file_size_limit(MASK_DOES_NOT_FIT):
        failed = run_glnet("segment", "-q", *args)
    assert failed.exit_code == 1
    mask = out / "a_mask.tif"
    assert f"glnet: error: {mask}: writing failed: {FILE_TOO_LARGE}; nothing was written\n" in \
        failed.stderr
    [entry] = json.loads(report.read_text())
    assert (entry["status"], entry["error"], entry["exit_code"]) == (
        "failed", f"{mask}: writing failed: {FILE_TOO_LARGE}; nothing was written", 1)
    assert names(out) == []
    resumed = run_glnet("segment", "-q", *args, "--overwrite")  # the failed run's report
    assert resumed.exit_code == 0, resumed.output
    assert [e["status"] for e in json.loads(report.read_text())] == ["ok"]
    assert names(out) == ["a_mask.tif"]


# -- 2. outputs that are inputs --------------------------------------------------------

def assert_refused_as_input(result, output: Path, source: Path) -> None:
    assert result.exit_code == 2
    assert result.stderr == (f"glnet: error: {output}: is the same file as the input {source}; "
                             "choose another output\n")


def test_a_mask_is_never_written_over_its_scene(model, scene, tmp_path):
    original = scene.read_bytes()
    os.symlink(scene, tmp_path / "symlink.tif")
    os.link(scene, tmp_path / "hardlink.tif")
    for target in (scene, tmp_path / "symlink.tif", tmp_path / "hardlink.tif"):
        result = run_glnet("segment", "-q", scene, "-o", target, "-m", model, "--overwrite")
        assert_refused_as_input(result, target, scene)
    result = run_glnet("segment", "-q", scene, "-o", tmp_path / "m.tif", "--probabilities", scene,
                       "-m", model, "--overwrite")
    assert_refused_as_input(result, scene, scene)
    assert scene.read_bytes() == original
    assert names(tmp_path) == ["hardlink.tif", "scene.tif", "symlink.tif"]


def test_mask_and_probabilities_must_differ(model, scene, tmp_path):
    both = tmp_path / "both.tif"
    result = run_glnet("segment", "-q", scene, "-o", both, "--probabilities", both, "-m", model)
    assert result.exit_code == 2
    assert result.stderr == (f"glnet: error: {both}: is named as two outputs ({both}); give each "
                             "output its own file\n")
    assert names(tmp_path) == ["scene.tif"]


def test_batch_outputs_that_are_inputs_are_refused_before_any_scene(model, tmp_path):
    archive = tmp_path / "scenes"
    archive.mkdir()
    for name in ("a.tif", "a_mask.tif", "b.tif", "b_probs.tif"):
        write_raster(archive / name, rule_scene(70, 90))
    # A second run over a folder that holds the first run's masks.
    result = run_glnet("segment", "-q", archive, "-o", archive, "-m", model, "--overwrite")
    assert_refused_as_input(result, archive / "a_mask.tif", archive / "a_mask.tif")
    result = run_glnet("segment", "-q", archive, "-o", tmp_path / "out", "--probabilities", archive,
                       "-m", model, "--overwrite")
    assert_refused_as_input(result, archive / "b_probs.tif", archive / "b_probs.tif")
    result = run_glnet("segment", "-q", archive / "a.tif", archive / "b.tif", "-o",
                       tmp_path / "out", "-m", model, "--report", archive / "b.tif", "--overwrite")
    assert_refused_as_input(result, archive / "b.tif", archive / "b.tif")
    assert names(archive) == ["a.tif", "a_mask.tif", "b.tif", "b_probs.tif"]
    assert names(tmp_path / "out") == []


def test_masks_and_probabilities_may_share_a_folder(model, tmp_path):
    archive = tmp_path / "scenes"
    archive.mkdir()
    write_raster(archive / "a.tif", rule_scene(70, 90))
    out = tmp_path / "out"
    result = run_glnet("segment", "-q", archive, "-o", out, "--probabilities", out, "-m", model)
    assert result.exit_code == 0, result.output
    assert names(out) == ["a_mask.tif", "a_probs.tif"]


# -- 3. two writers, one target -------------------------------------------------------

def test_a_target_that_appears_meanwhile_is_never_replaced(model, scene, tmp_path):
    mask = tmp_path / "mask.tif"

    def other_run_finishes(*args, **kwargs) -> None:
        if not mask.exists():
            mask.write_bytes(b"the other run's mask")

    segmenter = Segmenter(load_model(model), torch.device("cpu"))
    with pytest.raises(OutputExistsError, match=r"mask\.tif: already exists \(another run wrote "
                                                r"it meanwhile; use --overwrite to replace it\)"):
        segmenter.run(str(scene), str(mask), progress=other_run_finishes)
    assert mask.read_bytes() == b"the other run's mask"
    assert names(tmp_path) == ["mask.tif", "scene.tif"]


# -- 4. SIGTERM and kill -9 -------------------------------------------------------------

def _start(model: Path, scene: Path, mask: Path) -> subprocess.Popen:
    return subprocess.Popen(glnet_command("segment", scene, "-o", mask, "-m", model,
                                          "--batch-size", "1", "-q"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_temp_files(folder: Path, process: subprocess.Popen) -> list[str]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        partial = [n for n in names(folder) if PARTIAL_MARK in n]
        if any(n.endswith(".tif") for n in partial):
            time.sleep(0.5)  # well into the run
            return partial
        time.sleep(0.05)
    pytest.fail(f"no temp file appeared: {process.communicate()}")


@pytest.fixture
def big_scene(tmp_path) -> Path:
    return write_raster(tmp_path / "scene.tif", rule_scene(400, 400))


@pytest.mark.slow
def test_sigterm_cleans_up_like_ctrl_c(model, big_scene, tmp_path):
    mask = tmp_path / "mask.tif"
    process = _start(model, big_scene, mask)
    _wait_for_temp_files(tmp_path, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    assert (stdout, stderr) == ("", "glnet: interrupted (SIGTERM)\n")
    assert names(tmp_path) == ["scene.tif"]


@pytest.mark.slow
def test_a_later_run_removes_what_kill_9_left(model, big_scene, tmp_path):
    mask = tmp_path / "mask.tif"
    process = _start(model, big_scene, mask)
    _wait_for_temp_files(tmp_path, process)
    process.kill()
    process.communicate(timeout=60)
    left = [n for n in names(tmp_path) if n != "scene.tif"]
    assert left and all(n.startswith(f".mask.tif{PARTIAL_MARK}") for n in left)
    assert any(n.endswith(".lock") for n in left)
    result = run_glnet("segment", "-q", big_scene, "-o", mask, "-m", model)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"glnet: warning: {mask}: removed {len(left) - 1} temp "
                                    f"file(s) left by an interrupted run (.mask.tif"
                                    f"{PARTIAL_MARK}")
    assert names(tmp_path) == ["mask.tif", "scene.tif"]


# -- 6. --report -----------------------------------------------------------------------

@pytest.fixture
def archive(tmp_path) -> Path:
    folder = tmp_path / "scenes"
    folder.mkdir()
    write_raster(folder / "a.tif", rule_scene(70, 90))
    return folder


def test_an_existing_report_is_refused_before_the_first_scene(model, archive, tmp_path):
    report = tmp_path / "report.json"
    report.write_text("the last run's report")
    result = run_glnet("segment", "-q", archive, "-o", tmp_path / "out", "-m", model, "--report",
                       report)
    assert result.exit_code == 2
    assert result.stderr == (f"glnet: error: {report}: already exists (use --overwrite to "
                             "replace it)\n")
    assert report.read_text() == "the last run's report"
    assert names(tmp_path / "out") == []


@pytest.mark.parametrize("folder", ["missing", "scenes/a.tif"])
def test_a_report_folder_that_is_not_there_is_one_line(model, archive, tmp_path, folder):
    report = tmp_path / folder / "report.json"
    result = run_glnet("segment", "-q", archive, "-o", tmp_path / "out", "-m", model, "--report",
                       report)
    assert result.exit_code == 2
    assert result.stderr == (f"glnet: error: {report}: output folder {tmp_path / folder} does "
                             "not exist\n")
    assert names(tmp_path / "out") == []


def test_a_report_that_does_not_fit_keeps_the_old_one(model, archive, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = [archive, "-o", out, "-m", model, "--report", report, "--skip-existing"]
    assert run_glnet("segment", "-q", *args).exit_code == 0
    old = report.read_text()
    with file_size_limit(64):  # every mask exists: only the report is written
        result = run_glnet("segment", "-q", *args, "--overwrite")
    assert result.exit_code == 1
    assert result.stderr == (f"glnet: error: {report}: writing failed: File too large; "
                             "nothing was written\n")
    assert report.read_text() == old
    assert names(tmp_path) == ["out", "report.json", "scenes"]


def test_an_output_folder_that_cannot_be_made_is_one_line(model, archive, tmp_path):
    (tmp_path / "file").write_text("")
    result = run_glnet("segment", "-q", archive, "-o", tmp_path / "file" / "out", "-m", model)
    assert result.exit_code == 2
    assert result.stderr == (f"glnet: error: {tmp_path / 'file' / 'out'}: its parent folder "
                             f"{tmp_path / 'file'} is not a folder\n")
    if sys.platform == "linux":  # /proc exists, and nothing can be made in it
        result = run_glnet("segment", "-q", archive, "-o", "/proc/glnet-masks", "-m", model)
        assert result.exit_code == 2
        assert result.stderr == ("glnet: error: /proc/glnet-masks: cannot make the output "
                                 "folder: No such file or directory\n")
