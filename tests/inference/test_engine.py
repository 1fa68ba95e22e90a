"""The inference engine against an independent oracle, with the network swapped for a stand-in.

The stand-in (benchmarks/engine_bench.py) costs nothing, so the test measures
the engine alone: reading (in parallel threads too), scaling on the device,
batching, the crop cache, tile blending and argmax, nodata, writing. The
oracle segments the whole scene naively in numpy: every crop's probabilities
upsampled in full, weighted, summed in crop order, argmax; it shares no code
with the engine beyond the network, the input scaling (numpy's, where the
engine scales on the device), the reader of raw pixels and the blend weights,
and must agree with it byte for byte.
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import numpy as np
import pytest
import rasterio
import torch

import glnet_cli.inference.engine as engine_module
import glnet_cli.inference.reader as reader_module
from benchmarks.engine_bench import standin_model_file
from glnet_cli.classes import IGNORE_INDEX
from glnet_cli.commands.segment import _summary_line
from glnet_cli.inference.engine import Segmenter, SegmentOptions
from glnet_cli.inference.grid import blend_weights
from glnet_cli.io.model.checkpoint import InputScaling, ModelFile
from glnet_cli.io.raster.read import SceneReader
from tests.helpers import rule_scene, write_raster

SIZE_P, SIZE_G, CONTEXT, OVERLAP, CLASSES = 32, 64, 128, 8, 5


def _segmenter(stage: int = 2, device: str = "cpu", batch_size: int = 4,
               scaling: InputScaling | None = None) -> Segmenter:
    """In fp32 on any device: the oracle computes in fp32, and so does the CUDA comparison."""
    model_file = copy.deepcopy(_standin())  # the Segmenter prepares its network in place
    if scaling is not None:
        model_file.info = dataclasses.replace(model_file.info, scaling=scaling)
    return Segmenter(model_file, torch.device(device),
                     SegmentOptions(stage=stage, batch_size=batch_size, overlap=OVERLAP,
                                    precision="fp32"))


@functools.lru_cache(maxsize=1)
def _standin() -> ModelFile:
    """The stand-in, built once: initialising the small GLNet under it is most of its cost."""
    return standin_model_file(CLASSES, SIZE_P, SIZE_G, CONTEXT)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> str:
    """A 150 x 265 scene (several context blocks) with a nodata corner, tiled."""
    image = rule_scene(150, 265, seed=3)
    image[image == 7] = 8
    image[:, :50, :60] = 7  # not 0: invalid pixels must be zeroed by the engine
    folder = tmp_path_factory.mktemp("engine")
    return str(write_raster(folder / "scene.tif", image, nodata=7, tiled=True))


def _resize_axis(size_out: int, size_in: int) -> tuple[np.ndarray, ...]:
    """Bilinear source indexes and weights (no corner alignment), computed in float32."""
    src = (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) * np.float32(
        size_in / size_out) - np.float32(0.5)
    src = np.maximum(src, np.float32(0))
    low = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    frac = (src - low).astype(np.float32)
    return low, high, frac, (np.float32(1) - frac)


def _scaled(seg: Segmenter, pixels: np.ndarray, valid: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(seg.info.scaling.apply(pixels) * valid)[None]


def oracle(seg: Segmenter, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Classes and uint8 probabilities of the whole scene, computed naively."""
    scene = seg.inspect(path)
    plan = seg.plan(scene)
    model = seg.model
    total = np.zeros((CLASSES, scene.height, scene.width), dtype=np.float32)
    weight_sum = np.zeros((scene.height, scene.width), dtype=np.float32)
    valid = np.zeros((scene.height, scene.width), dtype=bool)
    weights = blend_weights(SIZE_P, OVERLAP)
    with SceneReader(scene) as reader, torch.inference_mode():
        for block in plan.blocks:
            view = reader.read_decimated(block.box, (SIZE_G, SIZE_G))
            context = model.global_pyramid(_scaled(seg, view.data, view.valid))
            for index in block.crops:
                crop = plan.crops[index]
                patch = reader.read(crop)
                if not patch.valid.any():
                    continue
                top_left = [((crop.row - block.box.row) / block.box.height,
                             (crop.col - block.box.col) / block.box.width)]
                ratio = (SIZE_P / block.box.height, SIZE_P / block.box.width)
                local = model.local_pyramid(_scaled(seg, patch.data, patch.valid), context,
                                            top_left, ratio)
                logits, _ = model.aggregated(local.ps3, context.ps3, top_left, ratio)
                probs = torch.softmax(logits.float(), dim=1)[0].half().float().numpy()
                r0, r1, rf, rr = _resize_axis(SIZE_P, probs.shape[1])
                c0, c1, cf, cr = _resize_axis(SIZE_P, probs.shape[2])
                rows = probs[:, r0] * rr[:, None] + probs[:, r1] * rf[:, None]
                full = rows[:, :, c0] * cr + rows[:, :, c1] * cf
                h = min(SIZE_P, scene.height - crop.row)
                w = min(SIZE_P, scene.width - crop.col)
                at = (slice(crop.row, crop.row + h), slice(crop.col, crop.col + w))
                total[(slice(None),) + at] += (full * weights)[:, :h, :w]
                weight_sum[at] += weights[:h, :w]
                valid[at] |= patch.valid[:h, :w]
    classes = total.argmax(axis=0).astype(np.uint8)
    classes[~valid] = IGNORE_INDEX
    blended = total / np.maximum(weight_sum, np.float32(1e-6))
    probabilities = np.round(np.clip(blended, 0, 1) * np.float32(255)).astype(np.uint8)
    probabilities[:, ~valid] = 0
    return classes, probabilities


