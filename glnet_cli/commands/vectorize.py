"""``glnet vectorize``: a class mask to polygons (Shapefile, GeoPackage, GeoJSON)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

import click

from glnet_cli.io.vector.formats import DRIVER_NAMES, LAYOUTS
from glnet_cli.options import IntListType, overwrite_opt, quiet_opt
from glnet_cli.progress import ProgressReporter
from glnet_cli.tables import print_tables, table

if TYPE_CHECKING:
    from glnet_cli.vector.vectorize import VectorizeSummary

#: ``-o -``: GeoJSON to stdout.
STDOUT = "-"


@click.command("vectorize")
@click.argument("mask", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
              help="Vector file: .shp, .gpkg or .geojson; '-': GeoJSON to stdout. "
                   "Default: MASK's name with .shp, beside it.")
@click.option("--driver", type=click.Choice(sorted(DRIVER_NAMES), case_sensitive=False),
              help="Output format, when the extension does not say.")
@click.option("--layout", type=click.Choice(LAYOUTS), default="one-layer", show_default=True,
              help="GeoPackage: all classes in one layer, or a layer per class.")
@click.option("--classes", type=IntListType(), help="Only these class ids, e.g. 1,3.")
@click.option("--background", type=int,
              help="Class id to leave out (default: the mask's GLNET_BACKGROUND tag, else none).")
@click.option("--min-area", type=click.FloatRange(min=0), default=0.0,
              help="Drop polygons smaller than this, in CRS units squared.")
@click.option("--simplify", type=click.FloatRange(min=0), default=0.0,
              help="Topology-preserving simplification tolerance, in CRS units.")
@click.option("--connectivity", type=click.Choice(["4", "8"]), default="4", show_default=True,
              help="Pixels joined by edges (4) or also by corners (8: MultiPolygons).")
@click.option("--to-crs", help="Reproject the output, e.g. EPSG:4326 (GeoJSON always is).")
@click.option("--window-size", type=click.IntRange(min=16), default=2048, show_default=True,
              help="Pixels a side read at a time.")
@click.option("--sequence", is_flag=True,
              help="With -o -: one GeoJSON feature per line (a text sequence), not a "
                   "FeatureCollection.")
@click.option("--rs", is_flag=True,
              help="With --sequence: start each line with an RS character (RFC 8142).")
@click.option("--any-raster", is_flag=True,
              help="Polygonise any one-band integer raster (16-bit, 32-bit), not only 8-bit "
                   "class masks: one polygon set per distinct value.")
@overwrite_opt
@quiet_opt
def vectorize_command(mask: str, output: Optional[str], driver: Optional[str], layout: str,
                      classes: Optional[list[int]], background: Optional[int], min_area: float,
                      simplify: float, connectivity: str, to_crs: Optional[str],
                      window_size: int, sequence: bool, rs: bool, any_raster: bool,
                      overwrite: bool, quiet: bool) -> None:
    """Turn a class mask into polygons with class_id, class_name, area and perimeter.

    Reads the mask window by window, so any size works; polygons cut by window
    edges are merged, holes are kept, and nodata is never polygonised.
    Without -o the polygons go to MASK's name with .shp, beside it; with
    -o - they go to stdout as GeoJSON (WGS84, RFC 7946) for fio, jq or ogr2ogr.

    \b
    Example:
      glnet vectorize mask.tif                          # -> mask.shp
      glnet vectorize mask.tif -o buildings.gpkg --classes 1 --min-area 10
      glnet vectorize mask.tif -o landcover.gpkg --layout layer-per-class --simplify 0.5
      glnet vectorize mask.tif -o buildings.geojson   # WGS84, RFC 7946
      glnet vectorize mask.tif -o - --sequence | jq -c .properties
    """
    from glnet_cli.vector.vectorize import vectorize  # GDAL: here, so that --help starts at once

    to_stdout = output == STDOUT
    if (sequence or rs) and not to_stdout:
        raise click.UsageError("--sequence and --rs shape GeoJSON written to stdout: add -o -")
    if rs and not sequence:
        raise click.UsageError("--rs starts the lines of a --sequence: add --sequence")
    target = sys.stdout if to_stdout else output
    with ProgressReporter("vectorize", quiet, unit="windows") as report:
        summary = vectorize(mask, target, driver=driver, layout=layout, classes=classes,
                            min_area=min_area, simplify=simplify, background=background,
                            connectivity=int(connectivity), to_crs=to_crs,
                            window_size=window_size, overwrite=overwrite, any_raster=any_raster,
                            sequence=sequence, rs=rs, progress=report)
    if not (to_stdout and quiet):
        _print_summary(summary, err=to_stdout)


def _print_summary(summary: VectorizeSummary, err: bool) -> None:
    """A table of polygons per class, then where they went (on stderr when stdout has them)."""
    where = f"{summary.output} ({summary.driver}, {summary.crs or 'no CRS'})"
    if not summary.classes:
        click.echo(f"no polygons found: wrote an empty layer to {where}", err=err)
        return
    area = f"area ({summary.area_unit})"
    rows: list[tuple[int | str, str, str, str]] = [
        (c.class_id, c.name, f"{c.polygons:,}", f"{c.area:,.2f}")
        for c in sorted(summary.classes.values(), key=lambda c: c.class_id)]
    rows.append(("", "total", f"{summary.polygons:,}", f"{summary.area:,.2f}"))
    print_tables(table("polygons per class", ("class id", "class", "polygons", area), rows,
                       right=("class id", "polygons", area)), err=err)
    plural = "" if summary.polygons == 1 else "s"
    click.echo(f"wrote {summary.polygons:,} polygon{plural} to {where}", err=err)
