"""Focal loss, as GLNet trains with it (gamma = 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Softmax focal loss averaged over the pixels whose label is not ``ignore_index``.

    Down-weights pixels the model already gets right, so rare classes (buildings
    in a rural scene, say) are not drowned by the easy background.
    """

    def __init__(self, gamma: float = 3.0, ignore_index: int = 255) -> None:
        super().__init__()
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (N, C, H, W) against integer ``target`` (N, H, W)."""
        valid = target != self.ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0
        log_probs = F.log_softmax(logits.float(), dim=1)
        safe_target = torch.where(valid, target, torch.zeros_like(target)).long()
        log_p = log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)[valid]
        weight = (1.0 - log_p.exp()).clamp(min=0.0) ** self.gamma
        return -(weight * log_p).mean()
