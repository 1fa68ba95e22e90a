"""VectorWriter (glnet_cli/io/vector/output.py): polygons streamed into a Shapefile, GeoPackage
or GeoJSON file that appears whole, with its attributes and CRS, or not at all."""

from __future__ import annotations

import os

import fiona
import numpy as np
import pytest
import shapely
from rasterio.crs import CRS
from shapely.geometry import LineString, MultiPolygon, box, shape

from glnet_cli.errors import OutputExistsError, OutputWriteError
from glnet_cli.io.paths import PARTIAL_MARK
from glnet_cli.io.vector.formats import resolve_driver
from glnet_cli.io.vector.output import VectorWriter
from tests.helpers import DEFAULT_CRS, file_size_limit

UTM = CRS.from_user_input(DEFAULT_CRS).to_wkt()
WGS84 = CRS.from_epsg(4326).to_wkt()
#: A point on UTM zone 16's central meridian (87 W), about 37 N.
X0, Y0 = 500000.0, 4100000.0
SHAPEFILE = ["out.cpg", "out.dbf", "out.prj", "out.shp", "out.shx"]


def squares(*sides: float, x0: float = X0, y0: float = Y0) -> np.ndarray:
    """Squares of the given sides in a row, a metre apart, as the vectoriser hands them over."""
    geoms, left = [], x0
    for side in sides:
        geoms.append(box(left, y0 - side, left + side, y0))
        left += side + 1
    return np.array(geoms, dtype=object)


#: Two roofs (100 and 25 m²) and one road (16 m²).
ROOFS_AND_ROAD = {(1, "roof"): squares(10, 5), (2, "road"): squares(4, x0=X0 + 100)}


def write(path, polygons: dict, crs=UTM, to_crs=None, **options) -> VectorWriter:
    """Write ``{(class_id, class_name): geometries}`` as the vectoriser does; return the writer."""
    with VectorWriter(str(path), resolve_driver(str(path)), crs, to_crs, **options) as writer:
        for (class_id, name), geoms in polygons.items():
            writer.write(geoms, class_id, name, shapely.area(geoms), shapely.length(geoms))
    return writer


def read_back(path, layer=None) -> tuple[list, CRS]:
    """Every feature's shapely geometry and properties, and the layer's CRS."""
    with fiona.open(path, layer=layer) as src:
        return [(shape(f.geometry), dict(f.properties)) for f in src], src.crs


def partials(folder) -> list[str]:
    return [name for name in os.listdir(folder) if PARTIAL_MARK in name]


@pytest.mark.parametrize("name, files", [("out.gpkg", ["out.gpkg"]), ("out.shp", SHAPEFILE)])
def test_polygons_read_back_with_their_attributes_and_crs(tmp_path, name, files):
    writer = write(tmp_path / name, ROOFS_AND_ROAD)
    features, crs = read_back(tmp_path / name)
    assert crs.to_epsg() == 32616 and writer.layers == ["out"]
    assert [(p["class_id"], p["class_name"]) for _, p in features] == [
        (1, "roof"), (1, "roof"), (2, "road")]
    assert [p["area"] for _, p in features] == [100.0, 25.0, 16.0]
    assert [p["perimeter"] for _, p in features] == [40.0, 20.0, 16.0]
    assert [g.area for g, _ in features] == pytest.approx([100.0, 25.0, 16.0], rel=1e-12)
    assert all(g.is_valid for g, _ in features)
    assert sorted(os.listdir(tmp_path)) == files


def test_geojson_holds_longitude_latitude_and_areas_in_the_masks_units(tmp_path):
    """RFC 7946 GeoJSON is WGS84: the geometry moves, the metre areas stay as measured."""
    writer = write(tmp_path / "out.geojson", ROOFS_AND_ROAD, to_crs=WGS84)
    features, crs = read_back(tmp_path / "out.geojson")
    assert crs.to_epsg() == 4326 and writer.unprojectable == 0
    lon, lat = shapely.get_coordinates([g for g, _ in features]).T
    assert np.all(np.abs(lon + 87.0) < 0.01) and np.all((37.0 < lat) & (lat < 37.1))
    assert [p["area"] for _, p in features] == [100.0, 25.0, 16.0]


def test_a_layer_per_class_is_named_after_the_class_and_kept_distinct(tmp_path):
    """Class names that clean up to one layer name get the class id appended."""
    path = tmp_path / "out.gpkg"
    writer = write(path, {(1, "roof top"): squares(10, 5), (2, "roof-top"): squares(4)},
                   layout="layer-per-class")
    assert writer.layers == fiona.listlayers(path) == ["roof_top", "roof_top_2"]
    assert [p["class_id"] for _, p in read_back(path, "roof_top")[0]] == [1, 1]
    assert [p["class_id"] for _, p in read_back(path, "roof_top_2")[0]] == [2]
    assert os.listdir(tmp_path) == ["out.gpkg"]  # the staging GeoPackage is gone


