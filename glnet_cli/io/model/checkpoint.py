"""The glnet model file: weights of every stage plus what it takes to run them.

A model file is a ``torch.save`` of a plain dict (tensors, numbers, strings,
lists) so it loads with ``weights_only=True``: opening a model file never runs
code. Every field is checked when the file is read (:mod:`glnet_cli.io.model.schema`).
It is written to a temporary file, read back and checked, then renamed, so a
crash or a full disk never leaves a truncated model behind.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from glnet_cli.classes import ClassTable
from glnet_cli.errors import InputError, ModelFileError, OutputWriteError
from glnet_cli.io.model.schema import (
    DTYPE_RANGE,
    FORMAT,
    FORMAT_VERSION,
    check_payload,
    check_state_dict,
)
from glnet_cli.io.paths import atomic_output
from models.glnet import GLNet, GLNetConfig


@dataclass
class InputScaling:
    """How raw pixel values become network inputs: ``(value - offset) * scale``.

    ``mode="dtype-range"`` is the reference's fixed 0..1 scaling of one data
    type (uint8 / 255); it only fits scenes of that type. ``mode="stats"``
    holds per-band offsets and scales measured on the training data, which fit
    any numeric type.
    """

    mode: str = "dtype-range"
    dtype: str = "uint8"
    offset: list[float] = field(default_factory=lambda: [0.0])
    scale: list[float] = field(default_factory=lambda: [1.0 / 255.0])

    @classmethod
    def fixed(cls, dtype: str = "uint8", bands: int = 3) -> "InputScaling":
        top = DTYPE_RANGE.get(dtype)
        if top is None:
            raise InputError(f"no fixed 0..1 scaling for {dtype}; use per-band statistics")
        return cls("dtype-range", dtype, [0.0] * bands, [1.0 / top] * bands)

    @classmethod
    def from_stats(cls, dtype: str, low: list[float], high: list[float]) -> "InputScaling":
        scale = [1.0 / (h - lo) if h > lo else 1.0 for lo, h in zip(low, high)]
        return cls("stats", dtype, [float(v) for v in low], scale)

    def check(self, dtype: str, source: str) -> None:
        """Refuse a scene whose data type this scaling does not fit."""
        if self.mode == "dtype-range" and dtype != self.dtype:
            raise InputError(
                f"{source}: the model was trained on {self.dtype} data scaled to 0..1, "
                f"this scene is {dtype}; convert it (e.g. gdal_translate -ot Byte -scale) "
                "or train a model on such data")

    def apply(self, array: np.ndarray) -> np.ndarray:
        """(bands, H, W) raw values -> float32 network input."""
        offset = np.asarray(self.offset, dtype=np.float32).reshape(-1, 1, 1)
        scale = np.asarray(self.scale, dtype=np.float32).reshape(-1, 1, 1)
        return (array.astype(np.float32) - offset) * scale


@dataclass
class ModelInfo:
    """Everything about a model except its weights."""

    config: GLNetConfig
    classes: ClassTable
    size_g: int
    size_p: int
    #: Full-resolution pixels (a side) that the global branch saw as size_g.
    context_size: int
    scaling: InputScaling
    stage: int
    #: Ground sampling distance of the training data, map units per pixel.
    gsd: Optional[float] = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": {**self.config.to_dict(), "size_g": self.size_g,
                             "size_p": self.size_p},
            "classes": self.classes.to_list(),
            "input_scaling": asdict(self.scaling),
            "context": {"size": self.context_size, "gsd": self.gsd},
            "stage": self.stage,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelInfo":
        arch = dict(data["architecture"])
        size_g, size_p = int(arch.pop("size_g")), int(arch.pop("size_p"))
        return cls(
            config=GLNetConfig(**arch),
            classes=ClassTable.from_list(data["classes"]),
            size_g=size_g, size_p=size_p,
            context_size=int(data["context"]["size"]),
            gsd=data["context"].get("gsd"),
            scaling=InputScaling(**data["input_scaling"]),
            stage=int(data["stage"]),
            provenance=dict(data.get("provenance", {})),
        )


@dataclass
class ModelFile:
    """A loaded model file: the network (eval mode), its metadata, and any training state."""

    model: GLNet
    info: ModelInfo
    training_state: Optional[dict[str, Any]] = None


def save_model(path: str | os.PathLike, model: GLNet, info: ModelInfo,
               training_state: Optional[dict[str, Any]] = None, *,
               overwrite: bool = False) -> None:
    """Write a model file atomically: checked, read back, then published under ``path``.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        OutputWriteError: The write failed (disk full, file size limit); nothing was published.
    """
    path = os.fspath(path)
    if info.config != model.config:
        raise ValueError("the metadata's architecture does not match the model")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **info.to_dict(),
        "l2g": model.has_l2g,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    check_payload(payload, path)

    def verify(tmp: str) -> None:
        try:
            _read_payload(tmp, path, mmap=True)
        except ModelFileError as exc:
            raise OutputWriteError(f"{path}: writing failed: the written file does not read "
                                   f"back ({str(exc).split(': ', 1)[-1]}); nothing was "
                                   "written") from None

    with atomic_output(path, ".pt", overwrite=overwrite, verify=verify) as tmp:
        with open(tmp, "wb") as raw:  # created as any file is: mode 0666 less the umask
            _save(payload, raw)


class _KeepWriteError:
    """A file for ``torch.save`` that remembers the first write error.

    torch reports a failed write (disk full, file size limit) only as a
    position mismatch in a RuntimeError; the OSError says what happened.
    """

    def __init__(self, file: Any) -> None:
        self.file = file
        self.error: Optional[OSError] = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.file.flush()


def _save(payload: dict[str, Any], file: Any) -> None:
    guarded = _KeepWriteError(file)
    try:
        torch.save(payload, guarded)  # type: ignore[arg-type]  # write() and flush() suffice
    except RuntimeError:
        if guarded.error is not None:
            raise guarded.error from None
        raise


def _read_payload(path: str, source: Optional[str] = None, mmap: bool = False
                  ) -> dict[str, Any]:
    """The checked payload of ``path``; messages name ``source`` (default: ``path``)."""
    source = source or path
    if not os.path.exists(path):
        raise ModelFileError(f"{source}: model file not found")
    if os.path.isdir(path):
        raise ModelFileError(f"{source}: is a folder, not a model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in detail or "Unsupported global" in detail:
            detail = "it holds Python objects, not a glnet model"
        raise ModelFileError(f"{source}: not a readable model file (truncated or corrupt?): "
                             f"{detail}") from None
    except OSError as exc:
        raise ModelFileError(f"{source}: cannot read model file ({exc.strerror or exc})") \
            from None
    except Exception as exc:  # torch.load raises assorted types on garbage input
        raise ModelFileError(f"{source}: not a readable model file ({type(exc).__name__})") \
            from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if isinstance(payload, dict) and any(str(k).startswith("module.") for k in payload):
            raise ModelFileError(
                f"{source}: this is a reference GLNet checkpoint, not a glnet model file; "
                "convert it with 'glnet convert-reference'")
        raise ModelFileError(f"{source}: not a glnet model file (no '{FORMAT}' header)")
    check_payload(payload, source)
    return payload


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> ModelFile:
    """Load a model file; every problem is a one-line :class:`ModelFileError`."""
    path = os.fspath(path)
    payload = _read_payload(path)
    info = ModelInfo.from_dict(payload)
    model = GLNet.from_config(info.config, l2g=payload["l2g"])
    config = info.config
    check_state_dict(model, payload["state_dict"], path,
                     f"{config.backbone}, width {config.width}")
    model.load_state_dict(payload["state_dict"])
    model.stage = info.stage
    return ModelFile(model.to(device).eval(), info, payload.get("training_state"))


def read_metadata(path: str | os.PathLike) -> tuple[ModelInfo, dict[str, Any]]:
    """The metadata and the header (format version, L2G flag) in one read; no network built."""
    path = os.fspath(path)
    payload = _read_payload(path)
    info = ModelInfo.from_dict(payload)
    return info, {"format_version": payload["format_version"], "l2g": payload["l2g"]}


def read_info(path: str | os.PathLike) -> ModelInfo:
    """Only the metadata (still reads the file, but builds no network)."""
    return read_metadata(path)[0]
