"""Device selection and precision, written once for every command."""

from __future__ import annotations

import contextlib
import functools
from typing import ContextManager

import torch

from glnet_cli.errors import InputError

#: What ``--precision`` accepts; ``auto`` is resolved by :func:`resolve_precision`.
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

#: CPU flags of native bf16 arithmetic (AVX512-BF16, AMX); without them oneDNN
#: emulates bf16 and runs slower than fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


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


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively (Linux only; elsewhere: no)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return not NATIVE_BF16_FLAGS.isdisjoint(line.split(":", 1)[1].split())
    except OSError:
        pass
    return False


def resolve_precision(device: torch.device, asked: str = "auto", training: bool = False) -> str:
    """The precision a run computes in: ``fp32``, ``fp16`` or ``bf16``.

    ``auto`` picks the fastest one the device computes natively: bf16 on CUDA
    GPUs that support it and on CPUs with AVX512-BF16 or AMX, fp32 elsewhere;
    for inference, fp16 on older GPUs. Training takes bf16 the same way (it
    keeps fp32's exponent range, so it needs no loss scaling) but fp16 only
    when asked, since fp16 training depends on a gradient scaler. fp16 on the
    CPU is refused: no CPU this runs on computes it natively, so it is slower
    than fp32.
    """
    if asked not in PRECISIONS:
        raise InputError(f"--precision {asked}: use one of {', '.join(PRECISIONS)}")
    if asked == "auto":
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                return "bf16"
            return "fp32" if training else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if asked == "fp16" and device.type == "cpu":
        raise InputError("--precision fp16: the CPU has no fast float16 arithmetic; use bf16, "
                         "fp32 or auto (or run on a CUDA GPU)")
    return asked


def autocast(device: torch.device, precision: str = "fp32",
             training: bool = True) -> ContextManager:
    """Mixed precision for ``precision`` on ``device`` (CPU and CUDA); fp32 runs as is."""
    dtype = DTYPES[resolve_precision(device, precision, training)]
    if dtype is torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
