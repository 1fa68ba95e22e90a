"""Sharing the machine: how much ``glnet segment`` and a short training slow down next to
another CPU-bound process.

Each job runs alone, then with one busy-loop process beside it (started
before the job, stopped after), and the table prints both times and the
slowdown. The goal is <= 2.5x for both jobs. ``--variants`` also runs the jobs
under thread settings to compare (each a set of environment variables):

    python benchmarks/sharing_bench.py                               # glnet's defaults
    python benchmarks/sharing_bench.py --variants default spin300k passive omp1

Jobs: segment of a 2048 px scene with the tiny configuration of
segment_bench.py (resnet18, FPN width 32, crops of 128 px, random weights), and
a short training on the quickstart's synthetic tiles (resnet18, width 32,
epochs 3,1,1). Run by hand on an otherwise quiet machine (not in CI).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from segment_bench import make_model, make_scene  # noqa: E402

GOAL = 2.5
#: Environment variables of each variant (added to glnet's own environment). glnet's
#: default lets idle OpenMP threads spin 1,000 times (glnet_cli/openmp.py).
VARIANTS = {
    "default": {},
    "spin300k": {"GOMP_SPINCOUNT": "300000"},  # libgomp's own default
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "omp1": {"OMP_NUM_THREADS": "1"},
}
BUSY_LOOP = "while True:\n    pass\n"


def glnet() -> str:
    sibling = Path(sys.executable).with_name("glnet")
    return str(sibling) if sibling.exists() else "glnet"


def prepare(work: Path) -> dict[str, list[str]]:
    """The two jobs' command lines, with their inputs made in ``work`` (once)."""
    scene, model, data = work / "scene_2048.tif", work / "tiny.pt", work / "data"
    if not scene.exists():
        make_scene(str(scene), 2048)
    if not model.exists():
        make_model(str(model), "tiny")
    if not (data / "tiles").exists():
        subprocess.run([sys.executable, str(HERE.parent / "examples" / "make_sample_data.py"),
                        str(data)], check=True, stdout=subprocess.DEVNULL)
    return {
        "segment": [glnet(), "segment", str(scene), "-o", str(work / "mask.tif"), "--model",
                    str(model), "--device", "cpu", "--quiet", "--overwrite"],
        "train": [glnet(), "train", "--tiles", str(data / "tiles"), "--classes",
                  str(data / "classes.json"), "-o", str(work / "trained.pt"), "--backbone",
                  "resnet18", "--width", "32", "--size-g", "128", "--size-p", "64",
                  "--pretrained", "none", "--epochs", "3,1,1", "--batch-size", "2",
                  "--sub-batch-size", "8", "--val-split", "0.25", "--num-workers", "0",
                  "--device", "cpu", "--overwrite", "--quiet"],
    }


def timed(command: list[str], env: dict[str, str], busy: bool) -> float:
    """Wall seconds of ``command``, with a busy-loop process beside it when ``busy``."""
    other = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        if other is not None:
            time.sleep(0.5)  # running before the job starts, as a real neighbour would be
        started = time.perf_counter()
        subprocess.run(command, check=True, env=dict(os.environ, **env),
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - started
    finally:
        if other is not None:
            other.kill()
            other.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    parser.add_argument("--jobs", nargs="+", default=["segment", "train"],
                        choices=["segment", "train"])
    parser.add_argument("--workdir", default=None, help="keep the inputs here between runs")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="glnet-sharing-"))
    work.mkdir(parents=True, exist_ok=True)
    commands = prepare(work)
    print(f"{'job':8} {'variant':8} {'alone s':>8} {'shared s':>9} {'slowdown':>9}")
    worst = 0.0
    for job in args.jobs:
        for variant in args.variants:
            env = VARIANTS[variant]
            alone = timed(commands[job], env, busy=False)
            shared = timed(commands[job], env, busy=True)
            worst = max(worst, shared / alone) if variant == "default" else worst
            print(f"{job:8} {variant:8} {alone:8.1f} {shared:9.1f} {shared / alone:8.2f}x",
                  flush=True)
    print(f"worst slowdown with glnet's defaults {worst:.2f}x (goal <= {GOAL}x)")
    sys.exit(0 if worst <= GOAL else 1)


if __name__ == "__main__":
    main()
