"""Start-up time and peak memory of ``glnet`` command lines that run no network.

Each command line runs as the installed ``glnet`` script in a fresh process,
``--repeat`` times; the table shows the median and the fastest wall time (the
fastest is the least disturbed by other work on the machine) and the largest peak
resident memory (``wait4``'s ``ru_maxrss``; Linux counts the memory a child
had before ``exec``, so a bare Python launcher starts each run, not this
process with NumPy and GDAL loaded). ``--help`` and
``--version`` should take well under 0.5 s; ``vectorize``, ``evaluate`` and
``info`` on a scene never import torch, so their memory is GDAL's and
NumPy's (~150 MB), not PyTorch's (~1 GB). ``python -c 'import torch'`` is the
yardstick.

Usage:
    python benchmarks/startup_bench.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import rasterio
from rasterio.transform import Affine

from glnet_cli.commands import COMMANDS

MASK_SIZE = 2048


def make_mask(path: str) -> None:
    """A tiled uint8 mask of 2048 x 2048 px: four classes in 64 px squares, nodata 255."""
    yy, xx = np.mgrid[0:MASK_SIZE, 0:MASK_SIZE]
    mask = ((yy // 64 + xx // 64) % 4).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=MASK_SIZE, height=MASK_SIZE, count=1,
                       dtype="uint8", crs="EPSG:32616", nodata=255, tiled=True,
                       transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0)) as dst:
        dst.write(mask, 1)


#: Runs argv[1:] and prints its wall seconds, peak RSS (KiB) and exit status.
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def measure(argv: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit status of one run of ``argv``."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *argv], check=True,
                          capture_output=True, text=True)
    seconds, kib, code = done.stdout.split()[-3:]
    return float(seconds), int(kib) / 1024, int(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    glnet = shutil.which("glnet", path=os.path.dirname(sys.executable)) or shutil.which("glnet")
    if glnet is None:
        sys.exit("the glnet script is not installed: pip install -e .")
    with tempfile.TemporaryDirectory(prefix="glnet-startup-bench-") as tmp:
        mask = os.path.join(tmp, "mask.tif")
        make_mask(mask)
        lines = [["--help"], ["--version"], *([name, "--help"] for name in COMMANDS),
                 ["info", mask], ["evaluate", mask, mask],
                 ["vectorize", mask, "-o", os.path.join(tmp, "polygons.gpkg"), "--overwrite"]]
        runs = [([glnet, *line], "glnet " + " ".join(line).replace(tmp + os.sep, ""))
                for line in lines]
        runs.append(([sys.executable, "-c", "import torch"], "python -c 'import torch'"))
        print("| command | median s | fastest s | peak RSS MiB |")
        print("|---|---:|---:|---:|")
        for argv, label in runs:
            results = [measure(argv) for _ in range(args.repeat)]
            failed = [code for _, _, code in results if code != 0]
            note = f" (exit {failed[0]})" if failed else ""
            seconds = [r[0] for r in results]
            print(f"| `{label}`{note} | {statistics.median(seconds):.2f} | {min(seconds):.2f} | "
                  f"{max(r[1] for r in results):.0f} |")


if __name__ == "__main__":
    main()
