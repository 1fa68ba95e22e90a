"""Vector ground truth (glnet_cli/evaluation/vector_truth.py): polygons with a class attribute
rasterised window by window on the prediction's grid, whatever CRS the file is in."""

from __future__ import annotations

import json

import fiona
import numpy as np
import pytest
import rasterio
from fiona.transform import transform_geom
from rasterio.transform import from_bounds
from rasterio.windows import Window
from shapely.geometry import box, mapping

from glnet_cli.errors import GlnetWarning, InputError
from glnet_cli.evaluation.vector_truth import vector_reader
from tests.helpers import DEFAULT_CRS, DEFAULT_TRANSFORM, write_raster

#: Truth on the 8x8 prediction grid: class 2 in the top-left 4x4 block, class 3 bottom-right.
BLOCKS = {(0, 0): 2, (4, 4): 3}
EXPECTED = np.zeros((8, 8), np.int32)
EXPECTED[:4, :4] = 2
EXPECTED[4:, 4:] = 3
WHOLE = Window(0, 0, 8, 8)


def block(row: int, col: int, crs=DEFAULT_CRS, size: int = 4) -> dict:
    """The GeoJSON geometry of ``size`` x ``size`` pixels of the grid, in ``crs``."""
    left, top = DEFAULT_TRANSFORM @ (col, row)
    right, bottom = DEFAULT_TRANSFORM @ (col + size, row + size)
    geom = mapping(box(left, bottom, right, top))
    return geom if crs in (None, DEFAULT_CRS) else transform_geom(DEFAULT_CRS, crs, geom)


def write_truth(path, blocks=BLOCKS, crs=DEFAULT_CRS, kind="int", layer=None):
    """A GeoPackage or GeoJSON file of grid blocks with their class in the field ``cls``."""
    driver = "GeoJSON" if path.suffix == ".geojson" else "GPKG"
    schema = {"geometry": "Polygon", "properties": {"cls": kind}}
    with fiona.open(path, "w", driver=driver, crs=crs, schema=schema, layer=layer) as dst:
        for (row, col), value in blocks.items():
            dst.write(fiona.Feature.from_dict(geometry=block(row, col, crs),
                                              properties={"cls": value}))
    return path


def write_plain_geojson(path, offset: float = 0.0, crs_member=None):
    """GeoJSON as older tools wrote it: grid coordinates, a ``crs`` member or none at all."""
    def shifted(row: int, col: int) -> dict:
        ring = [[x + offset, y] for x, y in block(row, col)["coordinates"][0]]
        return {"type": "Polygon", "coordinates": [ring]}

    features = [{"type": "Feature", "properties": {"cls": value}, "geometry": shifted(row, col)}
                for (row, col), value in BLOCKS.items()]
    collection = {"type": "FeatureCollection", "features": features}
    if crs_member:
        collection["crs"] = crs_member
    path.write_text(json.dumps(collection))
    return path


@pytest.fixture
def pred(tmp_path):
    """The prediction whose grid the truth is read on: 8x8 pixels of 0.5 m, UTM 16N."""
    path = write_raster(tmp_path / "pred.tif", np.zeros((8, 8), np.uint8))
    with rasterio.open(path) as src:
        yield src


def read(truth, pred, window=WHOLE, attribute="cls", background=0, layers=()):
    return vector_reader(str(truth), pred, attribute, background, layers)(window)


def test_polygons_are_burned_with_their_class_on_the_grid(tmp_path, pred):
    out = read(write_truth(tmp_path / "truth.gpkg"), pred)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, EXPECTED)


def test_each_window_reads_its_own_part_and_background_elsewhere(tmp_path, pred):
    reader = vector_reader(str(write_truth(tmp_path / "truth.gpkg")), pred, "cls", 7, ())
    expected = np.where(EXPECTED == 0, 7, EXPECTED)
    np.testing.assert_array_equal(reader(Window(2, 3, 4, 5)), expected[3:8, 2:6])
    np.testing.assert_array_equal(reader(Window(5, 0, 3, 3)), np.full((3, 3), 7))


@pytest.mark.parametrize("name, crs", [("truth.gpkg", "EPSG:3857"),
                                       ("truth.geojson", "EPSG:4326")])
def test_truth_in_another_crs_is_reprojected_onto_the_grid(tmp_path, pred, name, crs):
    np.testing.assert_array_equal(read(write_truth(tmp_path / name, crs=crs), pred), EXPECTED)


def test_a_geojson_2008_crs_member_gdal_does_not_read_is_honoured(tmp_path, pred):
    """GDAL takes a proj4 ``crs`` member for WGS84; the coordinates say otherwise."""
    member = {"type": "proj4", "properties": {"proj4": "+proj=utm +zone=16 +datum=WGS84"}}
    truth = write_plain_geojson(tmp_path / "truth.geojson", crs_member=member)
    np.testing.assert_array_equal(read(truth, pred), EXPECTED)


def test_a_geojson_2008_crs_member_naming_no_crs_is_refused(tmp_path, pred):
    member = {"type": "proj4", "properties": {"proj4": "+proj=nowhere"}}
    truth = write_plain_geojson(tmp_path / "truth.geojson", crs_member=member)
    with pytest.raises(InputError, match=r"its \"crs\" member names '\+proj=nowhere', which is "
                                         "not a CRS GDAL knows"):
        read(truth, pred)


