"""Output safety: atomic publishing, no-replace, same-file checks, stale temp files."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap

import pytest

from glnet_cli.errors import InputError, OutputExistsError, OutputWriteError
from glnet_cli.io.paths import (
    PARTIAL_MARK,
    atomic_output,
    check_distinct,
    publish,
    remove_stale_partials,
    write_text,
)


def _partials(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if PARTIAL_MARK in n)


def test_atomic_output_publishes_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_output(target, ".txt", overwrite=False) as tmp:
        assert PARTIAL_MARK in os.path.basename(tmp)
        with open(tmp, "w") as f:
            f.write("done")
    assert target.read_text() == "done"
    assert _partials(tmp_path) == []


def test_failure_leaves_previous_target_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_output(target, overwrite=True) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "good"
    assert _partials(tmp_path) == []


def test_verify_failure_keeps_target(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("good")

    def reject(path: str) -> None:
        raise OutputWriteError(f"{path}: unreadable")

    with pytest.raises(OutputWriteError):
        with atomic_output(target, overwrite=True, verify=reject) as tmp:
            with open(tmp, "w") as f:
                f.write("bad")
    assert target.read_text() == "good"
    assert _partials(tmp_path) == []


def test_no_replace_when_target_appeared_meanwhile(tmp_path):
    target = tmp_path / "m.tif"
    with pytest.raises(OutputExistsError, match="already exists"):
        with atomic_output(target, overwrite=False) as tmp:
            with open(tmp, "w") as f:
                f.write("second")
            target.write_text("first")  # another run finished first
    assert target.read_text() == "first"
    assert _partials(tmp_path) == []


def test_publish_overwrite_replaces(tmp_path):
    tmp, target = tmp_path / "a", tmp_path / "b"
    tmp.write_text("new")
    target.write_text("old")
    publish(str(tmp), str(target), overwrite=True)
    assert target.read_text() == "new" and not tmp.exists()


def test_file_size_limit_is_an_environment_error(tmp_path):
    """RLIMIT_FSIZE in a child process stands in for a full disk."""
    target = tmp_path / "big.txt"
    target.write_text("good")
    script = textwrap.dedent(f"""
        import resource, sys
        from glnet_cli.errors import OutputWriteError
        from glnet_cli.io.paths import write_text
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_text({str(target)!r}, "x" * 100000, overwrite=True)
        except OutputWriteError as exc:
            print(exc, exc.exit_code)
            sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert "writing failed" in done.stdout and done.stdout.strip().endswith(" 1")
    assert target.read_text() == "good"
    assert _partials(tmp_path) == []


def test_write_text_refuses_existing_without_overwrite(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("{}")
    with pytest.raises(OutputExistsError):
        write_text(target, "[]", overwrite=False)
    assert target.read_text() == "{}"


def test_check_distinct_catches_links_and_repeats(tmp_path):
    scene = tmp_path / "scene.tif"
    scene.write_bytes(b"x")
    link = tmp_path / "link.tif"
    link.symlink_to(scene)
    hard = tmp_path / "hard.tif"
    os.link(scene, hard)
    for output in (scene, link, hard):
        with pytest.raises(InputError, match="same file as the input"):
            check_distinct([str(output)], [str(scene)])
    with pytest.raises(InputError, match="two outputs"):
        check_distinct([str(tmp_path / "m.tif"), str(tmp_path / "." / "m.tif")])
    check_distinct([str(tmp_path / "m.tif"), None], [str(scene), None])


def test_stale_partials_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "m.tif"
    dead = tmp_path / f".m.tif{PARTIAL_MARK}dead0000"
    (tmp_path / f".m.tif{PARTIAL_MARK}dead0000.tif").write_text("junk")
    (tmp_path / f".m.tif{PARTIAL_MARK}dead0000.lock").write_text("")
    live_lock = tmp_path / f".m.tif{PARTIAL_MARK}live0000.lock"
    live_lock.write_text("")
    (tmp_path / f".m.tif{PARTIAL_MARK}live0000.tif").write_text("in progress")
    fd = os.open(live_lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        removed = remove_stale_partials(target)
    finally:
        os.close(fd)
    assert sorted(removed) == [os.path.basename(str(dead)) + ".tif"]
    assert _partials(tmp_path) == [f".m.tif{PARTIAL_MARK}live0000.lock",
                                   f".m.tif{PARTIAL_MARK}live0000.tif"]


def test_next_run_warns_about_removed_leftovers(tmp_path):
    target = tmp_path / "m.tif"
    (tmp_path / f".m.tif{PARTIAL_MARK}dead0000.tif").write_text("junk")
    (tmp_path / f".m.tif{PARTIAL_MARK}dead0000.lock").write_text("")
    with pytest.warns(UserWarning, match="interrupted run"):
        write_text(target, "ok", overwrite=False)
    assert target.read_text() == "ok"
    assert _partials(tmp_path) == []