@pytest.mark.parametrize("layout", ["one-layer", "layer-per-class"])
def test_no_polygons_give_one_empty_layer_named_after_the_file(tmp_path, layout):
    """A GIS opens an empty result like any other; its layer name is safe in every GIS."""
    path = tmp_path / "my-run.gpkg"
    write(path, {}, layout=layout)
    assert fiona.listlayers(path) == ["my_run"]
    assert read_back(path)[0] == []


def test_multipolygons_keep_their_geometry_type(tmp_path):
    parts = MultiPolygon(list(squares(10, 5)))
    write(tmp_path / "out.gpkg", {(1, "roof"): np.array([parts], dtype=object)},
          geometry_type="MultiPolygon")
    with fiona.open(tmp_path / "out.gpkg") as src:
        assert src.schema["geometry"] == "MultiPolygon"
        [feature] = list(src)
    assert len(shape(feature.geometry).geoms) == 2 and feature.properties["area"] == 125.0


def test_polygons_the_output_crs_cannot_hold_are_left_out_and_counted(tmp_path):
    """A geostationary pixel past the Earth's edge has no longitude: it is dropped, not fatal."""
    geos = CRS.from_proj4("+proj=geos +h=35786023 +lon_0=-75 +sweep=x +datum=WGS84 +units=m")
    geoms = np.array([box(-1e5, -1e5, 1e5, 1e5), box(5.4e6, 5.4e6, 5.5e6, 5.5e6)], dtype=object)
    with VectorWriter(str(tmp_path / "out.gpkg"), "GPKG", geos.to_wkt(), WGS84) as writer:
        kept = writer.write(geoms, 1, "cloud", shapely.area(geoms), shapely.length(geoms))
    assert kept.tolist() == [True, False] and writer.unprojectable == 1
    [(geom, properties)], _ = read_back(tmp_path / "out.gpkg")
    assert properties["area"] == 4e10  # the kept polygon's own figures
    assert geom.centroid.x == pytest.approx(-75.0, abs=0.01)


@pytest.mark.parametrize("output, existing", [("out.gpkg", "out.gpkg"), ("out.shp", "out.prj")])
def test_an_existing_file_is_refused_and_left_as_it_was(tmp_path, output, existing):
    """Without overwrite nothing is replaced: Shapefile parts published before the clash
    (.shx, .dbf) are taken back too."""
    (tmp_path / existing).write_text("someone else's")
    with pytest.raises(OutputExistsError, match=rf"{existing}: already exists .*--overwrite"):
        write(tmp_path / output, ROOFS_AND_ROAD)
    assert os.listdir(tmp_path) == [existing]
    assert (tmp_path / existing).read_text() == "someone else's"


def test_overwrite_replaces_the_output_and_drops_stale_sidecars(tmp_path):
    """A spatial index of the old Shapefile would point GIS at polygons that are gone."""
    write(tmp_path / "out.shp", ROOFS_AND_ROAD)
    (tmp_path / "out.qix").write_text("the old spatial index")
    write(tmp_path / "out.shp", {(3, "tree"): squares(7)}, overwrite=True)
    features, _ = read_back(tmp_path / "out.shp")
    assert [(p["class_id"], p["area"]) for _, p in features] == [(3, 49.0)]
    assert sorted(os.listdir(tmp_path)) == SHAPEFILE


@pytest.mark.parametrize("name", ["out.gpkg", "out.shp", "out.geojson"])
def test_a_failure_while_writing_leaves_no_file_at_all(tmp_path, name):
    """An error (or Ctrl-C) halfway leaves no half-written output and no temp files."""
    with pytest.raises(RuntimeError, match="the vectoriser broke"):
        with VectorWriter(str(tmp_path / name), resolve_driver(name), UTM, None) as writer:
            geoms = squares(10, 5)
            writer.write(geoms, 1, "roof", shapely.area(geoms), shapely.length(geoms))
            raise RuntimeError("the vectoriser broke")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["out.shp", "out.geojson"])
def test_a_full_disk_is_a_write_error_and_keeps_the_previous_output(tmp_path, name):
    """Even with overwrite, a failed run must not destroy the result of an earlier one."""
    to_crs = WGS84 if name.endswith(".geojson") else None
    write(tmp_path / name, ROOFS_AND_ROAD, to_crs=to_crs)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    many = {(1, "roof"): squares(*[0.5] * 3000)}
    with pytest.raises(OutputWriteError, match=rf"{name}: writing failed: .+; nothing was "
                                               "written$"):
        with file_size_limit(20_000):
            write(tmp_path / name, many, to_crs=to_crs, overwrite=True)
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)} == before
    assert partials(tmp_path) == []


def test_a_geometry_the_layer_cannot_hold_is_a_write_error(tmp_path):
    """GDAL's refusal becomes one line naming the output, and nothing is published."""
    lines = np.array([LineString([(X0, Y0), (X0 + 1, Y0 + 1)])], dtype=object)
    with pytest.raises(OutputWriteError, match=r"out\.gpkg: writing failed: .*geometry type "
                                               r"does not match.*; nothing was written"):
        write(tmp_path / "out.gpkg", {(1, "road"): lines})
    assert os.listdir(tmp_path) == []
