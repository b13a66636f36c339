"""What the synthetic dataset writers share: per-image seeds, argument checks, the worker pool.

Both writers (street scenes in the Cityscapes layout, indoor rooms in the NYUv2 ``.npy``
layout) render image ``index`` of ``split`` from :func:`scene_seed`, so a dataset is the same
whatever the number of worker processes and whichever images are regenerated.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from xtask_core.errors import XTaskError

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def scene_seed(seed: int, split: str, index: int) -> int:
    """Per-image seed from (dataset seed, split, index); splits never share a scene."""
    if split not in SPLIT_CODES:
        raise XTaskError(f"unknown split {split!r} (valid: {', '.join(SPLIT_CODES)})")
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, SPLIT_CODES[split], int(index)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def check_counts(n_train: int, n_val: int) -> None:
    """Refuse negative counts and an empty dataset."""
    if n_train < 0 or n_val < 0 or n_train + n_val == 0:
        raise XTaskError(f"need at least one image (n_train={n_train}, n_val={n_val})")


def prepare_root(out) -> Path:
    """``out`` as a Path, created if missing; an existing non-folder is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XTaskError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_atomic(path: Path, write: Callable[[object], None]) -> None:
    """``write(binary file)`` into ``.<name>.<pid>.tmp`` next to ``path``, then rename onto it:
    readers never see half a file, and the temporary name is the pattern
    :func:`xtask_core.io.atomic.remove_stale_tmp` recognises. A plain ``open`` (not mkstemp)
    so the file gets the usual umask permissions: a dataset is often shared between users."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as err:
        raise XTaskError(f"could not write {path} ({err.strerror or err})") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_atomic` for a UTF-8 text file."""
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def _call(fn_and_args):
    fn, args = fn_and_args
    cv2.setNumThreads(1)   # one process per core already; OpenCV threads would oversubscribe
    return fn(*args)


def run_jobs(write: Callable, jobs: Sequence[tuple], workers: int,
             progress: Callable[[int, int], None] | None) -> None:
    """``write(*job)`` for every job, in ``workers`` processes when more than one.

    ``write`` must be a module-level function (the pool pickles it by name). Worker processes
    are spawned, not forked: the caller may hold torch or threads. ``progress(done, total)`` is
    called in this process after each job.
    """
    total = len(jobs)
    if workers and workers > 1 and total > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(int(workers), total)) as pool:
            for done, _ in enumerate(pool.imap_unordered(_call, [(write, j) for j in jobs], chunksize=4), 1):
                if progress:
                    progress(done, total)
    else:
        for done, job in enumerate(jobs, 1):
            write(*job)
            if progress:
                progress(done, total)
