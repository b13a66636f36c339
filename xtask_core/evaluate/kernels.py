"""Compiled CPU kernels for the metrics (numba), run on several cores by plain threads.

:class:`~xtask_core.evaluate.metrics.SegDepthMetrics` spends its time in three passes over a batch: the
arg-max over the class axis of the logits (8×19×128×256 float32 = 20 MB for the benchmark
batch), the confusion-matrix count, and the depth sums. Each numpy or torch operation is one
pass over memory, and the metrics need about a dozen of them; the kernels here do the whole job
in ONE pass over the logits and one over the depth maps. Measured (``xtask bench``, 2-core AMD
EPYC, batch 8 × 19 classes × 128×256): 3.9-4.5 ms against 103-139 ms for the per-class loops
(23-33×); the numpy kernels take ≈ 12 ms (≈ 10×).

- :func:`seg_counts`: first-max arg-max (the same tie rule as ``torch.argmax``) fused with the
  per-image confusion count; labels can be given instead of logits.
- :func:`depth_sums`: n, Σ|d|, Σ|d|/t, Σd², and the three δ counts over pixels with t > 0 (and
  mask > 0), every value computed in float64 exactly as the reference does it, so the δ counts
  are identical and the sums differ only by summation order (≈ 1e-15 relative).

Work is cut into pixel blocks and shared out to ``threads()`` Python threads; the kernels are
compiled with ``nogil=True``, so the threads really run in parallel, and each call owns its
output arrays, so concurrent callers (several Streamlit sessions) are safe. numba's own
``parallel=True`` is not used: its default thread pool is not safe to enter from several
threads at once.

numba is a dependency (``requirements.txt``), but the metrics never depend on it: when it cannot
be imported or a kernel fails to compile, :func:`available` is False and the metrics use their
numpy kernels (same results, slower). The kernels themselves live in :mod:`._numba_kernels`;
their compiled code is cached in ``__pycache__``, so only the first use on a machine pays the
compile (≈ 3.5 s; later processes load them in ≈ 0.2 s after numba's ≈ 0.5 s import). The app
calls :func:`warm_in_background` at start-up.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["available", "unavailable_reason", "warm_in_background", "seg_counts", "seg_counts_labels",
           "depth_sums", "threads"]

MIN_PIXELS_PER_THREAD = 1 << 15  # below this a second thread costs more than it saves

_lock = threading.Lock()
_state: dict = {}       # "kernels": (seg, labels, depth) compiled functions, or "error": str
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_CORES = os.cpu_count() or 1


def _kernels():
    with _lock:
        if "kernels" not in _state and "error" not in _state:
            if os.environ.get("XTASK_NO_NUMBA"):
                _state["error"] = "disabled by XTASK_NO_NUMBA"
            else:
                try:
                    from xtask_core.evaluate import (
                        _numba_kernels as nk,  # compiled per dtype on first call, cached on disk
                    )

                    _state["kernels"] = (nk.seg_kernel, nk.label_kernel, nk.depth_kernel)
                    _warm(_state["kernels"])
                except Exception as err:  # noqa: BLE001 - no numba, or it cannot compile here
                    _state.pop("kernels", None)
                    _state["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        return _state.get("kernels")


def _warm(k) -> None:
    """Compile (or load from the disk cache) the common specialisations now, once."""
    seg, lab, dep = k
    c = np.zeros((1, 3, 2), np.int64)
    seg(np.zeros((1, 2, 4), np.int32), np.zeros((1, 4), np.int64), 250, 0, 1, c)
    lab(np.zeros((1, 4), np.int64), np.zeros((1, 4), np.int64), 250, 0, 4, c)
    z = np.ones(4, np.float32)
    dep(z, z, z, True, 0, 4, np.zeros(7))


def warm_in_background() -> None:
    """Load (or, the first time on a machine, compile) the kernels in a daemon thread, once per
    process, so the first metrics a user asks for do not wait for it. Safe to call repeatedly."""
    with _lock:
        if _state.get("warming") or "kernels" in _state or "error" in _state:
            return
        _state["warming"] = True
    threading.Thread(target=_kernels, name="xtask-kernel-warmup", daemon=True).start()


def available() -> bool:
    """True when the compiled kernels can be used (numba imported and compiled them)."""
    return _kernels() is not None


def unavailable_reason() -> str:
    """Why :func:`available` is False ('' when it is True)."""
    return "" if available() else _state.get("error", "")


def threads() -> int:
    """Threads the kernels use: torch's intra-op thread count (what the user set), at most the cores."""
    try:
        import torch  # lazy: the kernels themselves are numpy + numba only

        want = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        want = 1
    return max(1, min(want, _CORES, 8))


def _shared(kernel, args: tuple, total: int, pixels: int, out_shape: tuple, out_dtype) -> tuple[np.ndarray, list]:
    """Run ``kernel(*args, lo, hi, out)`` over ``[0, total)`` cut into one share per thread (fewer
    when ``pixels`` is small), each share into its own zeroed ``out``; the calling thread runs the
    first share. Returns (the outs summed, each share's return value)."""
    global _pool, _pool_size
    k = max(1, min(threads(), pixels // MIN_PIXELS_PER_THREAD, total))
    bounds = [(total * j // k, total * (j + 1) // k) for j in range(k)]
    outs = [np.zeros(out_shape, out_dtype) for _ in bounds]
    futures = []
    if k > 1:
        with _lock:
            if _pool is None or _pool_size < k - 1:
                _pool, _pool_size = ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="xtask-kernel"), k - 1
            pool = _pool
        futures = [pool.submit(kernel, *args, lo, hi, out) for (lo, hi), out in zip(bounds[1:], outs[1:])]
    first = kernel(*args, *bounds[0], outs[0])
    returns = [first, *(f.result() for f in futures)]
    return sum(outs[1:], outs[0]), returns


def seg_counts(logits: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray | None:
    """Per-image confusion counts from float32 logits N×C×P and int64 targets N×P → N×C×C int64.

    Rows are target classes, columns the arg-max class; targets outside [0, C) or equal to
    ``ignore_index`` are not counted. Returns None when a logit is NaN (the caller then uses
    torch's arg-max and its NaN rule) or the kernels are unavailable.
    """
    k = _kernels()
    if k is None:
        return None
    n, c, p = logits.shape
    from xtask_core.evaluate._numba_kernels import BLOCK

    counts, nans = _shared(k[0], (logits.view(np.int32), target, ignore_index), n * -(-p // BLOCK), n * p,
                           (n, c + 1, c), np.int64)
    return None if any(nans) else counts[:, :c]


def seg_counts_labels(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray | None:
    """As :func:`seg_counts` for int64 labels N×P already in [0, C). None if unavailable."""
    k = _kernels()
    if k is None:
        return None
    n, p = target.shape
    c = int(num_classes)
    counts, _ = _shared(k[1], (pred, target, ignore_index), n * p, n * p, (n, c + 1, c), np.int64)
    return counts[:, :c]


def depth_sums(p: np.ndarray, t: np.ndarray, mask: np.ndarray | None) -> list[float] | None:
    """[n, Σ|p−t|, Σ|p−t|/t, Σ(p−t)², #δ<1.25, #δ<1.25², #δ<1.25³] over t > 0 (and mask > 0).

    p, t, mask: 1-D arrays of one float dtype (float32 or float64). None if unavailable.
    """
    k = _kernels()
    if k is None:
        return None
    use_mask = mask is not None
    sums, _ = _shared(k[2], (p, t, mask if use_mask else t, use_mask), t.size, t.size, (7,), np.float64)
    return [float(v) for v in sums]
