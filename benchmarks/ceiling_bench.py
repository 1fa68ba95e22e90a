"""How high plain full-resolution networks score on a scene's validation tiles.

A target for ``glnet train`` means something only below what the tiles allow.
This trains small fully convolutional networks that keep every pixel (a
dilated CNN and two U-Nets, no stride at the output) from random weights on
the same training tiles ``real_train_bench.py`` uses, for a fixed number of
seconds each, and prints the validation mean IoU over the classes present:
the best seen during training (chosen on the validation tiles themselves, so
an upper bound) and the last. It is meant for a GPU, where a minute is many
times the steps a 2-core CPU takes in 15 minutes.

    python benchmarks/ceiling_bench.py --workdir /tmp/ceiling --scene zion --seconds 45
    python benchmarks/ceiling_bench.py --workdir /tmp/ceiling --runs unet64:ce+lovasz

The losses and class weights are glnet's own (``models.losses``: ``1/sqrt``
of the training pixels' class frequencies, capped at 10, as ``--class-weights
auto``); ``:inv`` after a run weighs by ``1/f`` instead, capped at 100.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from real_tiles import DATA, PLANS, cut  # noqa: E402

from glnet_cli.evaluation.metrics import ConfusionMatrix  # noqa: E402
from models.losses import LOSS_NAMES, build_loss, class_weights_from_frequencies  # noqa: E402

DEFAULT_RUNS = "dilated:ce,unet32:ce,unet64:ce,unet64:ce+dice,unet64:ce+lovasz,unet64:ce:inv"


def load_tiles(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """Every tile of ``folder`` stacked: images (N, bands, H, W) and masks (N, H, W)."""
    images, masks = [], []
    for name in sorted(os.listdir(os.path.join(folder, "images"))):
        with rasterio.open(os.path.join(folder, "images", name)) as src:
            images.append(src.read().astype(np.float32))
        with rasterio.open(os.path.join(folder, "masks", name)) as src:
            masks.append(src.read(1).astype(np.int64))
    return np.stack(images), np.stack(masks)


def conv_block(inputs: int, outputs: int, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, padding=dilation, dilation=dilation),
            nn.BatchNorm2d(outputs), nn.ReLU(inplace=True)]


def dilated_cnn(bands: int, classes: int, width: int = 64) -> nn.Module:
    """Four 3x3 layers, dilations 1, 2, 4, 8: a 31 px field of view, no downsampling."""
    layers = conv_block(bands, width)
    for dilation in (2, 4, 8):
        layers += conv_block(width, width, dilation)
    return nn.Sequential(*layers, nn.Conv2d(width, classes, 1))


class UNet(nn.Module):
    """A four-level U-Net whose decoder returns to full resolution."""

    def __init__(self, bands: int, classes: int, width: int) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        ins = [bands, *widths[:-1]]
        self.down = nn.ModuleList(
            nn.Sequential(*conv_block(i, o), *conv_block(o, o)) for i, o in zip(ins, widths))
        self.up = nn.ModuleList(
            nn.Sequential(*conv_block(widths[i] + widths[i - 1], widths[i - 1]),
                          *conv_block(widths[i - 1], widths[i - 1])) for i in (3, 2, 1))
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear")
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


NETWORKS: dict[str, Callable[[int, int], nn.Module]] = {
    "dilated": dilated_cnn,
    "unet32": lambda bands, classes: UNet(bands, classes, 32),
    "unet64": lambda bands, classes: UNet(bands, classes, 64),
}


class Ceiling:
    """The tiles on the device, normalised, and the class weights every run shares."""

    def __init__(self, train: str, val: str, device: torch.device) -> None:
        images, masks = load_tiles(train)
        val_images, val_masks = load_tiles(val)
        low = np.percentile(images, 2, axis=(0, 2, 3), keepdims=True)
        high = np.percentile(images, 98, axis=(0, 2, 3), keepdims=True)
        self.device = device
        self.images = torch.tensor((images - low) / (high - low), device=device)
        self.val_images = torch.tensor((val_images - low) / (high - low), device=device)
        self.masks = torch.tensor(masks, device=device)
        self.val_masks = torch.tensor(val_masks, device=device)
        self.classes = int(max(masks.max(), val_masks.max())) + 1
        self.counts = np.bincount(masks.ravel(), minlength=self.classes).astype(np.float64)

    def weights(self, inverse: bool) -> torch.Tensor:
        """glnet's ``auto`` class weights, or ``1/f`` (a pixel weighing 1 on average)."""
        if not inverse:
            return torch.tensor(class_weights_from_frequencies(self.counts), dtype=torch.float32)
        freq = self.counts / self.counts.sum()
        weights = np.where(freq > 0, 1.0 / np.maximum(freq, 1e-12), 0.0)
        return torch.tensor(weights / (weights * freq).sum(), dtype=torch.float32).clamp(max=100)

    def score(self, net: nn.Module, images: torch.Tensor, masks: torch.Tensor
              ) -> tuple[float, dict[int, float]]:
        """Mean IoU over the classes present in ``masks``, as ``real_train_bench`` scores."""
        net.eval()
        with torch.no_grad():
            predicted = torch.cat([net(images[i:i + 16]).argmax(1)
                                   for i in range(0, len(images), 16)])
        net.train()
        scores = ConfusionMatrix(self.classes)
        scores.update(masks.cpu().numpy(), predicted.cpu().numpy())
        present = np.flatnonzero(scores.matrix.sum(axis=1))
        ious = {int(label): float(scores.iou[label]) for label in present}
        return float(np.mean(list(ious.values()))), ious

    def train(self, network: str, loss: str, inverse: bool, seconds: float, batch: int = 16,
              lr: float = 3e-3, every: int = 250) -> dict:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        net = NETWORKS[network](self.images.shape[1], self.classes).to(self.device)
        criterion = build_loss(loss, self.weights(inverse)).to(self.device)
        optimizer = torch.optim.AdamW(net.parameters(), lr, weight_decay=1e-4)
        best: tuple[float, dict[int, float], int] = (-1.0, {}, 0)
        started, step = time.monotonic(), 0
        while time.monotonic() - started < seconds:
            pick = torch.as_tensor(rng.integers(0, len(self.images), batch), device=self.device)
            turns = int(rng.integers(4))
            x = self.images[pick].rot90(turns, (-2, -1))
            y = self.masks[pick].rot90(turns, (-2, -1))
            if rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            loss_value = criterion(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss_value.backward()
            optimizer.step()
            step += 1
            if step % every == 0:
                miou, ious = self.score(net, self.val_images, self.val_masks)
                if miou > best[0]:
                    best = (miou, ious, step)
        last, ious = self.score(net, self.val_images, self.val_masks)
        if last > best[0]:
            best = (last, ious, step)
        train_last, _ = self.score(net, self.images, self.masks)
        return {"steps": step, "best": best[0], "best_ious": best[1], "best_step": best[2],
                "last": last, "train_last": train_last}


def parse_runs(text: str) -> list[tuple[str, str, bool]]:
    """``NETWORK:LOSS[:inv],...`` as (network, loss, inverse weights) triples."""
    runs = []
    for item in text.split(","):
        network, loss, *weighting = item.split(":")
        losses = loss.split("+")
        if (network not in NETWORKS or weighting not in ([], ["inv"])
                or not all(name in LOSS_NAMES for name in losses)):
            raise argparse.ArgumentTypeError(
                f"{item!r}: want NETWORK:LOSS[:inv], networks {', '.join(NETWORKS)}, losses "
                f"{', '.join(LOSS_NAMES)} (joined with +)")
        runs.append((network, loss, weighting == ["inv"]))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--scene", choices=sorted(PLANS), default="zion")
    parser.add_argument("--seconds", type=float, default=45.0, help="Training time per run.")
    parser.add_argument("--runs", type=parse_runs, default=DEFAULT_RUNS,
                        help="NETWORK:LOSS[:inv], comma-separated (networks: "
                             f"{', '.join(NETWORKS)}).")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", default=DATA, help="Folder of the sample scenes.")
    args = parser.parse_args()
    train, val = cut(PLANS[args.scene], os.path.join(args.workdir, args.scene, "tiles"), args.data)
    ceiling = Ceiling(train, val, torch.device(args.device))
    print(f"{args.scene}: {len(ceiling.images)} training and {len(ceiling.val_images)} "
          f"validation tiles, {args.seconds:g} s a run on {args.device}")
    print("| network | loss | weights | steps | best val mIoU (step) | last val mIoU "
          "| last train mIoU | per class IoU at best |")
    print("|---|---|---|---|---|---|---|---|")
    for network, loss, inverse in args.runs:
        result = ceiling.train(network, loss, inverse, args.seconds)
        per_class = " ".join(f"{c}:{iou:.2f}" for c, iou in result["best_ious"].items())
        weights = "1/f" if inverse else "auto"
        print(f"| {network} | {loss} | {weights} | {result['steps']} | {result['best']:.3f} "
              f"({result['best_step']}) | {result['last']:.3f} | {result['train_last']:.3f} "
              f"| {per_class} |", flush=True)


if __name__ == "__main__":
    main()
