"""``glnet evaluate``: IoU, F1 and accuracy of a mask against ground truth."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Optional

import click

from glnet_cli.options import IntListType, classes_opt, overwrite_opt, quiet_opt
from glnet_cli.progress import ProgressReporter
from glnet_cli.tables import print_tables, table

if TYPE_CHECKING:
    from glnet_cli.evaluation.evaluate import EvaluationResult

#: ``--json`` alone (or ``--json -``): the JSON goes to stdout.
STDOUT = "-"


@click.command("evaluate")
@click.argument("prediction", type=click.Path(dir_okay=False))
@click.argument("truth", type=click.Path())
@classes_opt
@click.option("--ignore-class", "ignore_class", type=IntListType(), multiple=True,
              help="Class id left out of the scores (e.g. 0, DeepGlobe's unknown); "
                   "repeatable or a comma list.")
@click.option("--attribute", default=None,
              help="Vector truth: integer field holding the class id "
                   "(default: every feature is class 1).")
@click.option("--background", type=int, default=0, show_default=True,
              help="Vector truth: class of the pixels no feature covers.")
@click.option("--window-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Pixels (a side) read at a time.")
@click.option("--layer", "layers", multiple=True, metavar="NAME",
              help="Vector truth: read this layer (repeatable; default: every layer).")
@click.option("--json", "json_out", is_flag=False, flag_value=STDOUT, default=None,
              metavar="[FILE]", type=click.Path(dir_okay=False, allow_dash=True),
              help="Print one JSON object instead of tables; --json FILE writes it to FILE "
                   "(and prints the tables).")
@overwrite_opt
@quiet_opt
def evaluate_command(prediction: str, truth: str, classes: Optional[str],
                     ignore_class: tuple[list[int], ...], attribute: Optional[str],
                     background: int, window_size: int, layers: tuple[str, ...],
                     json_out: Optional[str], overwrite: bool, quiet: bool) -> None:
    """Score the mask PREDICTION against TRUTH: per-class IoU, F1, precision, recall, mIoU.

    TRUTH is a raster of class ids, an RGB colour-coded raster (with --classes),
    or a vector file (.gpkg, .shp, .geojson) rasterised onto the mask's grid.
    A truth raster on another grid is resampled onto the mask's (a warning says so).
    A vector truth is read from all its layers unless --layer names some.

    \b
    Example:
      glnet evaluate mask.tif truth.tif --ignore-class 0
      glnet evaluate mask.tif truth_rgb.png --classes deepglobe --json
      glnet evaluate mask.tif buildings.gpkg --attribute class_id
      glnet evaluate mask.tif landcover.gpkg --layer parcels --json scores.json
    """
    from glnet_cli.evaluation.evaluate import evaluate
    from glnet_cli.io.paths import check_distinct, check_output, write_text
    from glnet_cli.io.text import load_class_table  # here, so that --help starts at once

    report_file = json_out if json_out not in (None, STDOUT) else None
    if report_file:
        check_distinct([report_file], [prediction, truth])
        check_output(report_file, overwrite)
    table = load_class_table(classes) if classes else None
    with ProgressReporter("evaluate", quiet, unit="windows") as report:
        result = evaluate(prediction, truth, classes=table,
                          ignore_classes=[c for group in ignore_class for c in group],
                          attribute=attribute, background=background, layers=layers,
                          window_size=window_size, progress=report)
    scores = json.dumps(result.to_dict(), indent=2)
    if json_out == STDOUT:
        click.echo(scores)
        return
    _print_tables(result)
    if report_file:
        write_text(report_file, scores + "\n", overwrite=overwrite)
        click.echo(f"wrote {report_file}")


def _print_tables(result: EvaluationResult) -> None:
    cm = result.confusion
    scores = table("Per-class scores", ("id", "class", "IoU", "F1", "precision", "recall"), (
        (i, name, *(_fmt(v[i]) for v in (cm.iou, cm.f1, cm.precision, cm.recall)))
        for i, name in enumerate(result.class_names)))
    predicted = [str(i) for i in range(cm.n_classes)]
    confusion = table("Confusion matrix (pixels)", ("truth \\ pred", *predicted), (
        (f"{i} {name}", *(f"{int(v):,}" for v in row))
        for i, (name, row) in enumerate(zip(result.class_names, cm.matrix))), right=predicted)
    totals = [f"mIoU: {_fmt(cm.miou)}", f"pixel accuracy: {_fmt(cm.accuracy)}",
              f"scored pixels: {cm.total:,}",
              f"unlabelled prediction pixels: {result.unlabelled_pixels:,}"]
    if cm.ignore_classes:
        totals.append(f"ignored classes: {', '.join(map(str, cm.ignore_classes))}")
    print_tables(scores, confusion, "\n".join(totals))


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"
