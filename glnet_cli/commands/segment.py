"""``glnet segment``: one scene to one mask, or a batch of scenes to a folder of masks.

The longest command (~160 lines), for its twenty options and its two
displays (the dry run's plan, each scene's summary line); the work is
``inference.batch_files.resolve_outputs`` / ``segment_many`` and ``Segmenter.run``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Sequence

import click

from glnet_cli.errors import InputError
from glnet_cli.inference.segment_options import SegmentOptions
from glnet_cli.options import (
    bands_option,
    batch_size_option,
    creation_opt,
    device_option,
    model_opt,
    overwrite_opt,
    precision_option,
    quiet_opt,
)
from glnet_cli.progress import ProgressReporter
from glnet_cli.tables import key_value_table, print_tables, table

if TYPE_CHECKING:
    from glnet_cli.inference.batch import SceneReport
    from glnet_cli.inference.engine import PlanSummary, SegmentResult

NO_MODEL = ("no model given: pass --model MODEL.pt or set GLNET_MODEL=/path/to/model.pt "
            "(train one with 'glnet train', or convert the released reference models with "
            "'glnet convert-reference')")


@click.command("segment")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True,
              help="Mask file for one scene; a folder for several (masks named <scene>_mask.tif).")
@model_opt
@click.option("--stage", type=click.Choice([2, 3]), default=SegmentOptions.stage,
              help="2: global-to-local only; 3: full GLNet (default: the highest the model has).")
@batch_size_option(
    "Local crops per forward pass; auto: as many as fit 1.5 GB (host memory on the "
    "CPU, GPU memory on CUDA), up to 6 (on a CPU, only as many as still buy speed: "
    "one crop of the paper's network).", SegmentOptions.batch_size)
@click.option("--overlap", type=click.IntRange(min=0), default=SegmentOptions.overlap,
              help="Least overlap between neighbouring crops, in pixels "
                   "(default 64, or a quarter of a smaller crop).")
@device_option("auto")  # Segmenter takes a resolved device: this default is the CLI's own
@precision_option(SegmentOptions.precision)
@bands_option(SegmentOptions.bands)
@click.option("--nodata", type=float, default=SegmentOptions.nodata, metavar="VALUE",
              help="The input's nodata value (a number or nan) when its file declares none; "
                   "replaces the file's own, as rio's --nodata.")
@click.option("--cog", is_flag=True, help="Write a Cloud-Optimized GeoTIFF with overviews.")
@click.option("--probabilities", type=click.Path(), default=None,
              help="Also write per-class probabilities (uint8 0-255) to this file (a folder "
                   "in batch mode).")
@creation_opt
@overwrite_opt
@click.option("--skip-existing", is_flag=True,
              help="Batch: skip scenes whose mask exists or that another run (a worker on "
                   "the same archive) has claimed.")
@click.option("--fail-fast", is_flag=True, help="Batch: stop at the first failed scene.")
@click.option("--report", type=click.Path(dir_okay=False), default=None,
              help="Batch: write a JSON report with one object per scene.")
@click.option("--dry-run", is_flag=True,
              help="Print the plan and exit without running the network.")
@click.option("--asset", default=None, metavar="KEY",
              help="STAC input: the item asset to read (default: the one whose eo:bands hold "
                   "the model's bands, else the item's only raster asset).")
@click.option("--stac", "write_stac", is_flag=True,
              help="Write a STAC Item beside each mask (MASK.json); a batch also writes "
                   "catalog.json linking them.")
@click.option("--preview", is_flag=True,
              help="Write a quick look beside each mask (MASK.png): the scene, the classes "
                   "over it, a legend.")
@click.option("--shard", "shard_spec", default=None, metavar="K/N",
              help="Batch: run the K-th of N disjoint parts (default: from SLURM_ARRAY_TASK_ID, "
                   "AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX); reports are named "
                   "after it.")
@click.option("--shard-count", type=click.IntRange(min=1), default=None,
              help="Batch: the number of parts where the array's variables do not say it "
                   "(Kubernetes' JOB_COMPLETION_INDEX).")
@quiet_opt
def segment_command(inputs: Sequence[str], output: str, model_path: Optional[str],
                    stage: Optional[int], batch_size: Optional[int], overlap: Optional[int],
                    device: str, precision: str, bands: Optional[list[int]],
                    nodata: Optional[float], cog: bool, probabilities: Optional[str],
                    creation_options: Sequence[tuple[str, str]],
                    overwrite: bool, skip_existing: bool, fail_fast: bool, report: Optional[str],
                    dry_run: bool, asset: Optional[str], write_stac: bool, preview: bool,
                    shard_spec: Optional[str], shard_count: Optional[int], quiet: bool) -> None:
    """Segment GeoTIFF scenes into georeferenced class masks with GLNet.

    INPUTS are scenes: files, folders, globs, @list.txt, or STAC Items,
    ItemCollections and Catalogs (.json files or URLs). With one scene, -o
    names the mask; with several (or a folder or catalogue), -o is a folder.

    \b
    Examples:
      glnet segment scene.tif -o mask.tif --model model.pt
      GLNET_MODEL=model.pt glnet segment scene.tif -o mask.tif --cog
      glnet segment archive/ -o masks/ --skip-existing --report run.json
      torchrun --nproc_per_node 4 -m glnet_cli.cli segment archive/ -o masks/
      glnet segment catalog.json -o masks/ --stac --preview
      glnet segment archive/ -o masks/ --shard 2/8 --skip-existing --report run.json
    """
    if not model_path:
        raise InputError(NO_MODEL)
    # torch: imported here, so that --help starts at once
    from glnet_cli.inference.archive import ArchiveSegmenter, plan_archive, write_batch_catalog
    from glnet_cli.inference.batch import batch_exit_code, segment_many, shard
    from glnet_cli.inference.engine import Segmenter
    from glnet_cli.inference.shards import array_shard, parse_shard
    from glnet_cli.io.model.checkpoint import load_model
    from glnet_cli.io.raster.writer import output_options
    from glnet_cli.training.distributed import distributed

    if not dry_run:  # refused now, not after hours of work
        output_options(creation_options, cog)
    plan = plan_archive(inputs, output, probabilities, report, overwrite=overwrite,
                        prepare=not dry_run, stac=write_stac, shard=array_shard(
                            parse_shard(shard_spec) if shard_spec else None, shard_count))
    resolved = plan.resolved
    if plan.shard:
        click.echo(f"glnet: {plan.shard.label} ({plan.shard.source}): "
                   f"{len(resolved.jobs)} scene(s)", err=True)
    options = SegmentOptions(stage=stage, batch_size=batch_size, overlap=overlap,
                             precision=precision, bands=bands, nodata=nodata)
    with distributed(device) as dist_ctx:
        segmenter = ArchiveSegmenter(
            Segmenter(load_model(model_path, dist_ctx.device), dist_ctx.device, options), plan,
            model_path, asset=asset, stac=write_stac, preview=preview)
        if dry_run:
            for job in shard(resolved.jobs, dist_ctx.rank, dist_ctx.world_size):
                _print_plan(segmenter.dry_run(job.scene))
            return
        if not resolved.batch:
            job = resolved.jobs[0]
            with _progress(job.scene, quiet) as progress:
                result = segmenter.run(job.scene, job.mask, overwrite=overwrite, cog=cog,
                                       probabilities=job.probabilities,
                                       creation_options=creation_options, progress=progress)
            click.echo(_summary_line(result))
            return
        reports = segment_many(
            segmenter, resolved.jobs, skip_existing=skip_existing, fail_fast=fail_fast,
            report=plan.report, overwrite=overwrite, team=dist_ctx,
            progress=lambda scene: _progress(scene, quiet),
            on_result=lambda result: click.echo(_summary_line(result), err=True),
            on_failure=lambda failed: click.echo(f"glnet: error: {failed.error}", err=True),
            cog=cog, creation_options=creation_options)
        if not dist_ctx.is_main:
            return
        write_batch_catalog(plan, reports)
        _print_batch(reports)
        exit_code = batch_exit_code(reports)
        if exit_code:
            raise click.exceptions.Exit(exit_code)


def _progress(scene: str, quiet: bool) -> ProgressReporter:
    return ProgressReporter(f"segment {os.path.basename(scene)}", quiet, unit="crop passes")


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
    rows = [("size", f"{scene.width} x {scene.height} px, {len(scene.bands)} band(s) "
                     f"{scene.dtype}"),
            ("overviews", ", ".join(map(str, scene.overviews)) or "none"),
            ("stage", summary.stage),
            ("context blocks", len(plan.blocks)),
            ("local crops", len(plan.crops)),
            ("crops empty (estimate)", summary.crops_empty),
            ("crop passes to run", summary.crops_to_run),
            ("output tiles", len(plan.tiles)),
            ("precision", summary.precision),
            ("crops per forward pass", summary.batch_size)]
    memory = summary.memory
    rows += [(f"  memory: {part}", f"{mb:.0f} MB") for part, mb in memory.host.items()]
    if memory.reached_mb > sum(memory.host.values()):
        rows.append(("  memory: loading the model (reached)", f"{memory.reached_mb:.0f} MB"))
    rows.append(("estimated peak memory", f"{memory.host_mb:.0f} MB"))
    if memory.gpu is not None:
        rows += [(f"  GPU memory: {part}", f"{mb:.0f} MB") for part, mb in memory.gpu.items()]
        rows.append(("estimated peak GPU memory", f"{memory.gpu_mb:.0f} MB"))
    print_tables(key_value_table(f"plan for {scene.path}", rows, right=True))


def _print_batch(reports: Sequence[SceneReport]) -> None:
    print_tables(table("batch summary", ("scene", "status", "seconds", "Mpx/s", "error"), (
        (os.path.basename(r.input), f"{r.status} ({r.reason})" if r.reason else r.status,
         f"{r.seconds:.1f}", f"{r.mpx_per_s:.2f}", r.error)
        for r in reports)))
    counts = {s: sum(r.status == s for r in reports) for s in ("ok", "skipped", "failed")}
    click.echo(f"{counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed")
