"""The per-user cache folder and content hashes for cache keys.

:func:`cache_dir` is the one place that decides where xtask caches things it can recompute
(per-image evaluation records, tuning results): ``$XTASK_CACHE_DIR`` when set, else
``~/.cache/xtask``. Everything written there must be written atomically
(:mod:`xtask_core.io.atomic`), so a reader never sees a half-written entry.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from xtask_core.errors import XTaskError

__all__ = ["cache_dir", "file_sha256"]

ENV_VAR = "XTASK_CACHE_DIR"
_CHUNK = 1 << 20  # bytes read at a time when hashing (memory stays flat for GB files)


def cache_dir(sub: str | None = None, create: bool = True) -> Path:
    """The cache folder (``$XTASK_CACHE_DIR`` or ``~/.cache/xtask``), or its sub-folder ``sub``.

    Created when ``create`` (default). Raises :class:`XTaskError` (one line) when it cannot be.
    """
    base = os.environ.get(ENV_VAR) or str(Path.home() / ".cache" / "xtask")
    path = Path(base).expanduser()
    if sub:
        path = path / sub
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise XTaskError(f"cannot create the cache folder {path} ({err.strerror or err}); "
                             f"set {ENV_VAR} to a writable folder") from None
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks. XTaskError if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    except OSError as err:
        raise XTaskError(f"cannot read {path} ({err.strerror or err})") from None
    return h.hexdigest()
