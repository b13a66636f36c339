"""Compiled CPU kernels for the metrics (numba), run on several cores by plain threads.

:class:`~xtask_core.metrics.SegDepthMetrics` spends its time in three passes over a batch: the
arg-max over the class axis of the logits (8×19×128×256 float32 = 20 MB for the benchmark
batch), the confusion-matrix count, and the depth sums. Each numpy or torch operation is one
pass over memory, and the metrics need about a dozen of them; the kernels here do the whole job
in ONE pass over the logits and one over the depth maps, which is what makes the metrics ≈ 20×
faster than the per-class loops rather than ≈ 8×.

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
numpy kernels (same results, slower). Compiled code is cached next to this file
(``__pycache__``), so only the first use on a machine pays the compile (≈ 2-4 s).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

__all__ = ["available", "unavailable_reason", "seg_counts", "seg_counts_labels", "depth_sums", "threads"]

BLOCK = 4096            # pixels per work item (16 KiB of each class plane; key and index scratch in L1/L2)
MIN_PIXELS_PER_THREAD = 1 << 15  # below this a second thread costs more than it saves

_lock = threading.Lock()
_state: dict = {}       # "kernels": (seg, labels, depth) compiled functions, or "error": str
_pool: ThreadPoolExecutor | None = None
_CORES = os.cpu_count() or 1


def _compile():
    """Define the numba kernels (compiled lazily, per dtype, on first call; cached on disk)."""
    from numba import njit

    opts = dict(nogil=True, cache=True, boundscheck=False, error_model="numpy")

    @njit(inline="always")
    def key_of(b):  # pragma: no cover - compiled
        # float32 bits → int32 key with the same order: negative floats get their magnitude bits
        # flipped; -0.0 (key -1) becomes +0.0; every NaN becomes the largest key, so that, as in
        # torch.argmax, the first NaN wins (and the caller is told, see below)
        low = np.int32(0x7FFFFFFF)
        key = b if b >= 0 else np.int32(b ^ low)
        key = key if key != -1 else np.int32(0)
        return key if (b & low) <= np.int32(0x7F800000) else low

    @njit(**opts)
    def seg_kernel(bits, target, ignore, w0, w1, counts):  # pragma: no cover - compiled
        # bits: float32 logits N×C×P viewed as int32; target N×P int64; counts N×(C+1)×C int64
        # (row C = unlabelled). Work item w = pixel block w % nb of image w // nb. Floats are
        # compared through order-preserving int32 keys and the running maximum and its index
        # are blended with bit masks, not branches: the form LLVM turns into 8-wide AVX2 code
        # (a float compare-and-select loop stays scalar, ≈ 4× slower).
        n, C, P = bits.shape
        nb = (P + BLOCK - 1) // BLOCK
        best = np.empty(BLOCK, np.int32)
        idx = np.empty(BLOCK, np.int32)
        low = np.int32(0x7FFFFFFF)
        n_nan = 0
        for w in range(w0, w1):
            i = w // nb
            s0 = (w % nb) * BLOCK
            L = min(BLOCK, P - s0)
            src = bits[i, 0, s0:s0 + L]
            for k in range(L):
                best[k] = key_of(src[k])
                idx[k] = 0
            for c in range(1, C):
                src = bits[i, c, s0:s0 + L]
                ci = np.int32(c)
                for k in range(L):
                    key = key_of(src[k])
                    bk = best[k]
                    ik = idx[k]
                    mask = -np.int32(key > bk)  # strict: the first maximum wins, as argmax
                    best[k] = bk ^ ((bk ^ key) & mask)
                    idx[k] = ik ^ ((ik ^ ci) & mask)
            tg = target[i, s0:s0 + L]
            for k in range(L):
                n_nan += best[k] == low
                t = tg[k]
                row = C
                if t >= 0 and t < C and t != ignore:
                    row = t
                counts[i, row, idx[k]] += 1
        return n_nan

    @njit(**opts)
    def label_kernel(pred, target, ignore, lo, hi, counts):  # pragma: no cover - compiled
        # pred, target N×P int64 (pred already checked to lie in [0, C)), pixels lo..hi of the flat batch
        n, P = target.shape
        C = counts.shape[2]
        for f in range(lo, hi):
            i = f // P
            k = f - i * P
            t = target[i, k]
            row = C
            if t >= 0 and t < C and t != ignore:
                row = t
            counts[i, row, pred[i, k]] += 1

    # "reassoc" lets LLVM keep several partial sums (vectorised reductions); it changes the
    # summation order only: every quotient, difference and comparison is the exact IEEE one.
    @njit(fastmath={"reassoc"}, **opts)
    def depth_kernel(p, t, m, use_mask, lo, hi, out):  # pragma: no cover - compiled
        # p, t, m 1-D (m ignored unless use_mask); out: 7 float64 sums in _DEPTH_KEYS order.
        # Branch-free: an invalid pixel is computed as p = t = 1 (adds 0 to every sum) and
        # masked out of the counts, which is what lets the loop vectorise (≈ 2× faster).
        n = 0
        s_abs = 0.0
        s_rel = 0.0
        s_sq = 0.0
        d1 = 0
        d2 = 0
        d3 = 0
        for k in range(lo, hi):
            tv = np.float64(t[k])
            pv = np.float64(p[k])
            ok = tv > 0  # False for NaN too, as in the reference's mask
            if use_mask:
                ok = ok & (m[k] > 0)
            ts = tv if ok else 1.0
            ps = pv if ok else 1.0
            d = ps - ts
            ad = abs(d)
            n += ok
            s_abs += ad
            s_rel += ad / ts
            s_sq += d * d
            pc = 1e-6 if ps < 1e-6 else ps  # the reference's clip(p, 1e-6): NaN stays NaN
            r = max(pc / ts, ts / pc)
            d1 += ok & (r < 1.25)
            d2 += ok & (r < 1.5625)
            d3 += ok & (r < 1.953125)
        out[0] = n
        out[1] = s_abs
        out[2] = s_rel
        out[3] = s_sq
        out[4] = d1
        out[5] = d2
        out[6] = d3

    return seg_kernel, label_kernel, depth_kernel


def _kernels():
    with _lock:
        if "kernels" not in _state and "error" not in _state:
            if os.environ.get("XTASK_NO_NUMBA"):
                _state["error"] = "disabled by XTASK_NO_NUMBA"
            else:
                try:
                    _state["kernels"] = _compile()
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


def available() -> bool:
    """True when the compiled kernels can be used (numba imported and compiled them)."""
    return _kernels() is not None


def unavailable_reason() -> str:
    """Why :func:`available` is False ('' when it is True)."""
    return "" if available() else _state.get("error", "")


def threads() -> int:
    """Threads the kernels use: torch's intra-op thread count (what the user set), at most the cores."""
    try:
        import torch

        want = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        want = 1
    return max(1, min(want, _CORES, 8))


