"""Each default lives in one place: the Python API and the CLI run the same way by default."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import rasterio

import glnet_cli.device as device_module
from glnet_cli.commands.segment import segment_command
from glnet_cli.commands.train import train_command
from glnet_cli.device import resolve_device
from glnet_cli.inference.engine import Segmenter, SegmentOptions
from glnet_cli.io.model.checkpoint import load_model
from glnet_cli.training.config import TrainConfig
from tests.helpers import rule_scene, run_glnet, write_raster


@pytest.mark.parametrize("native_bf16", [True, False], ids=["bf16-cpu", "fp32-cpu"])
def test_api_and_cli_write_the_same_mask_by_default(model, tmp_path, monkeypatch, native_bf16):
    """Both with no options: same precision (auto resolved alike), byte-identical pixels."""
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native_bf16)
    scene = str(write_raster(tmp_path / "scene.tif", rule_scene(64, 64, seed=5)))
    device = resolve_device()
    api = Segmenter(load_model(model, device), device, SegmentOptions()).run(
        scene, str(tmp_path / "api.tif"))
    cli = run_glnet("segment", scene, "-o", tmp_path / "cli.tif", "--model", model)
    assert cli.exit_code == 0, cli.output
    assert re.search(rf" Mpx/s, {api.precision}\)", cli.output), (api.precision, cli.output)
    with rasterio.open(tmp_path / "api.tif") as a, rasterio.open(tmp_path / "cli.tif") as c:
        assert a.dtypes == c.dtypes
        assert a.read().tobytes() == c.read().tobytes()
        assert len(np.unique(a.read(1))) > 1  # a real mask, not one class everywhere


def _cli_defaults(command, args: list[str]) -> dict:
    """The values the command passes on when only ``args`` are given: its defaults, parsed."""
    return command.make_context(command.name, args).params


def _library_defaults(config: type) -> dict:
    return {f.name: f.default for f in dataclasses.fields(config)
            if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize("command, args, config", [
    (segment_command, ["scene.tif", "-o", "mask.tif"], SegmentOptions),
    (train_command, [], TrainConfig),
], ids=["segment", "train"])
def test_every_option_defaults_to_its_library_field(command, args, config):
    library = _library_defaults(config)
    cli = _cli_defaults(command, args)
    assert set(library) <= set(cli), f"fields with no option: {set(library) - set(cli)}"
    differ = {name: (cli[name], default) for name, default in library.items()
              if cli[name] != default}
    assert not differ, f"option default != library default: {differ}"


def test_the_library_precision_is_the_clis_auto():
    assert SegmentOptions().precision == "auto"
    assert TrainConfig(tiles="t", output="m.pt").precision == "auto"
