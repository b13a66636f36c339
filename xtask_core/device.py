"""The device rule, in one place: a parameter everywhere, CUDA when present unless told otherwise."""
from __future__ import annotations

import torch

from xtask_core.errors import XTaskError


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` → CUDA if available, else CPU. An unavailable CUDA request is an error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XTaskError("CUDA was requested but no CUDA device is available; use --cpu / device='cpu'")
    return dev
