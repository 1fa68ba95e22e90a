"""Throughput and memory of ``glnet segment`` on synthetic textured scenes.

Each measurement runs in a fresh subprocess, so its peak resident memory is
its own. Run by hand (not in CI):

    python benchmarks/segment_bench.py                       # tiny model, 2k/8k/16k, this device
    python benchmarks/segment_bench.py --configs tiny resnet50 --sizes 2048 8192 16384

The scenes are written window by window (tiled, deflate, with overviews), so
generating a 16k scene never holds it in memory either.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CONFIGS = {
    # name: (backbone, width, size_p, size_g, context)
    "tiny": ("resnet18", 32, 128, 128, 1024),
    "resnet50": ("resnet50", 256, 508, 508, 2448),
}


def make_scene(path: str, size: int, strip: int = 1024) -> None:
    """A textured 3-band uint8 scene of ``size`` x ``size``, written strip by strip."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                   crs="EPSG:32616", transform=from_origin(500000, 4100000, 0.5, 0.5),
                   tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                   BIGTIFF="IF_SAFER")
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        xx = np.arange(size, dtype=np.float32)[None, :]
        for row in range(0, size, strip):
            rows = min(strip, size - row)
            yy = np.arange(row, row + rows, dtype=np.float32)[:, None]
            for band in range(3):
                texture = 127 + 90 * np.sin(xx / (40 + 13 * band)) * np.cos(yy / (57 - 9 * band))
                noise = rng.normal(0, 12, (rows, size)).astype(np.float32)
                dst.write(np.clip(texture + noise, 0, 255).astype(np.uint8), band + 1,
                          window=rasterio.windows.Window(0, row, size, rows))
        dst.build_overviews([2, 4, 8, 16, 32], Resampling.average)


def make_model(path: str, config: str) -> None:
    """A random model file of the given configuration (no download)."""
    import torch

    from glnet_cli.classes import DEEPGLOBE
    from glnet_cli.io.model.checkpoint import InputScaling, ModelInfo, save_model
    from models.glnet import GLNet

    backbone, width, size_p, size_g, context = CONFIGS[config]
    torch.manual_seed(0)
    model = GLNet(len(DEEPGLOBE), backbone, 3, width, l2g=True)
    info = ModelInfo(config=model.config, classes=DEEPGLOBE, size_g=size_g, size_p=size_p,
                     context_size=context, scaling=InputScaling.fixed("uint8", 3), stage=3)
    save_model(path, model, info)


def measure(scene: str, model: str, stage: int, device: str, precision: str,
            batch_size: int) -> dict:
    """Run one segmentation in this process and report its numbers as JSON on stdout."""
    import torch

    from glnet_cli.device import resolve_device
    from glnet_cli.inference.engine import Segmenter, SegmentOptions
    from glnet_cli.io.model.checkpoint import load_model

    target = resolve_device(device)
    segmenter = Segmenter(load_model(model, target), target,
                          SegmentOptions(stage=stage, batch_size=batch_size, precision=precision))
    output = scene + ".mask.tif"
    started = time.perf_counter()
    result = segmenter.run(scene, output, overwrite=True)
    seconds = time.perf_counter() - started
    os.remove(output)
    return {"seconds": seconds, "mpx_per_s": result.pixels / 1e6 / seconds,
            "device": str(target) + (f" ({torch.cuda.get_device_name(target)})"
                                     if target.type == "cuda" else ""),
            "peak_host_mb": result.peak_host_mb,
            "peak_gpu_mb": result.peak_gpu_mb, "crops": result.crops_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 16384])
    parser.add_argument("--configs", nargs="+", default=["tiny"], choices=sorted(CONFIGS))
    parser.add_argument("--stage", type=int, default=3, choices=[2, 3])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--workdir", default=None, help="Folder for scenes (default: a temp dir)")
    parser.add_argument("--measure", nargs=2, metavar=("SCENE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, args.stage, args.device, args.precision,
                                 args.batch_size)))
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix="glnet-bench-")
    rows = []
    header = (f"{'size':>7} {'model':>9} {'device':>24} {'crops':>7} {'seconds':>9} "
              f"{'Mpx/s':>7} {'host MB':>8} {'GPU MB':>8}")
    print(header)
    print("-" * len(header))
    for config in args.configs:
        model = os.path.join(workdir, f"{config}.pt")
        if not os.path.exists(model):
            make_model(model, config)
        for size in args.sizes:
            scene = os.path.join(workdir, f"scene_{size}.tif")
            if not os.path.exists(scene):
                make_scene(scene, size)
            done = subprocess.run(
                [sys.executable, __file__, "--measure", scene, model, "--stage", str(args.stage),
                 "--device", args.device, "--precision", args.precision,
                 "--batch-size", str(args.batch_size)],
                capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append((size, config, row))
            gpu = f"{row['peak_gpu_mb']:.0f}" if row["peak_gpu_mb"] is not None else "-"
            print(f"{size:>7} {config:>9} {row['device']:>24} {row['crops']:>7} "
                  f"{row['seconds']:>9.1f} {row['mpx_per_s']:>7.2f} "
                  f"{row['peak_host_mb']:>8.0f} {gpu:>8}", flush=True)
    for config in args.configs:
        peaks = {size: row["peak_host_mb"] for size, c, row in rows if c == config}
        if len(peaks) > 1:
            small, large = min(peaks), max(peaks)
            print(f"{config}: peak host memory at {large} is {peaks[large] / peaks[small]:.2f}x "
                  f"that at {small} ({(large / small) ** 2:.0f}x the pixels)")


if __name__ == "__main__":
    main()
