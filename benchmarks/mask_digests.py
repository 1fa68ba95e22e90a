"""Digests of the masks ``glnet segment`` writes for fixed scenes and tiny models.

Run it before and after a change that must not alter any output (a refactor,
a speed-up) and compare the two tables: every row must match, byte for byte.
The models and scenes are made from fixed seeds by the test helpers; the
real rasters of ../shared/data join in when they are there.

    python benchmarks/mask_digests.py --workdir /tmp/digests > before.txt
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import make_rule_model, make_tiny_model, rule_scene, write_raster  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "rasterio"


def _jobs(work: Path) -> list[tuple[str, Path, Path, list[str]]]:
    """(name, model, scene, extra options) for each mask to digest."""
    stage3 = make_tiny_model(work / "tiny3.pt")
    stage2 = make_tiny_model(work / "tiny2.pt", l2g=False, seed=1)
    rule = make_rule_model(work / "rule.pt")
    rule_tif = write_raster(work / "rule.tif", rule_scene(700, 900, seed=5), tiled=True)
    rng = np.random.default_rng(3)
    noise = write_raster(work / "noise.tif", rng.integers(0, 255, (3, 300, 400), dtype=np.uint8))
    holes = rng.integers(1, 255, (3, 257, 333), dtype=np.uint8)
    holes[:, :40, :50] = 0
    holes_tif = write_raster(work / "holes.tif", holes, nodata=0)
    jobs = [("rule", rule, rule_tif, []),
            ("rule --cog", rule, rule_tif, ["--cog"]),
            # Sidecars only: these rows must match the two above, byte for byte.
            ("rule --stac --preview", rule, rule_tif, ["--stac", "--preview"]),
            ("rule --cog --stac --preview", rule, rule_tif, ["--cog", "--stac", "--preview"]),
            ("rule --probabilities", rule, rule_tif,
             ["--probabilities", str(work / "probs.tif"), "--stage", "2"]),
            ("noise stage 3", stage3, noise, []),
            ("noise stage 2 fp32", stage2, noise, ["--overlap", "20", "--precision", "fp32"]),
            ("nodata corner", stage2, holes_tif, [])]
    if SHARED.is_dir():
        jobs += [("RGB.byte.tif", rule, SHARED / "RGB.byte.tif", []),
                 ("RGB.byte.tif --bands 3,2,1", stage3, SHARED / "RGB.byte.tif",
                  ["--bands", "3,2,1", "--stage", "2"]),
                 ("RGBA.byte.tif", stage3, SHARED / "RGBA.byte.tif", [])]
    return jobs


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    work = parser.parse_args().workdir
    work.mkdir(parents=True, exist_ok=True)
    print("| mask | file sha256 | pixels sha256 |\n|---|---|---|")
    for index, (name, model, scene, extra) in enumerate(_jobs(work)):
        mask = work / f"mask{index}.tif"
        run = subprocess.run([sys.executable, "-m", "glnet_cli.cli", "segment", str(scene), "-o",
                              str(mask), "-m", str(model), "--overwrite", "--quiet", *extra],
                             capture_output=True, text=True)
        if run.returncode:
            print(f"| {name} | failed: {run.stderr.strip()} | |")
            continue
        with rasterio.open(mask) as src:
            pixels = _digest(src.read().tobytes())
        print(f"| {name} | {_digest(mask.read_bytes())} | {pixels} |")
        if "--probabilities" in extra:
            print(f"| {name}: probabilities | {_digest((work / 'probs.tif').read_bytes())} | |")


if __name__ == "__main__":
    main()
