import torch
import torch.nn.functional as F

from models.losses import FocalLoss


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
