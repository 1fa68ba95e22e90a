"""Reduced precision against fp32: how many mask pixels stay the same, and how much faster.

Two models, each segmented in fp32 and in every reduced precision the device
runs (bf16 on a CPU; fp16 and bf16 on CUDA), in this process, one after the
other:

* benchmark: the paper's network (ResNet-50, size_g = size_p = 508, 2448 px
  context, stage 2) with deterministic random weights drawn as
  ../shared/bench/ref_bench.py draws them (per-key seeds; BatchNorm statistics
  near the identity, convolutions scaled by their fan-in), on that script's
  blocky random scene;
* trained: the quickstart's tiny model (examples/quickstart.sh: synthetic land
  cover, ``glnet train``, about two minutes on a CPU), on its held-out scene,
  also scored against the known labels.

Run by hand (not in CI); the agreement goal is >= 99.5% for both:

    python benchmarks/precision_bench.py                      # 2448 px scene, this device
    python benchmarks/precision_bench.py --size 1224 --workdir /tmp/pb
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
GOAL = 0.995


def det_weights(state: dict) -> dict:
    """Random weights that depend only on each key, with ref_bench.py's distributions."""
    import torch

    out = {}
    for key, value in state.items():
        seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        g = torch.Generator().manual_seed(seed)
        bn = ".bn" in key or "downsample.1" in key
        if key.endswith("num_batches_tracked"):
            out[key] = value.clone()
        elif key.endswith("running_mean"):
            out[key] = (torch.rand(value.shape, generator=g) - 0.5) * 0.1
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(value.shape, generator=g)
        elif value.dim() == 1:
            scale = 0.05 if bn else 0.01
            out[key] = (1.0 + 0.1 * torch.randn(value.shape, generator=g)
                        if bn and key.endswith("weight")
                        else scale * torch.randn(value.shape, generator=g))
        else:
            out[key] = torch.randn(value.shape, generator=g) * (1.0 / value[0].numel()) ** 0.5
    return out


def benchmark_inputs(work: Path, size: int) -> tuple[Path, Path]:
    """The paper's network with ref_bench-style weights and ref_bench's scene of ``size`` px."""
    import rasterio
    from rasterio.transform import from_origin

    from glnet_cli.classes import DEEPGLOBE
    from glnet_cli.io.model.checkpoint import InputScaling, ModelInfo, save_model
    from models.glnet import GLNet

    model_path, scene = work / "resnet50.pt", work / f"scene{size}.tif"
    if not model_path.exists():
        model = GLNet(len(DEEPGLOBE), "resnet50", 3, 256)
        model.load_state_dict(det_weights(model.state_dict()))
        info = ModelInfo(config=model.config, classes=DEEPGLOBE, size_g=508, size_p=508,
                         context_size=2448, scaling=InputScaling.fixed("uint8", 3), stage=2)
        save_model(model_path, model, info)
    if not scene.exists():
        rng = np.random.default_rng(size)
        small = rng.integers(0, 256, (size // 32 + 1, size // 32 + 1, 3), dtype=np.uint8)
        image = np.kron(small, np.ones((32, 32, 1), np.uint8))[:size, :size]
        with rasterio.open(scene, "w", driver="GTiff", width=size, height=size, count=3,
                           dtype="uint8", crs="EPSG:32631", tiled=True, blockxsize=512,
                           blockysize=512, compress="deflate",
                           transform=from_origin(500000, 5000000, 0.5, 0.5)) as dst:
            dst.write(image.transpose(2, 0, 1))
    return model_path, scene


def trained_inputs(work: Path) -> tuple[Path, Path, Path]:
    """The quickstart's model, held-out scene and labels (examples/quickstart.sh, run once)."""
    data = work / "quickstart"
    if not (data / "model.best.pt").exists():
        print("running examples/quickstart.sh for a trained model ...", flush=True)
        subprocess.run(["bash", str(EXAMPLES / "quickstart.sh"), str(data)], check=True,
                       stdout=subprocess.DEVNULL,
                       env=dict(os.environ, PYTHON=sys.executable,
                                PATH=f"{Path(sys.executable).parent}{os.pathsep}"
                                     f"{os.environ.get('PATH', '')}"))
    return data / "model.best.pt", data / "scene.tif", data / "truth.tif"


def segment(model: Path, scene: Path, out: Path, precision: str, device: str) -> tuple:
    """(mask, seconds, Mpx/s, precision that ran) of one run in this process."""
    import rasterio

    from glnet_cli.device import resolve_device
    from glnet_cli.inference.engine import Segmenter, SegmentOptions
    from glnet_cli.io.model.checkpoint import load_model

    target = resolve_device(device)
    segmenter = Segmenter(load_model(model, target), target,
                          SegmentOptions(precision=precision))
    result = segmenter.run(str(scene), str(out), overwrite=True)
    with rasterio.open(out) as dst:
        return dst.read(1), result.seconds, result.mpx_per_s, segmenter.precision


def precisions(device: str) -> list[str]:
    import torch

    from glnet_cli.device import resolve_device

    if resolve_device(device).type == "cuda":
        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    return ["fp32", "bf16"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2448, help="benchmark scene size (px)")
    parser.add_argument("--workdir", default=None, help="keep models and scenes here")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="glnet-precision-"))
    work.mkdir(parents=True, exist_ok=True)
    cases = [("benchmark (ResNet-50)", *benchmark_inputs(work, args.size), None),
             ("trained (quickstart)", *trained_inputs(work))]
    print(f"{'model':24} {'precision':>9} {'seconds':>8} {'Mpx/s':>7} {'agree w/ fp32':>14} "
          f"{'accuracy':>9}")
    worst = 1.0
    for name, model, scene, truth in cases:
        reference = None
        labels = _read(truth) if truth else None
        for precision in precisions(args.device):
            mask, seconds, speed, ran = segment(model, scene, work / f"mask_{precision}.tif",
                                                precision, args.device)
            valid = mask != 255
            agree = 1.0 if reference is None else float((mask == reference)[valid].mean())
            reference = mask if reference is None else reference
            worst = min(worst, agree)
            accuracy = f"{(mask == labels)[valid].mean():.4f}" if labels is not None else "-"
            print(f"{name:24} {ran:>9} {seconds:8.1f} {speed:7.3f} {100 * agree:13.2f}% "
                  f"{accuracy:>9}", flush=True)
    print(f"worst agreement {100 * worst:.2f}% (goal >= {100 * GOAL:.1f}%); files in {work}")
    sys.exit(0 if worst >= GOAL else 1)


def _read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


if __name__ == "__main__":
    main()
