"""A training run set up: its options resolved, its data checked, its model built.

Everything that can be wrong with the options, the tiles or the starting model
fails here, before the first step; :class:`RunSetup` then describes the run
completely, and the loop (:mod:`glnet_cli.training.loop`) only trains.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from glnet_cli.classes import ClassTable
from glnet_cli.device import resolve_precision
from glnet_cli.errors import DataError, GlnetWarning, InputError, PretrainedWeightsMissing
from glnet_cli.io.model.checkpoint import ModelFile, ModelInfo, load_model
from glnet_cli.io.paths import check_distinct, check_output
from glnet_cli.io.text import load_class_table
from glnet_cli.training.class_stats import (
    ClassCounts,
    count_classes,
    parse_class_weights,
    tile_weights,
)
from glnet_cli.training.config import ResolvedTrainConfig, TrainConfig
from glnet_cli.training.dataset import ReadSpec, split_by_name
from glnet_cli.training.distributed import DistContext
from glnet_cli.training.model_shape import choose_architecture, fitted_sizes
from glnet_cli.training.settings import Recipe, recipe_for
from glnet_cli.training.state import TrainingState, seed_everything
from glnet_cli.training.tile_set import check_tiles, infer_classes, measure_scaling, settle_problems
from glnet_cli.training.tiles import TileInfo, discover_tiles, inspect_pairs
from models.backbone import PretrainedWeightsUnavailable, fetch_imagenet
from models.glnet import GLNet

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RunFiles:
    """The files a run writes beside ``MODEL.pt``."""

    best: str
    log: str
    curves: str
    preview: str

    @classmethod
    def beside(cls, output: str) -> "RunFiles":
        root, ext = os.path.splitext(output)
        return cls(f"{root}.best{ext or '.pt'}", f"{root}.metrics.jsonl", f"{root}.curves.png",
                   f"{root}.preview.png")

    @property
    def companions(self) -> list[str]:
        return [self.best, self.log, self.curves, self.preview]


@dataclass
class RunSetup:
    """One training run, resolved: options, device, data, model and the files it writes."""

    #: The options, the recipe's values filling those not given.
    config: ResolvedTrainConfig
    ctx: DistContext
    files: RunFiles
    train_tiles: list[TileInfo]
    val_tiles: list[TileInfo]
    spec: ReadSpec
    model: GLNet
    info: ModelInfo
    #: Read from the model file when resuming, else a fresh one.
    state: TrainingState
    recipe: Recipe
    #: Sampled class pixel counts of the training tiles.
    counts: ClassCounts
    #: The loss's class weights (None: unweighted).
    class_weights: Optional[np.ndarray]
    #: Tile sampling probabilities (None: every tile once per epoch).
    tile_probabilities: Optional[np.ndarray]
    #: ``--precision`` with ``auto`` resolved for the device: one answer for the start
    #: line, the training loop and the dry-run plan.
    precision: str
    #: Seconds the set-up took: they count against --time-limit.
    seconds: float = 0.0


def prepare_run(config: TrainConfig, ctx: DistContext, show_download: bool) -> RunSetup:
    """Resolve ``config`` (or the run it resumes), check the tiles, build the model.

    Args:
        show_download: Draw a progress bar if ImageNet weights are downloaded.

    Raises:
        GlnetError: Bad tiles, options or model files.
    """
    files = RunFiles.beside(config.output)
    given, start, state = _starting_point(config, ctx, files)
    # Refused before the tiles are read or ImageNet weights are fetched.
    precision = resolve_precision(ctx.device, given.precision, training=True)
    seed_everything(given.seed)
    known = start.info if start else None
    backbone, width, size_g, size_p = choose_architecture(given, known)
    train_tiles, val_tiles, spec = _load_data(given, ctx, known, size_g, size_p)
    model, started_from = _build_model(given, ctx, start, spec, backbone, width, show_download)
    model = model.to(ctx.device)
    recipe = recipe_for(given.recipe, start is not None or started_from not in (None, "none"))
    config = given.with_recipe(recipe)
    spec = replace(spec, crop_overlap=recipe.crop_overlap)
    if config.monitor.startswith("iou:") and config.monitor[4:] not in spec.classes.names:
        raise InputError(f"--monitor {config.monitor}: no class of that name (classes: "
                         f"{', '.join(spec.classes.names)})")
    counts = count_classes(train_tiles, len(spec.classes), spec.classes, config.ignore_index)
    class_weights = parse_class_weights(config.class_weights, counts)
    warn = _warn if ctx.is_main and not config.resume else log.debug
    for rare in counts.rare():
        warn(f"class {spec.classes.name_of(rare)} is {counts.frequencies[rare]:.2%} of the "
             f"training pixels (in {counts.tiles_with[rare]} of {len(train_tiles)} tiles): "
             "expect a weak score for it; more tiles that hold it help most")
    probabilities = None
    if config.oversample:
        weights = (class_weights if class_weights is not None
                   else parse_class_weights("auto", counts))
        if weights is not None:  # None: no labelled pixel to weigh the tiles by
            probabilities = tile_weights(counts, weights)
    info = _describe(config, ctx, known, model, spec, train_tiles, len(val_tiles), started_from)
    # A resumed run records its options as they are now (with this run's runtime options).
    state = replace(state, config=config.to_plain()) if state else TrainingState(config.to_plain())
    return RunSetup(config, ctx, files, train_tiles, val_tiles, spec, model, info, state,
                    recipe, counts, class_weights, probabilities, precision)


def _warn(message: str) -> None:
    warnings.warn(message, GlnetWarning, stacklevel=2)


def _starting_point(config: TrainConfig, ctx: DistContext, files: RunFiles
                    ) -> tuple[TrainConfig, Optional[ModelFile], Optional[TrainingState]]:
    """The run's options, and the model (and training state) it starts from."""
    if config.resume and config.init:
        raise InputError("--resume continues the run in the output file; leave out --init")
    if config.resume:
        resumed = load_model(config.output)
        if resumed.training_state is None:
            raise InputError(f"{config.output}: holds no training state to --resume")
        state = TrainingState.from_dict(resumed.training_state)
        return config.resumed(state.config), resumed, state
    check_distinct([config.output, *files.companions],
                   [config.init, _model_file(config.pretrained)])
    if ctx.is_main:
        check_output(config.output, config.overwrite, files.companions)
    start = load_model(config.init) if config.init else None
    first = config.stages[0]
    if first > 1 and (start is None or start.info.stage < first - 1):
        raise InputError(f"--stage {first} starts from a model that completed stage "
                         f"{first - 1}: give it with --init MODEL.pt (or use --resume)")
    return config, start, None


