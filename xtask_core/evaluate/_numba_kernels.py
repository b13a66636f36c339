"""The numba kernels behind :mod:`xtask_core.evaluate.kernels` (imported only when they are first needed).

Module-level functions, so numba's on-disk cache (``cache=True``, in ``__pycache__``) can load
them: the first use on a machine compiles them (≈ 3.5 s), later processes load them in ≈ 0.2 s.
See :mod:`xtask_core.evaluate.kernels` for what they compute and how the work is shared out.
"""
import numpy as np
from numba import njit

BLOCK = 4096  # pixels per work item (16 KiB of each class plane; key and index scratch in L1/L2)

_OPTS = dict(nogil=True, cache=True, boundscheck=False, error_model="numpy")


@njit(inline="always")
def key_of(b):  # pragma: no cover - compiled
    # float32 bits → int32 key with the same order: negative floats get their magnitude bits
    # flipped; -0.0 (key -1) becomes +0.0; every NaN becomes the largest key, so that, as in
    # torch.argmax, the first NaN wins (and the caller is told, see below)
    low = np.int32(0x7FFFFFFF)
    key = b if b >= 0 else np.int32(b ^ low)
    key = key if key != -1 else np.int32(0)
    return key if (b & low) <= np.int32(0x7F800000) else low


@njit(inline="always")
def _bin(t, C, ignore):  # pragma: no cover - compiled
    """Confusion-matrix row of target label t: t itself, or C (dropped later) when unlabelled."""
    return t if (t >= 0 and t < C and t != ignore) else C


@njit(inline="always")
def _count(bins, L, out):  # pragma: no cover - compiled
    # Add 1 to out.flat[bins[k]] for k < L. Neighbouring pixels mostly share a bin, and a single
    # histogram makes every increment wait for the previous store to the same counter; four
    # interleaved copies break that chain (≈ 3× faster), and are summed at the end.
    flat = out.reshape(-1)
    m = flat.size
    h = np.zeros((4, m), np.int64)
    for k in range(L):
        h[k & 3, bins[k]] += 1
    for j in range(m):
        flat[j] += h[0, j] + h[1, j] + h[2, j] + h[3, j]


@njit(**_OPTS)
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
            best[k] = _bin(tg[k], C, ignore) * C + idx[k]  # reuse: the flat confusion bin
        _count(best, L, counts[i])
    return n_nan


@njit(**_OPTS)
def label_kernel(pred, target, ignore, lo, hi, counts):  # pragma: no cover - compiled
    # pred, target N×P int64 (pred already checked to lie in [0, C)), pixels lo..hi of the flat batch
    n, P = target.shape
    C = counts.shape[2]
    bins = np.empty(BLOCK, np.int64)
    f = lo
    while f < hi:  # image by image, a block at a time (no division per pixel)
        i = f // P
        s0 = f - i * P
        L = min(BLOCK, P - s0, hi - f)
        tg = target[i, s0:s0 + L]
        pr = pred[i, s0:s0 + L]
        for k in range(L):
            bins[k] = _bin(tg[k], C, ignore) * C + pr[k]
        _count(bins, L, counts[i])
        f += L


# "reassoc" lets LLVM keep several partial sums (vectorised reductions); it changes the
# summation order only: every quotient, difference and comparison is the exact IEEE one.
@njit(fastmath={"reassoc"}, **_OPTS)
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
