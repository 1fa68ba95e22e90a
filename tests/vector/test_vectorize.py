"""Tests for glnet_cli/vector/ (vectorize.py, merge.py), the polygon outputs in
glnet_cli/io/ (vector_output.py, geojson_stream.py, vector_crs.py) and ``glnet vectorize``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.transform import Affine, from_bounds
from shapely.geometry import shape

from glnet_cli.errors import GlnetWarning, InputError, OutputExistsError, OutputWriteError
from glnet_cli.io.paths import PARTIAL_MARK
from glnet_cli.io.vector import output as vector_output
from glnet_cli.vector.vectorize import vectorize
from tests.helpers import DEFAULT_TRANSFORM, file_size_limit, run_glnet, write_raster

PIXEL_AREA = abs(DEFAULT_TRANSFORM.determinant)
#: Pixel size and origin that are not exact in binary floating point.
ODD_TRANSFORM = Affine(0.3, 0.0, 712345.1, 0.0, -0.3, 3712345.7)


def read_features(path: Path, layer: str | None = None) -> tuple[list, dict]:
    """Every feature's shapely geometry and properties, and the layer's CRS and schema."""
    with fiona.open(path, layer=layer) as src:
        feats = [(shape(f.geometry), dict(f.properties)) for f in src]
        return feats, {"crs": src.crs, "schema": src.schema}


def blobs(size: int = 64, seed: int = 0) -> np.ndarray:
    """Classes 0..3 in random blobs larger than a 16 px window, with nodata (255) speckles."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), np.uint8)
    for _ in range(12):
        cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(6, 20))]
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(1, 4)
    mask[rng.random((size, size)) < 0.01] = 255
    return mask


# --- exactness and seams --------------------------------------------------------------------

@pytest.mark.parametrize("connectivity", [4, 8])
def test_area_per_class_is_pixel_count_times_pixel_area(tmp_path, connectivity):
    mask = blobs()
    src = write_raster(tmp_path / "mask.tif", mask, nodata=255)
    summary = vectorize(src, tmp_path / "out.gpkg", window_size=16, background=0,
                        connectivity=connectivity)
    feats, _ = read_features(tmp_path / "out.gpkg")
    for class_id in (1, 2, 3):
        area = sum(g.area for g, p in feats if p["class_id"] == class_id)
        assert area == pytest.approx((mask == class_id).sum() * PIXEL_AREA, rel=1e-12)
        assert summary.classes[class_id].area == pytest.approx(area)
    assert {p["class_id"] for _, p in feats} == {1, 2, 3}
    assert all(g.is_valid for g, _ in feats)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_windowed_result_equals_one_window(tmp_path, connectivity):
    """Pieces merged across 16 px windows give exactly the polygons of one whole-mask window,
    even with a pixel size and origin that binary floats cannot hold exactly."""
    src = write_raster(tmp_path / "mask.tif", blobs(seed=3), transform=ODD_TRANSFORM, nodata=255)
    results = []
    for window in (16, 64):
        out = tmp_path / f"w{window}.gpkg"
        vectorize(src, out, window_size=window, connectivity=connectivity)
        feats, _ = read_features(out)
        results.append(sorted((p["class_id"], shapely.normalize(g).wkb) for g, p in feats))
    windowed, whole = results
    assert len(windowed) == len(whole)
    for (cw, gw), (c1, g1) in zip(windowed, whole):
        assert cw == c1
        assert shapely.equals(shapely.from_wkb(gw), shapely.from_wkb(g1))


