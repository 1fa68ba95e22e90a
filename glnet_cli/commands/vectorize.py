"""``glnet vectorize``: a class mask to polygons (Shapefile, GeoPackage, GeoJSON)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import click
from rich.console import Console
from rich.table import Table

from glnet_cli.options import IntListType, overwrite_opt, quiet_opt
from glnet_cli.progress import ProgressReporter
from glnet_cli.vector_output import DRIVER_NAMES, LAYOUTS

if TYPE_CHECKING:
    from glnet_cli.vectorize import VectorizeSummary


@click.command("vectorize")
@click.argument("mask", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Vector file: .shp, .gpkg or .geojson.")
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
@overwrite_opt
@quiet_opt
def vectorize_command(mask: str, output: str, driver: Optional[str], layout: str,
                      classes: Optional[list[int]], background: Optional[int], min_area: float,
                      simplify: float, connectivity: str, to_crs: Optional[str],
                      window_size: int, overwrite: bool, quiet: bool) -> None:
    """Turn a class mask into polygons with class_id, class_name, area and perimeter.

    Reads the mask window by window, so any size works; polygons cut by window
    edges are merged, holes are kept, and nodata is never polygonised.

    \b
    Example:
      glnet vectorize mask.tif -o buildings.gpkg --classes 1 --min-area 10
      glnet vectorize mask.tif -o landcover.gpkg --layout layer-per-class --simplify 0.5
      glnet vectorize mask.tif -o buildings.geojson   # WGS84, RFC 7946
    """
    from glnet_cli.vectorize import vectorize  # GDAL: here, so that --help starts at once

    with ProgressReporter("vectorize", quiet, unit="windows") as report:
        summary = vectorize(mask, output, driver=driver, layout=layout, classes=classes,
                            min_area=min_area, simplify=simplify, background=background,
                            connectivity=int(connectivity), to_crs=to_crs,
                            window_size=window_size, overwrite=overwrite, progress=report)
    _print_summary(summary)


def _print_summary(summary: VectorizeSummary) -> None:
    if not summary.classes:
        click.echo(f"no polygons found: wrote an empty layer to {summary.output}")
        return
    table = Table(title=f"{summary.output} ({summary.crs or 'no CRS'})")
    for name in ("class id", "class", "polygons", f"area ({summary.area_unit})"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for c in sorted(summary.classes.values(), key=lambda c: c.class_id):
        table.add_row(str(c.class_id), c.name, f"{c.polygons:,}", f"{c.area:,.2f}")
    table.add_row("", "total", f"{summary.polygons:,}", f"{summary.area:,.2f}")
    Console().print(table)
