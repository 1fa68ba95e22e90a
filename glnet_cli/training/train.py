"""GLNet's three training stages on a folder of tiles (``glnet train``).

Stage 1 trains the global branch, stage 2 the local branch and aggregation
with the global branch frozen, stage 3 the local-to-global branch and
aggregation with both others frozen. A run is set up first
(:mod:`~glnet_cli.training.setup`: options, tiles, model), then trained
(:mod:`~glnet_cli.training.loop`), writing the model file after every epoch
with the :class:`~glnet_cli.training.state.TrainingState` that ``resume``
continues from.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from glnet_cli.progress_callback import ProgressCallback
from glnet_cli.training.config import TrainConfig
from glnet_cli.training.distributed import distributed
from glnet_cli.training.loop import EpochCallback, TrainingLoop, TrainResult
from glnet_cli.training.setup import RunSetup, prepare_run
from glnet_cli.training.state import EpochRecord

__all__ = ["EpochRecord", "RunSetup", "TrainConfig", "TrainResult", "train"]


def train(config: TrainConfig, progress: Optional[ProgressCallback] = None,
          on_epoch: Optional[EpochCallback] = None,
          on_start: Optional[Callable[[RunSetup], None]] = None) -> TrainResult:
    """Run (or resume) the training stages that ``config`` asks for.

    Args:
        config: The run's options.
        progress: ``progress(step, steps, **info)`` after every step (rank 0 only).
        on_epoch: Called after each epoch's checkpoint is written (rank 0 only);
            returning True stops the run there (``resume`` continues it).
        on_start: Called with the resolved run before the first step (rank 0 only).

    Raises:
        GlnetError: Bad tiles, options or model files, before training starts.
    """
    with distributed(config.device) as ctx:
        started = time.monotonic()
        setup = prepare_run(config, ctx, show_download=progress is not None and ctx.is_main)
        setup.seconds = time.monotonic() - started
        if on_start and ctx.is_main:
            on_start(setup)
        return TrainingLoop(setup, progress, on_epoch).run()
