"""STAC in and out: a local catalogue served from 127.0.0.1, broken items, items read back."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

from glnet_cli.errors import InputError
from glnet_cli.io.stac.read import choose_asset, is_stac, read_stac
from tests.helpers import rule_scene, run_glnet, write_raster

pystac = pytest.importorskip("pystac")

RGB = [{"name": "B4", "common_name": "red"}, {"name": "B3", "common_name": "green"},
       {"name": "B2", "common_name": "blue"}]
CONFIG = ["--config", "GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR"]


def item(item_id: str, assets: dict) -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id,
            "geometry": {"type": "Point", "coordinates": [-87.0, 37.0]},
            "bbox": [-87.0, 37.0, -87.0, 37.0],
            "properties": {"datetime": "2024-05-01T10:00:00Z"}, "links": [], "assets": assets}


def tif(href: str, bands: list | None = None, **more) -> dict:
    asset = {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
             "roles": ["data"], **more}
    if bands:
        asset["eo:bands"] = bands
    return asset


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def catalog(links: list[str], kind: str = "Catalog") -> dict:
    return {"type": kind, "stac_version": "1.0.0", "id": "archive", "description": "test",
            "links": [{"rel": "item" if h.endswith("item.json") else "child", "href": h}
                      for h in links]}


@pytest.fixture(scope="module")
def archive(tmp_path_factory, tiny_model) -> Path:
    """4 items (one asset with its bands as B, G, R), a child catalogue, scenes beside items."""
    root = tmp_path_factory.mktemp("stac")
    for i in range(4):
        image = rule_scene(96, 128, seed=i)
        folder = root / ("sub" if i == 3 else ".") / f"s{i}"
        folder.mkdir(parents=True)
        if i == 2:  # stored blue, green, red: eo:bands tell
            write_raster(folder / "s.tif", image[::-1].copy())
            bands = RGB[::-1]
        else:
            write_raster(folder / "s.tif", image)
            bands = RGB
        write_json(folder / "item.json", item(f"scene-{i}", {
            "visual": tif("./s.tif", bands),
            "thumbnail": {"href": "./t.png", "type": "image/png", "roles": ["thumbnail"]}}))
    write_raster(root / "rgb2.tif", rule_scene(96, 128, seed=2))
    write_json(root / "sub" / "catalog.json", catalog(["./s3/item.json"]))
    write_json(root / "catalog.json", catalog(["./s0/item.json", "./s1/item.json",
                                               "./s2/item.json", "./sub/catalog.json"]))
    tiny_model(root / "tiny.pt")
    return root


def test_is_stac():
    assert is_stac("a/item.json") and is_stac("https://x/api/collections/c/items/i")
    assert not is_stac("scene.tif") and not is_stac("https://x/scene.tif?sig=1")


def test_catalogue_walked_with_its_children(archive):
    scenes, many = read_stac(str(archive / "catalog.json"))
    assert many and [s.name for s in scenes] == [f"scene-{i}" for i in range(4)]
    assert scenes[3].href == str(archive / "sub" / "s3" / "item.json")


def test_asset_chosen_by_common_names_in_the_model_order(archive):
    [scene], many = read_stac(str(archive / "s2" / "item.json"))
    chosen = choose_asset(scene, band_names=("red", "green", "blue"))
    assert not many and chosen.key == "visual" and chosen.bands == (3, 2, 1)
    assert chosen.path == str(archive / "s2" / "s.tif")


@pytest.mark.parametrize("assets, asset, message", [
    ({"visual": tif("./a.tif")}, "B04", "has no asset 'B04' (its assets: visual)"),
    ({"thumb": {"href": "./t.png", "roles": ["thumbnail"]}}, None, "has no raster asset"),
    ({"a": tif("./a.tif"), "b": tif("./b.tif")}, None, "2 raster assets (a, b)"),
])
def test_assets_that_cannot_be_chosen(tmp_path, assets, asset, message):
    [scene], _ = read_stac(str(write_json(tmp_path / "i.json", item("broken-1", assets))))
    with pytest.raises(InputError, match="STAC item broken-1") as error:
        choose_asset(scene, asset, ("red", "green", "blue"))
    assert message in str(error.value)


def test_unreadable_items_fail_alone(tmp_path):
    write_json(tmp_path / "bad" / "item.json", {"type": "Feature", "id": "x"})
    write_json(tmp_path / "catalog.json", catalog(["./missing/item.json", "./bad/item.json"]))
    scenes, _ = read_stac(str(tmp_path / "catalog.json"))
    assert [s.item for s in scenes] == [None, None]
    assert "cannot read the STAC document" in scenes[0].error
    assert "not a readable STAC Item" in scenes[1].error
    with pytest.raises(InputError, match="not a STAC Item, ItemCollection"):
        read_stac(str(write_json(tmp_path / "x.json", {"type": "Topology"})))


def test_item_collection(tmp_path, archive):
    collection = {"type": "FeatureCollection", "features": [
        item("a", {"visual": tif(str(archive / "s0" / "s.tif"), RGB)}),
        item("b", {"visual": tif(str(archive / "s1" / "s.tif"), RGB)})]}
    scenes, many = read_stac(str(write_json(tmp_path / "search.json", collection)))
    assert many and [s.key.rsplit("#", 1)[1] for s in scenes] == ["a", "b"]


def _block_internet(monkeypatch):
    """Only 127.0.0.1: a validation that fetched a schema would fail."""
    connect = socket.socket.connect

    def local_only(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost"):
            raise OSError(f"no network in tests: {address}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


@pytest.mark.slow
def test_catalogue_over_http_to_masks_items_quick_looks_and_a_catalogue(archive, serve, tmp_path,
                                                                         monkeypatch):
    _block_internet(monkeypatch)
    out = tmp_path / "masks"
    with serve(archive) as (url, _):
        result = run_glnet(*CONFIG, "segment", f"{url}/catalog.json", "-o", out, "-m",
                           archive / "tiny.pt", "-q", "--stac", "--preview")
    assert result.exit_code == 0, result.output
    assert "4 ok, 0 skipped, 0 failed" in result.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["catalog.json"] + sorted(f"scene-{i}_mask.{ext}" for i in range(4)
                                              for ext in ("json", "png", "tif"))
    from pystac.validation import validate_dict

    read = pystac.Catalog.from_file(str(out / "catalog.json"))
    items = list(read.get_items())
    assert len(items) == 4
    for mask_item in items:
        validate_dict(mask_item.to_dict(), pystac.STACObjectType.ITEM, extensions=[])
        assert Path(mask_item.assets["mask"].get_absolute_href()).is_file()
        assert Path(mask_item.assets["thumbnail"].get_absolute_href()).is_file()
        [source] = mask_item.get_links("derived_from")
        assert source.href.startswith(url) and source.href.endswith("/item.json")
        props = mask_item.properties
        assert props["proj:code"] == "EPSG:32616" and props["proj:shape"] == [96, 128]
        assert props["glnet:model"]["file"] == "tiny.pt"
        assert len(props["glnet:model"]["sha256"]) == 64
        assert props["datetime"] == "2024-05-01T10:00:00Z"
        classes = mask_item.assets["mask"].extra_fields["classification:classes"]
        assert classes[-1] == {"value": 255, "name": "nodata", "nodata": True,
                               "description": "no valid input pixels"}
        assert -87.01 < mask_item.bbox[0] < -86.99
    validate_dict(json.loads((out / "catalog.json").read_text()),
                  pystac.STACObjectType.CATALOG, extensions=[])


@pytest.mark.slow
def test_bands_in_another_order_make_the_same_mask(archive, tmp_path):
    model = archive / "tiny.pt"
    from_item = run_glnet("segment", archive / "s2" / "item.json", "-o", tmp_path / "item.tif",
                          "-m", model, "-q")
    plain = run_glnet("segment", archive / "rgb2.tif", "-o", tmp_path / "plain.tif", "-m", model,
                      "-q")
    assert from_item.exit_code == 0 and plain.exit_code == 0, from_item.output + plain.output
    with rasterio.open(tmp_path / "item.tif") as a, rasterio.open(tmp_path / "plain.tif") as b:
        assert (a.read() == b.read()).all()


@pytest.mark.slow
def test_broken_items_and_assets_fail_alone_in_a_batch(archive, tmp_path):
    write_json(tmp_path / "nodata" / "item.json", item("no-raster", {
        "meta": {"href": "./m.xml", "type": "application/xml", "roles": ["metadata"]}}))
    write_json(tmp_path / "gone" / "item.json", item("gone", {"visual": tif("./nothing.tif")}))
    write_json(tmp_path / "catalog.json", {**catalog([
        str(archive / "s0" / "item.json"), "./nodata/item.json", "./gone/item.json",
        "./missing/item.json"]), "type": "Catalog"})
    result = run_glnet("segment", tmp_path / "catalog.json", "-o", tmp_path / "masks", "-m",
                       archive / "tiny.pt", "-q", "--stac")
    assert result.exit_code == 2, result.output
    assert "1 ok, 0 skipped, 3 failed" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("glnet: error")]
    assert len(errors) == 3
    assert any("STAC item no-raster" in e and "has no raster asset" in e for e in errors)
    assert any("STAC item gone, asset visual:" in e and "nothing.tif" in e for e in errors)
    assert any("missing/item.json: cannot read the STAC document" in e for e in errors)
    catalogue = json.loads((tmp_path / "masks" / "catalog.json").read_text())
    assert [link["href"] for link in catalogue["links"]] == ["./scene-0_mask.json"]


@pytest.mark.slow
def test_stac_and_preview_change_no_mask_byte(archive, tmp_path):
    scene, model = archive / "rgb2.tif", archive / "tiny.pt"
    for name, extra in (("plain", []), ("with", ["--stac", "--preview"])):
        result = run_glnet("segment", scene, "-o", tmp_path / f"{name}.tif", "-m", model, "-q",
                           *extra)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "plain.tif").read_bytes() == (tmp_path / "with.tif").read_bytes()
    assert (tmp_path / "with.json").is_file() and (tmp_path / "with.png").is_file()


def test_commands_without_stac_do_not_import_pystac():
    code = ("import sys, glnet_cli.commands.segment, glnet_cli.inference.archive, "
            "glnet_cli.io.raster.preview; print('pystac' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.strip() == "False", run.stderr
