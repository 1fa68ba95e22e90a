"""What a valid model file holds: each field's type and range, and its fit with the weights.

A model file is data that anyone can edit or damage, and every field steers
the run: a size of 0 plans millions of blocks, a NaN scale turns every pixel
into one class, a class list longer than the classifier crashes mid-scene. So
:func:`check_payload` checks every field before any of it is used, and says
which one is wrong: ``model.pt: context.size: 0 is not in 1..1048576``.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from glnet_cli.architecture import SIZE_RANGE
from glnet_cli.errors import ModelFileError
from models.backbone import list_backbones

FORMAT = "glnet-model"
FORMAT_VERSION = 1

#: Full-resolution pixels (a side) the global branch may have seen as one view.
CONTEXT_RANGE = (1, 1 << 20)
BANDS_RANGE = (1, 1024)
WIDTH_RANGE = (8, 4096)
#: 255 marks nodata in masks, so class ids stop below it.
CLASSES_RANGE = (1, 254)
STAGE_RANGE = (1, 3)
SCALING_MODES = ("dtype-range", "stats")
#: The data types whose full range the fixed 0..1 scaling divides by.
DTYPE_RANGE = {"uint8": 255.0, "uint16": 65535.0}

_ARCHITECTURE = ("n_classes", "backbone", "in_channels", "width", "size_g", "size_p")
#: Tensors whose shapes must agree with the metadata, and the axis that must.
_CLASSIFIERS = ("global_branch.head.classify.weight", "aggregate.weight")
_FIRST_CONV = "global_branch.backbone.conv1.weight"


class _Fields:
    """Reads fields of a payload, failing with one line that names the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, name: str, problem: str) -> ModelFileError:
        return ModelFileError(f"{self.source}: {name}: {problem}")

    def mapping(self, value: Any, name: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(name, f"expected a mapping of fields, found {_kind(value)}")
        return value

    def get(self, container: dict, key: str, name: str) -> Any:
        if key not in container:
            raise self.fail(name, "missing")
        return container[key]

    def integer(self, value: Any, name: str, bounds: tuple[int, int]) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise self.fail(name, f"{value!r} is not a whole number")
        low, high = bounds
        if not low <= value <= high:
            raise self.fail(name, f"{value} is not in {low}..{high}")
        return int(value)

    def positive(self, value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise self.fail(name, f"{value!r} is not a number")
        if not math.isfinite(value) or value <= 0:
            raise self.fail(name, f"{value} is not a positive finite number")
        return float(value)

    def text(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, f"{value!r} is not a non-empty text")
        return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def check_payload(payload: dict, source: str) -> None:
    """Refuse a model file whose metadata is malformed or disagrees with its weights.

    Args:
        payload: What ``torch.load`` returned, already known to carry the
            ``glnet-model`` header.
        source: The file's name, for the messages.

    Raises:
        ModelFileError: ``"<source>: <field>: <problem>"`` for the first bad field.
    """
    f = _Fields(source)
    _check_version(f, payload)
    arch = f.mapping(f.get(payload, "architecture", "architecture"), "architecture")
    unknown = sorted(set(arch) - set(_ARCHITECTURE))
    if unknown:
        raise f.fail(f"architecture.{unknown[0]}", "not a field this glnet knows")
    values = {key: f.get(arch, key, f"architecture.{key}") for key in _ARCHITECTURE}
    n_classes = f.integer(values["n_classes"], "architecture.n_classes", CLASSES_RANGE)
    if values["backbone"] not in list_backbones():
        raise f.fail("architecture.backbone", f"{values['backbone']!r} is not one of "
                                              f"{', '.join(list_backbones())}")
    bands = f.integer(values["in_channels"], "architecture.in_channels", BANDS_RANGE)
    f.integer(values["width"], "architecture.width", WIDTH_RANGE)
    for key in ("size_g", "size_p"):
        f.integer(values[key], f"architecture.{key}", SIZE_RANGE)
    _check_classes(f, f.get(payload, "classes", "classes"), n_classes)
    _check_scaling(f, f.mapping(f.get(payload, "input_scaling", "input_scaling"),
                                "input_scaling"), bands)
    context = f.mapping(f.get(payload, "context", "context"), "context")
    f.integer(f.get(context, "size", "context.size"), "context.size", CONTEXT_RANGE)
    if context.get("gsd") is not None:
        f.positive(context["gsd"], "context.gsd")
    stage = f.integer(f.get(payload, "stage", "stage"), "stage", STAGE_RANGE)
    f.mapping(payload.get("provenance", {}), "provenance")
    _check_weights(f, payload, stage, n_classes, bands)
    if payload.get("training_state") is not None:
        _check_training_state(f, payload["training_state"])


def _check_version(f: _Fields, payload: dict) -> None:
    version = f.get(payload, "format_version", "format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise f.fail("format_version", f"{version!r} is not a valid version "
                                       f"(a whole number from 1)")
    if version > FORMAT_VERSION:
        raise f.fail("format_version", f"{version}: made by a newer glnet (this one reads up "
                                       f"to version {FORMAT_VERSION}); upgrade glnet")


def _check_classes(f: _Fields, classes: Any, n_classes: int) -> None:
    if not isinstance(classes, list):
        raise f.fail("classes", f"expected a list of classes, found {_kind(classes)}")
    if len(classes) != n_classes:
        raise f.fail("classes", f"{len(classes)} classes, but architecture.n_classes is "
                                f"{n_classes}")
    seen: set[int] = set()
    for i, item in enumerate(classes):
        name = f"classes[{i}]"
        item = f.mapping(item, name)
        class_id = f.integer(f.get(item, "id", f"{name}.id"), f"{name}.id", (0, 254))
        if class_id in seen:
            raise f.fail(f"{name}.id", f"{class_id} is used twice")
        seen.add(class_id)
        f.text(f.get(item, "name", f"{name}.name"), f"{name}.name")
        if "color" in item:
            color = item["color"]
            if not (isinstance(color, (list, tuple)) and len(color) == 3
                    and all(not isinstance(v, bool) and isinstance(v, int) and 0 <= v <= 255
                            for v in color)):
                raise f.fail(f"{name}.color", f"{color!r} is not three values 0..255 (R, G, B)")
    if seen != set(range(n_classes)):
        raise f.fail("classes", f"ids must be 0..{n_classes - 1} without gaps, "
                                f"found {sorted(seen)}")


def _check_scaling(f: _Fields, scaling: dict, bands: int) -> None:
    mode = f.get(scaling, "mode", "input_scaling.mode")
    if mode not in SCALING_MODES:
        raise f.fail("input_scaling.mode", f"{mode!r} is not one of {', '.join(SCALING_MODES)}")
    dtype = f.get(scaling, "dtype", "input_scaling.dtype")
    try:
        known = isinstance(dtype, str) and np.dtype(dtype).kind in "uif"
    except TypeError:
        known = False
    if not known or (mode == "dtype-range" and dtype not in DTYPE_RANGE):
        allowed = ", ".join(DTYPE_RANGE) if mode == "dtype-range" else "a numeric data type"
        raise f.fail("input_scaling.dtype", f"{dtype!r} is not {allowed}")
    for key in ("offset", "scale"):
        name = f"input_scaling.{key}"
        values = f.get(scaling, key, name)
        if not isinstance(values, (list, tuple)) or len(values) != bands:
            count = len(values) if isinstance(values, (list, tuple)) else _kind(values)
            raise f.fail(name, f"{count} values for {bands} band(s)")
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise f.fail(name, f"{value!r} is not a finite number")
            if key == "scale" and value <= 0:
                raise f.fail(name, f"{value} is not positive")


def _check_weights(f: _Fields, payload: dict, stage: int, n_classes: int, bands: int) -> None:
    """The metadata against the tensors that carry the same facts."""
    state = f.mapping(f.get(payload, "state_dict", "state_dict"), "state_dict")
    l2g = f.get(payload, "l2g", "l2g")
    if not isinstance(l2g, bool):
        raise f.fail("l2g", f"{l2g!r} is not true or false")
    has_l2g = any(str(k).startswith("l2g_branch.") for k in state)
    if l2g != has_l2g:
        raise f.fail("l2g", f"says {str(l2g).lower()}, but the file "
                            f"{'holds' if has_l2g else 'holds no'} l2g_branch weights")
    if stage == 3 and not l2g:
        raise f.fail("stage", "3, but the file holds no local-to-global (stage-3) branch")
    for key in (*_CLASSIFIERS, _FIRST_CONV):
        if not isinstance(state.get(key), torch.Tensor) or state[key].dim() != 4:
            raise f.fail("state_dict", f"{key} is missing or not a convolution weight")
    for key in _CLASSIFIERS:
        if state[key].shape[0] != n_classes:
            raise f.fail("classes", f"{n_classes} classes, but the weights ({key}) predict "
                                    f"{state[key].shape[0]}")
    if state[_FIRST_CONV].shape[1] != bands:
        raise f.fail("architecture.in_channels", f"{bands} band(s), but the weights take "
                                                 f"{state[_FIRST_CONV].shape[1]}")


def _check_training_state(f: _Fields, state: Any) -> None:
    state = f.mapping(state, "training_state")
    f.mapping(f.get(state, "config", "training_state.config"), "training_state.config")
    f.integer(f.get(state, "stage", "training_state.stage"), "training_state.stage",
              STAGE_RANGE)
    f.integer(f.get(state, "epoch", "training_state.epoch"), "training_state.epoch",
              (0, 1 << 31))
    if not isinstance(f.get(state, "history", "training_state.history"), list):
        raise f.fail("training_state.history", "expected a list of epochs")


def check_state_dict(model: torch.nn.Module, state: dict, source: str,
                     architecture: Optional[str] = None) -> None:
    """Refuse weights that do not fit ``model`` key for key and shape for shape, or not finite."""
    f = _Fields(source)
    expected = model.state_dict()
    where = f" ({architecture})" if architecture else ""
    missing = [k for k in expected if k not in state]
    if missing:
        raise f.fail("state_dict", f"{len(missing)} tensor(s) of the architecture{where} are "
                                   f"missing, first {missing[0]}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise f.fail("state_dict", f"{len(unexpected)} tensor(s) the architecture{where} does "
                                   f"not have, first {unexpected[0]}")
    for key, want in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor):
            raise f.fail("state_dict", f"{key} is {_kind(got)}, not a tensor")
        if got.shape != want.shape:
            raise f.fail("state_dict", f"{key} is {tuple(got.shape)}, the architecture{where} "
                                       f"needs {tuple(want.shape)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise f.fail("state_dict", f"{key} holds NaN or infinite values (did the training "
                                       "diverge?)")
