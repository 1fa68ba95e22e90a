"""The training loop (glnet_cli/training/loop.py): epochs logged as they end, the monitor's best
epoch kept, and a stage ended by its epochs, a time limit, patience or the caller."""

from __future__ import annotations

import dataclasses
import json
import os
from types import SimpleNamespace

import pytest
import torch

from glnet_cli.io.model.checkpoint import load_model
from glnet_cli.training.config import UNTIL_TIME_RUNS_OUT
from glnet_cli.training.loop import TrainingLoop
from glnet_cli.training.setup import prepare_run
from glnet_cli.training.state import EpochRecord

STALE = ("m.best.pt", "m.preview.png")


@pytest.fixture(scope="module")
def validated(tmp_path_factory, tiny, cpu):
    """Stage 1 at learning rate 0 (only BatchNorm statistics move), monitored by validation
    loss with patience 1; the caller stops it after epoch 2, so it costs two epochs whatever
    patience does."""
    folder = tmp_path_factory.mktemp("validated")
    setup = prepare_run(tiny(folder / "m.pt", stage="1", epochs=(3,), lr=(0.0,),
                             monitor="loss", patience=1), cpu, False)
    seen: list[EpochRecord] = []

    def stop_after_two(record: EpochRecord) -> bool:
        seen.append(record)
        return len(seen) == 2

    result = TrainingLoop(setup, on_epoch=stop_after_two).run()
    return SimpleNamespace(folder=folder, setup=setup, result=result, seen=seen)


@pytest.fixture(scope="module")
def timed(tmp_path_factory, tiny, cpu):
    """A run without validation whose time limit is spent by its first step; it replaces a run
    whose best model and preview are still there."""
    folder = tmp_path_factory.mktemp("timed")
    for name in STALE:
        (folder / name).write_text("from the run being replaced")
    setup = prepare_run(tiny(folder / "m.pt", stage="1", time_limit=0.01, val_split=0,
                             overwrite=True), cpu, False)
    steps: list[tuple] = []

    def progress(step: int, total: int, **info) -> None:
        steps.append((step, total, info))

    result = TrainingLoop(setup, progress=progress).run()
    return SimpleNamespace(folder=folder, setup=setup, result=result, steps=steps)


def test_every_epoch_appends_a_metrics_line_with_its_scores(validated):
    lines = [json.loads(line) for line in
             (validated.folder / "m.metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"], r["epochs"]) for r in lines] == [(1, 1, 3), (1, 2, 3)]
    assert set(lines[0]) == {f.name for f in dataclasses.fields(EpochRecord)}
    assert lines == [dataclasses.asdict(r) for r in validated.seen]
    for line in lines:
        assert set(line["val_iou"]) == set(line["val_f1"]) == {"class_0", "class_1", "class_2"}
        assert line["monitor"] == line["val_loss"] > 0 and line["lr"] == 0.0
        assert line["seconds"] > 0 and line["train_loss"] > 0


def test_best_pt_holds_the_epoch_the_monitor_scored_best(validated):
    """--monitor loss: the lowest validation loss wins, a tie keeps the earlier epoch."""
    losses = [r.val_loss for r in validated.result.history]
    assert [r.best for r in validated.result.history] == [True, losses[1] < losses[0]]
    best_epoch = losses.index(min(losses)) + 1
    best = load_model(validated.folder / "m.best.pt")
    assert best.training_state is None and validated.result.best == str(
        validated.folder / "m.best.pt")
    assert best.info.provenance["epochs_done"] == {"1": best_epoch}
    assert best.info.provenance["metrics"]["monitor"] == min(losses)
    last = validated.result.model.state_dict()
    same = all(torch.equal(v, last[k]) for k, v in best.model.state_dict().items())
    assert same == (best_epoch == 2)  # BatchNorm's batch count alone tells epochs apart


def test_a_run_stopped_by_the_caller_is_unfinished_and_can_resume(validated):
    assert not validated.result.finished and len(validated.result.history) == 2
    state = load_model(validated.folder / "m.pt").training_state
    # patience ended stage 1 at epoch 2 (see below); the caller's stop leaves the run open
    assert (state["stage"], state["epoch"], state["stage_finished"]) == (1, 2, True)
    assert len(state["history"]) == 2 and state["optimizer"]["param_groups"][0]["lr"] == 0.0
    assert sorted(os.listdir(validated.folder)) == [
        "m.best.pt", "m.curves.png", "m.metrics.jsonl", "m.preview.png", "m.pt"]


def test_patience_ends_a_stage_after_that_many_epochs_without_a_better_score(validated):
    """--patience 1: "end a stage after this many epochs without a better monitored score"."""
    history = validated.result.history
    assert [r.best for r in history] == [True, False]  # epoch 2 did not beat epoch 1
    assert history[1].stage_end == "patience"


def test_a_time_limit_ends_the_stage_after_the_step_that_spent_it(timed):
    """Without --epochs a timed stage runs until its time is up, not for the recipe's epochs."""
    assert timed.setup.config.epochs == UNTIL_TIME_RUNS_OUT
    assert timed.result.finished
    assert [(r.epoch, r.stage_end) for r in timed.result.history] == [(1, "time")]
    [(step, steps, info)] = timed.steps  # one step of an epoch of six tiles, two at a time
    assert (step, steps) == (1, 3)
    assert (info["stage"], info["epoch"]) == ("1", f"1/{UNTIL_TIME_RUNS_OUT[0]}")
    assert info["loss"] > 0


def test_without_validation_no_best_model_is_kept_and_stale_files_go(timed):
    """A best model or preview left by the replaced run would be taken for this run's."""
    [record] = timed.result.history
    assert timed.result.best is None and not record.best
    assert record.val_loss is record.monitor is record.val_miou is None
    assert sorted(os.listdir(timed.folder)) == ["m.curves.png", "m.metrics.jsonl", "m.pt"]
