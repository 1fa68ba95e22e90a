"""GPU readiness in one table: the paper's network in three precisions, engine ceiling, torchrun.

Run through ``benchmarks/gpu_check.sh`` (it makes glnet importable first).
Every measurement runs in its own subprocess with a time limit, so one
failure or hang costs its row, not the table:

* the paper's configuration (ResNet-50, size_g = size_p = 508, DeepGlobe's
  2448 px context, random weights built by glnet's own model-file code) on a
  uint8 RGB scene (8192 x 8192 by default), stage 2, in fp32, fp16 and bf16:
  ``glnet segment`` end to end (Mpx/s), the bare network over the same crops
  (Mpx/s), the peak GPU memory of the run, and the share of mask pixels equal
  to the fp32 mask;
* the engine ceiling: the same scene with the network swapped for the free
  stand-in of ``engine_bench.py``;
* smoke runs under ``torchrun`` on one GPU: ``glnet train`` on tiny tiles for
  one epoch per stage, and ``glnet segment`` over a folder of two scenes.

Environment: GLNET_GPU_CHECK_SIZE (scene side, 8192), GLNET_GPU_CHECK_DEVICE
(cuda), GLNET_GPU_CHECK_CONFIG (resnet50; ``tiny`` for a dry run on a CPU),
GLNET_GPU_CHECK_DIR (work folder; default a temp dir, removed at the end).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from glnet_cli.inference.engine import Segmenter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PRECISIONS = ("fp32", "fp16", "bf16")
#: Peak GPU memory to stay under: below every published ultra-high-resolution method
#: (GLNet's paper reports 1865 MB).
GPU_GOAL_MB = 1193


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


#: The whole check stops starting new work after this many seconds (the GPU lease is short).
BUDGET_S = 450
_DEADLINE = time.monotonic() + BUDGET_S


def _call(command: list[str], timeout: float, cwd: Optional[str] = None) -> tuple[bool, str]:
    """Run ``command``; (succeeded, its last output line or why it failed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (ROOT, HERE, os.environ.get("PYTHONPATH")) if p)}
    timeout = min(timeout, _DEADLINE - time.monotonic())
    if timeout <= 0:
        return False, "skipped: the check's time budget is spent"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=cwd)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
    if done.returncode:
        said = [line.strip() for line in done.stderr.splitlines() + lines
                if line.strip() and not set(line.strip()) <= set("=-")]
        errors = ([line for line in said if line.startswith("glnet: error:")]
                  or [line for line in said if "error:" in line.lower()] or said)
        return False, (errors[-1] if errors else f"exit {done.returncode}")[:150]
    return True, lines[-1] if lines else ""


# -- one measurement per subprocess -------------------------------------------------------

