"""Device selection and mixed precision, written once for every command."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from glnet_cli.errors import InputError

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise InputError(f"--device {spec}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {spec}: no CUDA GPU is available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) present")
    elif device.type != "cpu":
        raise InputError(f"--device {spec}: use auto, cpu, cuda or cuda:N")
    return device


def autocast(device: torch.device, precision: str = "fp32") -> ContextManager:
    """Autocast on CUDA for fp16/bf16; plain fp32 elsewhere (CPU autocast is slower here)."""
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision}: use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)
