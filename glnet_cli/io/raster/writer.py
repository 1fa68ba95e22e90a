"""Streaming output: tiled, compressed class masks (and probabilities) with georeferencing.

Tiles are written as they are finished, so nothing scene-sized is held. The
caller hands in temp paths and publishes them only when the run succeeded;
this module makes sure "succeeded" is true: every failure GDAL reports while
the files are written, closed or converted to COG (a full disk often shows
only as a log line when the block cache is flushed at close) fails the run,
and :func:`~glnet_cli.io.raster.readback.check_written` reads the finished file back
before it is published.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import threading
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._err import CPLE_BaseError  # what GDAL's own failures raise; not re-exported
from rasterio.errors import RasterioError
from rasterio.transform import Affine

from glnet_cli.classes import IGNORE_INDEX, ClassTable
from glnet_cli.errors import InputError, OutputError
from glnet_cli.io.gdal_messages import GdalMessages, capture_gdal_messages, quiet_libtiff
from glnet_cli.io.paths import write_failure
from glnet_cli.io.raster.creation_options import check_options, cog_options
from glnet_cli.io.raster.read import SceneInfo
from glnet_cli.io.raster.readback import check_written
from glnet_cli.io.raster.windows import TILE_SIZE, Box

#: Creation options of every mask; ``--co`` overrides them key by key.
MASK_OPTIONS = {"TILED": "YES", "BLOCKXSIZE": str(TILE_SIZE), "BLOCKYSIZE": str(TILE_SIZE),
                "COMPRESS": "DEFLATE", "PREDICTOR": "2", "BIGTIFF": "IF_SAFER"}

#: What the COG driver gets when ``--cog`` is asked for; ``--co`` overrides them.
COG_OPTIONS = {"COMPRESS": "DEFLATE", "PREDICTOR": "2", "BLOCKSIZE": str(TILE_SIZE),
               "OVERVIEW_RESAMPLING": "MODE", "BIGTIFF": "IF_SAFER"}

#: Probabilities are averaged, not voted, into their overviews.
PROBABILITY_COG_OPTIONS = {**COG_OPTIONS, "OVERVIEW_RESAMPLING": "AVERAGE"}

_GDAL_ERRORS = (RasterioError, CPLE_BaseError, OSError)

#: Any north-up grid: the probe only needs GDAL not to warn about a missing one.
_PROBE_TRANSFORM = Affine(1.0, 0.0, 0.0, 0.0, -1.0, 32.0)


@dataclass
class FinishedTile:
    """One blended output tile, ready to write: classes, and probabilities if asked for."""

    box: Box
    classes: np.ndarray  # (h, w) uint8, IGNORE_INDEX where no valid input
    probabilities: Optional[np.ndarray]  # (n_classes, h, w) uint8 0..255, or None


@dataclass(frozen=True)
class OutputOptions:
    """Checked creation options: the tiled GeoTIFF written while streaming, and the COG."""

    gtiff: dict[str, str]
    #: The user's options for the final COG (over the defaults); None: no COG.
    cog: Optional[dict[str, str]] = None


def output_options(creation_options: Iterable[tuple[str, str]], cog: bool) -> OutputOptions:
    """Check ``--co`` against the driver that writes the final file; refuse before any work.

    Under ``--cog`` the options go to the COG driver (GeoTIFF-style
    BLOCKXSIZE/BLOCKYSIZE become its BLOCKSIZE); the GeoTIFF streamed
    first keeps the defaults. A creation probe in memory then catches what
    GDAL's list cannot say (an option that does not fit a class mask).
    """
    given = [(key.upper(), value) for key, value in creation_options]
    if cog:
        given = cog_options(given)
        check_options(given, "COG")
        options = OutputOptions(dict(MASK_OPTIONS), dict(given))
    else:
        check_options(given, "GTiff")
        options = OutputOptions({**MASK_OPTIONS, **dict(given)})
    if given:
        _probe(options, given)
    return options


def _probe(options: OutputOptions, given: list[tuple[str, str]]) -> None:
    """Write a 32 x 32 mask in memory with ``options``; refuse what GDAL refuses or ignores."""
    shown = " ".join(f"--co {k}={v}" for k, v in given)
    streamed, final = "/vsimem/glnet-co-probe.tif", "/vsimem/glnet-co-probe-cog.tif"
    try:
        with capture_gdal_messages(echo=False) as messages:
            with rasterio.open(streamed, "w", driver="GTiff", width=32, height=32, count=1,
                               dtype="uint8", transform=_PROBE_TRANSFORM,
                               **_lower(options.gtiff)) as dst:
                dst.write(np.zeros((1, 32, 32), np.uint8))
            if options.cog is not None:
                rasterio.shutil.copy(streamed, final, driver="COG",
                                     **{**COG_OPTIONS, **options.cog})
    except (RasterioError, CPLE_BaseError) as exc:
        raise InputError(f"{shown}: GDAL cannot write a mask with these options: "
                         f"{' '.join(str(exc).split())}") from None
    finally:
        for name in (streamed, final):
            with contextlib.suppress(RasterioError, CPLE_BaseError):
                rasterio.shutil.delete(name)
    ours = [m.text.replace(f"{os.path.basename(streamed)}: ", "") for m in messages.messages
            if m.thread == threading.get_ident()]
    if ours:
        raise InputError(f"{shown}: GDAL would not honour these options: {ours[0]}")


def _lower(options: dict[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in options.items()}


def _profile(scene: SceneInfo, count: int, nodata: Optional[int],
             creation_options: dict[str, str]) -> dict:
    profile = {"driver": "GTiff", "width": scene.width, "height": scene.height, "count": count,
               "dtype": "uint8", "transform": scene.transform, "nodata": nodata,
               **_lower(creation_options)}
    if scene.crs is not None:
        profile["crs"] = scene.crs
    return profile


@dataclass(frozen=True)
class OutputFile:
    """A file being written: its temp ``path``, and the ``name`` the user knows it by."""

    path: str
    name: str


class MaskWriter:
    """Writes finished tiles of the class mask (and optionally probabilities).

    :meth:`finish` (on success) closes the files, fails if GDAL reported lost
    data, and converts them to COG when asked; :meth:`close` (on failure)
    only releases everything.
    """

    def __init__(self, mask: OutputFile, scene: SceneInfo, classes: ClassTable, tags: dict,
                 options: OutputOptions = OutputOptions(MASK_OPTIONS),
                 probabilities: Optional[OutputFile] = None) -> None:
        self.histogram = np.zeros(256, dtype=np.int64)
        self._options = options
        self._files = [f for f in (mask, probabilities) if f is not None]
        self._shape = (scene.width, scene.height)
        self._counts = [1, len(classes)]
        self._threads = {threading.get_ident()}
        quiet_libtiff()
        self._capture = contextlib.ExitStack()
        self._messages: GdalMessages = self._capture.enter_context(capture_gdal_messages())
        self._mask = self._probs = None
        try:
            self._mask = self._open(mask, scene, 1, IGNORE_INDEX)
            self._mask.write_colormap(1, classes.colormap())
            self._mask.update_tags(GLNET_CLASSES=json.dumps(classes.to_list()), **tags)
            self._mask.set_band_description(1, "class")
            if probabilities is not None:
                self._probs = self._open(probabilities, scene, len(classes), None)
                for band, name in enumerate(classes.names, start=1):
                    self._probs.set_band_description(band, f"p({name}) x 255")
                self._probs.update_tags(GLNET_CLASSES=json.dumps(classes.to_list()), **tags)
        except _GDAL_ERRORS as exc:
            self.close()
            raise self._failure(mask, exc) from exc
        except BaseException:
            self.close()
            raise

    def _streamed(self, file: OutputFile) -> str:
        """Where tiles go: the temp file itself, or a GeoTIFF beside it to copy into a COG."""
        return file.path + ".gtiff" if self._options.cog is not None else file.path

    def _open(self, file: OutputFile, scene: SceneInfo, count: int, nodata: Optional[int]):
        return rasterio.open(self._streamed(file), "w",
                             **_profile(scene, count, nodata, self._options.gtiff))

    def write(self, tile: FinishedTile) -> None:
        self._threads.add(threading.get_ident())
        window = tile.box.window
        if self._mask is None:
            raise ValueError("MaskWriter.write after finish() or close()")
        try:
            self._mask.write(tile.classes, 1, window=window)
        except _GDAL_ERRORS as exc:
            raise self._failure(self._files[0], exc) from exc
        self.histogram += np.bincount(tile.classes.ravel(), minlength=256)
        if self._probs is not None and tile.probabilities is not None:
            try:
                self._probs.write(tile.probabilities, window=window)
            except _GDAL_ERRORS as exc:
                raise self._failure(self._files[1], exc) from exc

    def finish(self) -> None:
        """Close the files, fail if GDAL lost data, convert to COG, read each file back.

        Every file is checked before the caller publishes any of them.
        """
        self._threads.add(threading.get_ident())
        datasets = [d for d in (self._mask, self._probs) if d is not None]
        self._mask = self._probs = None
        try:
            for file, dataset in zip(self._files, datasets):
                try:
                    dataset.close()
                except _GDAL_ERRORS as exc:
                    raise self._failure(file, exc) from exc
            self._raise_for_losses()
            if self._options.cog is not None:
                for file, cog in zip(self._files, (COG_OPTIONS, PROBABILITY_COG_OPTIONS)):
                    self._to_cog(file, {**cog, **self._options.cog})
            for file, count in zip(self._files, self._counts):
                try:
                    check_written(file.path, *self._shape, count)
                except OSError as exc:
                    raise self._failure(file, exc, file.path) from exc
        finally:
            self.close()

    def _to_cog(self, file: OutputFile, options: dict[str, str]) -> None:
        try:
            rasterio.shutil.copy(self._streamed(file), file.path, driver="COG", **options)
        except _GDAL_ERRORS as exc:
            raise self._failure(file, exc) from exc
        self._raise_for_losses()
        os.remove(self._streamed(file))

    def _raise_for_losses(self) -> None:
        losses = self._messages.losses(self._threads)
        if losses:
            text = losses[0].text
            named = [f for f in self._files if os.path.basename(f.path) in text]
            raise self._failure((named or self._files)[0], text)

    def _failure(self, file: OutputFile, cause: object,
                 written: Optional[str] = None) -> OutputError:
        """The error naming ``file`` for ``cause``, met while writing ``written``."""
        return write_failure(file.name,
                             OSError(*_diagnose(written or self._streamed(file), cause)))

    def close(self) -> None:
        """Release the files (and the scratch GeoTIFFs of a COG) without checking them."""
        for dataset in (self._mask, self._probs):
            if dataset is not None:
                with contextlib.suppress(*_GDAL_ERRORS):
                    dataset.close()
        self._mask = self._probs = None
        self._capture.close()
        if self._options.cog is not None:
            for file in self._files:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self._streamed(file))


def _diagnose(path: str, cause: object) -> tuple[int, str]:
    """The errno and words for a failed write: the OS's reason where it can be found.

    GDAL often reports a full disk only as "Write error at scanline N"; the
    file system and the file size limit say what really happened.
    """
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
        if stat.f_bavail * stat.f_frsize < 64 * 1024:
            return errno.ENOSPC, os.strerror(errno.ENOSPC)
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and os.path.getsize(path) >= limit:
            return errno.EFBIG, f"{os.strerror(errno.EFBIG)} (the file size limit, ulimit -f)"
    except OSError:
        pass
    if isinstance(cause, OSError) and cause.errno and not isinstance(cause, RasterioError):
        return cause.errno, cause.strerror or str(cause)
    return errno.EIO, " ".join(str(cause).split()) or "GDAL reported a write error"
