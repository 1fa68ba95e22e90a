"""Does a scene fit a model? One check, for ``glnet segment`` (refuse or warn) and ``glnet info``.

The rules: the scene has the bands the model takes (or ``--bands`` picks
them), its data type fits the model's input scaling, and its pixel size is
near the one the model was trained at; the model was trained through the
stage asked for (:func:`choose_stage`). Like rio-cogeo's ``cog_validate``, the
check returns what it found (fits, errors, warnings) and leaves raising and
reporting to its callers. Segment checks each scene (:func:`check_fit`) and the
stage once, on loading the model; info reports all of it at once, with a read
of the scene's pixels besides (:func:`full_check`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from glnet_cli.errors import InputError, RasterError
from glnet_cli.io.raster.describe import no_crs_warning
from glnet_cli.io.raster.read import SceneInfo, inspect_scene
from glnet_cli.io.raster.sample import check_pixels

if TYPE_CHECKING:  # torch: not needed to check a fit
    from glnet_cli.io.model.checkpoint import ModelFile, ModelInfo

#: Scene / model pixel-size ratios that run without a warning about scale.
GSD_RATIO_RANGE = (0.5, 2.0)

OK, FAIL, WARN, UNKNOWN = "ok", "fail", "warn", "unknown"


@dataclass(frozen=True)
class Check:
    """One rule's outcome: ``fail`` refuses the scene, ``warn`` runs with a warning."""

    name: str
    status: str
    #: For a report about this scene: the file is named already.
    detail: str
    #: For a fail or a warning: the line that names the file, as segment raises or warns it.
    message: str = ""


@dataclass(frozen=True)
class Fit:
    """What a fit check found: ``fits``, ``errors`` and ``warnings``, and every check."""

    #: Opened with the bands the model takes; with all its bands when those do not fit.
    scene: SceneInfo
    checks: tuple[Check, ...]

    @property
    def fits(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[str]:
        return [c.message for c in self.checks if c.status == FAIL]

    @property
    def warnings(self) -> list[str]:
        return [c.message for c in self.checks if c.status == WARN]

    @property
    def bands_fit(self) -> bool:
        return self.checks[0].status == OK  # the bands' check comes first


def check_fit(path: str, model: ModelInfo, bands: Optional[Sequence[int]] = None,
              nodata: Optional[float] = None) -> Fit:
    """Open ``path`` with the bands ``model`` takes and check the scene against the model.

    ``bands`` and ``nodata`` are segment's ``--bands`` and ``--nodata``.

    Raises:
        RasterError: The file cannot be opened as a raster at all (not a question of fit).
    """
    needed = model.config.in_channels
    try:
        scene = inspect_scene(path, bands, needed, nodata)
    except RasterError as exc:
        with no_crs_warning():  # the scene is refused: a missing CRS is beside the point
            scene = inspect_scene(path)  # re-raises what is wrong with the file itself
        bands_check = _failed("bands", exc, path)
    else:
        chosen = ",".join(map(str, scene.bands))
        bands_check = Check("bands", OK,
                            f"uses band(s) {chosen} of {scene.count}; the model takes {needed}")
    return Fit(scene, (bands_check, _dtype_check(model, scene.dtype, path),
                       _gsd_check(model, scene, path)))


def full_check(path: str, model_file: ModelFile,
               bands: Optional[Sequence[int]] = None) -> Fit:
    """Everything segment would check, for a report: :func:`check_fit`, the pixels and the stage.

    The pixels (the first and last blocks) tell a truncated file from a whole
    one; segment finds out only when it reads them. A missing CRS is no warning
    here: the report shows the pixel size as unknown.
    """
    with no_crs_warning():
        fit = check_fit(path, model_file.info, bands)
    bands_check, *scene_checks = fit.checks
    return Fit(fit.scene, (bands_check, _pixels_check(path), *scene_checks,
                           _stage_check(model_file)))


def choose_stage(model_file: ModelFile, asked: Optional[int]) -> int:
    """The stage to run: ``asked``, or by default the highest the model can run.

    Raises:
        InputError: The model was not trained through the stage asked for.
    """
    available = model_file.info.stage
    has_l2g = model_file.model.has_l2g
    if asked is None:
        if available < 2:
            raise InputError("the model file holds only a trained global branch (stage 1); "
                             "train stage 2 first (glnet train --stage 2)")
        return 3 if has_l2g and available >= 3 else 2
    if asked == 3 and not (has_l2g and available >= 3):
        raise InputError(f"--stage 3 needs a model trained through stage 3; this one "
                         f"reached stage {available}")
    if asked == 2 and available < 2:
        raise InputError("--stage 2 needs a model trained through stage 2")
    return asked


def _failed(name: str, exc: Exception, path: str) -> Check:
    """A failed check from the error a rule raised (its detail without the file name)."""
    return Check(name, FAIL, str(exc).removeprefix(f"{path}: "), str(exc))


def _pixels_check(path: str) -> Check:
    try:
        check_pixels(path)
    except RasterError as exc:
        return _failed("pixels", exc, path)
    return Check("pixels", OK, "the first and last blocks read")


def _stage_check(model_file: ModelFile) -> Check:
    """The stage segment would run by default, as :class:`Segmenter` chooses it."""
    try:
        stage = choose_stage(model_file, None)
    except InputError as exc:
        return Check("stage", FAIL, str(exc), str(exc))
    return Check("stage", OK, f"would run stage {stage} (trained through stage "
                              f"{model_file.info.stage})")


def _dtype_check(model: ModelInfo, dtype: str, path: str) -> Check:
    scaling = model.scaling
    try:
        scaling.check(dtype, path)
    except InputError as exc:
        return _failed("data type", exc, path)
    how = (f"scales {scaling.dtype} to 0..1" if scaling.mode == "dtype-range"
           else "scales any type with per-band statistics")
    return Check("data type", OK, f"{dtype}; the model {how}")


def _gsd_check(model: ModelInfo, scene: SceneInfo, path: str) -> Check:
    if model.gsd is None:
        return Check("pixel size", UNKNOWN, "the model file records no pixel size")
    if scene.gsd is None:
        return Check("pixel size", UNKNOWN,
                     f"the scene has no projected CRS; the model was trained at "
                     f"{model.gsd:.3g} units/pixel")
    ratio = scene.gsd / model.gsd
    detail = f"scene {scene.gsd:.3g}, model {model.gsd:.3g} units/pixel (x{ratio:.2f})"
    low, high = GSD_RATIO_RANGE
    if low <= ratio <= high:
        return Check("pixel size", OK, detail)
    return Check("pixel size", WARN,
                 f"{detail}; results may suffer: resample the scene to about "
                 f"{model.gsd:.3g} units/pixel",
                 f"{path}: pixels are {scene.gsd:.3g} units, the model was trained on "
                 f"{model.gsd:.3g}; results may suffer")
