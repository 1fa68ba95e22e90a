"""Confusion matrix and the segmentation scores derived from it.

NumPy only (no torch, no rasterio), so that training, validation and
``glnet evaluate`` share one definition of IoU, F1 and accuracy. Counts are
summed window by window (or rank by rank) and the scores computed once at the
end, which is what makes a windowed mIoU equal to the whole-image one.

Conventions:

* Rows are the truth, columns the prediction.
* Truth pixels equal to :data:`~glnet_cli.classes.IGNORE_INDEX` (255), or to one
  of ``ignore_classes`` (DeepGlobe's ``unknown`` class 0), are left out entirely.
* A prediction outside ``0..n_classes-1`` (a negative value, or an id the class
  table does not have) is a miss for the true class: it is counted in
  :attr:`ConfusionMatrix.out_of_range` and lowers that class's recall, IoU and
  F1 and the pixel accuracy, but is a false positive for no class.
* Ignored classes get NaN scores and stay out of the means; predicting an
  ignored class on a pixel of another class is still a miss for that class.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from glnet_cli.classes import IGNORE_INDEX


class ConfusionMatrix:
    """Pixel counts of (truth, prediction) pairs, summable across windows and ranks.

    Args:
        n_classes: Number of classes; valid ids are ``0..n_classes-1``.
        ignore_classes: Class ids whose truth pixels are not scored at all.
    """

    def __init__(self, n_classes: int, ignore_classes: Iterable[int] = ()) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        self.ignore_classes = tuple(sorted({int(c) for c in ignore_classes}))
        # One array holds every count: columns 0..n-1 are predictions, the
        # last column predictions outside the class range.
        self._counts = np.zeros((n_classes, n_classes + 1), dtype=np.int64)

    @property
    def n_classes(self) -> int:
        return self._counts.shape[0]

    @property
    def matrix(self) -> np.ndarray:
        """(n, n) int64 counts; rows = truth, columns = prediction."""
        return self._counts[:, :-1]

    @property
    def out_of_range(self) -> np.ndarray:
        """(n,) counts, per true class, of predictions outside ``0..n-1``."""
        return self._counts[:, -1]

    @property
    def total(self) -> int:
        """Pixels scored (out-of-range predictions included)."""
        return int(self._counts.sum())

    def labelled(self, truth: np.ndarray) -> np.ndarray:
        """Boolean mask of the pixels whose truth is scored (not 255, not an ignored class)."""
        keep = np.asarray(truth) != IGNORE_INDEX
        if self.ignore_classes:
            keep &= ~np.isin(truth, self.ignore_classes)
        return keep

    def update(self, truth: np.ndarray, pred: np.ndarray,
               valid: Optional[np.ndarray] = None) -> None:
        """Add the pixels of one image, window or batch.

        Args:
            truth: Integer class ids; 255 and ignored classes are skipped.
            pred: Integer class ids, same shape as ``truth``.
            valid: Optional boolean mask; pixels where it is False are skipped
                (e.g. where the prediction has nodata).

        Raises:
            TypeError: An array is not of an integer type.
            ValueError: Shapes differ, or a scored truth value is not a class id.
        """
        truth, pred = np.asarray(truth), np.asarray(pred)
        for name, array in (("truth", truth), ("prediction", pred)):
            if not np.issubdtype(array.dtype, np.integer):
                raise TypeError(f"{name} must hold integer class ids, got {array.dtype}")
        if truth.shape != pred.shape or (valid is not None and np.shape(valid) != truth.shape):
            raise ValueError(f"shapes differ: truth {truth.shape}, prediction {pred.shape}"
                             + ("" if valid is None else f", valid {np.shape(valid)}"))
        keep = self.labelled(truth)
        if valid is not None:
            keep &= np.asarray(valid, dtype=bool)
        t = truth[keep].astype(np.int64)
        p = pred[keep].astype(np.int64)
        n = self.n_classes
        if t.size and (t.min() < 0 or t.max() >= n):
            bad = t[(t < 0) | (t >= n)][0]
            raise ValueError(f"truth value {bad} is not a class id (0..{n - 1}) "
                             f"nor the ignore value {IGNORE_INDEX}")
        p[(p < 0) | (p >= n)] = n
        self._counts += np.bincount(t * (n + 1) + p, minlength=n * (n + 1)).reshape(n, n + 1)

    def grow(self, n_classes: int) -> None:
        """Widen to ``n_classes`` (no-op if not larger): the class count learnt from the data.

        Predictions counted as out of range before stay counted as misses.
        """
        old = self.n_classes
        if n_classes <= old:
            return
        counts = np.zeros((n_classes, n_classes + 1), dtype=np.int64)
        counts[:old, :old] = self.matrix
        counts[:old, -1] = self.out_of_range
        self._counts = counts

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add ``other``'s counts into this matrix (in place) and return it."""
        if other.n_classes != self.n_classes or other.ignore_classes != self.ignore_classes:
            raise ValueError("cannot merge confusion matrices with different classes: "
                             f"{self.n_classes} {self.ignore_classes} vs "
                             f"{other.n_classes} {other.ignore_classes}")
        self._counts += other._counts
        return self

    def as_array(self) -> np.ndarray:
        """Every count as one (n, n + 1) int64 copy: :attr:`matrix`, then :attr:`out_of_range`.

        Sum it across ranks (e.g. ``all_reduce``) and rebuild with :meth:`from_array`.
        """
        return self._counts.copy()

    @classmethod
    def from_array(cls, counts: np.ndarray,
                   ignore_classes: Iterable[int] = ()) -> "ConfusionMatrix":
        """Rebuild a matrix from :meth:`as_array` output (or a summed copy of it)."""
        counts = np.asarray(counts)
        if counts.ndim != 2 or counts.shape[1] != counts.shape[0] + 1:
            raise ValueError(f"expected an (n, n + 1) array, got {counts.shape}")
        cm = cls(counts.shape[0], ignore_classes)
        cm._counts = counts.astype(np.int64)
        return cm

    # Scores. Each is NaN where undefined (0 / 0) and for ignored classes.

    def _scored(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            score = numerator / denominator
        score[denominator == 0] = np.nan
        score[[c for c in self.ignore_classes if c < self.n_classes]] = np.nan
        return score

    @property
    def _tp(self) -> np.ndarray:
        return np.diag(self.matrix).astype(np.float64)

    @property
    def _truth_count(self) -> np.ndarray:
        return self._counts.sum(axis=1).astype(np.float64)

    @property
    def _pred_count(self) -> np.ndarray:
        return self.matrix.sum(axis=0).astype(np.float64)

    @property
    def iou(self) -> np.ndarray:
        """Per-class TP / (TP + FP + FN); NaN where a class is absent from truth and prediction."""
        return self._scored(self._tp, self._truth_count + self._pred_count - self._tp)

    @property
    def precision(self) -> np.ndarray:
        """Per-class TP / (TP + FP); NaN where a class is never predicted."""
        return self._scored(self._tp, self._pred_count)

    @property
    def recall(self) -> np.ndarray:
        """Per-class TP / (TP + FN); NaN where a class is absent from the truth."""
        return self._scored(self._tp, self._truth_count)

    @property
    def f1(self) -> np.ndarray:
        """Per-class 2TP / (2TP + FP + FN), the harmonic mean of precision and recall."""
        return self._scored(2 * self._tp, self._truth_count + self._pred_count)

    @property
    def miou(self) -> float:
        """Mean IoU over the classes present in truth or prediction; NaN if none is."""
        return _nanmean(self.iou)

    @property
    def accuracy(self) -> float:
        """Pixel accuracy: correct / scored pixels; NaN if nothing was scored."""
        total = self.total
        return float(self._tp.sum() / total) if total else float("nan")

    def to_dict(self, class_names: Optional[Sequence[str]] = None) -> dict:
        """JSON-ready scores: ``miou``, ``accuracy``, ``confusion``, ``per_class``; None for NaN."""
        names = list(class_names) if class_names is not None else []
        names += [f"class_{i}" for i in range(len(names), self.n_classes)]
        scores = {"iou": self.iou, "f1": self.f1, "precision": self.precision,
                  "recall": self.recall}
        return {
            "miou": _json_float(self.miou),
            "accuracy": _json_float(self.accuracy),
            "confusion": self.matrix.tolist(),
            "out_of_range_predictions": int(self.out_of_range.sum()),
            "ignored_classes": list(self.ignore_classes),
            "per_class": [
                {"id": i, "name": names[i],
                 **{key: _json_float(values[i]) for key, values in scores.items()}}
                for i in range(self.n_classes)],
        }


def _nanmean(values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def _json_float(value: float) -> Optional[float]:
    return None if np.isnan(value) else float(value)
