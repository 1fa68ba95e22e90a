"""A training run set up (glnet_cli/training/setup.py): options resolved against the tiles and
the starting model, and every bad input refused before the first step."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from glnet_cli.errors import InputError, OutputExistsError
from glnet_cli.training.settings import AUTO_PRETRAINED, AUTO_SCRATCH, PAPER
from glnet_cli.training.setup import RunFiles, prepare_run
from tests.helpers import make_tiles


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("setup")


@pytest.fixture(scope="module")
def default_run(folder, tiny, cpu):
    """The set-up of a run that gives no architecture sizes and no recipe options."""
    return prepare_run(tiny(folder / "default.pt", width=None), cpu, show_download=False)


@pytest.fixture(scope="module")
def paper_run(folder, tiny, cpu):
    """The paper's recipe, validated on a folder of its own."""
    val = make_tiles(folder / "val", 2, seed=10)
    return prepare_run(tiny(folder / "paper.pt", recipe="paper", val=str(val), lr=(1e-4,)), cpu,
                       show_download=False)


def test_run_files_sit_beside_the_model():
    files = RunFiles.beside("runs/roofs.pt")
    assert files == RunFiles(best="runs/roofs.best.pt", log="runs/roofs.metrics.jsonl",
                             curves="runs/roofs.curves.png", preview="runs/roofs.preview.png")
    assert files.companions == [files.best, files.log, files.curves, files.preview]
    assert RunFiles.beside("model").best == "model.best.pt"  # a model file is a .pt


def test_sizes_and_width_fit_tiles_smaller_than_the_papers(default_run):
    """The smallest tile is 64 px: the global view takes all of it, a crop half of it, and a
    ResNet-18 gets its narrow default FPN."""
    spec, info = default_run.spec, default_run.info
    assert (spec.size_g, spec.size_p) == (info.size_g, info.size_p) == (64, 32)
    assert default_run.model.config.width == 64 and default_run.model.config.n_classes == 3
    assert info.context_size == 80 and info.gsd == 0.5  # median tile side, pixel size


def test_tiles_are_split_by_name_and_their_classes_and_bands_found(default_run, tiles):
    train, val = default_run.train_tiles, default_run.val_tiles
    names = [t.name for t in train + val]
    assert sorted(names) == [f"tile{i}.tif" for i in range(6)] and len(val) == 3
    assert default_run.spec.classes.names == ["class_0", "class_1", "class_2"]
    assert default_run.spec.bands == (1, 2, 3) and default_run.spec.ignore_index == 255
    provenance = default_run.info.provenance
    assert (provenance["n_tiles"], provenance["n_val"]) == (3, 3)
    assert provenance["tiles"] == str(tiles) and provenance["pretrained"] == "none"


def test_random_weights_get_the_scratch_recipe_and_its_values_fill_the_options(default_run):
    config = default_run.config
    assert default_run.recipe == AUTO_SCRATCH
    assert (config.epochs, config.lr) == (AUTO_SCRATCH.epochs, AUTO_SCRATCH.lr)
    assert (config.loss, config.class_weights, config.oversample) == ("ce+dice", "auto", True)
    assert default_run.spec.crop_overlap == 0
    weights, counts = default_run.class_weights, default_run.counts
    assert weights.shape == (3,) and np.argmax(weights) == np.argmin(counts.frequencies)
    probabilities = default_run.tile_probabilities
    assert probabilities.shape == (3,) and probabilities.sum() == pytest.approx(1.0)
    assert default_run.state.stage == 0 and default_run.state.config == config.to_plain()


def test_the_paper_recipe_keeps_what_was_given(paper_run):
    config = paper_run.config
    assert paper_run.recipe == PAPER and config.lr == (1e-4,) * 3  # given, not the paper's
    assert (config.epochs, config.loss) == (PAPER.epochs, "focal")
    assert paper_run.class_weights is None and paper_run.tile_probabilities is None
    assert paper_run.spec.crop_overlap == 50


def test_a_validation_folder_replaces_the_split(paper_run):
    assert len(paper_run.train_tiles) == 6 and len(paper_run.val_tiles) == 2
    assert paper_run.info.provenance["val"].endswith("val")


def test_a_starting_model_sets_architecture_classes_and_recipe(folder, tiny, cpu, tiny_model):
    """--init: the model's own sizes, width and classes; its features count as pretrained."""
    start = tiny_model(n_classes=4, size_g=80, size_p=48)
    run = prepare_run(tiny(folder / "next.pt", init=str(start), stage="2"), cpu, False)
    assert (run.spec.size_g, run.spec.size_p) == (80, 48)
    assert run.model.config.width == 16 and len(run.spec.classes) == 4
    assert run.recipe == AUTO_PRETRAINED and run.info.stage == 3
    assert run.info.provenance["init"] == str(start)


@pytest.mark.parametrize("options, message", [
    ({"resume": True, "init": "start.pt"},
     "--resume continues the run in the output file; leave out --init"),
    ({"stage": "2"}, "--stage 2 starts from a model that completed stage 1: give it with --init"),
    ({"ignore_index": 1}, "--ignore-index 1 is a class id (0..2)"),
    ({"monitor": "iou:roof"},
     "--monitor iou:roof: no class of that name (classes: class_0, class_1, class_2)"),
    ({"tiles": "no-such-folder"}, "no-such-folder: no such folder"),
    ({"tiles": "empty"}, "empty: no usable tile pairs"),
    ({"init": "out.pt", "overwrite": True}, "out.pt: is the same file as the input"),
])
def test_bad_options_and_tiles_are_refused_before_training(tmp_path, monkeypatch, tiny, cpu,
                                                           options, message):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=re.escape(message)):
        prepare_run(tiny("out.pt", **options), cpu, False)
    assert sorted(os.listdir(tmp_path)) == ["empty"]


def test_an_existing_output_is_refused_unless_overwritten(tmp_path, tiny, cpu):
    (tmp_path / "out.metrics.jsonl").write_text("the log of another run\n")
    with pytest.raises(OutputExistsError, match=r"out\.metrics\.jsonl: already exists"):
        prepare_run(tiny(tmp_path / "out.pt"), cpu, False)
    assert prepare_run(tiny(tmp_path / "out.pt", stage="1", overwrite=True), cpu, False).model
