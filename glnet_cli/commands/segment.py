"""``glnet segment``: one scene to one mask, or a batch of scenes to a folder of masks."""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING, Optional, Sequence

import click
from rich.console import Console
from rich.table import Table

from glnet_cli.errors import ENVIRONMENT_ERROR, USER_ERROR, InputError, OutputError
from glnet_cli.inference.batch import (check_batch_outputs, expand_inputs, output_name,
                                       run_batch, shard, write_report)
from glnet_cli.io.paths import check_distinct, check_output
from glnet_cli.options import (bands_opt, batch_size_opt, creation_opt, device_opt, model_opt,
                               nodata_opt, overwrite_opt, precision_opt, quiet_opt)
from glnet_cli.progress import ProgressReporter

if TYPE_CHECKING:
    from glnet_cli.inference.engine import PlanSummary, Segmenter, SegmentResult

NO_MODEL = ("no model given: pass --model MODEL.pt or set GLNET_MODEL=/path/to/model.pt "
            "(train one with 'glnet train', or convert the released reference models with "
            "'glnet convert-reference')")


@click.command("segment")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True,
              help="Mask file for one scene; a folder for several (masks named <scene>_mask.tif).")
@model_opt
@click.option("--stage", type=click.Choice(["2", "3"]), default=None,
              help="2: global-to-local only; 3: full GLNet (default: the highest the model has).")
@batch_size_opt
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="Least overlap between neighbouring crops, in pixels "
                   "(default 64, or a quarter of a smaller crop).")
@device_opt
@precision_opt
@bands_opt
@nodata_opt
@click.option("--cog", is_flag=True, help="Write a Cloud-Optimized GeoTIFF with overviews.")
@click.option("--probabilities", type=click.Path(), default=None,
              help="Also write per-class probabilities (uint8 0-255) to this file (a folder "
                   "in batch mode).")
@creation_opt
@overwrite_opt
@click.option("--skip-existing", is_flag=True, help="Batch: skip scenes whose mask exists.")
@click.option("--fail-fast", is_flag=True, help="Batch: stop at the first failed scene.")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Batch: write a JSON report with one object per scene.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan and exit without running the network.")
@quiet_opt
def segment_command(inputs: Sequence[str], output: str, model_path: Optional[str],
                    stage: Optional[str], batch_size: int, overlap: Optional[int], device: str,
                    precision: str, bands: Optional[list[int]], nodata: Optional[float],
                    cog: bool,
                    probabilities: Optional[str], creation_options: Sequence[tuple[str, str]],
                    overwrite: bool, skip_existing: bool, fail_fast: bool, report: Optional[str],
                    dry_run: bool, quiet: bool) -> None:
    """Segment GeoTIFF scenes into georeferenced class masks with GLNet.

    INPUTS are scenes: files, folders, globs or @list.txt. With one scene,
    -o names the mask; with several (or a folder), -o is a folder.

    \b
    Examples:
      glnet segment scene.tif -o mask.tif --model model.pt
      GLNET_MODEL=model.pt glnet segment scene.tif -o mask.tif --cog
      glnet segment archive/ -o masks/ --skip-existing --report run.json
      torchrun --nproc_per_node 4 -m glnet_cli.cli segment archive/ -o masks/
    """
    if not model_path:
        raise InputError(NO_MODEL)
    from glnet_cli.inference.engine import SegmentOptions, Segmenter
    from glnet_cli.io.checkpoint import load_model  # torch: here, so that --help starts at once
    from glnet_cli.training.distributed import distributed

    batch = (len(inputs) > 1 or os.path.isdir(output) or output.endswith(("/", os.sep))
             or any(os.path.isdir(i) or glob.has_magic(i) or i.startswith("@") for i in inputs))
    options = SegmentOptions(int(stage) if stage else None, batch_size, overlap, precision, bands,
                             nodata)
    scenes = expand_inputs(inputs) if batch else list(inputs)
    if not dry_run:  # refused now, not after hours of work
        from glnet_cli.io.writer import output_options  # rasterio: here, so --help starts at once

        output_options(creation_options, cog)
        if batch:
            _check_batch_outputs(scenes, output, probabilities, report, overwrite)
        else:
            check_distinct([output, probabilities], scenes)
    with distributed(device) as dist_ctx:
        segmenter = Segmenter(load_model(model_path, dist_ctx.device), dist_ctx.device, options)
        if dry_run:
            for scene in shard(scenes, dist_ctx.rank, dist_ctx.world_size):
                _print_plan(segmenter.dry_run(scene))
            return
        if not batch:
            result = _run_one(segmenter, scenes[0], output, quiet, overwrite=overwrite, cog=cog,
                              probabilities=probabilities, creation_options=creation_options)
            click.echo(_summary_line(result))
            return

        def segment_one(scene: str, mask: str) -> tuple[float, float]:
            result = _run_one(segmenter, scene, mask, quiet, overwrite=overwrite, cog=cog,
                              probabilities=_probabilities_name(scene, probabilities),
                              creation_options=creation_options)
            click.echo(_summary_line(result), err=True)
            return result.seconds, result.mpx_per_s

        reports = run_batch(shard(scenes, dist_ctx.rank, dist_ctx.world_size),
                            lambda scene: output_name(scene, output), segment_one,
                            skip_existing=skip_existing, fail_fast=fail_fast)
        for item in reports:
            if item.status == "failed":
                click.echo(f"glnet: error: {item.error}", err=True)
        reports = dist_ctx.gather(reports)
        if not dist_ctx.is_main:
            return
        if report:
            write_report(report, reports, overwrite=overwrite)
        _print_batch(reports)
        failures = {r.exit_code for r in reports if r.status == "failed"}
        if failures:
            # A failing environment (full disk) outranks bad input: retrying elsewhere may help.
            raise click.exceptions.Exit(ENVIRONMENT_ERROR if ENVIRONMENT_ERROR in failures
                                        else USER_ERROR)