def test_ring_with_hole_across_windows_is_one_polygon_with_one_interior(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[6:58, 6:58] = 1
    mask[20:44, 20:44] = 0
    src = write_raster(tmp_path / "ring.tif", mask)
    vectorize(src, tmp_path / "ring.shp", window_size=16, background=0)
    feats, _ = read_features(tmp_path / "ring.shp")
    assert len(feats) == 1
    ring = feats[0][0]
    assert ring.geom_type == "Polygon" and len(ring.interiors) == 1
    assert ring.area == pytest.approx((52 * 52 - 24 * 24) * PIXEL_AREA)


def test_square_across_four_windows_is_one_polygon(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[8:24, 8:24] = 2  # the window corner (16, 16) lies in its middle
    src = write_raster(tmp_path / "square.tif", mask, transform=ODD_TRANSFORM)
    vectorize(src, tmp_path / "square.gpkg", window_size=16, background=0)
    feats, _ = read_features(tmp_path / "square.gpkg")
    assert len(feats) == 1
    square, props = feats[0]
    assert props["class_id"] == 2
    assert len(shapely.get_coordinates(shapely.simplify(square, 0))) == 5
    assert square.area == pytest.approx(16 * 16 * 0.3 * 0.3)


@pytest.mark.parametrize("connectivity, features", [(4, 2), (8, 1)])
def test_diagonal_pixels_across_a_window_corner(tmp_path, connectivity, features):
    mask = np.zeros((32, 32), np.uint8)
    mask[14:16, 14:16] = 1
    mask[16:18, 16:18] = 1  # touches the first square only at the window corner (16, 16)
    src = write_raster(tmp_path / "diag.tif", mask)
    vectorize(src, tmp_path / "diag.gpkg", window_size=16, background=0,
              connectivity=connectivity)
    feats, meta = read_features(tmp_path / "diag.gpkg")
    assert len(feats) == features
    assert meta["schema"]["geometry"] == ("Polygon" if connectivity == 4 else "MultiPolygon")
    assert sum(g.area for g, _ in feats) == pytest.approx(8 * PIXEL_AREA)


def test_spacenet_labels_round_trip(tmp_path, shared_data):
    scene = shared_data / "spacenet" / "sample_geotiff.tif"
    with fiona.open(shared_data / "spacenet" / "geotiff_labels.geojson") as src:
        labels = [shape(f.geometry) for f in src]
    with rasterio.open(scene) as src:
        mask = rasterize(((g, 1) for g in labels), out_shape=src.shape,
                         transform=src.transform, fill=0, dtype="uint8")
        path = write_raster(tmp_path / "mask.tif", mask, transform=src.transform,
                            crs=src.crs.to_string(), nodata=255)
    summary = vectorize(path, tmp_path / "buildings.gpkg", window_size=256, background=0)
    feats, meta = read_features(tmp_path / "buildings.gpkg")
    got, want = shapely.union_all([g for g, _ in feats]), shapely.union_all(labels)
    assert got.intersection(want).area / got.union(want).area >= 0.9
    assert abs(len(feats) - 43) <= 4.3
    assert summary.polygons == len(feats)
    assert meta["crs"].to_epsg() == 32616


# --- options --------------------------------------------------------------------------------

def test_classes_min_area_and_nodata(tmp_path):
    mask = np.zeros((32, 32), np.uint8)
    mask[2:4, 2:4] = 1          # 4 px = 1 m²
    mask[10:20, 10:20] = 1      # 100 px = 25 m²
    mask[22:30, 2:10] = 2
    mask[0:2, 20:30] = 255      # nodata
    src = write_raster(tmp_path / "mask.tif", mask, nodata=255)
    vectorize(src, tmp_path / "out.gpkg", window_size=16, classes=[1, 255], min_area=2.0)
    feats, _ = read_features(tmp_path / "out.gpkg")
    assert [(p["class_id"], p["area"]) for _, p in feats] == [(1, 25.0)]


def test_background_and_names_from_tags(tmp_path):
    mask = np.zeros((32, 32), np.uint8)
    mask[4:12, 4:12] = 1
    classes = [{"id": 0, "name": "background", "color": [0, 0, 0]},
               {"id": 1, "name": "building", "color": [255, 0, 0]}]
    src = write_raster(tmp_path / "mask.tif", mask, nodata=255)
    with rasterio.open(src, "r+") as dst:
        dst.update_tags(GLNET_CLASSES=json.dumps(classes), GLNET_BACKGROUND="0")
    summary = vectorize(src, tmp_path / "out.shp", window_size=16)
    feats, _ = read_features(tmp_path / "out.shp")
    assert [(p["class_id"], p["class_name"]) for _, p in feats] == [(1, "building")]
    assert summary.classes[1].name == "building"


def test_simplify_keeps_topology_and_reduces_vertices(tmp_path):
    yy, xx = np.mgrid[:64, :64]
    mask = (((yy - 32) ** 2 + (xx - 32) ** 2) < 28 ** 2).astype(np.uint8)
    mask[((yy - 32) ** 2 + (xx - 32) ** 2) < 10 ** 2] = 0
    src = write_raster(tmp_path / "disk.tif", mask)
    exact = vectorize(src, tmp_path / "exact.gpkg", window_size=16, background=0)
    vectorize(src, tmp_path / "simple.gpkg", window_size=16, background=0, simplify=1.0)
    (g0, _), = read_features(tmp_path / "exact.gpkg")[0]
    (g1, p1), = read_features(tmp_path / "simple.gpkg")[0]
    assert g1.is_valid and len(g1.interiors) == 1
    assert len(shapely.get_coordinates(g1)) < len(shapely.get_coordinates(g0)) / 3
    assert p1["area"] == pytest.approx(g1.area)
    assert g1.area == pytest.approx(exact.area, rel=0.03)


def test_progress_reports_every_window(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(48))
    calls = []
    vectorize(src, tmp_path / "out.gpkg", window_size=16,
              progress=lambda done, total, **info: calls.append((done, total)))
    assert calls == [(i, 9) for i in range(1, 10)]


# --- formats --------------------------------------------------------------------------------

def test_shapefile_round_trip(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    result = run_glnet("vectorize", src, "-o", tmp_path / "out.shp", "--window-size", "16",
                       "--background", "0", "-q")
    assert result.exit_code == 0, result.output
    assert "total" in result.output
    for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
        assert (tmp_path / f"out{ext}").exists()
    feats, meta = read_features(tmp_path / "out.shp")
    assert meta["crs"].to_epsg() == 32616
    assert set(meta["schema"]["properties"]) == {"class_id", "class_name", "area", "perimeter"}
    assert {p["class_name"] for _, p in feats} == {"class_1", "class_2", "class_3"}
    assert all(p["perimeter"] == pytest.approx(g.length) for g, p in feats)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["mask.tif"] + [f"out{e}" for e in (".shp", ".shx", ".dbf", ".prj", ".cpg")])


def test_geopackage_one_layer_and_layer_per_class(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    one = vectorize(src, tmp_path / "one.gpkg", window_size=16, background=0)
    per = vectorize(src, tmp_path / "per.gpkg", window_size=16, background=0,
                    layout="layer-per-class")
    assert fiona.listlayers(tmp_path / "one.gpkg") == ["one"] == one.layers
    assert sorted(fiona.listlayers(tmp_path / "per.gpkg")) == ["class_1", "class_2", "class_3"]
    assert per.layers == ["class_1", "class_2", "class_3"]
    for class_id in (1, 2, 3):
        feats, meta = read_features(tmp_path / "per.gpkg", layer=f"class_{class_id}")
        assert {p["class_id"] for _, p in feats} == {class_id}
        assert len(feats) == per.classes[class_id].polygons
        assert meta["crs"].to_epsg() == 32616
    assert per.polygons == one.polygons
    assert _partials(tmp_path) == []  # the staging GeoPackage is gone too


def test_geojson_is_wgs84_lon_lat(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    summary = vectorize(src, tmp_path / "out.geojson", window_size=16, background=0)
    feats, meta = read_features(tmp_path / "out.geojson")
    assert meta["crs"].to_epsg() == 4326 and summary.crs == "EPSG:4326"
    lon, lat = shapely.get_coordinates([g for g, _ in feats]).T
    # EPSG:32616 (500000 E, 4100000 N) is on the zone's central meridian, -87°, at about 37° N.
    assert np.all((lon > -87.01) & (lon < -86.99)) and np.all((lat > 37.0) & (lat < 37.1))
    # area and perimeter are in the mask's CRS (m² and m), measured before reprojection
    assert sum(p["area"] for _, p in feats) == pytest.approx(summary.area)
    assert summary.area > 100


def test_to_crs_reprojects_a_geopackage(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    vectorize(src, tmp_path / "out.gpkg", window_size=16, to_crs="EPSG:3857")
    _, meta = read_features(tmp_path / "out.gpkg")
    assert meta["crs"].to_epsg() == 3857


# --- safety and errors ----------------------------------------------------------------------

def test_refuses_to_overwrite_without_flag(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    (tmp_path / "out.gpkg").write_text("keep me")
    result = run_glnet("vectorize", src, "-o", tmp_path / "out.gpkg")
    assert result.exit_code == 2
    assert "out.gpkg" in result.output and "--overwrite" in result.output
    assert (tmp_path / "out.gpkg").read_text() == "keep me"
    assert run_glnet("vectorize", src, "-o", tmp_path / "out.gpkg", "--overwrite").exit_code == 0
    assert fiona.listlayers(tmp_path / "out.gpkg") == ["out"]


def test_refuses_to_overwrite_a_shapefile_sidecar(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    (tmp_path / "out.dbf").write_text("someone else's table")
    with pytest.raises(OutputExistsError, match="out.dbf"):
        vectorize(src, tmp_path / "out.shp")
    assert not (tmp_path / "out.shp").exists()
    (tmp_path / "out.qix").write_text("the spatial index of the old Shapefile")
    vectorize(src, tmp_path / "out.shp", overwrite=True)
    assert len(read_features(tmp_path / "out.shp")[0]) > 0
    assert not (tmp_path / "out.qix").exists()


def test_failure_midway_leaves_nothing(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)

    def interrupt(done, total, **info):
        if done == 3:
            raise KeyboardInterrupt

    for output in ("out.shp", "out.gpkg"):
        with pytest.raises(KeyboardInterrupt):
            vectorize(src, tmp_path / output, window_size=16, progress=interrupt)
    assert os.listdir(tmp_path) == ["mask.tif"]


def test_driver_overrides_the_extension(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    summary = vectorize(src, tmp_path / "out.txt", driver="GeoJSON", background=0)
    assert summary.driver == "GeoJSON"
    assert json.loads((tmp_path / "out.txt").read_text())["type"] == "FeatureCollection"


@pytest.mark.parametrize("problem, make", [
    ("float32", lambda p: write_raster(p, np.zeros((8, 8), np.float32))),
    ("holds uint16 data, not an 8-bit class mask such as glnet segment writes; to polygonise "
     "every distinct value anyway, give --any-raster",
     lambda p: write_raster(p, np.arange(64, dtype=np.uint16).reshape(8, 8) * 900)),
    ("2 bands", lambda p: write_raster(p, np.zeros((2, 8, 8), np.uint8))),
    ("not a raster", lambda p: p.write_text("hello")),
    ("no such file", lambda p: None),
])
def test_non_mask_input_is_a_one_line_error(tmp_path, problem, make):
    mask = tmp_path / "input.tif"
    make(mask)
    result = run_glnet("vectorize", mask, "-o", tmp_path / "out.shp")
    assert result.exit_code == 2
    assert result.output.startswith(f"glnet: error: {mask}: ")
    assert problem in result.output and len(result.output.strip().splitlines()) == 1
    assert not [f for f in os.listdir(tmp_path) if f.startswith(("out", ".out"))]


@pytest.mark.parametrize("output, options, message", [
    ("out.txt", {}, "cannot tell the format"),
    ("out.shp", {"layout": "layer-per-class"}, "GeoPackage"),
    ("out.geojson", {"to_crs": "EPSG:3857"}, "RFC 7946"),
    ("out.gpkg", {"to_crs": "not-a-crs"}, "not a CRS"),
])
def test_bad_output_options_fail_before_work(tmp_path, output, options, message):
    src = write_raster(tmp_path / "mask.tif", blobs())
    with pytest.raises(InputError, match=message):
        vectorize(src, tmp_path / output, **options)
    assert os.listdir(tmp_path) == ["mask.tif"]


def test_missing_crs_warns(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), crs=None)
    with pytest.warns(GlnetWarning, match="has no CRS"):
        summary = vectorize(src, tmp_path / "out.gpkg", window_size=16, background=0)
    assert summary.crs is None and summary.polygons > 0
    result = run_glnet("vectorize", src, "-o", tmp_path / "cli.gpkg", "-q")
    assert result.exit_code == 0
    assert f"glnet: warning: {src}: has no CRS" in result.output
    with pytest.raises(InputError, match="no CRS, so it cannot be reprojected"):
        vectorize(src, tmp_path / "out.geojson")


def test_geographic_crs_warns_about_square_degrees(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(),
                       transform=Affine(1e-5, 0, -87.0, 0, -1e-5, 37.0), crs="EPSG:4326")
    with pytest.warns(GlnetWarning, match="square degrees"):
        summary = vectorize(src, tmp_path / "out.gpkg", window_size=16, background=0)
    assert summary.area_unit == "deg²"


@pytest.mark.parametrize("output, layout", [("empty.shp", "one-layer"),
                                            ("empty.gpkg", "layer-per-class"),
                                            ("empty.geojson", "one-layer")])
def test_empty_result_writes_an_empty_layer(tmp_path, output, layout):
    src = write_raster(tmp_path / "mask.tif", np.zeros((32, 32), np.uint8))
    result = run_glnet("vectorize", src, "-o", tmp_path / output, "--background", "0",
                       "--layout", layout, "-q")
    assert result.exit_code == 0, result.output
    assert "no polygons found" in result.output
    feats, meta = read_features(tmp_path / output)
    assert feats == []
    if output.endswith(".geojson"):  # GeoJSON has no schema: fields live in the features
        assert json.loads((tmp_path / output).read_text())["features"] == []
    else:
        assert set(meta["schema"]["properties"]) == {"class_id", "class_name", "area",
                                                     "perimeter"}


def test_any_raster_polygonises_a_16_bit_raster(tmp_path):
    src = write_raster(tmp_path / "ids.tif", np.repeat(np.array([[300, 70000 % 65536]],
                                                                np.uint16), 8, axis=0))
    summary = vectorize(src, tmp_path / "out.gpkg", any_raster=True)
    assert sorted(summary.classes) == [300, 4464]


# --- output safety --------------------------------------------------------------------------

def _partials(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if PARTIAL_MARK in n)


@pytest.mark.parametrize("output", ["out.shp", "out.gpkg", "out.geojson"])
def test_full_disk_is_one_line_and_keeps_the_previous_output(tmp_path, output):
    noise = np.random.default_rng(0).integers(0, 4, (96, 96)).astype(np.uint8)
    big = write_raster(tmp_path / "noise.tif", noise)  # thousands of polygons: MBs, not 64 kB
    small = write_raster(tmp_path / "small.tif", blobs(), nodata=255)
    vectorize(small, tmp_path / output)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if n.startswith("out")}
    with file_size_limit(64 * 1024):  # a full disk
        done = run_glnet("vectorize", big, "-o", tmp_path / output, "--overwrite", "-q")
    assert done.exit_code == 1, done.stderr
    assert done.stderr.startswith(f"glnet: error: {tmp_path / output}: writing failed: ")
    assert done.stderr.strip().endswith("; nothing was written")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    after = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if n.startswith("out")}
    assert after == before
    assert _partials(tmp_path) == []


def test_a_value_gdal_does_not_write_fails_the_run(tmp_path, monkeypatch):
    """Any "not successfully written" from the Shapefile driver is lost data, not a warning."""
    narrow = dict(vector_output._SHAPEFILE_FIELDS, area="float:3.1")
    monkeypatch.setattr(vector_output, "_SHAPEFILE_FIELDS", narrow)
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    with pytest.raises(OutputWriteError, match=r"out\.shp: writing failed: Value .* of field "
                                               r"area of feature \d+ not successfully written"):
        vectorize(src, tmp_path / "out.shp", background=0)
    assert os.listdir(tmp_path) == ["mask.tif"]


def test_shapefile_fields_hold_areas_of_any_scene(tmp_path):
    """10 km pixels: areas of 1e10 m² and more, which a default-width dBASE field cannot hold."""
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 1
    src = write_raster(tmp_path / "mask.tif", mask,
                       transform=Affine(10000.0, 0, 200000.0, 0, -10000.0, 4500000.0))
    summary = vectorize(src, tmp_path / "out.shp")
    feats, meta = read_features(tmp_path / "out.shp")
    assert meta["schema"]["properties"]["area"] == "float:33.16"
    assert sorted(p["area"] for _, p in feats) == [64 * 32 * 1e8] * 2
    assert summary.area == 64 * 64 * 1e8


def test_a_class_name_a_shapefile_would_cut_is_refused_before_work(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 1
    classes = [{"id": 0, "name": "background", "color": [0, 0, 0]},
               {"id": 1, "name": "é" * 200, "color": [255, 0, 0]}]
    src = write_raster(tmp_path / "mask.tif", mask)
    with rasterio.open(src, "r+") as dst:
        dst.update_tags(GLNET_CLASSES=json.dumps(classes))
    result = run_glnet("vectorize", src, "-o", tmp_path / "out.shp")
    assert result.exit_code == 2
    assert result.output == (f"glnet: error: {tmp_path / 'out.shp'}: the name of class 1 "
                             f"({'é' * 20}...) is 400 bytes long; a Shapefile field holds 254: "
                             "write a .gpkg instead\n")
    assert os.listdir(tmp_path) == ["mask.tif"]
    vectorize(src, tmp_path / "out.gpkg")
    assert {p["class_name"] for _, p in read_features(tmp_path / "out.gpkg")[0]} == {
        "background", "é" * 200}


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_an_output_that_is_the_mask_is_refused(tmp_path, link):
    src = write_raster(tmp_path / "mask.tif", blobs())
    original = src.read_bytes()
    output = {"same": src, "symlink": tmp_path / "link.gpkg", "hardlink": tmp_path / "hard.gpkg"}
    if link == "symlink":
        output[link].symlink_to(src)
    elif link == "hardlink":
        os.link(src, output[link])
    result = run_glnet("vectorize", src, "-o", output[link], "--driver", "gpkg", "--overwrite")
    assert result.exit_code == 2
    assert result.output == (f"glnet: error: {output[link]}: is the same file as the input "
                             f"{src}; choose another output\n")
    assert src.read_bytes() == original


def test_temp_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    for leftover in (".out.shp.glnet-partial-0badc0de.lock", ".out.shp.glnet-partial-0badc0de.shp",
                     ".out.shp.glnet-partial-0badc0de.dbf"):
        (tmp_path / leftover).write_text("left by kill -9")
    with pytest.warns(GlnetWarning, match=r"out\.shp: removed 2 temp file\(s\) left by an "
                                          r"interrupted run"):
        vectorize(src, tmp_path / "out.shp")
    assert _partials(tmp_path) == []
    assert len(read_features(tmp_path / "out.shp")[0]) > 0


# --- geostationary scenes: pixels in space ---------------------------------------------------

GEOS = "+proj=geos +h=35786023 +lon_0=-75 +sweep=x +datum=WGS84 +units=m +no_defs"
#: A full-disk GOES-like grid: 32 px of 343.75 km; its corners look past the Earth.
GEOS_TRANSFORM = from_bounds(-5.5e6, -5.5e6, 5.5e6, 5.5e6, 32, 32)


def test_polygons_in_space_are_left_out_of_geojson_and_counted(tmp_path):
    mask = np.full((32, 32), 2, np.uint8)  # class 2 reaches the corners, in space
    mask[8:24, 8:24] = 1                     # class 1 lies on the Earth
    src = write_raster(tmp_path / "goes.tif", mask, transform=GEOS_TRANSFORM, crs=GEOS)
    with pytest.warns(GlnetWarning, match=r"goes\.tif: 1 polygon\(s\) lie where EPSG:4326 has "
                                          r"no coordinates .*; they were left out of"):
        summary = vectorize(src, tmp_path / "disk.geojson")
    assert summary.unprojectable == 1 and list(summary.classes) == [1]
    feats, _ = read_features(tmp_path / "disk.geojson")
    assert [p["class_id"] for _, p in feats] == [1]
    lon, lat = shapely.get_coordinates(feats[0][0]).T
    assert np.all(np.abs(lon + 75) < 60) and np.all(np.abs(lat) < 60)


def test_a_mask_wholly_in_space_is_one_clear_error(tmp_path):
    src = write_raster(tmp_path / "space.tif", np.full((32, 32), 2, np.uint8),
                       transform=GEOS_TRANSFORM, crs=GEOS)
    result = run_glnet("vectorize", src, "-o", tmp_path / "space.geojson", "-q")
    assert result.exit_code == 2
    assert result.output.startswith(f"glnet: error: {src}: none of its polygons could be "
                                    "reprojected: 1 polygon(s) lie where EPSG:4326 has no "
                                    "coordinates")
    assert os.listdir(tmp_path) == ["space.tif"]


# --- default output and stdout --------------------------------------------------------------

def test_without_output_a_shapefile_goes_beside_the_mask(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    result = run_glnet("vectorize", src, "-q")
    assert result.exit_code == 0, result.output
    assert f"to {tmp_path / 'mask.shp'} (ESRI Shapefile, EPSG:32616)" in result.output
    assert len(read_features(tmp_path / "mask.shp")[0]) > 0
    again = run_glnet("vectorize", src, "-q")
    assert again.exit_code == 2
    assert again.output == (f"glnet: error: {tmp_path / 'mask.shp'}: already exists "
                            "(use --overwrite to replace it)\n")


def test_stdout_is_one_rfc7946_feature_collection(tmp_path):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    result = run_glnet("vectorize", src, "-o", "-", "--background", "0", "--window-size", "16")
    assert result.exit_code == 0, result.stderr
    collection = json.loads(result.stdout)  # nothing but GeoJSON on stdout
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    assert "polygons per class" in result.stderr
    with fiona.MemoryFile(result.stdout.encode()) as memfile, memfile.open() as layer:
        assert layer.crs.to_epsg() == 4326
        feats = [(shape(f.geometry), dict(f.properties)) for f in layer]
    assert len(feats) == len(collection["features"]) > 3
    reference = vectorize(src, tmp_path / "ref.geojson", background=0, window_size=16)
    assert len(feats) == reference.polygons
    for geom, props in feats:
        assert geom.is_valid and geom.exterior.is_ccw and not any(r.is_ccw for r in geom.interiors)
        assert props["area"] > 0 and props["class_id"] in (1, 2, 3)
    lon, lat = shapely.get_coordinates([g for g, _ in feats]).T
    assert np.all((lon > -87.01) & (lon < -86.99)) and np.all((lat > 37.0) & (lat < 37.1))


@pytest.mark.parametrize("rs", [False, True])
def test_stdout_sequence_is_one_feature_per_line(tmp_path, rs):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    result = run_glnet("vectorize", src, "-o", "-", "--sequence", "-q", "--background", "0",
                       *(["--rs"] if rs else []))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.rstrip("\n").split("\n")  # not splitlines(): RS is a break to it
    assert all(line.startswith("\x1e") == rs for line in lines)
    features = [json.loads(line.lstrip("\x1e")) for line in lines]
    assert {f["type"] for f in features} == {"Feature"}
    with fiona.MemoryFile(result.stdout.encode()) as memfile, \
            memfile.open(driver="GeoJSONSeq") as layer:
        assert len(list(layer)) == len(features) > 3


@pytest.mark.parametrize("args, message", [
    (["--sequence"], "--sequence and --rs shape GeoJSON written to stdout: add -o -"),
    (["-o", "-", "--rs"], "--rs starts the lines of a --sequence: add --sequence"),
    (["-o", "-", "--driver", "gpkg"],
     "<stdout>: a stream takes GeoJSON only; write gpkg to a file"),
    (["-o", "-", "--to-crs", "EPSG:3857"], "RFC 7946"),
])
def test_stdout_options_that_do_not_fit(tmp_path, args, message):
    src = write_raster(tmp_path / "mask.tif", blobs(), nodata=255)
    result = run_glnet("vectorize", src, *args)
    assert result.exit_code == 2
    assert message in result.output and result.stdout == ""
