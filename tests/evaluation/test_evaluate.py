"""``glnet evaluate`` and :func:`glnet_cli.evaluation.evaluate.evaluate` on tiny rasters
and vectors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import fiona
import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize
from rasterio.transform import Affine
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping

from glnet_cli.classes import DEEPGLOBE
from glnet_cli.errors import GlnetWarning
from glnet_cli.evaluation.evaluate import evaluate
from glnet_cli.evaluation.metrics import ConfusionMatrix
from glnet_cli.io.paths import PARTIAL_MARK
from glnet_cli.vector.vectorize import vectorize
from tests.helpers import DEFAULT_CRS, DEFAULT_TRANSFORM, run_glnet, run_glnet_process, write_raster

# 255 in the prediction is its nodata; 255 in the truth is "no label".
PRED = np.array([[0, 0, 1, 1],
                 [0, 1, 1, 2],
                 [2, 2, 2, 255],
                 [1, 0, 2, 2]], dtype=np.uint8)
TRUTH = np.array([[0, 0, 1, 1],
                  [0, 0, 1, 1],
                  [2, 2, 2, 2],
                  [2, 2, 2, 255]], dtype=np.uint8)
# Counted by hand: (2, 255) is an unlabelled prediction pixel, (255, 2) is not scored.
MATRIX = [[3, 1, 0],
          [0, 3, 1],
          [1, 1, 4]]


def run_json(*args: object) -> dict:
    result = run_glnet("evaluate", *args, "--json", "-q")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_error(result, path: Path, words: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("glnet: error: ") and "\n" not in message
    assert str(path) in message and words in message, message


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return (write_raster(tmp_path / "pred.tif", PRED, nodata=255),
            write_raster(tmp_path / "truth.tif", TRUTH))


def test_equal_grid_hand_checked(pair):
    d = run_json(*pair, "--window-size", 3)
    assert d["confusion"] == MATRIX
    assert d["unlabelled_prediction_pixels"] == 1
    assert d["scored_pixels"] == 14
    assert d["accuracy"] == pytest.approx(10 / 14)
    ious = [3 / (4 + 4 - 3), 3 / (4 + 5 - 3), 4 / (6 + 5 - 4)]
    assert [c["iou"] for c in d["per_class"]] == pytest.approx(ious)
    assert d["miou"] == pytest.approx(sum(ious) / 3)
    assert d["per_class"][2] == {"id": 2, "name": "class_2", "iou": pytest.approx(4 / 7),
                                 "f1": pytest.approx(8 / 11), "precision": pytest.approx(4 / 5),
                                 "recall": pytest.approx(4 / 6)}


@pytest.mark.parametrize("ignore", [["--ignore-class", "0"], ["--ignore-class", "0,3"],
                                    ["--ignore-class", "0", "--ignore-class", "3"]])
def test_ignore_class(pair, ignore):
    d = run_json(*pair, *ignore)
    assert d["confusion"] == [[0, 0, 0], [0, 3, 1], [1, 1, 4]]
    assert d["per_class"][0]["iou"] is None
    assert d["miou"] == pytest.approx((3 / 5 + 4 / 7) / 2)
    assert d["accuracy"] == pytest.approx(7 / 10)


def test_table_output(pair):
    result = run_glnet("evaluate", *pair, "--classes", "deepglobe")
    assert result.exit_code == 0, result.output
    for words in ("Per-class scores", "Confusion matrix", "urban", "barren", "mIoU",
                  "unlabelled prediction pixels: 1"):
        assert words in result.stdout


def test_class_names_from_prediction_tags(pair):
    with rasterio.open(pair[0], "r+") as dst:
        dst.update_tags(GLNET_CLASSES=json.dumps(DEEPGLOBE.to_list()[:3]))
    d = run_json(*pair)
    assert [c["name"] for c in d["per_class"]] == ["unknown", "urban", "agriculture"]


def test_windowed_equals_whole_image(tmp_path):
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 5, (37, 29)).astype(np.uint8)
    pred[rng.random(pred.shape) < 0.05] = 255
    truth = np.where(rng.random(pred.shape) < 0.7, pred, rng.integers(0, 5, pred.shape))
    truth = truth.astype(np.uint8)
    truth[rng.random(pred.shape) < 0.05] = 255
    paths = (write_raster(tmp_path / "p.tif", pred, nodata=255, tiled=True),
             write_raster(tmp_path / "t.tif", truth))
    whole = ConfusionMatrix(5, [0])
    whole.update(truth, pred, valid=pred != 255)
    expected = whole.to_dict()
    for size in (8, 1024):
        d = run_json(*paths, "--ignore-class", 0, "--window-size", size)
        assert d["confusion"] == expected["confusion"]
        assert d["miou"] == pytest.approx(expected["miou"])
        assert d["accuracy"] == pytest.approx(expected["accuracy"])


def test_colour_coded_truth(tmp_path, pair):
    colours = np.array([c.color for c in DEEPGLOBE], dtype=np.uint8)
    rgb = colours[np.where(TRUTH == 255, 0, TRUTH)].transpose(2, 0, 1)
    truth = write_raster(tmp_path / "rgb.tif", rgb)
    d = run_json(pair[0], truth, "--classes", "deepglobe", "--window-size", 3)
    # The 255 truth pixel became black (class 0) and its prediction is 2.
    expected = np.zeros((7, 7), int)
    expected[:3, :3] = MATRIX
    expected[0, 2] += 1
    assert d["confusion"] == expected.tolist()
    assert d["per_class"][1]["name"] == "urban"
    assert d["per_class"][5]["iou"] is None


def test_colour_coded_truth_needs_classes(tmp_path, pair):
    truth = write_raster(tmp_path / "rgb.tif", np.zeros((3, 4, 4), np.uint8))
    assert_error(run_glnet("evaluate", pair[0], truth), truth, "--classes")


def test_truth_value_outside_class_table(tmp_path, pair):
    truth = write_raster(tmp_path / "bad.tif", np.full((4, 4), 9, np.uint8))
    assert_error(run_glnet("evaluate", pair[0], truth, "--classes", "deepglobe"), truth, "9")


# Vector truth on an 8x8 grid: class 2 in the top-left 4x4 block, class 3 bottom-right.
VECTOR_PRED = np.zeros((8, 8), np.uint8)
VECTOR_PRED[:4, :4] = 2
VECTOR_PRED[4:, 4:6] = 3


def write_vector(path: Path, driver: str, crs: Optional[str] = DEFAULT_CRS) -> Path:
    def block(row: int, col: int):
        left, top = DEFAULT_TRANSFORM @ (col, row)
        right, bottom = DEFAULT_TRANSFORM @ (col + 4, row + 4)
        geom = mapping(box(left, bottom, right, top))
        return geom if crs in (None, DEFAULT_CRS) else transform_geom(DEFAULT_CRS, crs, geom)

    schema = {"geometry": "Polygon", "properties": {"cls": "int"}}
    with fiona.open(path, "w", driver=driver, crs=crs, schema=schema) as dst:
        for (row, col), cls in (((0, 0), 2), ((4, 4), 3)):
            dst.write(fiona.Feature.from_dict(geometry=block(row, col),
                                              properties={"cls": cls}))
    return path


@pytest.mark.parametrize("name, driver, crs", [("truth.gpkg", "GPKG", DEFAULT_CRS),
                                               ("truth.geojson", "GeoJSON", "EPSG:4326")])
def test_vector_truth_with_attribute(tmp_path, name, driver, crs):
    pred = write_raster(tmp_path / "pred.tif", VECTOR_PRED, nodata=255)
    truth = write_vector(tmp_path / name, driver, crs)
    d = run_json(pred, truth, "--attribute", "cls", "--window-size", 3)
    assert d["confusion"] == [[32, 0, 0, 0], [0, 0, 0, 0], [0, 0, 16, 0], [8, 0, 0, 8]]
    assert [c["iou"] for c in d["per_class"]] == pytest.approx([0.8, None, 1.0, 0.5])


def test_vector_truth_without_crs_is_taken_on_the_prediction_grid(tmp_path):
    pred = write_raster(tmp_path / "pred.tif", VECTOR_PRED)
    truth = write_vector(tmp_path / "truth.gpkg", "GPKG", crs=None)
    with pytest.warns(GlnetWarning, match="no CRS"):
        result = evaluate(pred, truth, attribute="cls")
    assert result.confusion.matrix[2, 2] == 16 and result.confusion.matrix[3, 3] == 8


def test_vector_truth_without_attribute_is_class_1(tmp_path):
    pred = write_raster(tmp_path / "pred.tif", (VECTOR_PRED > 0).astype(np.uint8))
    truth = write_vector(tmp_path / "truth.gpkg", "GPKG")
    d = run_json(pred, truth, "--window-size", 5)
    assert d["confusion"] == [[32, 0], [8, 24]]
    assert d["miou"] == pytest.approx((32 / 40 + 24 / 32) / 2)
    d = run_json(pred, truth, "--background", 255)  # only the polygons are scored
    assert d["confusion"] == [[0, 0], [8, 24]]


def test_vector_attribute_not_found(tmp_path):
    pred = write_raster(tmp_path / "pred.tif", VECTOR_PRED)
    truth = write_vector(tmp_path / "truth.gpkg", "GPKG")
    assert_error(run_glnet("evaluate", pred, truth, "--attribute", "nope"), truth, "'nope'")


def test_shifted_grid_is_resampled_with_a_warning(tmp_path):
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 3, (8, 8)).astype(np.uint8)
    truth = rng.integers(0, 3, (8, 8)).astype(np.uint8)
    pred_path = write_raster(tmp_path / "pred.tif", pred)
    # Truth pixel (r, c) lies on prediction pixel (r + 1, c + 2).
    truth_path = write_raster(tmp_path / "truth.tif", truth,
                              transform=DEFAULT_TRANSFORM @ Affine.translation(2, 1))
    on_pred_grid = np.full((8, 8), 255, np.uint8)
    on_pred_grid[1:, 2:] = truth[:-1, :-2]
    expected = ConfusionMatrix(3)
    expected.update(on_pred_grid, pred)

    with pytest.warns(GlnetWarning, match="resampling"):
        result = evaluate(pred_path, truth_path, window_size=3)
    assert np.array_equal(result.confusion.matrix, expected.matrix)

    cli = run_glnet("evaluate", pred_path, truth_path, "--json", "-q")
    assert cli.exit_code == 0
    assert f"glnet: warning: {truth_path}: its grid" in cli.stderr
    assert json.loads(cli.stdout)["confusion"] == expected.matrix.tolist()


def test_non_overlapping_truth_is_refused(tmp_path, pair):
    far = write_raster(tmp_path / "far.tif", TRUTH,
                       transform=DEFAULT_TRANSFORM @ Affine.translation(100, 0))
    assert_error(run_glnet("evaluate", pair[0], far), far, "does not overlap")


def test_non_overlapping_vector_is_refused(tmp_path):
    pred = write_raster(tmp_path / "pred.tif", VECTOR_PRED,
                        transform=DEFAULT_TRANSFORM @ Affine.translation(0, 50))
    truth = write_vector(tmp_path / "truth.gpkg", "GPKG")
    assert_error(run_glnet("evaluate", pred, truth), truth, "does not overlap")


def test_error_missing_files(tmp_path, pair):
    missing = tmp_path / "missing.tif"
    assert_error(run_glnet("evaluate", missing, pair[1]), missing, "no such file")
    assert_error(run_glnet("evaluate", pair[0], missing), missing, "no such file")


def test_error_not_a_raster_or_vector(tmp_path, pair):
    text = tmp_path / "notes.txt"
    text.write_text("not a map\n")
    assert_error(run_glnet("evaluate", text, pair[1]), text, "not a raster")
    assert_error(run_glnet("evaluate", pair[0], text), text, "neither a raster nor a vector")


def test_error_multiband_float_prediction(tmp_path, pair):
    pred = write_raster(tmp_path / "probs.tif", np.zeros((2, 4, 4), np.float32))
    assert_error(run_glnet("evaluate", pred, pair[1]), pred, "2 band(s) of float32")


def test_colour_truth_with_alpha_on_another_grid(tmp_path):
    pred = write_raster(tmp_path / "pred.tif", np.ones((6, 6), np.uint8))
    rgba = np.zeros((4, 6, 6), np.uint8)
    rgba[:3] = np.array(DEEPGLOBE.classes[1].color, np.uint8)[:, None, None]
    rgba[3, 3:] = 255  # only the bottom three rows are labelled
    truth = write_raster(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES",
                         transform=DEFAULT_TRANSFORM @ Affine.translation(1, 0))
    with pytest.warns(GlnetWarning, match="resampling"):
        result = evaluate(pred, truth, classes=DEEPGLOBE, window_size=4)
    assert result.confusion.matrix[1, 1] == 3 * 5 and result.confusion.total == 15


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_ungeoreferenced_truth_of_the_same_size_is_pixel_aligned(tmp_path, pair):
    plain = write_raster(tmp_path / "plain.tif", TRUTH, transform=Affine.identity(), crs=None)
    with pytest.warns(GlnetWarning, match="no CRS"):
        result = evaluate(pair[0], plain)
    assert result.confusion.matrix.tolist() == MATRIX


def test_spacenet_buildings_against_themselves(shared_data, tmp_path):
    image, labels = (shared_data / "spacenet" / name for name in
                     ("sample_geotiff.tif", "geotiff_labels.geojson"))
    if not labels.exists():
        pytest.skip("the SpaceNet sample is not in ../shared/data")
    with rasterio.open(image) as src, fiona.open(labels) as layer:
        mask = rasterize((f.geometry for f in layer), out_shape=src.shape,
                         transform=src.transform, dtype="uint8")
        pred = write_raster(tmp_path / "pred.tif", mask, transform=src.transform, crs=src.crs)
    result = evaluate(pred, labels, window_size=256)
    assert result.confusion.matrix[0, 1] == result.confusion.matrix[1, 0] == 0
    assert result.confusion.miou == 1.0
    assert 0.03 < result.confusion.matrix[1, 1] / result.confusion.total < 0.06


# --- JSON report files ----------------------------------------------------------------------

def test_json_report_file(pair, tmp_path):
    report = tmp_path / "scores.json"
    result = run_glnet("evaluate", *pair, "--json", report, "-q")
    assert result.exit_code == 0, result.output
    assert "Per-class scores" in result.stdout and f"wrote {report}" in result.stdout
    assert json.loads(report.read_text()) == run_json(*pair)
    again = run_glnet("evaluate", *pair, "--json", report)
    assert again.exit_code == 2
    assert again.stderr == f"glnet: error: {report}: already exists (use --overwrite to replace " \
                           "it)\n"
    assert run_glnet("evaluate", *pair, "--json", report, "--overwrite", "-q").exit_code == 0


@pytest.mark.parametrize("which", ["prediction", "truth", "symlink"])
def test_json_report_that_is_an_input_is_refused(pair, tmp_path, which):
    pred, truth = pair
    report = {"prediction": pred, "truth": truth, "symlink": tmp_path / "link.json"}[which]
    if which == "symlink":
        report.symlink_to(pred)
    before = pred.read_bytes(), truth.read_bytes()
    result = run_glnet("evaluate", pred, truth, "--json", report, "--overwrite")
    source = truth if which == "truth" else pred
    assert result.exit_code == 2
    assert result.stderr == (f"glnet: error: {report}: is the same file as the input {source}; "
                             "choose another output\n")
    assert (pred.read_bytes(), truth.read_bytes()) == before


def test_json_report_on_a_full_disk_is_one_line_and_keeps_the_old_one(pair, tmp_path):
    report = tmp_path / "scores.json"
    report.write_text('{"old": true}')
    done = run_glnet_process("evaluate", *pair, "--json", report, "--overwrite", "-q",
                             file_size_limit=256)
    assert done.returncode == 1
    assert done.stderr == (f"glnet: error: {report}: writing failed: File too large; "
                           "nothing was written\n")
    assert report.read_text() == '{"old": true}'
    assert [n for n in os.listdir(tmp_path) if PARTIAL_MARK in n] == []


# --- vector truth: layers, GeoJSON's CRS, features a CRS cannot hold -------------------------

def _write_layers(path: Path, layers: dict[str, list[tuple[int, int, int]]]) -> Path:
    """A GeoPackage with one layer per entry: 4x4-pixel blocks (row, col, class) of the grid."""
    schema = {"geometry": "Polygon", "properties": {"cls": "int"}}
    for name, blocks in layers.items():
        with fiona.open(path, "w", driver="GPKG", layer=name, crs=DEFAULT_CRS,
                        schema=schema) as dst:
            for row, col, cls in blocks:
                left, top = DEFAULT_TRANSFORM @ (col, row)
                right, bottom = DEFAULT_TRANSFORM @ (col + 4, row + 4)
                dst.write(fiona.Feature.from_dict(geometry=mapping(box(left, bottom, right, top)),
                                                  properties={"cls": cls}))
    return path


def test_every_layer_of_a_multi_layer_truth_is_read(tmp_path):
    pred = write_raster(tmp_path / "pred.tif", VECTOR_PRED, nodata=255)
    truth = _write_layers(tmp_path / "truth.gpkg", {"a": [(0, 0, 2)], "b": [(4, 4, 3)]})
    d = run_json(pred, truth, "--attribute", "cls")
    assert d["confusion"] == [[32, 0, 0, 0], [0, 0, 0, 0], [0, 0, 16, 0], [8, 0, 0, 8]]
    d = run_json(pred, truth, "--attribute", "cls", "--layer", "a")  # b's block is background
    assert d["confusion"] == [[40, 0, 0, 8], [0, 0, 0, 0], [0, 0, 16, 0], [0, 0, 0, 0]]
    result = run_glnet("evaluate", pred, truth, "--layer", "roads")
    assert_error(result, truth, "has no layer 'roads'; its layers are: a, b")


def test_a_layer_per_class_vectorisation_scores_one_against_its_mask(tmp_path):
    """The issue's case: glnet's own layer-per-class GeoPackage read from its first layer only
    scored an mIoU of 0.087; every layer counts."""
    mask = np.random.default_rng(5).integers(1, 4, (24, 24)).astype(np.uint8)
    pred = write_raster(tmp_path / "pred.tif", mask)
    vectorize(pred, tmp_path / "truth.gpkg", layout="layer-per-class")
    assert len(fiona.listlayers(tmp_path / "truth.gpkg")) == 3
    result = evaluate(pred, tmp_path / "truth.gpkg", attribute="class_id")
    assert result.confusion.miou == 1.0
    assert result.confusion.total == 24 * 24


def test_layer_is_for_vector_truth(pair):
    assert_error(run_glnet("evaluate", *pair, "--layer", "a"), pair[1], "--layer picks layers")


#: solaris' sample_geotiff_custom_proj.tif: CONUS Albers, which GDAL names with no EPSG code.
ALBERS = ("+proj=aea +lat_0=23 +lon_0=-96 +lat_1=29.5 +lat_2=45.5 +x_0=0 +y_0=0 +datum=NAD83 "
          "+units=m +no_defs")
ALBERS_TRANSFORM = Affine(0.5, 0.0, -658600.0, 0.0, -0.5, 2120000.0)


def _geojson(path: Path, transform: Affine, crs_member: Optional[dict] = None,
             to_crs: Optional[str] = None) -> Path:
    """The two VECTOR_PRED blocks as a GeoJSON file, in ``to_crs`` (default: the grid's)."""
    features = []
    for row, col, cls in ((0, 0, 2), (4, 4, 3)):
        left, top = transform @ (col, row)
        right, bottom = transform @ (col + 4, row + 4)
        geom = mapping(box(left, bottom, right, top))
        if to_crs:
            geom = transform_geom(ALBERS, to_crs, geom)
        features.append({"type": "Feature", "properties": {"cls": cls}, "geometry": geom})
    doc = {"type": "FeatureCollection", "features": features}
    if crs_member:
        doc["crs"] = crs_member
    path.write_text(json.dumps(doc))
    return path


EXPECTED_VECTOR = [[32, 0, 0, 0], [0, 0, 0, 0], [0, 0, 16, 0], [8, 0, 0, 8]]


def test_projected_geojson_without_crs_overlapping_the_prediction_is_in_its_crs(tmp_path):
    """solaris' custom-projection labels: Albers metres in a GeoJSON that names no CRS
    (GDAL takes them for degrees: "PROJ: aea: Invalid latitude")."""
    pred = write_raster(tmp_path / "pred.tif", VECTOR_PRED, transform=ALBERS_TRANSFORM,
                        crs=ALBERS)
    truth = _geojson(tmp_path / "labels.geojson", ALBERS_TRANSFORM)
    with pytest.warns(GlnetWarning, match="not longitude/latitude and it names no CRS; they "
                                          "overlap the prediction in its CRS"):
        result = evaluate(pred, truth, attribute="cls")
    assert result.confusion.matrix.tolist() == EXPECTED_VECTOR


@pytest.mark.parametrize("member", [
    {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
    {"type": "EPSG", "properties": {"code": 3857}},
    {"type": "proj4", "properties": {"proj4": "+proj=merc +a=6378137 +b=6378137 +lat_ts=0 "
                                              "+lon_0=0 +x_0=0 +y_0=0 +k=1 +units=m +no_defs"}},
    {"type": "link", "properties": {"href": "labels.proj4", "type": "proj4"}},
])
def test_a_legacy_crs_member_is_honoured(tmp_path, member):
    pred = write_raster(tmp_path / "pred.tif", VECTOR_PRED, transform=ALBERS_TRANSFORM,
                        crs=ALBERS)
    (tmp_path / "labels.proj4").write_text("+proj=merc +a=6378137 +b=6378137 +lat_ts=0 "
                                           "+lon_0=0 +x_0=0 +y_0=0 +k=1 +units=m +no_defs")
    truth = _geojson(tmp_path / "labels.geojson", ALBERS_TRANSFORM, member, "EPSG:3857")
    result = evaluate(pred, truth, attribute="cls")
    assert result.confusion.matrix.tolist() == EXPECTED_VECTOR


def test_projected_geojson_that_fits_no_crs_is_one_clear_line(tmp_path):
    pred = write_raster(tmp_path / "pred.tif", VECTOR_PRED, nodata=255)  # UTM, far away
    truth = _geojson(tmp_path / "labels.geojson", ALBERS_TRANSFORM)
    assert_error(run_glnet("evaluate", pred, truth), truth,
                 "are not longitude/latitude, as GeoJSON's are, and it names no CRS; add a "
                 "\"crs\" member or convert it with ogr2ogr")


GEOS = "+proj=geos +h=35786023 +lon_0=-75 +sweep=x +datum=WGS84 +units=m +no_defs"


def _lonlat_boxes(path: Path, centres: list[tuple[float, float]]) -> Path:
    features = [{"type": "Feature", "properties": {},
                 "geometry": mapping(box(lon - 5, lat - 5, lon + 5, lat + 5))}
                for lon, lat in centres]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_features_the_prediction_crs_cannot_hold_are_skipped_and_counted(tmp_path):
    """A GOES full disk: a feature on the far side of the Earth has no place in it."""
    grid = rasterio.transform.from_bounds(-5.5e6, -5.5e6, 5.5e6, 5.5e6, 32, 32)
    pred = write_raster(tmp_path / "goes.tif", np.ones((32, 32), np.uint8), transform=grid,
                        crs=GEOS)
    truth = _lonlat_boxes(tmp_path / "t.geojson", [(-75, 0), (105, 0)])
    with pytest.warns(GlnetWarning, match=r"t\.geojson: 1 of its 2 features were left out: "
                                          r"their coordinates lie outside the area"):
        result = evaluate(pred, truth)
    assert result.confusion.matrix[1, 1] > 0
    far = _lonlat_boxes(tmp_path / "far.geojson", [(105, 0), (100, 10)])
    assert_error(run_glnet("evaluate", pred, far), far,
                 "none of its 2 features can be put on the prediction's grid")


def test_a_crs_member_gdal_cannot_read_is_one_clear_line(tmp_path):
    pred = write_raster(tmp_path / "pred.tif", VECTOR_PRED, transform=ALBERS_TRANSFORM,
                        crs=ALBERS)
    truth = _geojson(tmp_path / "labels.geojson", ALBERS_TRANSFORM,
                     {"type": "proj4", "properties": {"proj4": "+proj=nowhere"}})
    assert_error(run_glnet("evaluate", pred, truth), truth,
                 "its \"crs\" member names '+proj=nowhere', which is not a CRS GDAL knows")