def _run(seg: Segmenter, path: str, out, probabilities: bool = False, **kwargs):
    probs_path = str(out) + ".probs.tif" if probabilities else None
    result = seg.run(path, str(out), probabilities=probs_path, **kwargs)
    with rasterio.open(out) as dst:
        classes = dst.read(1)
    probs = None
    if probs_path:
        with rasterio.open(probs_path) as dst:
            probs = dst.read()
    return result, classes, probs


@pytest.fixture(scope="module")
def expected(scene) -> tuple[np.ndarray, np.ndarray]:
    return oracle(_segmenter(), scene)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("stage", [2, 3])
def test_engine_output_is_the_oracle_byte_for_byte(scene, expected, tmp_path, monkeypatch,
                                                   threads, stage):
    monkeypatch.setattr(reader_module, "READ_THREADS", threads)
    monkeypatch.setattr(engine_module, "BLEND_THREADS", threads)
    seg = _segmenter(stage)
    assert len(seg.plan(seg.inspect(scene)).blocks) > 1
    result, classes, probs = _run(seg, scene, tmp_path / "mask.tif", probabilities=True)
    want_classes, want_probs = expected
    assert np.array_equal(classes, want_classes)
    assert np.array_equal(probs, want_probs)
    assert (classes[:50, :60] == IGNORE_INDEX).all()  # the nodata corner
    assert len(np.unique(classes[classes != IGNORE_INDEX])) >= 3  # a real test of the blend
    assert result.crops_skipped > 0


def test_classes_alone_equal_classes_with_probabilities(scene, expected, tmp_path):
    _, classes, _ = _run(_segmenter(batch_size=3), scene, tmp_path / "mask.tif")
    assert np.array_equal(classes, expected[0])


def test_a_scene_smaller_than_a_crop(tmp_path):
    path = str(write_raster(tmp_path / "small.tif", rule_scene(20, 25, seed=1)))
    seg = _segmenter()
    _, classes, probs = _run(seg, path, tmp_path / "mask.tif", probabilities=True)
    want_classes, want_probs = oracle(seg, path)
    assert classes.shape == (20, 25)
    assert np.array_equal(classes, want_classes) and np.array_equal(probs, want_probs)


@pytest.mark.parametrize("dtype, scaling", [
    ("uint16", InputScaling.fixed("uint16", 3)),
    ("float64", InputScaling.from_stats("float64", [40.0, 50.0, 60.0], [250.0, 240.0, 230.0]))])
def test_other_data_types_and_offsets_are_scaled_as_in_training(tmp_path, dtype, scaling):
    image = rule_scene(70, 90, seed=2).astype(dtype) * (257 if dtype == "uint16" else 1.0)
    if dtype == "float64":
        image[:, :20, :30] = np.nan  # invalid: zeroed before the network, nodata after
        image += 0.25
    path = str(write_raster(tmp_path / f"{dtype}.tif", image))
    seg = _segmenter(scaling=scaling)
    _, classes, probs = _run(seg, path, tmp_path / "mask.tif", probabilities=True)
    want_classes, want_probs = oracle(seg, path)
    assert np.array_equal(classes, want_classes) and np.array_equal(probs, want_probs)
    assert (classes == IGNORE_INDEX).any() == (dtype == "float64")


def test_progress_counts_crop_passes_and_names_the_pass(scene, tmp_path):
    seg = _segmenter(stage=3)
    plan = seg.plan(seg.inspect(scene))
    calls = []
    result, _, _ = _run(seg, scene, tmp_path / "mask.tif",
                        progress=lambda done, total, **info: calls.append((done, total, info)))
    l2g = sum(len(plan.block_crop_grid(b, OVERLAP)) for b in plan.blocks)
    total = len(plan.crops) + l2g
    assert {t for _, t, _ in calls} == {total}
    assert calls[-1][0] == total
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)
    passes = [info["pass"] for _, _, info in calls]
    assert passes[0] == "L2G" and passes[-1] == "prediction"
    assert set(passes) == {"L2G", "prediction"}
    # The summary's numbers add up to what the bar counted.
    assert result.crops_run + result.crops_skipped == len(plan.crops)
    assert 0 < result.l2g_passes <= l2g


def test_stage_2_has_no_l2g_pass(scene, tmp_path):
    passes = []
    result, _, _ = _run(_segmenter(stage=2), scene, tmp_path / "mask.tif",
                        progress=lambda done, total, **info: passes.append(info["pass"]))
    assert set(passes) == {"prediction"} and result.l2g_passes == 0
    assert f" {result.crops_run} crops run, " in _summary_line(result)


def test_the_summary_line_counts_what_the_bar_counted(scene, tmp_path):
    result, _, _ = _run(_segmenter(stage=3), scene, tmp_path / "mask.tif")
    assert (f" {result.crops_run} crops run (+{result.l2g_passes} L2G passes), "
            f"{result.crops_skipped} empty skipped") in _summary_line(result)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_blending_stays_on_the_device_and_agrees_with_the_cpu(
        scene, expected, tmp_path, monkeypatch):
    seen_devices = set()
    finish = engine_module.TileBlender.finish

    def spy(self, tile, crops):
        seen_devices.update(c.probs.device.type for c in crops)
        return finish(self, tile, crops)
    monkeypatch.setattr(engine_module.TileBlender, "finish", spy)
    result, classes, probs = _run(_segmenter(device="cuda"), scene, tmp_path / "mask.tif",
                                  probabilities=True)
    assert seen_devices == {"cuda"}
    assert result.peak_gpu_mb is not None
    assert (classes == expected[0]).mean() > 0.999
    assert np.abs(probs.astype(int) - expected[1]).max() <= 1
