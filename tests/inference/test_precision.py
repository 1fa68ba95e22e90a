"""Precision: what ``auto`` picks, what is refused, and bf16 masks that match fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import glnet_cli.device as device_module
from glnet_cli.device import autocast, cpu_has_native_bf16, resolve_precision
from glnet_cli.errors import InputError
from glnet_cli.inference.engine import Segmenter, SegmentOptions
from glnet_cli.io.model.checkpoint import load_model
from tests.helpers import rule_scene, run_glnet, write_raster

CPU = torch.device("cpu")
FP16_ON_CPU = ("glnet: error: --precision fp16: the CPU has no fast float16 arithmetic; use "
               "bf16, fp32 or auto (or run on a CUDA GPU)")


@pytest.fixture(scope="module")
def model(tiny_model) -> Path:
    """A random stage-2 model of 64 px crops and a 64 px global view."""
    return tiny_model(size_p=64, context=512, l2g=False)


@pytest.fixture(scope="module")
def models(tiny_model, rule_model) -> dict[str, Path]:
    """A briefly trained model (half a minute to make: the slow lane) and a random one."""
    return {"rule": rule_model, "random": tiny_model(size_p=64, context=512)}


def _cpuinfo(tmp_path: Path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: fpu sse2 {flags}\n")
    return str(path)


@pytest.mark.parametrize("flags, native", [("avx512f avx512_bf16", True),
                                           ("amx_bf16 amx_tile", True),
                                           ("avx2 avx512f avx512bw", False)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, flags)) is native


def test_no_cpuinfo_means_no_native_bf16(tmp_path):
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_the_cpu_is_bf16_only_where_native(monkeypatch, native, expected):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision(CPU, "auto") == expected
    assert resolve_precision(CPU, "auto", training=True) == expected


@pytest.mark.parametrize("bf16, inference, training", [(True, "bf16", "bf16"),
                                                        (False, "fp16", "fp32")])
def test_auto_on_a_gpu_trains_in_fp16_only_when_asked(monkeypatch, bf16, inference, training):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    gpu = torch.device("cuda")
    assert resolve_precision(gpu, "auto") == inference
    assert resolve_precision(gpu, "auto", training=True) == training


def test_explicit_precisions_are_kept_and_fp16_on_the_cpu_refused():
    assert resolve_precision(CPU, "bf16") == "bf16"
    assert resolve_precision(CPU, "fp32") == "fp32"
    with pytest.raises(InputError, match="fp16: the CPU has no fast float16"):
        resolve_precision(CPU, "fp16")
    with pytest.raises(InputError, match="use one of auto, fp32, fp16, bf16"):
        resolve_precision(CPU, "int8")


def test_cpu_autocast_runs_bf16_convolutions():
    conv = torch.nn.Conv2d(3, 4, 3)
    with autocast(CPU, "bf16"):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.float32


def _segment(model: Path, scene: Path, out: Path, precision: str) -> tuple[np.ndarray, str]:
    segmenter = Segmenter(load_model(model), CPU, SegmentOptions(stage=2, precision=precision))
    segmenter.run(str(scene), str(out))
    with rasterio.open(out) as dst:
        return dst.read(1), segmenter.precision


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rule", "random"])
def test_bf16_masks_agree_with_fp32(models, tmp_path, model):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(200, 240, seed=7))
    fp32, _ = _segment(models[model], scene, tmp_path / "fp32.tif", "fp32")
    bf16, ran = _segment(models[model], scene, tmp_path / "bf16.tif", "bf16")
    assert ran == "bf16"
    shares = np.bincount(fp32.ravel()) / fp32.size
    assert (shares > 0.1).sum() >= 2  # a mask with structure, not one class everywhere
    assert (fp32 == bf16).mean() >= 0.99


def test_cli_refuses_fp16_on_the_cpu(model, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", rule_scene(64, 64))
    result = run_glnet("segment", scene, "-o", tmp_path / "m.tif", "-m", model,
                       "--device", "cpu", "--precision", "fp16")
    assert result.exit_code == 2
    assert result.output.strip() == FP16_ON_CPU
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_cli_batch_size_is_auto_or_a_positive_number(model, tmp_path, value):
    result = run_glnet("segment", "scene.tif", "-o", tmp_path / "m.tif", "-m", model,
                       "--batch-size", value)
    assert result.exit_code == 2
    assert f"'{value}': use auto or a number of crops (1 or more)" in result.output


def test_dry_run_says_which_precision_and_batch_would_run_and_where_memory_goes(
        model, tmp_path, monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    scene = write_raster(tmp_path / "scene.tif", rule_scene(64, 64))
    result = run_glnet("segment", scene, "-o", tmp_path / "m.tif", "-m", model,
                       "--device", "cpu", "--dry-run", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.output.splitlines() if line.count("│") == 3}
    assert rows["precision"] == "fp32"
    assert rows["crops per forward pass"] == "3"
    parts = {k.split(": ", 1)[1]: float(v.split()[0]) for k, v in rows.items()
             if k.startswith("memory:") and "(reached)" not in k}
    assert list(parts) == ["torch, GDAL and Python", "weights", "GDAL block cache",
                           "crops and tiles in flight", "threads and allocator slack",
                           "global maps (64 px view)",
                           "activations (3 crops of 64 px)"]
    assert parts["torch, GDAL and Python"] > 100 and parts["weights"] > 10
    assert float(rows["estimated peak memory"].split()[0]) >= sum(parts.values()) - 6  # rounding


@pytest.mark.parametrize("native, asked, ran", [(True, "auto", "bf16"), (False, "auto", "fp32"),
                                                (False, "bf16", "bf16")])
def test_summary_line_says_which_precision_ran(model, tmp_path, monkeypatch, native, asked,
                                               ran):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    scene = write_raster(tmp_path / "scene.tif", rule_scene(64, 64))
    result = run_glnet("segment", scene, "-o", tmp_path / "m.tif", "-m", model,
                       "--device", "cpu", "--precision", asked, "-q")
    assert result.exit_code == 0, result.output
    assert f" Mpx/s, {ran}), 1 crops run" in result.output
