"""Quick look of a large mask: time and peak memory, with and without overviews.

A 16384 x 16384 class mask (tiled, deflated, as segment writes it) is made
once in the work folder; each quick look then runs in a fresh process, whose
own peak memory (VmHWM) is what the table shows beside a process that
only imports the same modules. Target: under 2 s and 200 MB with overviews.

    python benchmarks/preview_bench.py --workdir /tmp/preview_bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16384

_RUN = r"""
import re, sys, time
from glnet_cli.io.raster.preview import write_preview
started = time.perf_counter()
if sys.argv[1] != "-":
    write_preview(sys.argv[2], mask=sys.argv[1], overwrite=True)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
with open("/proc/self/status") as f:
    peak_kb = int(re.search(r"VmHWM:\s+(\d+)", f.read())[1])
print(time.perf_counter() - started, peak_kb / 1024)
"""


def make_mask(path: Path, overviews: bool) -> None:
    """Blocks of 4 classes, written strip by strip (never the whole raster in memory)."""
    if path.exists():
        return
    from glnet_cli.classes import generic_table

    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint8", nodata=255,
                   tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                   crs="EPSG:32616", transform=rasterio.Affine(0.5, 0, 500000, 0, -0.5, 4100000))
    yy, xx = np.mgrid[0:1024, 0:SIZE]
    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(GLNET_CLASSES=json.dumps(generic_table(4).to_list()))
        for row in range(0, SIZE, 1024):
            strip = (((yy + row) // 700 + xx // 900) % 4).astype(np.uint8)
            strip[(xx - row) % 3000 < 40] = 255
            dst.write(strip[None], window=rasterio.windows.Window(0, row, SIZE, 1024))
        if overviews:
            dst.build_overviews([2, 4, 8, 16, 32], Resampling.nearest)


def measure(mask: str, out: str) -> tuple[float, float]:
    run = subprocess.run([sys.executable, "-c", _RUN, mask, out], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    seconds, peak_mb = map(float, run.stdout.split())
    return seconds, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    work = parser.parse_args().workdir
    repeat = parser.parse_args().repeat
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    _, baseline = measure("-", "-")
    for name, overviews in (("16384 x 16384 mask, overviews", True),
                            ("16384 x 16384 mask, no overviews", False)):
        path = work / f"mask_{'ovr' if overviews else 'flat'}.tif"
        make_mask(path, overviews)
        runs = [measure(str(path), str(work / "q.png")) for _ in range(repeat)]
        rows.append((name, min(s for s, _ in runs), max(m for _, m in runs)))
    print(f"| quick look | best of {repeat} (s) | peak RSS (MB) | imports alone (MB) |")
    print("|---|---|---|---|")
    for name, best, peak in rows:
        print(f"| {name} | {best:.2f} | {peak:.0f} | {baseline:.0f} |")


if __name__ == "__main__":
    main()
