"""Content keys: short, stable names for bytes and arrays, used to key caches."""
from __future__ import annotations

import hashlib

import numpy as np


def sha1_hex(data: bytes) -> str:
    """Content key of a file's bytes (an upload, an image): 40 hex chars."""
    return hashlib.sha1(data).hexdigest()


def array_key(a: np.ndarray) -> str:
    """Content key of an array: shape, dtype and bytes (40 hex chars). Equal arrays, equal keys."""
    h = hashlib.sha1(f"{a.shape}{a.dtype}".encode())
    h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()
