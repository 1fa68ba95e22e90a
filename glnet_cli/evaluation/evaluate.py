"""Score a predicted mask against ground truth, window by window.

Both rasters are read one window at a time and only the confusion matrix is
kept, so memory does not grow with the scene; the scores are computed from the
summed matrix at the end and equal those of a whole-image computation.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
from rasterio.io import DatasetReader

from glnet_cli.classes import IGNORE_INDEX, ClassTable, table_from_tags
from glnet_cli.errors import GlnetWarning, InputError, RasterError
from glnet_cli.evaluation.metrics import ConfusionMatrix
from glnet_cli.evaluation.truth import open_truth
from glnet_cli.io.raster.read import open_raster
from glnet_cli.io.raster.windows import iter_windows
from glnet_cli.progress_callback import ProgressCallback

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """The summed confusion matrix and what is needed to report it.

    Attributes:
        confusion: Counts of the scored pixels.
        class_names: One name per class id.
        unlabelled_pixels: Labelled truth pixels the prediction left as nodata
            (not scored, so they lower no score).
    """

    confusion: ConfusionMatrix
    class_names: list[str]
    unlabelled_pixels: int

    def to_dict(self) -> dict:
        """JSON-ready: the scores of :meth:`ConfusionMatrix.to_dict` plus pixel counts."""
        return {**self.confusion.to_dict(self.class_names),
                "scored_pixels": self.confusion.total,
                "unlabelled_prediction_pixels": self.unlabelled_pixels}


def evaluate(pred_path: str | os.PathLike, truth_path: str | os.PathLike, *,
             classes: Optional[ClassTable] = None, ignore_classes: Iterable[int] = (),
             attribute: Optional[str] = None, background: int = 0,
             layers: Sequence[str] = (), window_size: int = 1024,
             progress: Optional[ProgressCallback] = None) -> EvaluationResult:
    """Compare a single-band class mask with ground truth.

    Args:
        pred_path: The predicted mask (integer class ids; its nodata is not scored).
        truth_path: A raster of class ids, an RGB colour-coded raster, or a
            vector file (see :func:`glnet_cli.evaluation.truth.open_truth`).
        classes: Class table for names, the class count and RGB decoding;
            default: the prediction's ``GLNET_CLASSES`` tag, else ``class_<id>``
            with as many classes as the largest id seen + 1.
        ignore_classes: Classes whose truth pixels are not scored (e.g. 0).
        attribute: Vector truth: the integer class field (default: all features class 1).
        background: Vector truth: the class where no feature lies.
        layers: Vector truth: the layers to read (default: all of them).
        window_size: Side of the windows read at a time, in pixels.
        progress: ``progress(done, total)`` after each window.

    Raises:
        InputError: A file is missing or unusable, or the two do not overlap.
    """
    pred_path, truth_path = os.fspath(pred_path), os.fspath(truth_path)
    with open_raster(pred_path) as pred:
        _check_prediction(pred, pred_path)
        table = classes or table_from_tags(pred.tags())
        with open_truth(truth_path, pred, table=table, attribute=attribute,
                        background=background, layers=layers) as read_truth:
            cm = ConfusionMatrix(len(table) if table else 1, ignore_classes)
            windows = [box.window for box in iter_windows(pred.height, pred.width, window_size)]
            log.info("%s vs %s: %d windows", pred_path, truth_path, len(windows))
            unlabelled = 0
            for done, window in enumerate(windows, 1):
                predicted = pred.read(1, window=window)
                truth = read_truth(window)
                has_pred = (pred.read_masks(1, window=window) > 0) & (predicted != IGNORE_INDEX)
                labelled = cm.labelled(truth)
                unlabelled += int(np.count_nonzero(labelled & ~has_pred))
                if table is None:
                    _grow(cm, labelled & has_pred, {truth_path: truth, pred_path: predicted})
                try:
                    cm.update(truth, predicted, valid=has_pred)
                except ValueError as exc:
                    raise InputError(f"{truth_path}: {exc}") from None
                if progress is not None:
                    progress(done, len(windows))
    missed = int(cm.out_of_range.sum())
    if missed:
        warnings.warn(f"{pred_path}: {missed} scored pixels hold ids outside the "
                      f"{cm.n_classes} classes; counted as misses", GlnetWarning, stacklevel=2)
    names = table.names if table else [f"class_{i}" for i in range(cm.n_classes)]
    return EvaluationResult(cm, names, unlabelled)


def _check_prediction(pred: DatasetReader, path: str) -> None:
    dtype = np.dtype(pred.dtypes[0])
    if pred.count != 1 or not np.issubdtype(dtype, np.integer):
        raise RasterError(f"{path}: a prediction is one band of integer class ids; this has "
                          f"{pred.count} band(s) of {dtype} (give the mask glnet segment wrote)")


def _grow(cm: ConfusionMatrix, counted: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
    """Without a class table the class count is the largest id seen + 1."""
    if not counted.any():
        return
    for path, values in arrays.items():
        top = int(values[counted].max())
        if top >= IGNORE_INDEX:
            raise InputError(f"{path}: value {top} is not a class id (0..{IGNORE_INDEX - 1}); "
                             "give --classes with a table that has it")
        cm.grow(top + 1)
