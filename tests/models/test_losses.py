"""The training losses (focal, cross-entropy, Dice, Lovász, sums) and class weights."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.losses import (
    LOSS_NAMES,
    CrossEntropy,
    DiceLoss,
    FocalLoss,
    LovaszSoftmax,
    SumLoss,
    build_loss,
    class_weights_from_frequencies,
)


def test_gamma_zero_is_cross_entropy_with_ignore():
    logits = torch.randn(2, 4, 5, 5)
    target = torch.randint(0, 4, (2, 5, 5))
    target[0, 0, :] = 255
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(FocalLoss(gamma=0)(logits, target), expected, atol=1e-6)


def test_focal_down_weights_easy_pixels():
    logits = torch.tensor([[[[4.0]], [[0.0]]]])  # confident and right
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    ce = F.cross_entropy(logits, target)
    focal = FocalLoss(gamma=3)(logits, target)
    p = torch.softmax(logits, 1)[0, 0, 0, 0]
    assert torch.allclose(focal, (1 - p) ** 3 * ce)


def test_all_ignored_gives_zero_with_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = FocalLoss()(logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


ALL_LOSSES = [FocalLoss(), CrossEntropy(), DiceLoss(), LovaszSoftmax(),
              SumLoss(CrossEntropy(), DiceLoss())]


def confident(target: torch.Tensor, n_classes: int, margin: float = 30.0) -> torch.Tensor:
    """Logits that predict ``target`` with near certainty (ignored pixels predict class 0)."""
    safe = torch.where(target == 255, torch.zeros_like(target), target)
    return F.one_hot(safe, n_classes).permute(0, 3, 1, 2).float() * margin


def test_focal_alpha_gamma_zero_is_weighted_cross_entropy():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[1, :2] = 255
    alpha = torch.tensor([0.5, 2.0, 1.0])
    expected = F.cross_entropy(logits, target, weight=alpha, ignore_index=255)
    assert torch.allclose(FocalLoss(gamma=0, alpha=alpha)(logits, target), expected, atol=1e-6)


def test_focal_alpha_moves_the_loss_towards_the_weighted_class():
    # Two pixels: class 0 predicted well, class 1 badly. Weighting class 1 up raises the loss.
    logits = torch.tensor([[[[3.0, 0.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    plain = FocalLoss(gamma=2)(logits, target)
    lifted = FocalLoss(gamma=2, alpha=torch.tensor([1.0, 3.0]))(logits, target)
    log_p = F.log_softmax(logits, 1)[0, :, 0]
    terms = [-(1 - log_p[i, i].exp()) ** 2 * log_p[i, i] for i in range(2)]
    assert torch.allclose(plain, (terms[0] + terms[1]) / 2)
    assert torch.allclose(lifted, (terms[0] + 3 * terms[1]) / 4)
    assert lifted > plain
    # Uniform alpha changes nothing: the mean is normalised by the summed weights.
    assert torch.allclose(FocalLoss(gamma=2, alpha=torch.full((2,), 5.0))(logits, target), plain)


def test_cross_entropy_matches_torch_and_casts_half_precision():
    logits = torch.randn(2, 4, 3, 5)
    target = torch.randint(0, 4, (2, 3, 5))
    target[0, 1] = 255
    weight = torch.tensor([1.0, 0.5, 2.0, 1.5])
    assert torch.allclose(CrossEntropy()(logits, target),
                          F.cross_entropy(logits, target, ignore_index=255), atol=1e-6)
    assert torch.allclose(CrossEntropy(weight=weight)(logits, target),
                          F.cross_entropy(logits, target, weight=weight, ignore_index=255),
                          atol=1e-6)
    half = CrossEntropy()(logits.to(torch.bfloat16), target)
    assert half.dtype == torch.float32
    assert torch.allclose(half, F.cross_entropy(logits.to(torch.bfloat16).float(), target,
                                                ignore_index=255), atol=1e-6)


@pytest.mark.parametrize("loss", [DiceLoss(), LovaszSoftmax()], ids=["dice", "lovasz"])
def test_perfect_prediction_scores_about_zero(loss):
    target = torch.randint(0, 3, (2, 6, 6))
    target[0, 0] = 255
    assert loss(confident(target, 3), target).item() < 1e-4
    # and a confidently wrong one scores close to the maximum, 1
    wrong = confident((target + 1) % 3, 3)
    assert loss(wrong, target).item() > 0.9


def test_dice_hand_computed():
    # One image of two pixels, class 0 and class 1; uniform probabilities (0.5 each).
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    # per class: intersection 0.5, cardinality 1 + 1 = 2 -> dice (1 + 1) / (2 + 1) = 2/3
    assert torch.allclose(DiceLoss()(logits, target), torch.tensor(1 / 3))
    assert torch.allclose(DiceLoss(smooth=0.0)(logits, target), torch.tensor(0.5))


def test_dice_averages_present_classes_only_and_uses_weights():
    # Class 2 is neither in the target nor predicted: it must not dilute the mean.
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]], [[-9.0, -9.0]]]])
    target = torch.tensor([[[0, 0]]])
    loss = DiceLoss(smooth=0.0)
    probs = torch.softmax(logits, 1)[0, :, 0]  # (C, 2)
    d0 = 2 * probs[0, :].sum() / (probs[0, :].sum() + 2)
    d1 = 0 / probs[1, :].sum()  # predicted at pixel 1, absent from the target
    assert torch.allclose(loss(logits, target), ((1 - d0) + (1 - d1)) / 2, atol=1e-6)
    weighted = DiceLoss(smooth=0.0, weight=torch.tensor([3.0, 1.0, 100.0]))(logits, target)
    assert torch.allclose(weighted, (3 * (1 - d0) + (1 - d1)) / 4, atol=1e-6)


def test_lovasz_hand_computed_binary_case():
    # Two pixels, both class 0, p(class 0) = 0.8 and 0.4 (two classes, so p1 = 1 - p0).
    p0 = torch.tensor([0.8, 0.4])
    logits = torch.stack([torch.log(p0), torch.log(1 - p0)]).reshape(1, 2, 1, 2)
    target = torch.zeros(1, 1, 2, dtype=torch.long)
    # Class 0: errors 0.2, 0.6 -> sorted 0.6, 0.2; |F| = 2, both fg: Jaccard 1/2, 2/2
    # -> increments 1/2, 1/2 -> 0.6/2 + 0.2/2 = 0.4. Class 1 is absent: not averaged.
    assert torch.allclose(LovaszSoftmax()(logits, target), torch.tensor(0.4), atol=1e-6)
    # With the second pixel labelled class 1: class 0 errors 0.2 (fg), 0.4 (bg);
    # sorted 0.4 (bg), 0.2 (fg); |F| = 1: Jaccard 1/(1+1), 2/(1+1) -> 0.4*0.5 + 0.2*0.5 = 0.3.
    # Class 1 errors 0.2 (bg), 0.4 (fg), sorted 0.4 (fg), 0.2 (bg): 1/1, 2/2 -> 0.4.
    target[0, 0, 1] = 1
    assert torch.allclose(LovaszSoftmax()(logits, target), torch.tensor(0.35), atol=1e-6)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=["focal", "ce", "dice", "lovasz", "sum"])
def test_ignored_pixels_do_not_count(loss):
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[:, :, :2] = 255
    other = logits.clone()
    other[:, :, :, :2] = torch.randn(2, 3, 4, 2) * 10  # change only the ignored pixels
    assert torch.allclose(loss(logits, target), loss(other, target), atol=1e-6)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=["focal", "ce", "dice", "lovasz", "sum"])
def test_gradients_flow_and_are_finite_in_half_precision(loss):
    logits = torch.randn(2, 4, 5, 5).to(torch.bfloat16).requires_grad_()
    target = torch.randint(0, 4, (2, 5, 5))
    target[1, 2] = 255
    value = loss(logits, target)
    assert value.dim() == 0 and value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()
    assert logits.grad.float().abs().sum() > 0


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=["focal", "ce", "dice", "lovasz", "sum"])
def test_no_labelled_pixel_gives_a_zero_with_a_graph(loss):
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    value = loss(logits, torch.full((1, 2, 2), 255))
    value.backward()
    assert value.item() == 0.0 and logits.grad is not None


def test_build_loss_names_and_sums():
    assert LOSS_NAMES == ("focal", "ce", "dice", "lovasz")
    assert isinstance(build_loss("focal"), FocalLoss) and build_loss("focal").gamma == 3.0
    assert isinstance(build_loss("ce"), CrossEntropy)
    assert isinstance(build_loss("Lovasz"), LovaszSoftmax)
    combined = build_loss(" ce + dice ", class_weights=torch.tensor([1.0, 2.0]), ignore_index=7)
    assert isinstance(combined, SumLoss)
    assert [type(m) for m in combined.losses] == [CrossEntropy, DiceLoss]
    assert all(m.ignore_index == 7 for m in combined.losses)
    assert torch.equal(combined.losses[0].weight, torch.tensor([1.0, 2.0]))
    focal = build_loss("focal+lovasz", class_weights=torch.tensor([1.0, 2.0]), gamma=2.0)
    assert focal.losses[0].gamma == 2.0 and torch.equal(focal.losses[0].alpha,
                                                         torch.tensor([1.0, 2.0]))
    logits, target = torch.randn(1, 2, 3, 3), torch.randint(0, 2, (1, 3, 3))
    assert torch.allclose(focal(logits, target),
                          focal.losses[0](logits, target) + LovaszSoftmax()(logits, target))


@pytest.mark.parametrize("spec", ["bce", "ce+", "ce+ce", "", "focal+tversky"])
def test_build_loss_rejects_bad_specs_with_the_valid_names(spec):
    with pytest.raises(ValueError, match="focal, ce, dice, lovasz"):
        build_loss(spec)


def test_class_weights_from_frequencies():
    w = class_weights_from_frequencies([0.75, 0.25])
    expected = np.array([1 / math.sqrt(0.75), 1 / math.sqrt(0.25)])
    expected /= (np.array([0.75, 0.25]) * expected).sum()
    assert np.allclose(w, expected) and w[1] > w[0]
    assert math.isclose(float((np.array([0.75, 0.25]) * w).sum()), 1.0)
    # counts work as well as fractions
    assert np.allclose(class_weights_from_frequencies([300, 100]), w)


def test_class_weights_zero_frequency_and_cap():
    w = class_weights_from_frequencies([0.5, 0.0, 0.5])
    assert w[1] == 0.0 and np.allclose(w[[0, 2]], 1.0)
    freqs = np.array([0.9899, 0.01, 0.0001])
    capped = class_weights_from_frequencies(freqs, cap=20.0)
    assert capped[2] == pytest.approx(20.0) and capped[0] < capped[1] < 20.0
    assert math.isclose(float((freqs * capped).sum()), 1.0)
    # the uncapped classes keep their 1/sqrt(f) ratio
    assert capped[1] / capped[0] == pytest.approx(math.sqrt(0.9899 / 0.01))
    tight = class_weights_from_frequencies(freqs, cap=5.0)  # both rare classes capped
    assert np.allclose(tight[1:], 5.0) and math.isclose(float((freqs * tight).sum()), 1.0)
    loose = class_weights_from_frequencies(freqs, cap=1000.0)
    assert loose[2] / loose[1] == pytest.approx(10.0)


@pytest.mark.parametrize("freqs,cap", [([], 10.0), ([0, 0], 10.0), ([0.5, -0.1], 10.0),
                                       ([0.5, float("nan")], 10.0), ([0.5, 0.5], 0.5)])
def test_class_weights_reject_bad_input(freqs, cap):
    with pytest.raises(ValueError):
        class_weights_from_frequencies(freqs, cap=cap)
