"""Time and peak memory of ``glnet vectorize`` on synthetic masks of growing size.

Each mask is generated window by window onto disk (tiled, deflate-compressed
GeoTIFF in a temp folder: no whole mask is ever in memory) and vectorised in a
fresh subprocess, whose peak RSS (``VmHWM``; ``getrusage`` maxrss off Linux,
which may carry the parent's peak across ``exec``) is the memory figure. Peak
memory must grow far slower than the pixel count.

The masks hold one disk per 60 px cell (classes 1-3, some with a hole; the
2048 px windows cut through many of them) under a road grid (class 4, every
1000 px) that forms one polygon spanning the whole mask.

Usage:
    python benchmarks/vectorize_bench.py --sizes 4096 16384 32768
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

CELL = 60
ROAD_EVERY, ROAD_WIDTH = 1000, 6
BLOCK = 2048


def make_mask(path: str, size: int) -> None:
    """Write a ``size`` x ``size`` uint8 class mask, one 2048 px block at a time."""
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                   crs="EPSG:32616", transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0),
                   nodata=255, tiled=True, blockxsize=512, blockysize=512, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(GLNET_BACKGROUND="0")
        for row in range(0, size, BLOCK):
            for col in range(0, size, BLOCK):
                h, w = min(BLOCK, size - row), min(BLOCK, size - col)
                dst.write(_block(row, col, h, w), 1, window=Window(col, row, w, h))


def _block(row: int, col: int, h: int, w: int) -> np.ndarray:
    """Disks in a 60 px cell grid and a road grid, as a pure function of pixel position."""
    yy, xx = np.mgrid[row:row + h, col:col + w].astype(np.int32)
    cy, cx = yy // CELL, xx // CELL
    rnd = ((cy * 73856093) ^ (cx * 19349663)) & 0xFFFF  # a stable hash of the cell
    radius = CELL * (0.15 + 0.3 * (rnd & 0xFF) / 255)
    oy = cy * CELL + CELL // 2 + (rnd >> 8) % 9 - 4
    ox = cx * CELL + CELL // 2 + (rnd >> 12) % 9 - 4
    d2 = (yy - oy) ** 2 + (xx - ox) ** 2
    mask = np.where(d2 < radius ** 2, 1 + rnd % 3, 0).astype(np.uint8)
    mask[(rnd % 5 == 0) & (d2 < (radius / 2) ** 2)] = 0
    mask[(yy % ROAD_EVERY < ROAD_WIDTH) | (xx % ROAD_EVERY < ROAD_WIDTH)] = 4
    return mask


def _rss_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MiB."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024
    except OSError:  # not Linux: ru_maxrss is the peak, in KiB on Linux and bytes on macOS
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2 ** 20 if sys.platform == "darwin" else 1024)


def _child(mask: str, output: str, window_size: int) -> None:
    """Vectorise once and print seconds, polygons and peak RSS as JSON (run in a subprocess)."""
    from glnet_cli.vector.vectorize import vectorize

    base = _rss_mib("VmRSS:")
    start = time.perf_counter()
    summary = vectorize(mask, output, window_size=window_size)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "polygons": summary.polygons,
                      "base_mib": base, "peak_mib": _rss_mib("VmHWM:")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--window-size", type=int, default=2048)
    parser.add_argument("--run", nargs=2, metavar=("MASK", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        _child(*args.run, args.window_size)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="glnet-vectorize-bench-") as tmp:
        for size in args.sizes:
            mask, output = os.path.join(tmp, f"mask{size}.tif"), os.path.join(tmp, f"v{size}.gpkg")
            start = time.perf_counter()
            make_mask(mask, size)
            made = time.perf_counter() - start
            run = subprocess.run([sys.executable, __file__, "--run", mask, output,
                                  "--window-size", str(args.window_size)],
                                 check=True, capture_output=True, text=True)
            result = json.loads(run.stdout.strip().splitlines()[-1])
            rows.append((size, made, result))
            os.remove(mask)
            print(f"{size}: done", file=sys.stderr)
    print("| size | pixels | generate s | vectorize s | polygons | peak RSS MiB | "
          "RSS after imports MiB | peak - imports MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, made, r in rows:
        print(f"| {size} | {size * size / 1e6:,.0f} M | {made:.1f} | {r['seconds']:.1f} | "
              f"{r['polygons']:,} | {r['peak_mib']:.0f} | {r['base_mib']:.0f} | "
              f"{r['peak_mib'] - r['base_mib']:.0f} |")
    (small, _, r0), (large, _, r1) = rows[0], rows[-1]
    growth = [r["peak_mib"] - r["base_mib"] for r in (r0, r1)]
    print(f"\n{large} vs {small}: pixels x{(large / small) ** 2:.0f}, "
          f"peak RSS x{r1['peak_mib'] / r0['peak_mib']:.2f}, "
          f"peak above imports x{growth[1] / max(growth[0], 1):.2f}")


if __name__ == "__main__":
    main()
