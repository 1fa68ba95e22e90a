"""The engine's ceiling: ``glnet segment`` with the network swapped for a free stand-in.

Everything but the network runs as in a real run (decimated global reads,
windowed crop reads, blending, argmax, the tiled DEFLATE writer), so the
throughput printed here is the most the engine can feed any network with. Each
size runs in a fresh subprocess, so its peak resident memory is its own. Run by
hand (not in CI):

    python benchmarks/engine_bench.py                           # 2048, 4096, 8192, this device
    python benchmarks/engine_bench.py --sizes 8192 --stage 3 --device cuda

Scenes are uint8, 3 bands, tiled, DEFLATE, with overviews (as segment_bench.py
writes them) and cached in ``--workdir`` between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Optional

import torch

from models.fpn import Pyramid, resize
from models.glnet import GLNet, crop_regions

if TYPE_CHECKING:
    from glnet_cli.io.model.checkpoint import InputScaling, ModelFile

#: The paper's geometry: crops and global view of 508 px, DeepGlobe's 2448 px context.
SIZE_P, SIZE_G, CONTEXT = 508, 508, 2448


class StandInGLNet(GLNet):
    """GLNet's interface at almost no cost: no backbone or FPN runs.

    A branch's ``ps3`` is the input sampled every 4 pixels (the network's
    output resolution); the logits are a fixed random 1x1 mix of a crop's ``ps3``
    and its region of the global ``ps3``, so the classes follow the image and
    the crop's position, and the engine's bookkeeping is what gets measured.
    Built on a small real GLNet so that code touching the branches still works.
    """

    def __init__(self, n_classes: int, in_channels: int = 3, seed: int = 0) -> None:
        super().__init__(n_classes, "resnet18", in_channels, width=8, l2g=True)
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("mix", 8 * torch.randn(in_channels, 1, n_classes, 1, 1,
                                                    generator=generator))
        self.register_buffer("bias", torch.randn(1, n_classes, 1, 1, generator=generator))

    @staticmethod
    def _pyramid(image: torch.Tensor) -> Pyramid:
        ps3 = image[:, :, 1::4, 1::4]
        return Pyramid([], [], [], [], ps3, ps3)

    def global_pyramid(self, image_global: torch.Tensor) -> Pyramid:
        return self._pyramid(image_global)

    def l2g_pyramid(self, image_global: torch.Tensor, merged: object) -> Pyramid:
        return self._pyramid(image_global)

    def local_pyramid(self, patches: torch.Tensor, global_pyramid: Pyramid, top_lefts: list,
                      ratio: tuple[float, float]) -> Pyramid:
        return self._pyramid(patches)

    def aggregated(self, local_ps3: torch.Tensor, global_ps3: torch.Tensor, top_lefts: list,
                   ratio: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        region = resize(crop_regions(global_ps3, top_lefts, ratio), local_ps3.shape[-2:])
        mixed = local_ps3 + 0.5 * region - 0.75
        # Band by band, so that every crop's logits are the same bits in any batch.
        logits = self.bias.to(mixed.dtype)
        for band, weights in enumerate(self.mix.to(mixed.dtype)):
            logits = logits + mixed[:, band:band + 1] * weights
        return logits, local_ps3.new_zeros(())


def standin_model_file(n_classes: int = 7, size_p: int = SIZE_P, size_g: int = SIZE_G,
                       context: int = CONTEXT, in_channels: int = 3,
                       scaling: Optional["InputScaling"] = None) -> "ModelFile":
    """A stage-3 model file in memory whose network is :class:`StandInGLNet` (uint8 input)."""
    from glnet_cli.classes import DEEPGLOBE, generic_table
    from glnet_cli.io.model.checkpoint import InputScaling, ModelFile, ModelInfo

    model = StandInGLNet(n_classes, in_channels)
    model.stage = 3
    classes = DEEPGLOBE if n_classes == len(DEEPGLOBE) else generic_table(n_classes)
    info = ModelInfo(config=model.config, classes=classes, size_g=size_g, size_p=size_p,
                     context_size=context,
                     scaling=scaling or InputScaling.fixed("uint8", in_channels), stage=3)
    return ModelFile(model.eval(), info)


def measure(scene: str, stage: int, device: str, batch_size: int, probabilities: bool) -> dict:
    """Segment ``scene`` once in this process; the numbers as a dict."""
    from glnet_cli.device import resolve_device
    from glnet_cli.inference.engine import Segmenter, SegmentOptions

    torch.set_num_threads(1)  # the stand-in needs none; the engine's threads get the cores
    target = resolve_device(device)
    segmenter = Segmenter(standin_model_file(), target,
                          SegmentOptions(stage=stage, batch_size=batch_size))
    output = scene + ".engine.tif"
    probs = scene + ".probs.tif" if probabilities else None
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    result = segmenter.run(scene, output, overwrite=True, probabilities=probs)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    for path in (output, probs):
        if path:
            os.remove(path)
    return {"seconds": seconds, "cpu_seconds": cpu, "mpx_per_s": result.pixels / 1e6 / seconds,
            "crops": result.crops_run, "device": str(target),
            "peak_host_mb": result.peak_host_mb,
            "peak_gpu_mb": result.peak_gpu_mb}


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: less sensitive than seconds to a busy machine."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_sizes(sizes: list[int], workdir: str, stage: int = 2, device: str = "auto",
              batch_size: int = 6, probabilities: bool = False) -> list[dict]:
    """Measure every size in its own subprocess (scenes cached in ``workdir``)."""
    from segment_bench import make_scene

    rows = []
    for size in sizes:
        scene = os.path.join(workdir, f"scene_{size}.tif")
        if not os.path.exists(scene):
            make_scene(scene, size)
        command = [sys.executable, os.path.abspath(__file__), "--measure", scene,
                   "--stage", str(stage), "--device", device, "--batch-size", str(batch_size)]
        done = subprocess.run(command + (["--probabilities"] if probabilities else []),
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"engine_bench: {size}: {done.stderr.strip()}")
        rows.append({"size": size, **json.loads(done.stdout.strip().splitlines()[-1])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--stage", type=int, default=2, choices=[2, 3])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=6)
    parser.add_argument("--probabilities", action="store_true",
                        help="Also write the uint8 probability raster")
    parser.add_argument("--workdir", default=None, help="Folder for scenes (default: a temp dir)")
    parser.add_argument("--measure", metavar="SCENE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.stage, args.device, args.batch_size,
                                 args.probabilities)))
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix="glnet-engine-")
    os.makedirs(workdir, exist_ok=True)
    header = (f"{'size':>7} {'stage':>5} {'device':>8} {'crops':>6} {'seconds':>8} "
              f"{'CPU s':>7} {'Mpx/s':>7} {'peak RSS MB':>11} {'GPU MB':>7}")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        row = run_sizes([size], workdir, args.stage, args.device, args.batch_size,
                        args.probabilities)[0]
        gpu = f"{row['peak_gpu_mb']:.0f}" if row["peak_gpu_mb"] is not None else "-"
        print(f"{size:>7} {args.stage:>5} {row['device']:>8} {row['crops']:>6} "
              f"{row['seconds']:>8.2f} {row['cpu_seconds']:>7.2f} {row['mpx_per_s']:>7.1f} "
              f"{row['peak_host_mb']:>11.0f} {gpu:>7}", flush=True)


if __name__ == "__main__":
    main()
