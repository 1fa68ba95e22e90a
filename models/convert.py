"""Import of the reference implementation's released checkpoints (VITA-Group/GLNet).

Each released file is a ``module.``-prefixed state dict of the whole reference
network, but only some of its parts were trained in the stage it comes from.
:func:`map_reference` says, key by key, where each tensor goes or why it is
not used, so nothing is dropped silently and nothing unknown is accepted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch

from models.glnet import GLNet

Tensor = torch.Tensor
StateDict = Mapping[str, Tensor]

_SMOOTH = re.compile(r"^smooth(\d)_(\d)\.")


class ReferenceLayoutError(ValueError):
    """A checkpoint does not have the reference layout, or the files do not belong together."""


@dataclass
class ReferenceMapping:
    """The outcome of mapping reference files onto a :class:`GLNet`."""

    state: dict[str, Tensor] = field(default_factory=dict)
    #: (file label, key) -> our key, for every key that was loaded.
    loaded: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (file label, key) -> why it is not needed, for every key that was not.
    unused: dict[tuple[str, str], str] = field(default_factory=dict)


def _head_key(key: str) -> str:
    """Reference FPN attribute -> ours (``smooth2_1.weight`` -> ``smooth_1.1.weight``)."""
    key = key.replace("_ext.", ".")
    match = _SMOOTH.match(key)
    if match:
        level, stage = int(match.group(1)), match.group(2)
        key = f"smooth_{stage}.{level - 1}." + key[match.end():]
    return key


def _part(key: str) -> tuple[str, str]:
    """Split ``resnet_global.layer1.0.conv1.weight`` into its sub-module and the rest."""
    module, _, rest = key.partition(".")
    return module, rest


def _is_l2g_layer(rest: str) -> bool:
    return "_ext." in rest or rest.startswith("smooth.")


def strip_prefix(state: StateDict, label: str) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` added."""
    keys = list(state)
    if not keys:
        raise ReferenceLayoutError(f"{label}: the checkpoint holds no tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


_KNOWN = ("resnet_global", "resnet_local", "fpn_global", "fpn_local", "ensemble_conv")


def _route(stage: int, key: str, use: set[str]) -> tuple[Optional[str], str]:
    """Where ``key`` of the stage-``stage`` file goes: (our key, "") or (None, reason)."""
    module, rest = _part(key)
    if module not in _KNOWN:
        return None, "unexpected"
    if module == "resnet_global":
        if stage == 3:
            return "l2g_branch.backbone." + rest, ""
        if "global" in use:
            return "global_branch.backbone." + rest, ""
        return None, "the stage-1 global branch comes from the stage-1 file"
    if module == "fpn_global":
        l2g_layer = _is_l2g_layer(rest)
        if stage == 3:
            if l2g_layer or rest.startswith("classify."):
                return "l2g_branch.head." + _head_key(rest), ""
            return None, "the stage-3 global branch runs only its local-to-global layers"
        if l2g_layer:
            return None, f"local-to-global layers are untrained in stage {stage}"
        if "global" in use:
            return "global_branch.head." + _head_key(rest), ""
        return None, "the stage-1 global branch comes from the stage-1 file"
    if module in ("resnet_local", "fpn_local"):
        if "local" not in use:
            return None, "the local branch comes from the highest stage's file"
        target = "local_branch.backbone." if module == "resnet_local" else "local_branch.head."
        return target + (rest if module == "resnet_local" else _head_key(rest)), ""
    if "aggregate" not in use:
        return None, "the aggregation conv comes from the highest stage's file"
    return "aggregate." + rest, ""


def map_reference(model: GLNet, files: Mapping[int, StateDict]) -> ReferenceMapping:
    """Map reference state dicts (by stage number) onto ``model``'s keys.

    Raises :class:`ReferenceLayoutError` naming the keys on any unexpected key,
    any of ``model``'s tensors left without a value, or any shape mismatch.
    """
    highest = max(files)
    uses = {1: {"global"}, 2: set(), 3: set()}
    uses[highest] |= {"local", "aggregate"}
    result = ReferenceMapping()
    unexpected: list[str] = []
    for stage, state in sorted(files.items()):
        label = f"stage-{stage} file"
        for key, value in strip_prefix(state, label).items():
            target, reason = _route(stage, key, uses[stage])
            if reason == "unexpected":
                unexpected.append(f"{label}: {key}")
            elif target is None:
                result.unused[(label, key)] = reason
            else:
                result.state[target] = value
                result.loaded[(label, key)] = target
    if unexpected:
        raise ReferenceLayoutError(_listing("unexpected keys", unexpected))
    expected = model.state_dict()
    optional = [k for k in expected if k.endswith("num_batches_tracked")]
    missing = [_reference_name(k, highest) for k in expected
               if k not in result.state and k not in optional]
    if missing:
        raise ReferenceLayoutError(_listing("missing keys", missing))
    extra = [k for k in result.state if k not in expected]
    if extra:
        raise ReferenceLayoutError(_listing("keys with no place in the model", extra))
    source = {target: f"{label}: module.{key}" for (label, key), target in result.loaded.items()}
    wrong = [f"{source[k]} is {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
             for k, v in result.state.items() if v.shape != expected[k].shape]
    if wrong:
        raise ReferenceLayoutError(_listing("shape mismatches", wrong))
    return result


def _reference_name(key: str, highest: int) -> str:
    """Our key -> the reference key (and file) it should have come from, for messages."""
    branch, _, rest = key.partition(".")
    part, _, name = rest.partition(".")
    if branch == "aggregate":
        return f"stage-{highest} file: module.ensemble_conv.{rest}"
    side = "local" if branch == "local_branch" else "global"
    module = ("resnet_" if part == "backbone" else "fpn_") + side
    if part == "head":
        match = re.match(r"^smooth_(\d)\.(\d)\.(.*)$", name)
        if match:
            name = f"smooth{int(match.group(2)) + 1}_{match.group(1)}.{match.group(3)}"
        if branch == "l2g_branch" and not name.startswith(("classify.", "smooth.")):
            layer, _, param = name.partition(".")
            name = f"{layer}_ext.{param}"
    stage = 1 if branch == "global_branch" else highest
    return f"stage-{stage} file: module.{module}.{name}"


def _listing(what: str, items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return f"{len(items)} {what}: {shown}{more}"


def _check_same(files: Mapping[int, dict[str, Tensor]], a: int, b: int, prefixes: tuple[str, ...],
                what: str) -> None:
    """Refuse files that were not trained from each other (a frozen part must match)."""
    first, second = files[a], files[b]
    for key, value in first.items():
        if key.startswith(prefixes) and not _is_l2g_layer(_part(key)[1]) \
                and not key.endswith("num_batches_tracked"):
            other = second.get(key)
            if other is None or other.shape != value.shape or not torch.equal(other, value):
                raise ReferenceLayoutError(
                    f"the stage-{b} file's {what} differs from the stage-{a} file's "
                    f"(first difference at {key}): were they trained together?")


def _infer_architecture(state: Mapping[str, Tensor]) -> tuple[str, int, int]:
    """Backbone name, input bands and FPN width from a stripped reference state dict."""
    conv1 = state.get("resnet_global.conv1.weight")
    top = state.get("fpn_global.toplayer.weight")
    if conv1 is None or top is None:
        raise ReferenceLayoutError(
            "resnet_global.conv1.weight or fpn_global.toplayer.weight is missing: "
            "not a reference GLNet checkpoint")
    deep = any(k.startswith("resnet_global.layer3.22.") for k in state)
    bottleneck = any(k.startswith("resnet_global.layer1.0.conv3.") for k in state)
    name = "resnet101" if deep else ("resnet50" if bottleneck else "resnet18")
    if not bottleneck and any(k.startswith("resnet_global.layer3.5.") for k in state):
        name = "resnet34"
    return name, int(conv1.shape[1]), int(top.shape[0])


def load_state(path: str | os.PathLike, label: str) -> dict[str, Tensor]:
    """Read one reference file into a plain state dict (CPU, no pickled code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ReferenceLayoutError(f"{label} {path}: no such file") from None
    except Exception as exc:  # torch raises many kinds for a bad file
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ReferenceLayoutError(
            f"{label} {path}: not a readable PyTorch checkpoint ({detail})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ReferenceLayoutError(f"{label} {path}: not a state dict of tensors")
    return state


def load_reference(stage1: str | os.PathLike | StateDict,
                   stage2: str | os.PathLike | StateDict | None = None,
                   stage3: str | os.PathLike | StateDict | None = None,
                   n_classes: int = 7) -> GLNet:
    """Build a GLNet (eval mode) from the reference's released checkpoints.

    ``stage1`` is ``fpn_deepglobe_global.pth``, ``stage2`` the
    ``..._global2local.pth`` file and ``stage3`` the ``..._local2global.pth``
    file; each may also be an already-loaded state dict. With ``stage3`` the
    model is the full GLNet (stage 2 is then optional); with ``stage2`` alone it
    is the global-to-local model; with ``stage1`` alone, the global branch.
    """
    given = {1: stage1, 2: stage2, 3: stage3}
    raw = {stage: (src if isinstance(src, Mapping) else load_state(src, f"stage-{stage} file"))
           for stage, src in given.items() if src is not None}
    files = {stage: strip_prefix(state, f"stage-{stage} file") for stage, state in raw.items()}
    backbone, bands, width = _infer_architecture(files[1])
    classify = files[1].get("fpn_global.classify.weight")
    if classify is not None and classify.shape[0] != n_classes:
        raise ReferenceLayoutError(
            f"the checkpoints have {classify.shape[0]} classes, not {n_classes}")
    if 2 in files:
        _check_same(files, 1, 2, ("resnet_global.", "fpn_global."), "global branch")
    if 2 in files and 3 in files:
        _check_same(files, 2, 3, ("resnet_local.", "fpn_local."), "local branch")
    model = GLNet(n_classes, backbone, bands, width, l2g=3 in files)
    mapping = map_reference(model, files)
    model.load_state_dict(mapping.state, strict=False)
    model.stage = max(files)
    return model.eval()
