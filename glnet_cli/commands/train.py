"""``glnet train``: GLNet's three training stages on a folder of tiles."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

import click

from glnet_cli.architecture import BACKBONES, SIZE_RANGE
from glnet_cli.options import (
    bands_option,
    batch_size_option,
    classes_opt,
    device_option,
    overwrite_opt,
    precision_option,
    quiet_opt,
)
from glnet_cli.progress import ProgressReporter
from glnet_cli.tables import print_tables, table
from glnet_cli.training.config import TrainConfig
from glnet_cli.training.settings import DEFAULT_OUTPUT, RECIPES

if TYPE_CHECKING:
    from glnet_cli.training.loop import TrainResult
    from glnet_cli.training.plan import RunPlan
    from glnet_cli.training.setup import RunSetup
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


class DurationType(click.ParamType):
    """``90s``, ``15m``, ``2h``, ``1h30m`` or plain seconds, as seconds."""

    name = "duration"
    UNITS = {"h": 3600, "m": 60, "s": 1}

    def convert(self, value: Any, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text, seconds, number = str(value).strip().lower(), 0.0, ""
        try:
            for char in text:
                if char in self.UNITS:
                    seconds, number = seconds + float(number) * self.UNITS[char], ""
                else:
                    number += char
            seconds += float(number) if number else 0.0
        except ValueError:
            self.fail(f"{value!r}: give a duration such as 90s, 15m, 2h or 1h30m", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r}: give a positive duration", param, ctx)
        return seconds


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def _show_start(setup: RunSetup) -> None:
    """The recipe in one line, then how often each class occurs."""
    start = setup.info.provenance.get("pretrained")
    start = {None: "random", "none": "random", "imagenet": "ImageNet"}.get(
        start, os.path.basename(str(start)))
    click.echo(f"glnet: {setup.recipe.describe(start)}; computing in {setup.precision} on "
               f"{setup.ctx.device.type}", err=True)
    counts, weights = setup.counts, setup.class_weights
    columns = ("class", "pixels", "share", "tiles", "weight")
    rows = [(name, f"{counts.pixels[i]:,}", f"{counts.frequencies[i]:.2%}",
             f"{counts.tiles_with[i]}/{len(setup.train_tiles)}",
             "-" if weights is None else f"{weights[i]:.2f}")
            for i, name in enumerate(setup.spec.classes.names)]
    print_tables(table("training classes (sampled pixels)", columns, rows, right=columns[1:],
                       title_left=True), err=True)


def _show_epoch(record: EpochRecord) -> None:
    ended = f", stage ends ({record.stage_end})" if record.stage_end else ""
    title = (f"stage {record.stage}, epoch {record.epoch}: loss {record.train_loss:.4f}"
             f"{'' if record.val_loss is None else f', val loss {record.val_loss:.4f}'}"
             f", lr {record.lr:.2e}, {record.seconds:.0f} s{ended}")
    columns = ["monitor", "val mIoU", *record.val_iou]
    best = " (best)" if record.best else ""
    row = [_fmt(record.monitor) + best, _fmt(record.val_miou),
           *map(_fmt, record.val_iou.values())]
    print_tables(table(title, columns, [row], right=columns, title_left=True), err=True)


def _show_plan(plan: RunPlan) -> None:
    setup = plan.setup
    _show_start(setup)
    columns = ("stage", "crops", "steps", "s/step", "s/val", "s/epoch", "epochs", "share",
               "fit")
    rows = [(p.stage, p.crops_per_tile or "-", p.steps_per_epoch, f"{p.seconds_per_step:.2f}",
             f"{p.validation_seconds:.1f}", f"{p.epoch_seconds:.0f}", p.epochs,
             "-" if p.allowance is None else f"{p.allowance / 60:.1f} min",
             "-" if p.epochs_that_fit is None else p.epochs_that_fit) for p in plan.stages]
    title = (f"plan: {len(setup.train_tiles)} training tiles, {len(setup.val_tiles)} validation "
             f"tiles, size_g {setup.spec.size_g}, size_p {setup.spec.size_p}, peak memory "
             f"{plan.peak_mb:,.0f} MB")
    print_tables(table(title, columns, rows, right=columns, title_left=True))
    click.echo("crops: per tile; steps: per epoch; s/val: one validation; share: of "
               "--time-limit; fit: epochs that fit in it")


def _summary(result: TrainResult) -> None:
    columns = ("stage", "epochs", "ended by", "minutes", "last loss", "best monitor",
               "best val mIoU")
    rows = []
    for stage in sorted({r.stage for r in result.history}):
        records = [r for r in result.history if r.stage == stage]
        top = next((r for r in reversed(records) if r.best), None)  # the stage's best epoch
        rows.append((stage, records[-1].epoch, records[-1].stage_end or "-",
                     f"{sum(r.seconds for r in records) / 60:.1f}",
                     f"{records[-1].train_loss:.4f}", _fmt(top.monitor if top else None),
                     _fmt(top.val_miou if top else None)))
    print_tables(table("training summary", columns, rows, right=columns, title_left=True))
    state = "finished" if result.finished else "stopped (continue with --resume)"
    click.echo(f"wrote {result.output}: stage {result.info.stage}, {state}")
    best = [r for r in result.history if r.best][-1:]
    if result.best and best:
        click.echo(f"best epoch: {result.best} (stage {best[0].stage}, epoch {best[0].epoch}, "
                   f"monitored score {_fmt(best[0].monitor)})")


@click.command("train")
@click.option("--tiles", type=click.Path(file_okay=False),
              help="Tile folder: images/ + masks/ with matching names, or *_sat.jpg + *_mask.png.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help=f"Model file to write (MODEL.best.pt and MODEL.metrics.jsonl go beside it) "
                   f"[default: {DEFAULT_OUTPUT} in the current folder].")
@click.option("--stage", type=click.Choice(["1", "2", "3", "all"]), default=TrainConfig.stage,
              show_default=True, help="1 global, 2 global-to-local, 3 local-to-global.")
@click.option("--recipe", type=click.Choice(RECIPES), default=TrainConfig.recipe, show_default=True,
              help="auto: rates, warm-up, schedule, loss and class balance chosen from the "
                   "backbone's start (ImageNet or random weights); paper: GLNet's published "
                   "setting (lr 5e-5/2e-5/5e-5, weight decay 5e-4, focal loss, 120/50/120 "
                   "epochs). Options given below override the recipe.")
@click.option("--time-limit", type=DurationType(), default=TrainConfig.time_limit,
              help="Wall-clock budget, e.g. 15m or 2h: split over the stages (1/4, 1/2, 1/4), "
                   "each ending cleanly with its best epoch kept; without --epochs the clock "
                   "alone ends each stage.")
@click.option("--epochs", type=PerStageType(int), default=TrainConfig.epochs,
              help="Epochs: one number for every stage, or three [default: the recipe's].")
@click.option("--lr", type=PerStageType(float), default=TrainConfig.lr,
              help="Learning rate: one, or three (stages 1, 2, 3) [default: the recipe's].")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=TrainConfig.weight_decay,
              help="Adam weight decay [default: the recipe's].")
@click.option("--loss", default=TrainConfig.loss, metavar="NAME[+NAME]",
              help="focal, ce, dice, lovasz or a sum such as ce+dice [default: the recipe's: "
                   "ce+dice for auto, focal for paper].")
@click.option("--class-weights", default=TrainConfig.class_weights, metavar="auto|none|W1,W2,..",
              help="Loss weights per class; auto: from the training pixels' class "
                   "frequencies (1/sqrt) [default: auto, none for the paper recipe].")
@click.option("--oversample/--no-oversample", default=TrainConfig.oversample,
              help="Draw tiles holding rare classes more often [default: on, off for paper].")
@click.option("--monitor", default=TrainConfig.monitor, show_default=True,
              help="What picks MODEL.best.pt: miou (mean IoU of the classes after class 0, as "
                   "the reference scores), miou-all, accuracy, loss (validation loss) or "
                   "iou:CLASS.")
@click.option("--patience", type=click.IntRange(min=1), default=TrainConfig.patience,
              help="End a stage after this many epochs without a better monitored score.")
@click.option("--backbone", type=click.Choice(BACKBONES), default=TrainConfig.backbone,
              help="ResNet trunk [default: resnet50, or the --init model's].")
@click.option("--width", type=click.IntRange(min=8), default=TrainConfig.width,
              help="FPN width [default: 256; 64 for resnet18/34; or the --init model's].")
@click.option("--size-g", type=click.IntRange(*SIZE_RANGE), default=TrainConfig.size_g,
              help="Side of the global view [default: 508, or the smallest tile side if less; "
                   "or the --init model's].")
@click.option("--size-p", type=click.IntRange(*SIZE_RANGE), default=TrainConfig.size_p,
              help="Side of a local crop [default: 508, or half the smallest tile side if less; "
                   "or the --init model's].")
@batch_size_option("Tiles per optimiser step (per process under torchrun).",
                   TrainConfig.batch_size)
@click.option("--sub-batch-size", type=click.IntRange(min=1), default=TrainConfig.sub_batch_size,
              show_default=True,
              help="Crops of one tile per pass through the local branch.")
@click.option("--val", type=click.Path(file_okay=False), default=TrainConfig.val,
              help="Validation tile folder (same layout as --tiles).")
@click.option("--val-split", type=click.FloatRange(0, 0.9), default=TrainConfig.val_split,
              show_default=True,
              help="Without --val: this share of tiles, chosen by a hash of the file name.")
@classes_opt
@click.option("--ignore-index", type=click.IntRange(min=0), default=TrainConfig.ignore_index,
              show_default=True,
              help="Mask value left out of the loss and the scores.")
@bands_option(TrainConfig.bands)
@click.option("--pretrained", default=TrainConfig.pretrained,
              help="Backbone start: imagenet (torchvision's cache, downloaded if missing; an "
                   "error if it cannot be had), none, or a glnet model file [default: ImageNet "
                   "weights if they can be had, else random weights with a warning].")
@click.option("--init", type=click.Path(dir_okay=False), default=TrainConfig.init,
              help="Start from this model file (required by --stage 2 or 3 alone).")
@click.option("--resume", is_flag=True, default=TrainConfig.resume,
              help="Continue the run saved in --output (its options are read from it).")
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True,
              help="Seed of weights, data order and augmentation.")
@device_option(TrainConfig.device)
@precision_option(TrainConfig.precision)
@click.option("--num-workers", type=click.IntRange(min=0), default=TrainConfig.num_workers,
              show_default=True,
              help="Processes reading tiles.")
@click.option("--color-jitter/--no-color-jitter", default=TrainConfig.color_jitter,
              help="Random brightness and contrast [default: on, off for --recipe paper].")
@click.option("--skip-bad", is_flag=True, default=TrainConfig.skip_bad,
              help="Skip unusable tile pairs (one warning counts them) instead of stopping.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (tiles, crops, steps, seconds per epoch from a few measured "
                   "steps, peak memory) and train nothing.")
@overwrite_opt
@quiet_opt
def train_command(tiles: Optional[str], output: Optional[str], quiet: bool, dry_run: bool,
                  **options: Any) -> None:
    """Train a GLNet model on a folder of image/mask tiles, stage by stage.

    \b
    Example:
      glnet train --tiles tiles/ --val val/ -o roofs.pt --time-limit 2h
      glnet train --tiles tiles/ -o roofs.pt --dry-run
      glnet train --tiles deepglobe/train --classes deepglobe -o deepglobe.pt --recipe paper
      glnet train --resume -o deepglobe.pt
      torchrun --nproc_per_node 4 -m glnet_cli train --tiles tiles -o m.pt
    """
    from glnet_cli.training.distributed import launched_as_main  # torch: here, so --help is instant
    from glnet_cli.training.train import train

    if tiles is None and not options["resume"]:
        raise click.UsageError("give --tiles (only --resume reads it from the model file)")
    quiet = quiet or not launched_as_main()
    # Without -o: the current folder, named in full in every message, so the user sees where.
    output = output or os.path.abspath(DEFAULT_OUTPUT)
    config = TrainConfig(tiles=tiles or "", output=output, **options)
    if dry_run:
        from glnet_cli.training.plan import plan_run

        _show_plan(plan_run(config))
        return
    with ProgressReporter("train", quiet=quiet, unit="steps") as progress:
        result = train(config, progress=progress, on_epoch=None if quiet else _show_epoch,
                       on_start=None if quiet else _show_start)
    if result.is_main:
        _summary(result)
