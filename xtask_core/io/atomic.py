"""Atomic file writes (temp file + rename) and clean-up of their leftovers."""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from xtask_core.errors import XTaskError

# atomic_path's temporary files: ".<target name>.<mkstemp's random letters>.tmp", next to the
# target. A hidden name with a ".tmp" suffix, so readers that look for exact names or suffixes
# (find_runs, checkpoint discovery, "*.safetensors" globs) never take one for the real file.
TMP_PREFIX, TMP_SUFFIX = ".", ".tmp"
_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]+\.tmp$")


def atomic_tmp_target(path: str | os.PathLike) -> str | None:
    """The file name an :func:`atomic_path` temporary file was going to become, or None when
    ``path``'s name is not such a temporary name (e.g. ``.best.safetensors.k2x8a_q1.tmp`` →
    ``best.safetensors``)."""
    m = _TMP_NAME.match(Path(path).name)
    return m.group("target") if m else None


def remove_stale_tmp(folder: str | os.PathLike, owned: tuple[str, ...] | frozenset = (),
                     min_age_s: float = 60.0) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_path` writer left in ``folder``.

    ``atomic_path`` removes its temporary file on any exception, but a SIGKILL (or power loss)
    during a save leaves ``.<name>.<random>.tmp`` behind (for a checkpoint: as large as the
    model). Only regular files directly in ``folder`` whose name matches that pattern are
    considered; sub-folders and other files are never touched.

    Args:
        folder: the folder to clean (missing → nothing to do).
        owned: target names only the caller writes (e.g. a trainer's checkpoints and
            progress.json): their temporary files are removed whatever their age, since no
            other writer can be mid-save.
        min_age_s: other temporary files (another process, e.g. the app writing job.json, may
            be writing right now) are removed only when unmodified for this many seconds.

    Returns:
        The paths removed (files that vanish meanwhile are skipped silently).
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        target = atomic_tmp_target(entry.name)
        if target is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if target not in owned and now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            os.unlink(entry.path)
        except OSError:     # gone already (its writer finished) or not ours to delete
            continue
        removed.append(Path(entry.path))
    return sorted(removed)


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse, with one line, a file path that cannot be written: an existing directory, or one
    whose nearest existing ancestor is not a writable directory. Long-running callers check
    before they start, so a mistyped output path does not cost the run."""
    path = Path(path)
    if path.is_dir():
        raise XTaskError(f"{path} is a directory, not a file")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise XTaskError(f"cannot write {path}: {parent} is not a writable directory")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    A crash or exception leaves ``path`` untouched and removes the temporary file, so a
    reader never sees a half-written file. (A SIGKILL cannot run that clean-up: the hidden
    ``.<name>.<random>.tmp`` stays until :func:`remove_stale_tmp` deletes it.) With ``overwrite=False`` an
    existing ``path`` is refused before anything is written.
    """
    path = check_output_file(path)
    if not overwrite and path.exists():
        raise XTaskError(f"refusing to overwrite existing file {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if not overwrite and path.exists():
            raise XTaskError(f"refusing to overwrite existing file {path}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = True) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
