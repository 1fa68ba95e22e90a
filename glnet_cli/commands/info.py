"""``glnet info``: what a model file or a scene holds, and whether a model fits a scene."""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import click

from glnet_cli.errors import USER_ERROR
from glnet_cli.options import bands_opt, overwrite_opt
from glnet_cli.tables import key_value_table, print_tables, table


@click.command("info")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("-m", "--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Also check whether this model fits the scene (not read from $GLNET_MODEL).")
@bands_opt
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--preview", type=click.Path(dir_okay=False), default=None, metavar="PNG",
              help="Also write a quick look of the mask or scene (at most 1024 px a side, "
                   "with a legend for a mask).")
@overwrite_opt
@click.pass_context
def info_command(ctx: click.Context, path: str, model_path: Optional[str],
                 bands: Optional[list[int]], as_json: bool, preview: Optional[str],
                 overwrite: bool) -> None:
    """Describe PATH, a glnet model file (.pt) or a scene (GeoTIFF or any GDAL raster).

    With --model, also check whether `glnet segment` would run that model on
    the scene: bands, data type, pixel size, the work it would plan, and a
    verdict; the exit code is 2 when the model does not fit.

    \b
    JSON keys (--json):
      kind: "model" or "scene"
      model: path, format_version, l2g, architecture (backbone, in_channels,
        width, n_classes, size_g, size_p), classes [{id, name, color}],
        input_scaling {mode, dtype, offset, scale}, context {size, gsd},
        stage, provenance
      scene: path, width, height, count, bands [{band, dtype, color,
        mask_flags}], crs, units, transform, pixel_size, gsd, overviews,
        nodata, block_shape, and with --model: fit {model, fits, verdict,
        bands, checks [{name, status, detail}], plan {context_blocks,
        local_crops, context_size, size_p, overlap} or null for a model
        that cannot run}

    \b
    Example:
      glnet info model.pt
      glnet info scene.tif --json
      glnet info scene.tif --model model.pt --bands 3,2,1
      glnet info mask.tif --preview mask.png
    """
    from glnet_cli.io.describe import describe_file  # GDAL: here, so that --help is instant

    report = describe_file(path)
    if report["kind"] == "model" and model_path:
        raise click.UsageError(f"{path} is a model file; --model checks a scene against it")
    if bands and not model_path:
        raise click.UsageError("--bands chooses the bands a model would use; give --model too")
    if model_path:
        report["fit"] = fit_report(path, model_path, bands)
    if preview and report["kind"] == "model":
        raise click.UsageError(f"{path} is a model file; --preview shows a mask or a scene")
    if preview:
        from glnet_cli.io.raster.preview import preview_file

        report["preview"] = {"path": preview, "of": preview_file(path, preview,
                                                                  overwrite=overwrite)}
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    elif report["kind"] == "model":
        _print_model(report)
    else:
        _print_scene(report)
    if preview and not as_json:
        click.echo(f"quick look of the {report['preview']['of']}: {preview}")
    if "fit" in report and not report["fit"]["fits"]:
        ctx.exit(USER_ERROR)


def fit_report(path: str | os.PathLike, model_path: str | os.PathLike,
               bands: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """Would ``glnet segment`` run this model on this scene, and how much work would it be?

    Each check has a ``status``: ``ok``, ``fail`` (segment refuses the scene),
    ``warn`` (it runs, but results may suffer) or ``unknown``. The scene fits
    when no check fails; ``verdict`` is the line to show. The plan comes from
    the same :class:`Segmenter` that segment uses, so it counts what a run would.
    """
    import torch

    from glnet_cli.errors import InputError
    from glnet_cli.inference.engine import Segmenter
    from glnet_cli.inference.fit import FAIL, full_check
    from glnet_cli.io.model.checkpoint import load_model

    path, model_path = os.fspath(path), os.fspath(model_path)
    model_file = load_model(model_path)
    fit = full_check(path, model_file, bands)
    try:
        segmenter = Segmenter(model_file, torch.device("cpu"))
    except InputError:  # the stage check says why
        plan = None
    else:
        scene_plan = segmenter.plan(fit.scene)
        plan = {"context_blocks": len(scene_plan.blocks), "local_crops": len(scene_plan.crops),
                "context_size": model_file.info.context_size, "size_p": model_file.info.size_p,
                "overlap": segmenter.options.overlap}
    failed = [c.detail for c in fit.checks if c.status == FAIL]
    return {"model": model_path, "fits": fit.fits,
            "verdict": f"does not fit: {failed[0]}" if failed else "fits",
            "bands": list(fit.scene.bands) if fit.bands_fit else None,
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail}
                       for c in fit.checks],
            "plan": plan}


