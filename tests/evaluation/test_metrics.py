"""ConfusionMatrix against small examples counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glnet_cli.evaluation.metrics import ConfusionMatrix

NAN = float("nan")

# Three classes, one pixel with the ignore value 255 (not counted).
TRUTH = np.array([[0, 0, 1, 1], [1, 2, 2, 255]])
PRED = np.array([[0, 1, 1, 1], [2, 2, 0, 1]])
#  truth 0: predicted 0, 1         -> [1, 1, 0]
#  truth 1: predicted 1, 1, 2      -> [0, 2, 1]
#  truth 2: predicted 2, 0         -> [1, 0, 1]
MATRIX = [[1, 1, 0], [0, 2, 1], [1, 0, 1]]


def assert_scores(actual: np.ndarray, expected: list[float]) -> None:
    np.testing.assert_allclose(actual, expected, equal_nan=True)


def test_hand_counted_matrix_and_scores():
    cm = ConfusionMatrix(3)
    cm.update(TRUTH, PRED)
    assert cm.matrix.dtype == np.int64
    assert cm.matrix.tolist() == MATRIX
    assert cm.total == 7
    # IoU = TP / (row + column - TP): 1/(2+2-1), 2/(3+3-2), 1/(2+2-1)
    assert_scores(cm.iou, [1 / 3, 1 / 2, 1 / 3])
    assert cm.miou == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)  # 7/18
    assert cm.accuracy == pytest.approx(4 / 7)
    assert_scores(cm.precision, [1 / 2, 2 / 3, 1 / 2])  # TP / column
    assert_scores(cm.recall, [1 / 2, 2 / 3, 1 / 2])  # TP / row
    assert_scores(cm.f1, [2 / 4, 4 / 6, 2 / 4])  # 2TP / (row + column)


def test_ignore_class_drops_its_truth_pixels_and_leaves_the_means():
    cm = ConfusionMatrix(3, ignore_classes=[0])
    cm.update(TRUTH, PRED)
    # The two truth-0 pixels are gone; the truth-2 pixel predicted 0 stays a miss.
    assert cm.matrix.tolist() == [[0, 0, 0], [0, 2, 1], [1, 0, 1]]
    assert_scores(cm.iou, [NAN, 2 / 3, 1 / 3])  # 2/(3+2-2), 1/(2+2-1)
    assert cm.miou == pytest.approx(0.5)
    assert cm.accuracy == pytest.approx(3 / 5)
    assert_scores(cm.precision, [NAN, 1.0, 1 / 2])
    assert_scores(cm.recall, [NAN, 2 / 3, 1 / 2])


def test_class_absent_from_truth_and_prediction_is_nan_and_not_averaged():
    cm = ConfusionMatrix(4)
    cm.update(TRUTH, PRED)
    assert math.isnan(cm.iou[3]) and math.isnan(cm.f1[3])
    assert cm.miou == pytest.approx(7 / 18)


def test_class_only_predicted_counts_as_zero():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 0]), np.array([0, 1]))
    assert_scores(cm.iou, [1 / 2, 0.0])
    assert_scores(cm.recall, [1 / 2, NAN])
    assert cm.miou == pytest.approx(1 / 4)


def test_out_of_range_prediction_is_a_miss_for_the_true_class():
    cm = ConfusionMatrix(3)
    cm.update(np.array([1, 2, 1]), np.array([7, 2, -1]))
    assert cm.matrix.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert cm.out_of_range.tolist() == [0, 2, 0]
    assert cm.accuracy == pytest.approx(1 / 3)
    assert_scores(cm.iou, [NAN, 0.0, 1.0])
    assert_scores(cm.recall, [NAN, 0.0, 1.0])
    assert_scores(cm.precision, [NAN, NAN, 1.0])


def test_valid_mask_skips_pixels():
    cm = ConfusionMatrix(3)
    cm.update(TRUTH, PRED, valid=np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool))
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]


def test_sum_over_windows_equals_whole():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (16, 16))
    truth[rng.random((16, 16)) < 0.1] = 255
    pred = rng.integers(0, 4, (16, 16))
    whole = ConfusionMatrix(4, [0])
    whole.update(truth, pred)
    top, bottom = ConfusionMatrix(4, [0]), ConfusionMatrix(4, [0])
    top.update(truth[:7], pred[:7])
    bottom.update(truth[7:], pred[7:])
    merged = top.merge(bottom)
    assert np.array_equal(merged.matrix, whole.matrix)
    assert merged.miou == pytest.approx(whole.miou)


def test_as_array_round_trip_keeps_every_count():
    cm = ConfusionMatrix(3, [0])
    cm.update(np.array([1, 2]), np.array([9, 2]))
    counts = cm.as_array()
    assert counts.shape == (3, 4)
    again = ConfusionMatrix.from_array(counts * 2, [0])
    assert again.matrix.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 2]]
    assert again.out_of_range.tolist() == [0, 2, 0]


def test_grow_keeps_counts():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1]), np.array([1, 5]))
    cm.grow(3)
    assert cm.matrix.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]
    assert cm.out_of_range.tolist() == [0, 1, 0]


def test_to_dict_uses_names_and_none_for_nan():
    cm = ConfusionMatrix(3, [0])
    cm.update(TRUTH, PRED)
    d = cm.to_dict(["unknown", "urban", "water"])
    assert d["confusion"] == [[0, 0, 0], [0, 2, 1], [1, 0, 1]]
    assert d["miou"] == pytest.approx(0.5)
    assert d["per_class"][0] == {"id": 0, "name": "unknown", "iou": None, "f1": None,
                                 "precision": None, "recall": None}
    assert d["per_class"][1]["iou"] == pytest.approx(2 / 3)
    assert cm.to_dict()["per_class"][2]["name"] == "class_2"


def test_empty_matrix_scores_are_nan():
    cm = ConfusionMatrix(2)
    cm.update(np.full(3, 255), np.zeros(3, int))
    assert math.isnan(cm.miou) and math.isnan(cm.accuracy)
    assert cm.to_dict()["miou"] is None


@pytest.mark.parametrize("truth, pred, error", [
    (np.array([0, 3]), np.array([0, 0]), ValueError),  # 3 is not a class of 3
    (np.array([0, 1]), np.array([0, 1, 1]), ValueError),
    (np.array([0.0, 1.0]), np.array([0, 1]), TypeError),
])
def test_update_refuses_bad_input(truth, pred, error):
    with pytest.raises(error):
        ConfusionMatrix(3).update(truth, pred)


def test_merge_refuses_other_classes():
    with pytest.raises(ValueError, match="different classes"):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))
