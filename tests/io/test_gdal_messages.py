"""GDAL's messages: captured from rasterio and fiona, printed once, lost data made an error."""

from __future__ import annotations

import logging
import secrets
import threading
import warnings

import fiona
import numpy as np
import pytest
import rasterio

from glnet_cli.errors import OutputWriteError
from glnet_cli.io import gdal_messages
from glnet_cli.io.gdal_messages import GdalWarning, capture_gdal_messages
from tests.helpers import run_glnet


def _write_tif(path, **options) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype="uint8",
                       crs="EPSG:32616", transform=rasterio.transform.from_origin(0, 32, 1, 1),
                       **options) as dst:
        dst.write(np.zeros((1, 32, 32), np.uint8))


def test_a_gdal_warning_is_captured_with_its_code(tmp_path):
    with capture_gdal_messages() as messages:
        _write_tif(tmp_path / "a.tif", compress="NOPE")
    texts = {(m.code, m.text) for m in messages.messages}
    assert ("CPLE_IllegalArg", "COMPRESS=NOPE value not recognised, ignoring.") in texts
    assert not messages.losses()
    messages.raise_for_losses(str(tmp_path / "a.tif"))  # an ignored option loses no pixels


def test_a_clean_write_reports_nothing(tmp_path):
    with capture_gdal_messages() as messages:
        _write_tif(tmp_path / "a.tif", tiled=True, blockxsize=16, blockysize=16,
                   compress="deflate")
    assert messages.messages == []


def test_a_shapefile_value_not_written_is_lost_data(tmp_path):
    schema = {"geometry": "Point", "properties": {"area": "float:5.1"}}
    path = tmp_path / "p.shp"
    with capture_gdal_messages() as messages:
        with fiona.open(path, "w", driver="ESRI Shapefile", schema=schema) as dst:
            dst.write({"geometry": {"type": "Point", "coordinates": (0, 0)},
                       "properties": {"area": 12345678901.5}})
    [loss] = messages.losses()
    assert "not successfully written" in loss.text
    with pytest.raises(OutputWriteError, match=r"p\.shp: writing failed: Value 12345678901\.5 of "
                                               r"field area of feature 0 not successfully "
                                               r"written.*; nothing was written"):
        messages.raise_for_losses(str(path))


def _gdal_log(level: int, code: str, text: str) -> None:
    """A record exactly as rasterio's error handler logs one."""
    logging.getLogger("rasterio._env").log(level, "%s in %s", code, text)


def _gdal_failure(number: int, text: str) -> None:
    logging.getLogger("rasterio._env").info("GDAL signalled an error: err_no=%r, msg=%r",
                                            number, text)


def test_failures_and_io_warnings_lose_data_plain_warnings_do_not():
    with capture_gdal_messages() as messages:
        _gdal_log(logging.WARNING, "CPLE_AppDefined", "Value rounded")
        _gdal_log(logging.WARNING, "CPLE_FileIO", "Could not flush")
        _gdal_failure(1, "TIFFAppendToStrip:Write error at scanline 0")
        _gdal_log(logging.WARNING, "CPLE_AppDefined", "x.tif: No space left on device")
    assert [(m.code, m.is_error, m.loses_data) for m in messages.messages] == [
        ("CPLE_AppDefined", False, False), ("CPLE_FileIO", False, True),
        ("CPLE_AppDefined", True, True), ("CPLE_AppDefined", False, True)]


def test_other_threads_count_only_when_they_report_a_failed_write():
    def other_thread() -> None:
        _gdal_failure(3, "scene.tif: IReadBlock failed at X offset 0")
        _gdal_failure(1, "TIFFAppendToStrip:Write error at scanline 512")  # a cache flush

    with capture_gdal_messages() as messages:
        other = threading.Thread(target=other_thread)
        other.start()
        other.join()
        _gdal_failure(1, "mask.tif: Cannot initialize empty blocks")
    assert len(messages.losses()) == 3
    assert [m.text for m in messages.losses({threading.get_ident()})] == [
        "TIFFAppendToStrip:Write error at scanline 512", "mask.tif: Cannot initialize empty blocks"]


def test_messages_outside_a_capture_are_not_collected():
    with capture_gdal_messages() as messages:
        pass
    _gdal_failure(1, "later")
    assert messages.messages == []


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(gdal_messages._router, "echo", False)
    gdal_messages.install()
    yield


def test_installed_warnings_are_printed_once_each(installed):
    text = f"an option was ignored {secrets.token_hex(4)}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            _gdal_log(logging.WARNING, "CPLE_NotSupported", text)
        _gdal_failure(1, "raised as an exception instead")
    assert [(w.category, str(w.message)) for w in caught] == [(GdalWarning, text)]


def test_lost_data_inside_a_capture_is_left_to_the_capture(installed):
    text = f"not successfully written {secrets.token_hex(4)}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with capture_gdal_messages() as messages:
            _gdal_log(logging.WARNING, "CPLE_AppDefined", text)
    assert caught == []
    assert [m.text for m in messages.losses()] == [text]


def test_every_command_prints_gdal_warnings_once_as_glnet_warnings(tmp_path, monkeypatch):
    import glnet_cli.io.raster.describe as describe

    scene = tmp_path / "scene.tif"
    _write_tif(scene)
    text = f"Value rounded {secrets.token_hex(4)}"
    read_sample = describe.read_sample

    def read_and_warn(*args, **kwargs):
        for _ in range(3):
            _gdal_log(logging.WARNING, "CPLE_AppDefined", text)
        return read_sample(*args, **kwargs)

    monkeypatch.setattr(describe, "read_sample", read_and_warn)
    result = run_glnet("info", scene)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"glnet: warning: {text}\n"
