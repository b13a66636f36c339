"""Numeric precision choices shared by training, inference and the benchmarks.

"auto" picks mixed precision where the hardware runs it faster than fp32: bf16 (or fp16 where
bf16 is missing) on CUDA, bf16 on CPUs with AMX tiles, plain fp32 elsewhere. A CPU with
AVX512-BF16 but no AMX runs bf16 *slower* than fp32 (measured on a 2-core Xeon whose AMX the
hypervisor hides: 3×3 conv 145 vs 206-240 GFLOP/s, matmul 140 vs 254; AVX512-FP16 fp16 convs
150), so auto stays fp32 there. "fp32" is the exact reference path and is always selectable.
"""
from __future__ import annotations

import contextlib

import torch

from xtask_core.errors import XTaskError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_bf16_support() -> str:
    """What this CPU has for bf16 matrix work: "amx", "avx512_bf16" (instructions, no tiles) or
    "none" (torch then emulates bf16 matmuls at about 1 GFLOP/s)."""
    try:
        if torch.cpu._is_amx_tile_supported():
            return "amx"
        if torch.cpu._is_avx512_bf16_supported():
            return "avx512_bf16"
    except AttributeError:  # older torch: be conservative
        pass
    return "none"


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 instructions at all (AVX512-BF16 or AMX): bf16 runs, but is
    only faster than fp32 with AMX (see ``cpu_prefers_bf16``)."""
    return cpu_bf16_support() != "none"


def cpu_prefers_bf16() -> bool:
    """True when bf16 beats fp32 on this CPU, i.e. it has AMX tiles: what "auto" follows."""
    return cpu_bf16_support() == "amx"


def resolve_precision(device: torch.device | str, requested: str = "auto") -> str:
    """Map ``requested`` to what will actually run on ``device``: "fp32", "bf16" or "fp16"."""
    if requested not in PRECISIONS:
        raise XTaskError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    dev = torch.device(device)
    if requested == "auto":
        if dev.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if dev.type == "cpu" and cpu_prefers_bf16() else "fp32"
    if requested == "fp16" and dev.type == "cpu":
        raise XTaskError("fp16 autocast is for CUDA; on CPU use bf16 or fp32")
    return requested


def resolve_channels_last(device: torch.device | str, requested: bool | None = None) -> bool:
    """Channels-last for training? ``requested`` if given; auto (None): on CUDA and on CPUs with
    AMX, off elsewhere: with fp32 on a 2-core AVX2 CPU a channels-last training
    step of the full model took 33.6 s against 25.3 s contiguous (``xtask bench``)."""
    if requested is not None:
        return bool(requested)
    dev = torch.device(device)
    return dev.type == "cuda" or (dev.type == "cpu" and cpu_prefers_bf16())


def autocast(device: torch.device | str, precision: str):
    """Autocast context for a *resolved* precision (fp32 → no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device | str, precision: str):
    """A GradScaler for fp16 on CUDA (bf16 needs none); None otherwise."""
    if precision == "fp16" and torch.device(device).type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