def _checked(config: TrainConfig, ctx: DistContext, folder: str, classes: Optional[ClassTable],
             bands: Optional[tuple[int, ...]], size_p: int
             ) -> tuple[list[TileInfo], ClassTable, tuple]:
    """Every pair of a folder checked (split across ranks); problems stop the run."""
    pairs, problems = discover_tiles(folder)
    min_size = size_p if max(config.stages) >= 2 else 1
    mine = inspect_pairs(pairs[ctx.rank::ctx.world_size], classes, min_size, config.num_workers)
    infos = sorted(ctx.gather(mine), key=lambda i: i.name)
    if classes is None:
        classes = infer_classes([i for i in infos if isinstance(i, TileInfo)],
                                config.ignore_index)
        log.info("%d classes found in the masks of %s", len(classes), folder)
    if config.ignore_index < len(classes):
        raise InputError(f"--ignore-index {config.ignore_index} is a class id "
                         f"(0..{len(classes) - 1})")
    tiles, more, bands = check_tiles(infos, classes, config.ignore_index, bands)
    settle_problems(problems + more, config.skip_bad, folder,
                    _warn if ctx.is_main else log.debug)
    if not tiles:
        raise DataError(f"{folder}: no usable tile pairs")
    return tiles, classes, bands


def _load_data(config: TrainConfig, ctx: DistContext, known: Optional[ModelInfo],
               size_g: Optional[int], size_p: Optional[int]
               ) -> tuple[list[TileInfo], list[TileInfo], ReadSpec]:
    classes = load_class_table(config.classes) if config.classes else None
    if known and classes and classes.to_list() != known.classes.to_list():
        raise InputError(f"--classes {config.classes} differs from the starting model's classes")
    classes = classes or (known.classes if known else None)
    tiles, classes, bands = _checked(config, ctx, config.tiles, classes, config.bands, size_p or 1)
    size_g, size_p = fitted_sizes(tiles, size_g, size_p)
    if config.val:
        train_tiles = tiles
        val_tiles = _checked(config, ctx, config.val, classes, bands, size_p)[0]
    else:
        train_tiles, val_tiles = split_by_name(tiles, config.val_split)
    if known:
        known.scaling.check(train_tiles[0].dtype, config.tiles)
        if len(bands) != known.config.in_channels:
            raise InputError(f"the starting model takes {known.config.in_channels} bands, "
                             f"the tiles give {len(bands)}; choose them with --bands")
    scaling = known.scaling if known else measure_scaling(train_tiles, bands)
    log.info("%d training tiles, %d validation tiles", len(train_tiles), len(val_tiles))
    spec = ReadSpec(bands, scaling, classes, config.ignore_index, size_g, size_p)
    return train_tiles, val_tiles, spec


