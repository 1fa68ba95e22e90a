"""A stage's clock: how far it has come, the learning rate that follows, and when it ends.

A stage ends after its epochs or, under ``--time-limit``, when its share of
the time is spent, whichever comes first. The learning rate follows the
stage's progress (the larger of the share of steps and the share of time
done), so a time-limited stage still warms up and decays completely.
"""

from __future__ import annotations

import math
import time
from typing import Mapping, Optional, Sequence

from glnet_cli.training.settings import STAGE_TIME_SHARES

POLY_POWER = 0.9
#: The cosine decays to this fraction of the base rate, not to zero.
COSINE_FLOOR = 0.01


def lr_factor(progress: float, warmup: float, schedule: str) -> float:
    """The learning rate's multiple of its base value at ``progress`` (0..1) of a stage."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 0.01)
    if schedule == "poly":
        return (1.0 - min(progress, 0.999)) ** POLY_POWER
    rest = (progress - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    return COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * rest))


def stage_allowance(total: float, stage: int, stages: Sequence[int],
                    spent: Mapping[int, float]) -> float:
    """Seconds ``stage`` may take: its share of what the earlier stages left over."""
    left = total - sum(spent.get(s, 0.0) for s in stages if s < stage)
    later = [s for s in stages if s >= stage]
    shares = sum(STAGE_TIME_SHARES[s - 1] for s in later)
    return max(0.0, left * STAGE_TIME_SHARES[stage - 1] / shares)


class StageClock:
    """Progress of one stage by steps and, when it has an allowance, by time.

    Args:
        total_steps: Steps of all the stage's epochs.
        allowance: Seconds the stage may take (None: no time limit).
        steps_done, seconds_done: What a resumed stage had already done.
    """

    def __init__(self, total_steps: int, allowance: Optional[float], steps_done: int = 0,
                 seconds_done: float = 0.0) -> None:
        self.total_steps, self.allowance = max(total_steps, 1), allowance
        self.steps, self._before = steps_done, seconds_done
        self._started = time.monotonic()

    @property
    def seconds(self) -> float:
        """Seconds this stage has taken, across resumes."""
        return self._before + time.monotonic() - self._started

    @property
    def progress(self) -> float:
        by_steps = self.steps / self.total_steps
        if self.allowance is None:
            return by_steps
        return max(by_steps, self.seconds / self.allowance if self.allowance else 1.0)

    def out_of_time(self, reserve: float = 0.0) -> bool:
        """Whether the allowance is spent once ``reserve`` more seconds (validation) are."""
        return self.allowance is not None and self.seconds + reserve >= self.allowance

    def state(self) -> dict:
        return {"steps": self.steps, "seconds": self.seconds}