def test_a_geojson_without_crs_on_the_grid_is_taken_in_the_grids_crs(tmp_path, pred):
    truth = write_plain_geojson(tmp_path / "truth.geojson")
    with pytest.warns(GlnetWarning, match="names no CRS; they overlap the prediction"):
        np.testing.assert_array_equal(read(truth, pred), EXPECTED)


def test_a_geojson_without_crs_off_the_grid_is_refused(tmp_path, pred):
    truth = write_plain_geojson(tmp_path / "truth.geojson", offset=1e5)
    with pytest.raises(InputError, match=r"are not longitude/latitude, as GeoJSON's are, and "
                                         r"it names no CRS; add a \"crs\" member"):
        read(truth, pred)


def test_a_truth_without_crs_is_taken_on_the_grid_with_a_warning(tmp_path, pred):
    truth = write_truth(tmp_path / "truth.gpkg", crs=None)
    with pytest.warns(GlnetWarning, match="no CRS; assuming both are on the prediction's"):
        np.testing.assert_array_equal(read(truth, pred), EXPECTED)


def test_without_an_attribute_every_feature_is_class_1(tmp_path, pred):
    out = read(write_truth(tmp_path / "truth.gpkg"), pred, attribute=None)
    np.testing.assert_array_equal(out, (EXPECTED > 0).astype(np.int32))


def test_features_without_a_class_are_left_out(tmp_path, pred):
    truth = write_truth(tmp_path / "truth.gpkg", blocks={(0, 0): 2, (4, 4): None})
    np.testing.assert_array_equal(read(truth, pred), np.where(EXPECTED == 3, 0, EXPECTED))


def test_layers_pick_what_is_read_and_an_unknown_layer_is_named(tmp_path, pred):
    truth = tmp_path / "truth.gpkg"
    write_truth(truth, blocks={(0, 0): 2}, layer="roofs")
    write_truth(truth, blocks={(4, 4): 3}, layer="trees")
    np.testing.assert_array_equal(read(truth, pred), EXPECTED)
    np.testing.assert_array_equal(read(truth, pred, layers=["trees"]),
                                  np.where(EXPECTED == 2, 0, EXPECTED))
    with pytest.raises(InputError, match="has no layer 'cars'; its layers are: roofs, trees"):
        read(truth, pred, layers=["cars"])


def test_a_missing_class_field_names_the_fields_there_are(tmp_path, pred):
    with pytest.raises(InputError, match=r"truth\.gpkg: no attribute 'class' in layer truth; "
                                         "its fields are: cls"):
        read(write_truth(tmp_path / "truth.gpkg"), pred, attribute="class")


@pytest.mark.parametrize("kind, value", [("float", 2.5), ("str", "roof")])
def test_class_values_must_be_whole_numbers(tmp_path, pred, kind, value):
    truth = write_truth(tmp_path / "truth.gpkg", blocks={(0, 0): value}, kind=kind)
    with pytest.raises(InputError, match=f"attribute 'cls' holds {value!r}; expected integer "
                                         "class ids"):
        read(truth, pred)


def test_whole_floats_are_class_ids(tmp_path, pred):
    """A class field saved as real numbers (2.0) is common in GIS exports."""
    truth = write_truth(tmp_path / "truth.gpkg", blocks={(0, 0): 2.0, (4, 4): 3.0}, kind="float")
    np.testing.assert_array_equal(read(truth, pred), EXPECTED)


@pytest.mark.parametrize("name, content", [("truth.txt", b"not a vector"),
                                           ("truth.tif", bytes(range(256)))])
def test_a_file_that_is_not_vector_is_refused(tmp_path, pred, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=f"{name}: neither a raster nor a vector file GDAL can "
                                         "read"):
        read(tmp_path / name, pred)


def test_truth_beside_the_grid_is_refused(tmp_path, pred):
    truth = write_truth(tmp_path / "truth.gpkg", blocks={(100, 100): 2})
    with pytest.raises(InputError, match="does not overlap the prediction"):
        read(truth, pred)


GEOS = "+proj=geos +h=35786023 +lon_0=-75 +sweep=x +datum=WGS84 +units=m +no_defs"


def test_features_the_grids_crs_cannot_hold_are_left_out_or_refused(tmp_path):
    """A geostationary grid sees one side of the Earth: truth on the far side cannot be placed."""
    path = write_raster(tmp_path / "goes.tif", np.zeros((32, 32), np.uint8), crs=GEOS,
                        transform=from_bounds(-5.5e6, -5.5e6, 5.5e6, 5.5e6, 32, 32))
    near, far = mapping(box(-80, -5, -70, 5)), mapping(box(95, -5, 105, 5))
    schema = {"geometry": "Polygon", "properties": {"cls": "int"}}
    for name, geoms in (("both.gpkg", [near, far]), ("far.gpkg", [far])):
        with fiona.open(tmp_path / name, "w", driver="GPKG", crs="EPSG:4326",
                        schema=schema) as dst:
            dst.writerecords({"geometry": g, "properties": {"cls": 1}} for g in geoms)
    with rasterio.open(path) as pred:
        with pytest.warns(GlnetWarning, match="1 of its 2 features were left out"):
            out = read(tmp_path / "both.gpkg", pred, window=Window(0, 0, 32, 32))
        assert out[16, 16] == 1 and out.sum() > 0 and out[0, 0] == 0
        with pytest.raises(InputError, match="none of its 1 features can be put on the "
                                             "prediction's grid"):
            read(tmp_path / "far.gpkg", pred)
