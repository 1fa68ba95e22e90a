"""``glnet train``'s defaults: recipes, the time budget, class balance, monitoring, pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from glnet_cli.classes import generic_table
from glnet_cli.commands.train import DurationType
from glnet_cli.device import resolve_precision
from glnet_cli.errors import InputError
from glnet_cli.evaluation.metrics import ConfusionMatrix
from glnet_cli.io.model.checkpoint import load_model
from glnet_cli.training.budget import StageClock, lr_factor, stage_allowance
from glnet_cli.training.class_stats import (
    ClassCounts,
    count_classes,
    parse_class_weights,
    tile_weights,
)
from glnet_cli.training.dataset import epoch_batches
from glnet_cli.training.train import TrainConfig, train
from glnet_cli.training.validation import Validation, monitor_value
from models.glnet import GLNet
from tests.helpers import checked_tiles, run_glnet

TINY = dict(backbone="resnet18", width=16, size_g=64, size_p=32, batch_size=2,
            sub_batch_size=5, pretrained="none", num_workers=0, device="cpu", val_split=0.34)
TINY_ARGS = ["--backbone", "resnet18", "--width", "16", "--size-g", "64", "--size-p", "32",
             "--batch-size", "2", "--pretrained", "none", "--num-workers", "0",
             "--device", "cpu", "--val-split", "0.34"]


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("2h", 7200), ("1h30m", 5400),
                                           ("90s", 90), ("45", 45), ("0.5m", 30)])
def test_durations(text, seconds):
    assert DurationType().convert(text, None, None) == seconds


@pytest.mark.parametrize("text", ["abc", "0", "-5m", "m"])
def test_bad_durations_are_refused(tiles, tmp_path, text):
    result = run_glnet("train", "--tiles", tiles, "-o", tmp_path / "m.pt", "--time-limit", text)
    assert result.exit_code == 2 and "--time-limit" in result.output
    assert not (tmp_path / "m.pt").exists()


def test_learning_rate_warms_up_then_decays():
    assert lr_factor(0.0, 0.05, "cosine") == pytest.approx(0.01)
    assert lr_factor(0.025, 0.05, "cosine") == pytest.approx(0.5)
    assert lr_factor(0.05, 0.05, "cosine") == pytest.approx(1.0)
    assert lr_factor(1.0, 0.05, "cosine") == pytest.approx(0.01)
    values = [lr_factor(p, 0.05, "cosine") for p in np.linspace(0.05, 1, 20)]
    assert values == sorted(values, reverse=True)
    assert lr_factor(0.5, 0.0, "poly") == pytest.approx(0.5 ** 0.9)


def test_time_is_shared_and_what_a_stage_leaves_goes_on():
    assert stage_allowance(800, 1, [1, 2, 3], {}) == pytest.approx(200)
    assert stage_allowance(800, 2, [1, 2, 3], {1: 100}) == pytest.approx(700 * 2 / 3)
    assert stage_allowance(800, 3, [1, 2, 3], {1: 100, 2: 300}) == pytest.approx(400)
    assert stage_allowance(600, 2, [2, 3], {}) == pytest.approx(400)
    assert stage_allowance(100, 3, [1, 2, 3], {1: 80, 2: 90}) == 0


def test_a_stage_clock_counts_steps_and_time():
    clock = StageClock(10, None, steps_done=5)
    assert clock.progress == 0.5 and not clock.out_of_time(1e9)
    timed = StageClock(10, 100.0, seconds_done=60.0)
    assert 0.6 <= timed.progress < 0.7
    assert not timed.out_of_time(30) and timed.out_of_time(41)
    assert timed.state()["seconds"] >= 60


def test_class_counts_weights_and_oversampling(tiles):
    infos = checked_tiles(tiles)[0]
    counts = count_classes(infos, 3, generic_table(3), 255)
    assert counts.per_tile.shape == (6, 3) and counts.pixels.sum() > 0
    assert np.isclose(counts.frequencies.sum(), 1.0)
    weights = parse_class_weights("auto", counts)
    assert np.isclose((weights * counts.frequencies).sum(), 1.0)
    rarest = int(np.argmin(counts.frequencies))
    assert weights[rarest] == weights.max()
    assert parse_class_weights("none", counts) is None
    assert list(parse_class_weights("1,2,0.5", counts)) == [1, 2, 0.5]
    for bad in ("1,2", "a,b,c", "1,-1,1"):
        with pytest.raises(InputError, match="--class-weights"):
            parse_class_weights(bad, counts)


def test_tiles_with_rare_classes_are_drawn_more_often():
    counts = ClassCounts(np.array([[100, 0], [100, 0], [90, 10]]))
    probs = tile_weights(counts, parse_class_weights("auto", counts))
    assert probs[2] > probs[0] == probs[1] and np.isclose(probs.sum(), 1)
    batches = epoch_batches(3, 3, 0, 0, weights=np.array([0.0, 0.0, 1.0]))
    assert batches == [[(0, 2), (0, 2), (0, 2)]]
    assert epoch_batches(3, 3, 4, 1, weights=probs) == epoch_batches(3, 3, 4, 1, weights=probs)


def test_the_monitor_leaves_out_the_background():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]))
    val = Validation(cm, 0.7)
    names = ["background", "roof", "road"]
    assert monitor_value("miou", val, names) == pytest.approx(np.nanmean(cm.iou[1:]))
    assert monitor_value("miou-all", val, names) == pytest.approx(cm.miou)
    assert monitor_value("iou:roof", val, names) == pytest.approx(cm.iou[1])
    assert monitor_value("loss", val, names) == 0.7


def test_the_local_branch_can_start_from_the_global_one():
    model = GLNet(2, "resnet18", 3, 16)
    global_conv = model.global_branch.backbone.conv1.weight
    assert not torch.equal(global_conv, model.local_branch.backbone.conv1.weight)
    model.local_from_global()
    assert torch.equal(global_conv, model.local_branch.backbone.conv1.weight)


def test_defaults_say_their_recipe_show_classes_and_write_pictures(tiles, tmp_path):
    out = tmp_path / "m.pt"
    result = run_glnet("train", "--tiles", tiles, "-o", out, *TINY_ARGS, "--epochs", "2,1,1")
    assert result.exit_code == 0, result.output
    assert ("glnet: recipe auto for random weights: lr 0.001/0.001/0.0005, weight decay 0, "
            "cosine schedule with 5% warm-up, loss ce+dice, class weights auto, rare tiles "
            "oversampled, colour jitter, local branch from the global one; computing in "
            f"{resolve_precision(torch.device('cpu'), 'auto', training=True)} on cpu") \
        in result.stderr
    assert "training classes" in result.stderr and "class_2" in result.stderr
    lines = read_log(tmp_path / "m.metrics.jsonl")
    assert [(r["stage"], r["epoch"], r["stage_end"]) for r in lines] == [
        (1, 1, None), (1, 2, "epochs"), (2, 1, "epochs"), (3, 1, "epochs")]
    for line in lines:
        assert set(line["val_f1"]) == set(line["val_precision"]) == {"class_0", "class_1",
                                                                      "class_2"}
        assert line["val_loss"] > 0 and line["monitor"] is not None
    for picture in ("m.curves.png", "m.preview.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    provenance = load_model(out).info.provenance
    assert provenance["recipe"] == "auto" and provenance["loss"] == "ce+dice"


def test_the_paper_recipe_is_the_papers(tiles, tmp_path):
    result = train(TrainConfig(tiles=str(tiles), output=str(tmp_path / "p.pt"), recipe="paper",
                               stage="1", epochs=(1,), **TINY))
    provenance = result.info.provenance
    assert provenance["lr"] == [5e-5, 2e-5, 5e-5] and provenance["loss"] == "focal"
    assert result.history[0].lr < 5e-5 * 1.0001


@pytest.mark.slow  # the fast lane: test_loop's time limit and the budget tests above
def test_a_time_limit_ends_every_stage_and_the_run_is_finished(tiles, tmp_path):
    out = tmp_path / "t.pt"
    result = train(TrainConfig(tiles=str(tiles), output=str(out), time_limit=3.0, **TINY))
    assert result.finished
    ends = {r.stage: r.stage_end for r in result.history if r.stage_end}
    assert ends == {1: "time", 2: "time", 3: "time"}
    seconds = load_model(out).training_state["stage_seconds"]
    assert sum(seconds.values()) < 3.0 + 3.0  # one step and a validation may run over
    again = train(TrainConfig(tiles="", output=str(out), resume=True, num_workers=0,
                              device="cpu"))
    assert again.finished and len(again.history) == len(result.history)


@pytest.mark.slow  # the fast lane: test_loop's patience test
def test_patience_ends_a_stage_that_stops_improving(tiles, tmp_path):
    result = train(TrainConfig(tiles=str(tiles), output=str(tmp_path / "p.pt"), stage="1",
                               epochs=(20,), lr=(1e-12,), patience=1, monitor="loss", **TINY))
    assert [r.stage_end for r in result.history][-1] == "patience"
    assert len(result.history) < 20


def test_dry_run_prints_the_plan_and_writes_nothing(tiles, tmp_path):
    result = run_glnet("train", "--tiles", tiles, "-o", tmp_path / "d.pt", *TINY_ARGS,
                       "--time-limit", "10m", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "plan: 3 training tiles, 3 validation tiles, size_g 64, size_p 32" in result.stdout
    assert "s/epoch" in result.stdout and "peak memory" in result.stdout
    assert "share: of --time-limit" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_bad_monitor_and_loss_are_one_line(tiles, tmp_path):
    for args, message in ((["--monitor", "nope"], "--monitor nope"),
                          (["--loss", "hinge"], "hinge")):
        result = run_glnet("train", "--tiles", tiles, "-o", tmp_path / "m.pt", *TINY_ARGS, *args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
