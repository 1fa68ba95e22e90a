"""Long batches stay flat: memory, open files and threads after scene 10 and after scene 300.

One process segments a batch of small scenes through the library
(``Segmenter`` + ``segment_many`` with ``skip_existing``, so every scene is
also claimed and released) and reads ``/proc/self`` after each scene: peak
and current resident memory (``VmHWM``, ``VmRSS``), open file descriptors and
threads. The table compares scene 10 (warmed up) with the last measured scene;
the goal is a difference under 5% for each, so that a batch over a whole
archive does not grow until the node runs out of memory or descriptors.

    python benchmarks/long_batch_bench.py                  # 310 scenes of 64 x 64 px, ~1-2 min
    python benchmarks/long_batch_bench.py --scenes 1000 --every 100

Scenes are random tiny RGB rasters and the model the tests' tiny random GLNet
(resnet18, FPN width 16, crops of 32 px, global view of 128 px): the work per
scene is small so that the bookkeeping around it (datasets, threads, temp
files, claims) is what shows. Runs on the CPU with one intra-op thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_PCT = 5.0
FIRST = 10


def snapshot() -> dict[str, float]:
    """This process now: peak and current resident memory (MB), open fds, threads."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = (value.split() or [""])[0]
    return {"peak memory (VmHWM, MB)": int(fields["VmHWM"]) / 1024,
            "memory (VmRSS, MB)": int(fields["VmRSS"]) / 1024,
            "open fds": len(os.listdir("/proc/self/fd")),
            "threads": int(fields["Threads"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=310, help="scenes in the batch (>= 300)")
    parser.add_argument("--size", type=int, default=64, help="scene side, px")
    parser.add_argument("--every", type=int, default=50, help="also print every N scenes")
    args = parser.parse_args()
    last = min(300, args.scenes)

    import torch

    torch.set_num_threads(1)
    from glnet_cli.inference.batch import SceneJob, segment_many
    from glnet_cli.inference.engine import Segmenter
    from glnet_cli.io.model.checkpoint import load_model
    from tests.helpers import make_tiny_model, rule_scene, write_raster

    with tempfile.TemporaryDirectory(prefix="glnet-long-batch-") as work:
        scenes, out = Path(work, "scenes"), Path(work, "out")
        scenes.mkdir()
        out.mkdir()
        jobs = [SceneJob(str(write_raster(scenes / f"s{i:04d}.tif",
                                          rule_scene(args.size, args.size, seed=i))),
                         str(out / f"s{i:04d}_mask.tif")) for i in range(args.scenes)]
        model = make_tiny_model(Path(work, "tiny.pt"), size_p=32, context=128, l2g=False)
        segmenter = Segmenter(load_model(model), torch.device("cpu"))
        seen: dict[int, dict[str, float]] = {}
        done = 0
        started = time.perf_counter()

        def measure(_result: object) -> None:
            nonlocal done
            done += 1
            if done in (FIRST, last) or done % args.every == 0:
                seen[done] = snapshot()
                print(f"scene {done:5d}  {time.perf_counter() - started:6.1f} s  " + "  ".join(
                    f"{k.split(' (')[0]} {v:.1f}" for k, v in seen[done].items()), flush=True)

        reports = segment_many(segmenter, jobs, skip_existing=True, on_result=measure)
        seconds = time.perf_counter() - started
        failed = [r for r in reports if r.status != "ok"]
        leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]

    print(f"\n{args.scenes} scenes of {args.size} x {args.size} px in {seconds:.1f} s "
          f"({1000 * seconds / args.scenes:.0f} ms a scene); {len(failed)} not ok; "
          f"{len(leftovers)} claim or temp files left")
    print(f"\n{'':26s}{'scene ' + str(FIRST):>10s}{'scene ' + str(last):>11s}{'diff':>9s}")
    worst = 0.0
    for key in seen[FIRST]:
        a, b = seen[FIRST][key], seen[last][key]
        pct = 100 * (b - a) / a if a else 0.0
        worst = max(worst, abs(pct))
        print(f"{key:26s}{a:10.1f}{b:11.1f}{pct:+8.1f}%")
    verdict = "flat" if worst < GOAL_PCT and not failed and not leftovers else "NOT flat"
    print(f"\ngoal: every difference under {GOAL_PCT:.0f}%: {verdict} (largest {worst:.1f}%)")
    return 0 if verdict == "flat" else 1


if __name__ == "__main__":
    sys.exit(main())
