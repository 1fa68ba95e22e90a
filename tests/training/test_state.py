"""glnet_cli/training/state.py: what a checkpoint holds to resume, and the metrics log."""

from __future__ import annotations

import json
import random

import numpy as np
import torch

from glnet_cli.training.state import EpochRecord, TrainingState


def test_round_trip_and_log():
    record = EpochRecord(2, 1, 5, 0.5, 0.25, 1e-3, 3.0, val_miou=0.4, val_iou={"a": None})
    state = TrainingState({"tiles": "t", "epochs": [1, 2, 3]}, stage=2, epoch=1,
                          optimizer={"state": {}}, best_miou=0.4, best_stage=2,
                          history=[record])
    saved = state.to_dict()
    assert list(saved) == ["config", "stage", "epoch", "optimizer", "scheduler", "scaler",
                           "best_miou", "best_stage", "rng", "stage_seconds",
                           "stage_finished", "history"]
    assert saved["history"] == [{**record.__dict__}]
    assert TrainingState.from_dict(saved) == state
    [line] = state.log_lines()
    assert line.endswith("\n") and json.loads(line)["val_iou"] == {"a": None}


def test_rng_states_come_back():
    state = TrainingState({})
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state.capture_rng()
    first = (torch.rand(2), np.random.rand(), random.random())
    state.restore_rng()
    again = (torch.rand(2), np.random.rand(), random.random())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]
