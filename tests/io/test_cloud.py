"""Cloud archives: a COG read over HTTP range requests, as from /vsicurl/ or /vsis3/.

A local server on 127.0.0.1 (the ``serve`` fixture of tests/io/conftest.py) serves
the files and logs every request, so the tests see exactly which bytes GDAL fetched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from glnet_cli.cli import gdal_config
from glnet_cli.io.raster.read import SceneReader, inspect_scene
from glnet_cli.io.raster.windows import Box
from tests.helpers import DEFAULT_CRS, DEFAULT_TRANSFORM, run_glnet

if TYPE_CHECKING:
    from tests.io.conftest import Request

#: What a cloud user sets: no directory listing or sidecar probes, no retries to wait for.
CLOUD_CONFIG = [("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR"), ("GDAL_HTTP_MAX_RETRY", "0"),
                ("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif")]


def write_cog(path: Path, size: int, seed: int = 0) -> Path:
    """A tiled, deflated 3-band COG with internal overviews: smooth fields and fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    bands = [np.sin(6 * xx + 2 * c) * np.cos(5 * yy - c) for c in range(3)]
    image = np.stack(bands) * 90 + 128 + rng.normal(0, 12, (3, size, size))
    image = np.clip(image, 0, 255).astype(np.uint8)
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                   crs=DEFAULT_CRS, transform=DEFAULT_TRANSFORM)
    with MemoryFile() as memfile:
        with memfile.open(**profile) as mem:
            mem.write(image)
        with memfile.open() as mem:
            rasterio.shutil.copy(mem, path, driver="COG", BLOCKSIZE=256, COMPRESS="DEFLATE",
                                 OVERVIEWS="AUTO", OVERVIEW_RESAMPLING="AVERAGE")
    return path


def fetched(requests: list[Request], name: str) -> int:
    """Bytes sent for ``name``, after checking that every request was a ranged read of it."""
    assert requests, "GDAL made no request"
    for r in requests:
        assert r.path == f"/{name}", f"{r.method} {r.path}: only the scene should be asked for"
        assert r.method == "HEAD" or r.range, f"a GET of the whole file: {r}"
    return sum(r.sent for r in requests)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    write_cog(folder / "large.tif", 3072)
    write_cog(folder / "scene.tif", 768, seed=1)
    return folder


@pytest.mark.slow
def test_info_reads_the_header_and_a_few_tiles(archive, serve):
    with serve(archive) as (url, requests):
        result = run_glnet(*(f"--config={k}={v}" for k, v in CLOUD_CONFIG), "info", "--json",
                           f"/vsicurl/{url}/large.tif")
    assert result.exit_code == 0, result.output
    assert '"overviews": [\n    2,\n    4,\n    8' in result.stdout
    size = (archive / "large.tif").stat().st_size
    assert fetched(requests, "large.tif") < 0.02 * size  # of 32 MB: ~0.4 MB


def test_global_view_comes_from_the_overviews(serve, tmp_path):
    write_cog(tmp_path / "view.tif", 1280)  # overviews of 640, 320 and 160 px
    local = inspect_scene(tmp_path / "view.tif")
    whole = Box(0, 0, local.height, local.width)
    with SceneReader(local) as reader:
        expected = reader.read_decimated(whole, (160, 160))
    with serve(tmp_path) as (url, requests), gdal_config(CLOUD_CONFIG):
        with SceneReader(inspect_scene(f"/vsicurl/{url}/view.tif")) as reader:
            remote = reader.read_decimated(whole, (160, 160))
    size = (tmp_path / "view.tif").stat().st_size
    assert fetched(requests, "view.tif") < 0.05 * size
    assert (remote.data == expected.data).all() and remote.valid.all()


@pytest.mark.slow
def test_segment_a_cog_over_http_equals_the_local_run(archive, serve, tiny_model, tmp_path):
    model = tiny_model(size_p=128, size_g=64, context=1024)
    local = run_glnet("segment", archive / "scene.tif", "-o", tmp_path / "local.tif", "-m", model,
                      "-q")
    assert local.exit_code == 0, local.output
    with serve(archive) as (url, requests):
        remote = run_glnet(*(f"--config={k}={v}" for k, v in CLOUD_CONFIG), "segment",
                           f"/vsicurl/{url}/scene.tif", "-o", tmp_path / "remote.tif", "-m",
                           model, "-q")
    assert remote.exit_code == 0, remote.output
    # Every block once, give or take GDAL's read-ahead: nothing is fetched twice over.
    size = (archive / "scene.tif").stat().st_size
    assert fetched(requests, "scene.tif") < 1.5 * size
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        assert (a.read() == b.read()).all()
        assert a.profile == b.profile
    assert not any(k.startswith("GDAL_") for k in os.environ if k in dict(CLOUD_CONFIG))