def _run(parts: list[Callable[[], object]]) -> list:
    global _pool
    if len(parts) == 1:
        return [parts[0]()]
    with _lock:
        if _pool is None or _pool._max_workers < len(parts) - 1:  # noqa: SLF001
            _pool = ThreadPoolExecutor(max_workers=max(len(parts) - 1, 1), thread_name_prefix="xtask-kernel")
        pool = _pool
    futures = [pool.submit(f) for f in parts[1:]]
    first = parts[0]()            # the calling thread does a share too
    return [first, *(f.result() for f in futures)]


def _split(total: int, pixels: int) -> list[tuple[int, int]]:
    k = max(1, min(threads(), pixels // MIN_PIXELS_PER_THREAD, total))
    return [(total * j // k, total * (j + 1) // k) for j in range(k)]


def seg_counts(logits: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray | None:
    """Per-image confusion counts from float32 logits N×C×P and int64 targets N×P → N×C×C int64.

    Rows are target classes, columns the arg-max class; targets outside [0, C) or equal to
    ``ignore_index`` are not counted. Returns None when a logit is NaN (the caller then uses
    torch's arg-max and its NaN rule) or the kernels are unavailable.
    """
    k = _kernels()
    if k is None:
        return None
    seg = k[0]
    n, c, p = logits.shape
    nb = -(-p // BLOCK)
    parts = _split(n * nb, n * p)
    outs = [np.zeros((n, c + 1, c), np.int64) for _ in parts]
    bits = logits.view(np.int32)
    nans = _run([lambda a=a, b=b, o=o: seg(bits, target, ignore_index, a, b, o)
                 for (a, b), o in zip(parts, outs)])
    if any(nans):
        return None
    return sum(outs[1:], outs[0])[:, :c]


def seg_counts_labels(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray | None:
    """As :func:`seg_counts` for int64 labels N×P already in [0, C). None if unavailable."""
    k = _kernels()
    if k is None:
        return None
    n, p = target.shape
    c = int(num_classes)
    parts = _split(n * p, n * p)
    outs = [np.zeros((n, c + 1, c), np.int64) for _ in parts]
    _run([lambda a=a, b=b, o=o: k[1](pred, target, ignore_index, a, b, o) for (a, b), o in zip(parts, outs)])
    return sum(outs[1:], outs[0])[:, :c]


def depth_sums(p: np.ndarray, t: np.ndarray, mask: np.ndarray | None) -> list[float] | None:
    """[n, Σ|p−t|, Σ|p−t|/t, Σ(p−t)², #δ<1.25, #δ<1.25², #δ<1.25³] over t > 0 (and mask > 0).

    p, t, mask: 1-D arrays of one float dtype (float32 or float64). None if unavailable.
    """
    k = _kernels()
    if k is None:
        return None
    n = t.size
    use_mask = mask is not None
    m = mask if use_mask else t
    parts = _split(n, n)
    outs = [np.zeros(7) for _ in parts]
    _run([lambda a=a, b=b, o=o: k[2](p, t, m, use_mask, a, b, o) for (a, b), o in zip(parts, outs)])
    return [float(v) for v in sum(outs[1:], outs[0])]