def _compact(value: Any) -> str:
    """Scalars as they are, nested values as compact JSON."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _swatch(color: list[int]) -> str:
    """A patch of the class colour (on a terminal), then its RGB numbers."""
    rgb = ",".join(map(str, color))
    return f"[on rgb({rgb})]  [/] {rgb}"


def _print_model(m: dict[str, Any]) -> None:
    arch, context, scaling = m["architecture"], m["context"], m["input_scaling"]
    overview = key_value_table(f"model file {m['path']}", [
        ("format version", m["format_version"]), ("backbone", arch["backbone"]),
        ("input bands", arch["in_channels"]), ("FPN width", arch["width"]),
        ("size_g (global view)", arch["size_g"]), ("size_p (local crop)", arch["size_p"]),
        ("context size (full-res px)", context["size"]), ("gsd (units/pixel)", context["gsd"]),
        ("stage reached", m["stage"]),
        ("local-to-global branch", "yes" if m["l2g"] else "no")])
    classes = table(f"{len(m['classes'])} classes", ("id", "name", "colour"),
                    ((c["id"], c["name"], _swatch(c["color"])) for c in m["classes"]))
    bands = table(f"input scaling: {scaling['mode']}, {scaling['dtype']}",
                  ("band", "offset", "scale"),
                  ((i, f"{offset:g}", f"{scale:.6g}") for i, (offset, scale)
                   in enumerate(zip(scaling["offset"], scaling["scale"]), start=1)))
    provenance = key_value_table("training provenance",
                                 [(k, _compact(v)) for k, v in m["provenance"].items()] or
                                 [("(none recorded)", "")])
    print_tables(overview, classes, bands, provenance)


def _print_scene(s: dict[str, Any]) -> None:
    units = s["units"] or "units"
    overview = key_value_table(f"scene {s['path']}", [
        ("size", f"{s['width']} x {s['height']} px"), ("bands", s["count"]), ("crs", s["crs"]),
        ("pixel size", f"{s['pixel_size'][0]:.6g} x {s['pixel_size'][1]:.6g} {units}"),
        ("transform", ", ".join(f"{v:.10g}" for v in s["transform"])),
        ("overviews", ", ".join(map(str, s["overviews"])) or None), ("nodata", s["nodata"]),
        ("block shape", " x ".join(map(str, s["block_shape"])))])
    bands = table("bands", ("band", "dtype", "colour", "mask flags"),
                  ((b["band"], b["dtype"], b["color"], ", ".join(b["mask_flags"]))
                   for b in s["bands"]))
    tables = [overview, bands]
    fit = s.get("fit")
    if fit:
        tables.append(table(f"fit of {fit['model']}", ("check", "status", "detail"),
                            ((c["name"], c["status"], c["detail"]) for c in fit["checks"])))
    if fit and fit["plan"]:
        plan = fit["plan"]
        tables.append(key_value_table("work a run would plan", [
            ("context blocks", f"{plan['context_blocks']} ({plan['context_size']} px a side)"),
            ("local crops", f"{plan['local_crops']} ({plan['size_p']} px a side)"),
            ("least crop overlap", f"{plan['overlap']} px")]))
    print_tables(*tables)
    if fit:
        click.echo(fit["verdict"])
