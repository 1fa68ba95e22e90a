"""``glnet train``: GLNet's three training stages on a folder of tiles."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

import click

from glnet_cli.architecture import BACKBONES, SIZE_RANGE
from glnet_cli.options import (bands_opt, batch_size_option, classes_opt, device_opt,
                               overwrite_opt, precision_opt, quiet_opt)
from glnet_cli.progress import ProgressReporter
from glnet_cli.tables import print_tables, table
from glnet_cli.training.settings import DEFAULT_OUTPUT, PAPER_EPOCHS, PAPER_LR, WEIGHT_DECAY

if TYPE_CHECKING:
    from glnet_cli.training.loop import TrainResult
    from glnet_cli.training.state import EpochRecord


class PerStageType(click.ParamType):
    """``120`` for every stage, or ``120,50,120`` stage by stage."""

    name = "n[,n,n]"

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def convert(self, value: Any, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> tuple:
        if isinstance(value, tuple):
            return value
        try:
            values = tuple(self.kind(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r}: give one number, or three separated by commas", param, ctx)
        if len(values) not in (1, 3) or min(values) <= 0:
            self.fail(f"{value!r}: give one positive number, or three (stages 1, 2, 3)",
                      param, ctx)
        return values * 3 if len(values) == 1 else values


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def _show_epoch(record: EpochRecord) -> None:
    title = (f"stage {record.stage}, epoch {record.epoch}/{record.epochs}: loss "
             f"{record.train_loss:.4f}, lr {record.lr:.2e}, {record.seconds:.0f} s")
    columns = ["val mIoU", "accuracy", *record.val_iou]
    best = " (best)" if record.best else ""
    row = [_fmt(record.val_miou) + best, _fmt(record.val_accuracy),
           *map(_fmt, record.val_iou.values())]
    print_tables(table(title, columns, [row], right=columns, title_left=True), err=True)


def _summary(result: TrainResult) -> None:
    columns = ("stage", "epochs", "last loss", "best val mIoU", "last val mIoU")
    rows = []
    for stage in sorted({r.stage for r in result.history}):
        records = [r for r in result.history if r.stage == stage]
        scores = [r.val_miou for r in records if r.val_miou is not None]
        rows.append((stage, f"{records[-1].epoch}/{records[-1].epochs}",
                     f"{records[-1].train_loss:.4f}", _fmt(max(scores, default=None)),
                     _fmt(records[-1].val_miou)))
    print_tables(table("training summary", columns, rows, right=columns, title_left=True))
    state = "finished" if result.finished else "stopped (continue with --resume)"
    click.echo(f"wrote {result.output}: stage {result.info.stage}, {state}")
    if result.best:
        click.echo(f"best epoch of the last stage: {result.best}")


@click.command("train")
@click.option("--tiles", type=click.Path(file_okay=False),
              help="Tile folder: images/ + masks/ with matching names, or *_sat.jpg + *_mask.png.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help=f"Model file to write (MODEL.best.pt and MODEL.metrics.jsonl go beside it) "
                   f"[default: {DEFAULT_OUTPUT} in the current folder].")
@click.option("--stage", type=click.Choice(["1", "2", "3", "all"]), default="all",
              show_default=True, help="1 global, 2 global-to-local, 3 local-to-global.")
@click.option("--epochs", type=PerStageType(int), default=",".join(map(str, PAPER_EPOCHS)),
              show_default=True, help="Epochs: one number for every stage, or three.")
@click.option("--lr", type=PerStageType(float), default=",".join(map(str, PAPER_LR)),
              show_default=True, help="Learning rate: one, or three (stages 1, 2, 3).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=WEIGHT_DECAY,
              show_default=True, help="Adam weight decay (0 helps short runs from scratch).")
@click.option("--backbone", type=click.Choice(BACKBONES), default=None,
              help="ResNet trunk [default: resnet50, or the --init model's].")
@click.option("--width", type=click.IntRange(min=8), default=None,
              help="FPN width [default: 256, or the --init model's].")
@click.option("--size-g", type=click.IntRange(*SIZE_RANGE), default=None,
              help="Side of the global view [default: 508, or the --init model's].")
@click.option("--size-p", type=click.IntRange(*SIZE_RANGE), default=None,
              help="Side of a local crop [default: 508, or the --init model's].")
@batch_size_option("Tiles per optimiser step (per process under torchrun).", default=6)
@click.option("--sub-batch-size", type=click.IntRange(min=1), default=6, show_default=True,
              help="Crops of one tile per pass through the local branch.")
@click.option("--val", type=click.Path(file_okay=False), default=None,
              help="Validation tile folder (same layout as --tiles).")
@click.option("--val-split", type=click.FloatRange(0, 0.9), default=0.1, show_default=True,
              help="Without --val: this share of tiles, chosen by a hash of the file name.")
@classes_opt
@click.option("--ignore-index", type=click.IntRange(min=0), default=255, show_default=True,
              help="Mask value left out of the loss and the scores.")
@bands_opt
@click.option("--pretrained", default=None,
              help="Backbone start: imagenet (torchvision's cache, downloaded if missing; an "
                   "error if it cannot be had), none, or a glnet model file [default: ImageNet "
                   "weights if they can be had, else random weights with a warning].")
@click.option("--init", type=click.Path(dir_okay=False), default=None,
              help="Start from this model file (required by --stage 2 or 3 alone).")
@click.option("--resume", is_flag=True,
              help="Continue the run saved in --output (its options are read from it).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of weights, data order and augmentation.")
@device_opt
@precision_opt
@click.option("--num-workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Processes reading tiles.")
@click.option("--color-jitter", is_flag=True, help="Random brightness and contrast.")
@click.option("--skip-bad", is_flag=True,
              help="Skip unusable tile pairs (one warning counts them) instead of stopping.")
@overwrite_opt
@quiet_opt
def train_command(tiles: Optional[str], output: Optional[str], quiet: bool,
                  **options: Any) -> None:
    """Train a GLNet model on a folder of image/mask tiles, stage by stage.

    \b
    Example:
      glnet train --tiles deepglobe/train --classes deepglobe -o deepglobe.pt
      glnet train --resume -o deepglobe.pt
      torchrun --nproc_per_node 4 -m glnet_cli train --tiles tiles -o m.pt
    """
    from glnet_cli.training.distributed import launched_as_main  # torch: here, so --help is instant
    from glnet_cli.training.train import TrainConfig, train

    if tiles is None and not options["resume"]:
        raise click.UsageError("give --tiles (only --resume reads it from the model file)")
    quiet = quiet or not launched_as_main()
    # Without -o: the current folder, named in full in every message, so the user sees where.
    output = output or os.path.abspath(DEFAULT_OUTPUT)
    config = TrainConfig(tiles=tiles or "", output=output, **options)
    with ProgressReporter("train", quiet=quiet, unit="steps") as progress:
        result = train(config, progress=progress, on_epoch=None if quiet else _show_epoch)
    if result.is_main:
        _summary(result)