def _build_model(config: TrainConfig, ctx: DistContext, start: Optional[ModelFile],
                 spec: ReadSpec, backbone: str, width: int, show_download: bool
                 ) -> tuple[GLNet, Optional[str]]:
    """The network to train, and what its weights started from (for the provenance).

    A resumed run keeps its own record of where its weights started.
    """
    started_from = (start.info.provenance.get("pretrained") if start and config.resume
                    else config.pretrained)
    if start:
        return start.model, started_from
    build = functools.partial(GLNet, len(spec.classes), backbone, len(spec.bands), width)
    if config.pretrained in (None, "imagenet"):
        try:
            fetch_imagenet(backbone, progress=show_download)
            return build(pretrained="imagenet"), "imagenet"
        except PretrainedWeightsUnavailable as exc:
            if config.pretrained == "imagenet":
                raise PretrainedWeightsMissing(str(exc)) from None
            (_warn if ctx.is_main else log.debug)(
                f"ImageNet weights for {backbone} could not be loaded ({exc.reason}); "
                "starting from random weights")
            started_from = "none"
    model = build(pretrained=None)
    pretrained_file = _model_file(config.pretrained)
    if pretrained_file:
        source = load_model(pretrained_file).model.state_dict()
        own = model.state_dict()
        fitting = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        if not fitting:
            raise InputError(f"{config.pretrained}: no weights fit this architecture")
        model.load_state_dict(fitting, strict=False)
        log.info("%d of %d tensors from %s", len(fitting), len(own), config.pretrained)
    return model, started_from


def _describe(config: ResolvedTrainConfig, ctx: DistContext, known: Optional[ModelInfo],
              model: GLNet, spec: ReadSpec, tiles: list[TileInfo], n_val: int,
              started_from: Optional[str]) -> ModelInfo:
    """The model file's metadata: architecture, classes, scaling, context, provenance."""
    gsds = [t.gsd for t in tiles if t.gsd]
    provenance = {
        "tiles": os.path.abspath(config.tiles), "n_tiles": len(tiles),
        "val": os.path.abspath(config.val) if config.val else None,
        "val_split": config.val_split, "n_val": n_val, "stages": config.stages,
        "recipe": config.recipe, "loss": config.loss, "time_limit": config.time_limit,
        "epochs": list(config.epochs), "lr": list(config.lr), "batch_size": config.batch_size,
        "sub_batch_size": config.sub_batch_size, "seed": config.seed,
        "world_size": ctx.world_size, "pretrained": started_from, "init": config.init}
    return ModelInfo(
        config=model.config, classes=spec.classes, size_g=spec.size_g, size_p=spec.size_p,
        scaling=spec.scaling,
        context_size=int(np.median([s for t in tiles for s in (t.height, t.width)])),
        stage=known.stage if known else 0,
        gsd=float(np.median(gsds)) if gsds else None, provenance=provenance)


def _model_file(pretrained: Optional[str]) -> Optional[str]:
    """``--pretrained`` when it names a model file (not imagenet or none)."""
    return None if pretrained in (None, "imagenet", "none") else pretrained
