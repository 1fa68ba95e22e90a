"""Many workers, one archive: do N workers with --skip-existing finish no later than one?

Writes S small scenes and a small random GLNet, then times the same command

    python -m glnet_cli segment scenes/ -o out/ --skip-existing --report run-K.json

first with one worker, then with N workers started together on a fresh output
folder. Each worker is a separate process, as a job array's tasks are. The
table gives wall time, scene runs summed over the workers' reports (the claim
must make it exactly S), ok/skipped counts and exit codes. On a machine with
fewer cores than workers the goal is "no slower": the claim and the skipped
scenes must cost nothing measurable.

    python benchmarks/workers_bench.py                    # 24 scenes of 768 px, 1 vs 2 workers
    python benchmarks/workers_bench.py --scenes 48 --workers 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_workers(count: int, scenes: Path, out: Path, model: Path) -> dict:
    """Start ``count`` batch workers together on one folder; wall time and summed reports."""
    out.mkdir()
    command = [sys.executable, "-m", "glnet_cli", "segment", str(scenes), "-o", str(out),
               "--model", str(model), "--skip-existing", "--quiet", "--device", "cpu"]
    started = time.perf_counter()
    workers = [subprocess.Popen(command + ["--report", str(out.parent / f"{out.name}-{k}.json")],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for k in range(count)]
    codes = [w.wait() for w in workers]
    seconds = time.perf_counter() - started
    statuses: list[str] = []
    for k in range(count):
        report = json.loads((out.parent / f"{out.name}-{k}.json").read_text())
        statuses += [scene["status"] for scene in report]
    masks = sorted(p.name for p in out.glob("*_mask.tif"))
    return {"seconds": seconds, "ok": statuses.count("ok"), "skipped": statuses.count("skipped"),
            "other": len(statuses) - statuses.count("ok") - statuses.count("skipped"),
            "codes": codes, "masks": len(masks)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--size", type=int, default=768, help="scene side, px")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from tests.helpers import make_tiny_model, rule_scene, write_raster

    with tempfile.TemporaryDirectory(prefix="glnet-workers-") as work:
        scenes = Path(work, "scenes")
        scenes.mkdir()
        for i in range(args.scenes):
            write_raster(scenes / f"s{i:02d}.tif", rule_scene(args.size, args.size, seed=i))
        model = make_tiny_model(Path(work, "model.pt"), size_p=128, size_g=128, context=512)
        rows = {n: run_workers(n, scenes, Path(work, f"out{n}"), model)
                for n in (1, args.workers)}

    print(f"\n{args.scenes} scenes of {args.size} x {args.size} px, one command per worker\n")
    print("| workers | wall s | scene runs (ok) | skipped | other | exit codes | masks |")
    print("|---|---|---|---|---|---|---|")
    for n, row in rows.items():
        print(f"| {n} | {row['seconds']:.1f} | {row['ok']} | {row['skipped']} | {row['other']} | "
              f"{', '.join(map(str, row['codes']))} | {row['masks']} |")
    one, many = rows[1], rows[args.workers]
    ratio = many["seconds"] / one["seconds"]
    exact = (many["ok"] == args.scenes and many["skipped"] == (args.workers - 1) * args.scenes
             and many["other"] == 0 and not any(many["codes"]) and many["masks"] == args.scenes)
    verdict = "met" if exact and ratio <= 1.05 else "NOT met"
    print(f"\n{args.workers} workers / 1 worker wall time: {ratio:.2f}x; every scene run once, "
          f"all exit 0: {'yes' if exact else 'NO'}; goal (no slower, within 5%): {verdict}")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
