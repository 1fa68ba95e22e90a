"""The ``glnet`` group: lazy commands, start-up imports, --version, --config, completion."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio

from glnet_cli.cli import gdal_config, main
from glnet_cli.commands import COMMANDS
from glnet_cli.tables import key_value_table, print_tables, table
from tests.helpers import run_glnet, write_raster

#: Runs glnet in a fresh interpreter as the installed ``glnet`` script does (program name
#: glnet, so completion answers to _GLNET_COMPLETE), then names the heavy libraries it imported.
PROBE = """
import sys
from glnet_cli.cli import main
try:
    main(sys.argv[1:], prog_name="glnet")
except SystemExit as exc:
    code = exc.code
loaded = {m.split(".")[0] for m in sys.modules} & {"torch", "rasterio", "fiona", "shapely"}
print("loaded:" + ",".join(sorted(loaded)), file=sys.stderr)
sys.exit(code)
"""


def run_fresh(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, set]:
    """``glnet ARGS`` in a new Python process, and the heavy libraries it imported."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("loaded:"), proc.stderr
    return proc, set(filter(None, last.removeprefix("loaded:").split(",")))


# -- start-up ------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--help"], *([name, "--help"] for name in COMMANDS)],
                         ids=lambda args: " ".join(args))
def test_help_imports_neither_torch_nor_gdal(args):
    proc, loaded = run_fresh(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: glnet" in proc.stdout
    assert loaded.isdisjoint({"torch", "rasterio", "fiona"}), loaded


def test_group_help_lists_every_command_with_its_own_first_line():
    result = run_glnet("--help")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines()
              if line.strip()]
    assert listed == list(COMMANDS)
    for name, (_, short_help) in COMMANDS.items():
        command = main.get_command(None, name)
        assert command.name == name
        assert command.get_short_help_str(limit=1000) == short_help


def test_train_help_offers_the_trunks_the_model_builds():
    from glnet_cli.architecture import BACKBONES
    from models.backbone import list_backbones

    assert BACKBONES == tuple(list_backbones())


@pytest.fixture
def mask(tmp_path) -> Path:
    data = np.zeros((32, 32), np.uint8)
    data[8:24, 8:24] = 1
    return write_raster(tmp_path / "mask.tif", data, nodata=255)


@pytest.mark.parametrize("command", [
    ["vectorize", "{mask}", "-o", "{tmp}/polygons.gpkg"],
    ["evaluate", "{mask}", "{mask}"],
    ["info", "{mask}"],
    ["info", "{mask}", "--json"],
], ids=lambda c: " ".join(c[:1] + c[3:]))
def test_commands_without_a_network_never_import_torch(command, mask, tmp_path):
    args = [a.format(mask=mask, tmp=tmp_path) for a in command]
    proc, loaded = run_fresh(*args)
    assert proc.returncode == 0, proc.stderr
    assert "torch" not in loaded and "rasterio" in loaded


# -- --version -----------------------------------------------------------------

def test_version_names_glnet_torch_gdal_and_proj_without_importing_torch():
    proc, loaded = run_fresh("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "glnet 0.1.0", f"torch {importlib.metadata.version('torch')}",
        f"GDAL {rasterio.__gdal_version__}", f"PROJ {rasterio.__proj_version__}"]
    assert "torch" not in loaded


# -- --config ------------------------------------------------------------------

def test_gdal_config_holds_in_other_threads_and_is_undone(monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "7")
    monkeypatch.delenv("GLNET_TEST_OPTION", raising=False)
    seen = {}

    def read_in_a_thread():
        with rasterio.Env():  # a thread's own rasterio environment does not hide them
            seen.update({name: rasterio.env.get_gdal_config(name)
                         for name in ("GLNET_TEST_OPTION", "GDAL_HTTP_TIMEOUT")})

    with gdal_config([("GLNET_TEST_OPTION", "yes please"), ("GDAL_HTTP_TIMEOUT", "30")]):
        thread = threading.Thread(target=read_in_a_thread)
        thread.start()
        thread.join()
    assert seen == {"GLNET_TEST_OPTION": "yes please", "GDAL_HTTP_TIMEOUT": 30}
    assert "GLNET_TEST_OPTION" not in os.environ and os.environ["GDAL_HTTP_TIMEOUT"] == "7"


def test_config_reaches_gdal_when_it_opens_the_input(tmp_path):
    """GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR hides a sidecar .ovr: proof GDAL read it."""
    scene = write_raster(tmp_path / "scene.tif", np.zeros((3, 64, 64), np.uint8))
    with rasterio.Env(TIFF_USE_OVR=True), rasterio.open(scene, "r+") as dst:
        dst.build_overviews([2, 4])
    assert (tmp_path / "scene.tif.ovr").exists()
    plain = run_glnet("info", scene)
    hidden = run_glnet("--config", "GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR", "info", scene)
    assert plain.exit_code == hidden.exit_code == 0, plain.output + hidden.output
    assert "│ overviews   │ 2, 4" in plain.stdout
    assert "│ overviews   │ none" in hidden.stdout
    assert "GDAL_DISABLE_READDIR_ON_OPEN" not in os.environ


def test_config_needs_name_equals_value():
    result = run_glnet("--config", "EMPTY_DIR", "info", "x.tif")
    assert result.exit_code == 2
    assert "Invalid value for '--config': 'EMPTY_DIR': expected KEY=VALUE" in result.stderr


# -- tables --------------------------------------------------------------------

def test_tables_show_cells_as_text_aligned_as_asked(capsys):
    print_tables(table("counts", ("name", "count"), [("a", 1), ("bb", None)], right={"count"}),
                 key_value_table("settings", [("gsd", None), ("bands", 3)]), "after them")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].strip() == "counts"
    assert lines[4:6] == ["│ a    │     1 │", "│ bb   │       │"]
    assert "│ gsd   │ none  │" in lines and "│ bands │ 3     │" in lines
    assert lines[-1] == "after them"


def test_tables_go_to_stderr_when_stdout_carries_data(capsys):
    print_tables(key_value_table("plan", [("crops", 12)], right=True), err=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "│ crops │    12 │" in captured.err


# -- shell completion ----------------------------------------------------------

def test_bash_completion_script_and_command_names():
    script, _ = run_fresh(env={"_GLNET_COMPLETE": "bash_source"})
    assert script.returncode == 0, script.stderr
    assert "_glnet_completion()" in script.stdout
    assert "complete -o nosort -F _glnet_completion glnet" in script.stdout
    words, _ = run_fresh(env={"_GLNET_COMPLETE": "bash_complete", "COMP_WORDS": "glnet s",
                              "COMP_CWORD": "1"})
    assert words.stdout.split() == ["plain,segment"]