def _run_one(segmenter: Segmenter, scene: str, output: str, quiet: bool,
             **kwargs: object) -> SegmentResult:
    with ProgressReporter(f"segment {os.path.basename(scene)}", quiet,
                          unit="crop passes") as report:
        return segmenter.run(scene, output, progress=report, **kwargs)


def _check_batch_outputs(scenes: list[str], output: str, probabilities: Optional[str],
                         report: Optional[str], overwrite: bool) -> None:
    """Make the output folders; refuse a report in the way and outputs that are inputs."""
    _prepare_folder(output)
    if probabilities:
        _prepare_folder(probabilities)
    if report:
        check_output(report, overwrite)
    check_batch_outputs(scenes, lambda scene: (output_name(scene, output),
                                               _probabilities_name(scene, probabilities)),
                        [report])


def _probabilities_name(scene: str, folder: Optional[str]) -> Optional[str]:
    return output_name(scene, folder, "_probs") if folder else None


def _prepare_folder(folder: str) -> None:
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        problem = "is not a folder" if os.path.exists(parent) else "does not exist"
        raise OutputError(f"{folder}: its parent folder {parent} {problem}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot make the output folder: "
                          f"{exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{folder}: output folder is not writable")


def _summary_line(result: SegmentResult) -> str:
    counted = sum(result.histogram.values())
    classes = ", ".join(f"{name} {100 * n / counted:.1f}%"
                        for name, n in sorted(result.histogram.items(), key=lambda kv: -kv[1])
                        ) if counted else "no valid pixels"
    gpu = f", GPU peak {result.peak_gpu_mb:.0f} MB" if result.peak_gpu_mb is not None else ""
    # The progress bar counts crop passes: stage 3 adds one L2G pass per crop of each block.
    l2g = f" (+{result.l2g_passes} L2G passes)" if result.l2g_passes else ""
    return (f"{result.output}: {result.pixels / 1e6:.2f} Mpx in {result.seconds:.1f} s "
            f"({result.mpx_per_s:.2f} Mpx/s, {result.precision}), {result.crops_run} crops run"
            f"{l2g}, {result.crops_skipped} empty skipped, peak memory {result.peak_host_mb:.0f} MB"
            f"{gpu}; {classes}")


def _print_plan(summary: PlanSummary) -> None:
    scene, plan = summary.scene, summary.plan
    table = Table(title=f"plan for {scene.path}")
    table.add_column("item")
    table.add_column("value", justify="right")
    rows = [("size", f"{scene.width} x {scene.height} px, {len(scene.bands)} band(s) "
                     f"{scene.dtype}"),
            ("overviews", ", ".join(map(str, scene.overviews)) or "none"),
            ("stage", str(summary.stage)),
            ("context blocks", str(len(plan.blocks))),
            ("local crops", str(len(plan.crops))),
            ("crops empty (estimate)", str(summary.crops_empty)),
            ("crop passes to run", str(summary.crops_to_run)),
            ("output tiles", str(len(plan.tiles))),
            ("precision", summary.precision),
            ("crops per forward pass", str(summary.batch_size))]
    memory = summary.memory
    rows += [(f"  memory: {part}", f"{mb:.0f} MB") for part, mb in memory.host.items()]
    if memory.reached_mb > sum(memory.host.values()):
        rows.append(("  memory: loading the model (reached)", f"{memory.reached_mb:.0f} MB"))
    rows.append(("estimated peak memory", f"{memory.host_mb:.0f} MB"))
    if memory.gpu is not None:
        rows += [(f"  GPU memory: {part}", f"{mb:.0f} MB") for part, mb in memory.gpu.items()]
        rows.append(("estimated peak GPU memory", f"{memory.gpu_mb:.0f} MB"))
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def _print_batch(reports: Sequence) -> None:
    table = Table(title="batch summary")
    for column in ("scene", "status", "seconds", "Mpx/s", "error"):
        table.add_column(column)
    for r in reports:
        table.add_row(os.path.basename(r.input), r.status, f"{r.seconds:.1f}",
                      f"{r.mpx_per_s:.2f}", r.error or "")
    counts = {s: sum(r.status == s for r in reports) for s in ("ok", "skipped", "failed")}
    Console().print(table)
    click.echo(f"{counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed")
