"""What ``glnet info`` reports: a model file, a scene, and whether a model fits a scene.

Every function returns a plain, JSON-ready dict, so the command can print it
as tables or as one JSON object without knowing more than its keys. Of the
pixels only two are read, the first and the last, so that a truncated file
whose header is intact is not reported as fine; only the fit check builds the
network, so that it plans exactly as ``glnet segment`` would.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from typing import Any, Iterator, Optional, Sequence

import rasterio
from rasterio.crs import CRS
from rasterio.errors import RasterioError

from glnet_cli.errors import GlnetWarning, InputError, ModelFileError, RasterError
from glnet_cli.io.raster.read import inspect_scene
from glnet_cli.io.raster.windows import Box

# torch (checkpoint, segment) is imported only where a model is read, so that
# `glnet info scene.tif` stays light.

#: Extensions that make :func:`describe_file` try the file as a model first.
MODEL_EXTENSIONS = (".pt", ".pth", ".ckpt")


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """A model file or a scene: the extension decides which is tried first, then the other.

    Raises the first reader's error when neither reads the file, so a corrupt
    ``.pt`` is reported as a model file and a garbled ``.tif`` as a raster.
    """
    path = os.fspath(path)
    readers = [describe_scene, describe_model]
    if path.lower().endswith(MODEL_EXTENSIONS):
        readers.reverse()
    try:
        return readers[0](path)
    except (ModelFileError, RasterError) as first:
        try:
            return readers[1](path)
        except (ModelFileError, RasterError):
            raise first from None


def describe_model(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata of a model file (:meth:`ModelInfo.to_dict` keys plus the file header)."""
    from glnet_cli.io.model.checkpoint import read_metadata

    path = os.fspath(path)
    info, header = read_metadata(path)
    return {"kind": "model", "path": path, **header, **info.to_dict()}


def describe_scene(path: str | os.PathLike) -> dict[str, Any]:
    """Size, bands, georeferencing, overviews, masks and tiling of a raster."""
    with _no_crs_warning():
        scene = inspect_scene(os.fspath(path))
    with rasterio.open(scene.path) as src:
        colors, dtypes = [c.name for c in src.colorinterp], src.dtypes
        read_sample(src, scene.path)
    t = scene.transform
    return {
        "kind": "scene", "path": scene.path, "width": scene.width, "height": scene.height,
        "count": scene.count,
        "bands": [{"band": b, "dtype": dtypes[b - 1], "color": colors[b - 1],
                   "mask_flags": flags.split(",")}
                  for b, flags in zip(scene.bands, scene.mask_flags)],
        "crs": crs_name(scene.crs),
        "units": scene.crs.units_factor[0] if scene.crs else None,
        "transform": list(t)[:6],
        # Lengths of the pixel's sides, so that a rotated grid reports its true size.
        "pixel_size": [math.hypot(t.a, t.d), math.hypot(t.b, t.e)],
        "gsd": scene.gsd, "overviews": list(scene.overviews), "nodata": _json_number(scene.nodata),
        "block_shape": list(scene.block_shape),
    }


def check_fit(path: str | os.PathLike, model_path: str | os.PathLike,
              bands: Optional[Sequence[int]] = None) -> dict[str, Any]:
    """Would ``glnet segment`` run this model on this scene, and how much work would it be?

    Each check has a ``status``: ``ok``, ``fail`` (segment refuses the scene),
    ``warn`` (it runs, but results may suffer) or ``unknown``. The scene fits
    when no check fails; ``verdict`` is the line to show. The plan comes from
    the same :class:`Segmenter` that segment uses, so it counts what a run would.
    """
    import torch

    from glnet_cli.inference.engine import Segmenter
    from glnet_cli.inference.fit import check_fit as fit_checks
    from glnet_cli.io.model.checkpoint import load_model

    path, model_path = os.fspath(path), os.fspath(model_path)
    model_file = load_model(model_path)
    info = model_file.info
    with _no_crs_warning():
        fit = fit_checks(path, info, bands)
    bands_check, *model_checks = [_check(c.name, c.status, c.detail) for c in fit.checks]
    checks = [bands_check, _pixels_check(path), *model_checks]
    plan = None
    try:
        segmenter = Segmenter(model_file, torch.device("cpu"))
    except InputError as exc:
        checks.append(_check("stage", "fail", str(exc)))
    else:
        checks.append(_check("stage", "ok", f"would run stage {segmenter.stage} (trained "
                                            f"through stage {info.stage})"))
        scene_plan = segmenter.plan(fit.scene)
        plan = {"context_blocks": len(scene_plan.blocks), "local_crops": len(scene_plan.crops),
                "context_size": info.context_size, "size_p": info.size_p,
                "overlap": segmenter.options.overlap}
    failed = [c["detail"] for c in checks if c["status"] == "fail"]
    return {"model": model_path, "fits": not failed,
            "verdict": f"does not fit: {failed[0]}" if failed else "fits",
            "bands": list(fit.scene.bands) if fit.bands_fit else None, "checks": checks,
            "plan": plan}


def read_sample(src: rasterio.DatasetReader, path: str) -> None:
    """Read the first and the last pixel of every band (so the blocks that hold them).

    A file cut short, or with a damaged block, keeps a header that reads fine:
    only its pixels tell. The last block is the one a truncation loses first.

    Raises:
        RasterError: A block cannot be read.
    """
    for col, row in ((0, 0), (src.width - 1, src.height - 1)):
        try:
            src.read(window=Box(row, col, 1, 1).window)
        except RasterioError as exc:
            # GDAL's own words are in the cause: "band 1: IReadBlock failed at X offset ..."
            detail = str(exc.__cause__ or exc).strip().rstrip(".").removeprefix(
                f"{os.path.basename(path)}, ")
            raise RasterError(f"{path}: cannot read its pixels ({detail}); the file is "
                              "truncated or corrupt: copy or download it again") from None


def crs_name(crs: Optional[CRS]) -> Optional[str]:
    """``EPSG:n`` when the CRS has a code, else the name its WKT gives it."""
    if crs is None:
        return None
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    wkt = crs.to_wkt()
    match = re.match(r'\s*\w+\["([^"]*)"', wkt)
    return match.group(1) if match else wkt


@contextlib.contextmanager
def _no_crs_warning() -> Iterator[None]:
    """A missing CRS is reported as crs None; segment's warning about it is noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GlnetWarning)
        yield


def _check(name: str, status: str, detail: str) -> dict[str, str]:
    return {"name": name, "status": status, "detail": detail}


def _reason(exc: Exception, path: str) -> str:
    """The error without its leading file name: the verdict is about that file already."""
    return str(exc).removeprefix(f"{path}: ")


def _pixels_check(path: str) -> dict[str, str]:
    try:
        with rasterio.open(path) as src:
            read_sample(src, path)
    except RasterError as exc:
        return _check("pixels", "fail", _reason(exc, path))
    return _check("pixels", "ok", "the first and last blocks read")


def _json_number(value: Optional[float]) -> Optional[float | str]:
    """NaN and infinities as strings ("nan"), which strict JSON readers accept."""
    if value is not None and not math.isfinite(value):
        return str(value)
    return value