def measure_segment(scene: str, model: str, precision: str, device: str, output: str) -> dict:
    """``glnet segment`` (the library call) at one precision, then the bare forward."""
    import torch

    from glnet_cli.device import resolve_device
    from glnet_cli.inference.engine import Segmenter, SegmentOptions
    from glnet_cli.io.model.checkpoint import load_model

    target = resolve_device(device)
    segmenter = Segmenter(load_model(model, target), target,
                          SegmentOptions(stage=2, precision=precision))
    result = segmenter.run(scene, output, overwrite=True)
    bare = bare_forward(segmenter, scene)
    return {"mpx_per_s": result.mpx_per_s, "bare_mpx_per_s": result.pixels / 1e6 / bare,
            "peak_gpu_mb": result.peak_gpu_mb, "crops": result.crops_run,
            "batch_size": segmenter.options.batch_size,
            "device": torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu"}


def bare_forward(segmenter: "Segmenter", scene: str) -> float:
    """Seconds the network alone takes over the run's blocks and crops (inputs already there)."""
    import torch

    from glnet_cli.device import autocast

    info, model, device = segmenter.info, segmenter.model, segmenter.device
    plan = segmenter.plan(segmenter.inspect(scene))
    batch = segmenter.options.batch_size
    precision = getattr(segmenter, "precision", segmenter.options.precision)
    view = torch.rand(1, info.config.in_channels, info.size_g, info.size_g, device=device)
    crops = torch.rand(batch, info.config.in_channels, info.size_p, info.size_p, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run(block_count: int) -> None:
        for block in plan.blocks[:block_count]:
            context = model.global_pyramid(view)
            for start in range(0, len(block.crops), batch):
                boxes = [plan.crops[i] for i in block.crops[start:start + batch]]
                tl = [((b.row - block.box.row) / block.box.height,
                       (b.col - block.box.col) / block.box.width) for b in boxes]
                ratio = (info.size_p / block.box.height, info.size_p / block.box.width)
                local = model.local_pyramid(crops[:len(boxes)], context, tl, ratio)
                logits, _ = model.aggregated(local.ps3, context.ps3, tl, ratio)
                torch.softmax(logits.float(), dim=1).to(torch.float16)

    with torch.inference_mode(), autocast(device, precision):
        run(1)  # warm-up: kernels chosen, memory pooled
        sync()
        started = time.perf_counter()
        run(len(plan.blocks))
        sync()
    return time.perf_counter() - started


# -- the table ----------------------------------------------------------------------------

def _agreement(mask: str, reference: str) -> float:
    """Share of the reference mask's pixels (all of them) that ``mask`` gives the same class."""
    import numpy as np
    import rasterio

    with rasterio.open(mask) as a, rasterio.open(reference) as b:
        same = total = 0
        for _, window in b.block_windows(1):
            x, y = a.read(1, window=window), b.read(1, window=window)
            same += int(np.count_nonzero(x == y))
            total += x.size
    return 100.0 * same / total


def _smoke_data(work: str) -> tuple[str, str]:
    """Tiny tiles (examples/make_sample_data.py) and a folder of two scenes."""
    data = os.path.join(work, "data")
    ok, why = _call(_python(os.path.join(ROOT, "examples", "make_sample_data.py"), data), 120)
    if not ok:
        raise RuntimeError(f"making the sample data failed: {why}")
    scenes = os.path.join(work, "scenes")
    os.makedirs(scenes, exist_ok=True)
    for name in ("a.tif", "b.tif"):
        shutil.copy(os.path.join(data, "scene.tif"), os.path.join(scenes, name))
    return data, scenes


def _torchrun(*args: str) -> list[str]:
    return _python("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                   "-m", "glnet_cli", *args)


def _timed(command: list[str], timeout: float, cwd: Optional[str] = None) -> tuple[bool, str]:
    started = time.perf_counter()
    ok, why = _call(command, timeout, cwd)
    seconds = time.perf_counter() - started
    return ok, f"ok, {seconds:.0f} s" if ok else f"FAILED: {why}"


def main() -> int:
    size = int(os.environ.get("GLNET_GPU_CHECK_SIZE", "8192"))
    device = os.environ.get("GLNET_GPU_CHECK_DEVICE", "cuda")
    config = os.environ.get("GLNET_GPU_CHECK_CONFIG", "resnet50")
    work = os.environ.get("GLNET_GPU_CHECK_DIR") or tempfile.mkdtemp(prefix="glnet-gpu-check-")
    keep = "GLNET_GPU_CHECK_DIR" in os.environ
    os.makedirs(work, exist_ok=True)
    rows: list[tuple[str, ...]] = []
    failed: list[str] = []
    started = time.perf_counter()
    try:
        from segment_bench import make_model, make_scene

        scene, model = os.path.join(work, f"scene_{size}.tif"), os.path.join(work, "model.pt")
        print(f"gpu_check: {size} x {size} scene, {config} model, device {device}, in {work}",
              flush=True)
        if not os.path.exists(scene):
            make_scene(scene, size)
        make_model(model, config)
        runs: dict[str, dict] = {}
        for precision in PRECISIONS:
            mask = os.path.join(work, f"mask_{precision}.tif")
            ok, line = _call(_python(__file__, "--segment", scene, model, precision, device, mask),
                             timeout=150)
            runs[precision] = json.loads(line) if ok else {"error": line}
            print(f"gpu_check: {precision} done ({time.perf_counter() - started:.0f} s)",
                  flush=True)
        reference = os.path.join(work, "mask_fp32.tif")
        for precision in PRECISIONS:
            run = runs[precision]
            if "error" in run:
                rows.append((f"{config} {precision}", "-", "-", "-", "-", run["error"]))
                if not (device == "cpu" and precision == "fp16"):  # refused there by design
                    failed.append(precision)
                continue
            agree = "-"
            if precision != "fp32" and "error" not in runs["fp32"]:
                agree = f"{_agreement(os.path.join(work, f'mask_{precision}.tif'), reference):.2f}"
            gpu = run["peak_gpu_mb"]
            gpu_text = ("-" if gpu is None
                        else f"{gpu:.0f} " + ("ok" if gpu < GPU_GOAL_MB else "over"))
            rows.append((f"{config} {precision}", f"{run['mpx_per_s']:.2f}",
                         f"{run['bare_mpx_per_s']:.2f}", gpu_text, agree,
                         f"{run['crops']} crops, batch {run['batch_size']}, {run['device']}"))
        ok, line = _call(_python(os.path.join(HERE, "engine_bench.py"), "--measure", scene,
                                 "--stage", "2", "--device", device), timeout=120)
        if ok:
            ceiling = json.loads(line)
            rows.append(("engine ceiling (stand-in)", f"{ceiling['mpx_per_s']:.2f}", "-",
                         "-" if ceiling["peak_gpu_mb"] is None
                         else f"{ceiling['peak_gpu_mb']:.0f}", "-",
                         f"{ceiling['crops']} crops, {ceiling['cpu_seconds']:.1f} CPU s"))
        else:
            rows.append(("engine ceiling (stand-in)", "-", "-", "-", "-", line))
            failed.append("ceiling")
        data, scenes = _smoke_data(work)
        smoke_model = os.path.join(work, "smoke.pt")
        trained, status = _timed(_torchrun(
            "train", "--tiles", os.path.join(data, "tiles"), "--classes",
            os.path.join(data, "classes.json"), "-o", smoke_model, "--backbone", "resnet18",
            "--width", "32", "--size-g", "128", "--size-p", "64", "--pretrained", "none",
            "--epochs", "1", "--batch-size", "2", "--sub-batch-size", "8", "--num-workers", "0",
            "--device", device, "--overwrite", "--quiet"), timeout=150, cwd=work)
        rows.append(("torchrun glnet train", "-", "-", "-", "-", status))
        masks = os.path.join(work, "masks")
        ok, status = _timed(_torchrun(
            "segment", scenes, "-o", masks, "--model", smoke_model, "--device", device,
            "--report", os.path.join(work, "report.json"), "--overwrite", "--quiet"),
            timeout=120, cwd=work)
        if ok and sorted(os.listdir(masks)) != ["a_mask.tif", "b_mask.tif"]:
            ok, status = False, f"FAILED: wrote {sorted(os.listdir(masks))}"
        rows.append(("torchrun glnet segment (2 scenes)", "-", "-", "-", "-", status))
        failed += [name for name, good in (("train", trained), ("segment", ok)) if not good]
    finally:
        _print_table(rows, size, time.perf_counter() - started)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if len(rows) == len(PRECISIONS) + 3 and not failed else 1


def _print_table(rows: list[tuple[str, ...]], size: int, seconds: float) -> None:
    header = ("run", "e2e Mpx/s", "bare Mpx/s", f"peak GPU MB (<{GPU_GOAL_MB})",
              "agree w/ fp32 %", "notes")
    print(f"\n| {' | '.join(header)} |\n|{'---|' * len(header)}")
    for row in rows:
        print(f"| {' | '.join(row)} |")
    print(f"\n{size} x {size} scene, stage 2; whole check {seconds:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--segment":
        print(json.dumps(measure_segment(*sys.argv[2:7])))
    else:
        sys.exit(main())
