"""Error analysis behind the Error maps, Compare and Learn pages (pure functions).

Everything takes numpy arrays or torch tensors (tensors are moved to CPU numpy) and returns
numpy arrays, floats, small dicts or pandas DataFrames. Shapes: a "map" is H×W or N×H×W; a
segmentation output may be given as labels (same shape as the target) or as logits with the
class axis third from last (C×H×W or N×C×H×W). A depth map may carry a singleton channel axis
(1×H×W, N×1×H×W), which is squeezed.

"How well does consistency energy predict the real error?" (Zamir et al., CVPR 2020) is
measured three ways:

- **Sparsification** (:func:`sparsification`): remove pixels in order of decreasing energy and
  track the mean error of the pixels left; the *oracle* removes them in order of decreasing true
  error (the best any score can do). AUSE = area between the two curves (0 = energy ranks pixels
  exactly like the error); AURG = area between the random-order curve (flat at the mean error)
  and the energy curve (> 0 = better than chance).
- **Binned error** (:func:`binned_error`): mean error within energy-quantile bins.
- **Rank statistics**: Spearman correlation of energy with error, and AUROC of energy as a
  detector of "pixel is wrong" (0.5 = chance, 1 = perfect).

Also: input corruptions for the teaching page (:data:`CORRUPTIONS`, :func:`corrupt`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from xtask_core.errors import XTaskError

try:  # torch is a dependency of the package, but keep these helpers importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None


# --------------------------------------------------------------------------- conversions
def to_numpy(x: Any) -> np.ndarray:
    """Tensor (any device, any dtype) or array-like → numpy array (float16/bfloat16 → float32)."""
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _squeeze_channel(x: np.ndarray) -> np.ndarray:
    """Drop a singleton channel axis: 1×H×W → H×W, N×1×H×W → N×H×W."""
    if x.ndim == 3 and x.shape[0] == 1:
        return x[0]
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    return x


def to_labels(seg: Any, target_ndim: int | None = None) -> np.ndarray:
    """Labels from labels or logits. Logits are recognised by having one more axis than the
    target (class axis third from last); without a target, a float C×H×W / N×C×H×W is logits."""
    arr = to_numpy(seg)
    is_logits = (arr.ndim == target_ndim + 1) if target_ndim is not None else (
        np.issubdtype(arr.dtype, np.floating) and arr.ndim in (3, 4))
    if is_logits:
        return arr.argmax(axis=-3)
    return arr.astype(np.int64, copy=False)


# --------------------------------------------------------------------------- depth / seg errors
def depth_error_maps(pred: Any, target: Any, valid: Any | None = None) -> dict[str, np.ndarray]:
    """Per-pixel depth errors.

    Args:
        pred, target: depth maps of the same shape (H×W, N×H×W, optional singleton channel), in
            the same units (metres, or inverse depth/disparity as the model predicts).
        valid: optional bool mask; by default a pixel is valid where the target is finite and > 0
            (0 = no measurement, as in the datasets).

    Returns:
        dict with ``abs`` = |pred − target|, ``rel`` = |pred − target| / target (unitless),
        ``signed`` = pred − target, each float32 with **NaN on invalid pixels** (plots show gaps,
        nan-aware reductions skip them), and ``valid`` (bool).
    """
    p = _squeeze_channel(to_numpy(pred)).astype(np.float32)
    t = _squeeze_channel(to_numpy(target)).astype(np.float32)
    if p.shape != t.shape:
        raise ValueError(f"depth prediction {p.shape} and target {t.shape} differ in shape")
    ok = np.isfinite(t) & (t > 0) & np.isfinite(p)
    if valid is not None:
        v = _squeeze_channel(to_numpy(valid)).astype(bool)
        if v.shape != t.shape:
            raise ValueError(f"valid mask {v.shape} and target {t.shape} differ in shape")
        ok &= v
    signed = np.where(ok, p - t, np.nan).astype(np.float32)
    abs_err = np.abs(signed)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ok, abs_err / np.where(ok, t, 1.0), np.nan).astype(np.float32)
    return {"abs": abs_err, "rel": rel, "signed": signed, "valid": ok}


def seg_error_map(pred: Any, target: Any, ignore_index: int | None = None) -> dict[str, np.ndarray]:
    """Per-pixel segmentation errors.

    Args:
        pred: labels (same shape as target) or logits (class axis third from last).
        target: H×W or N×H×W integer labels; ``ignore_index`` pixels are not scored.

    Returns:
        dict with ``pred`` (int64 labels), ``wrong`` (bool, False on ignored pixels) and
        ``valid`` (bool, target != ignore_index).
    """
    t = to_numpy(target)
    if np.issubdtype(t.dtype, np.floating):
        t = np.where(np.isfinite(t), t, -1 if ignore_index is None else ignore_index)
    t = t.astype(np.int64)
    p = to_labels(pred, t.ndim)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
    valid = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    return {"pred": p, "wrong": valid & (p != t), "valid": valid}


def error_by_class(pred: Any, target: Any, num_classes: int, ignore_index: int | None = None,
                   class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Error rate per *true* class, and which class it is most often mistaken for.

    Returns a DataFrame with one row per class: ``class`` (index), ``name``, ``pixels``
    (valid pixels of that true class), ``wrong``, ``error_rate`` (NaN when the class is absent),
    ``confused_with`` (name of the most frequent wrong prediction, "" if none) and
    ``confused_share`` (its share of that class's wrong pixels).
    """
    err = seg_error_map(pred, target, ignore_index)
    t = to_numpy(target).astype(np.int64)[err["valid"]]
    p = err["pred"][err["valid"]]
    keep = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    conf = np.bincount(t[keep] * num_classes + p[keep],
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    pixels = conf.sum(1)
    wrong = pixels - np.diag(conf)
    off = conf.copy()
    np.fill_diagonal(off, 0)
    top = off.argmax(1)
    rows = []
    for k in range(num_classes):
        rows.append({
            "class": k, "name": names[k], "pixels": int(pixels[k]), "wrong": int(wrong[k]),
            "error_rate": float(wrong[k] / pixels[k]) if pixels[k] else float("nan"),
            "confused_with": names[top[k]] if wrong[k] else "",
            "confused_share": float(off[k, top[k]] / wrong[k]) if wrong[k] else float("nan"),
        })
    return pd.DataFrame(rows).set_index("class")


def disagreement(seg: Any, seg_t: Any) -> np.ndarray:
    """Bool map: direct and transferred segmentation pick different classes (argmax differ).
    Inputs are logits (C×H×W / N×C×H×W) or labels of equal shape."""
    a, b = to_numpy(seg), to_numpy(seg_t)
    if a.shape != b.shape:
        raise ValueError(f"direct {a.shape} and transferred {b.shape} segmentation differ in shape")
    if np.issubdtype(a.dtype, np.floating) and a.ndim in (3, 4):
        return a.argmax(-3) != b.argmax(-3)
    return a != b


def energy_maps(seg: Any, seg_t: Any, depth: Any, depth_t: Any) -> dict[str, np.ndarray | float]:
    """Consistency energy per pixel, as numpy (wraps :func:`xtask_core.evaluate.metrics.consistency_energy`).

    Args:
        seg, seg_t: direct / transferred segmentation logits, C×H×W or N×C×H×W.
        depth, depth_t: direct / transferred depth, H×W, 1×H×W, N×H×W or N×1×H×W.

    Returns:
        ``seg_kl`` (KL(direct ‖ transferred) in nats), ``depth_abs`` (|transferred − direct| in the
        depth unit), ``disagree`` (bool, argmax differ): H×W when the input had no batch axis,
        else N×H×W; plus ``seg_kl_mean`` and ``depth_abs_mean`` (floats).
    """
    from xtask_core.evaluate.metrics import (
        consistency_energy,  # metrics imports torch; keep this module light
    )

    s, st = to_numpy(seg).astype(np.float32), to_numpy(seg_t).astype(np.float32)
    batched = s.ndim == 4
    d, dt = to_numpy(depth).astype(np.float32), to_numpy(depth_t).astype(np.float32)
    if not batched:
        s, st = s[None], st[None]
        d, dt = _squeeze_channel(d)[None], _squeeze_channel(dt)[None]
    out = consistency_energy(torch.from_numpy(s), torch.from_numpy(st),
                             torch.from_numpy(np.ascontiguousarray(d)),
                             torch.from_numpy(np.ascontiguousarray(dt)))
    res = {"seg_kl": to_numpy(out["seg_kl"]), "depth_abs": to_numpy(out["depth_abs"]),
           "disagree": disagreement(s, st)}
    if not batched:
        res = {k: v[0] for k, v in res.items()}
    res["seg_kl_mean"] = float(out["seg_kl_mean"])
    res["depth_abs_mean"] = float(out["depth_abs_mean"])
    return res


# --------------------------------------------------------------------------- energy vs error
def _flat_valid(error: Any, energy: Any, valid: Any | None) -> tuple[np.ndarray, np.ndarray]:
    e = to_numpy(error).astype(np.float64).ravel()
    s = to_numpy(energy).astype(np.float64).ravel()
    if e.shape != s.shape:
        raise ValueError(f"error ({e.size} values) and energy ({s.size} values) differ in size")
    ok = np.isfinite(e) & np.isfinite(s)
    if valid is not None:
        v = to_numpy(valid).astype(bool).ravel()
        if v.shape != e.shape:
            raise ValueError("valid mask and error differ in size")
        ok &= v
    return e[ok], s[ok]


def _remaining_mean(err_sorted_desc: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Mean of what is left after dropping the first ``round(f·n)`` entries, for each f."""
    n = err_sorted_desc.size
    csum = np.concatenate([[0.0], np.cumsum(err_sorted_desc)])
    removed = np.minimum(np.round(fractions * n).astype(np.int64), n - 1)  # keep ≥ 1 pixel
    return (csum[-1] - csum[removed]) / (n - removed)


def sparsification(error: Any, energy: Any, valid: Any | None = None, n_steps: int = 20
                   ) -> dict[str, Any]:
    """Sparsification curves of ``energy`` against ``error`` and the oracle.

    Args:
        error: per-pixel true error (any shape; e.g. |depth error|, or 0/1 "wrong").
        energy: per-pixel score of the same shape (higher = expected to be worse).
        valid: optional bool mask; NaN/Inf pixels in either input are dropped as well.
        n_steps: number of removal fractions: 0, 1/n_steps, …, (n_steps−1)/n_steps.

    Returns:
        dict: ``fractions`` (n_steps,), ``energy_curve``, ``oracle_curve``, ``random_curve``
        (mean error of the remaining pixels; random is the flat expectation), ``ause`` (area
        between energy and oracle curves, error units × fraction; trapezoid rule), ``aurg``
        (area between random and energy curves), ``ause_rel`` (ause / mean error, unitless) and
        ``n_pixels``. With no valid pixel the curves are empty and the areas NaN.
        Ties in energy keep their input order (stable sort).
    """
    e, s = _flat_valid(error, energy, valid)
    fractions = np.arange(n_steps, dtype=np.float64) / n_steps
    if e.size == 0:
        nan = float("nan")
        return {"fractions": fractions, "energy_curve": np.full(n_steps, nan),
                "oracle_curve": np.full(n_steps, nan), "random_curve": np.full(n_steps, nan),
                "ause": nan, "aurg": nan, "ause_rel": nan, "n_pixels": 0}
    by_energy = e[np.argsort(-s, kind="stable")]
    by_error = np.sort(e)[::-1]
    energy_curve = _remaining_mean(by_energy, fractions)
    oracle_curve = _remaining_mean(by_error, fractions)
    mean = float(e.mean())
    random_curve = np.full(n_steps, mean)
    ause = float(np.trapezoid(energy_curve - oracle_curve, fractions))
    aurg = float(np.trapezoid(random_curve - energy_curve, fractions))
    return {"fractions": fractions, "energy_curve": energy_curve, "oracle_curve": oracle_curve,
            "random_curve": random_curve, "ause": ause, "aurg": aurg,
            "ause_rel": ause / mean if mean > 0 else float("nan"), "n_pixels": int(e.size)}


def rankdata(x: Any) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (like scipy.stats.rankdata 'average')."""
    x = np.asarray(x).ravel()
    order = np.argsort(x, kind="stable")
    xs = x[order]
    # Start index of each run of equal values; every member gets the run's mean rank.
    starts = np.flatnonzero(np.concatenate([[True], xs[1:] != xs[:-1]]))
    ends = np.concatenate([starts[1:], [x.size]])
    avg = (starts + ends + 1) / 2.0          # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation (average ranks for ties); NaN if either input is constant."""
    ra, rb = rankdata(a), rankdata(b)
    if ra.size != rb.size:
        raise ValueError("spearman needs inputs of equal size")
    if ra.size < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def auroc(score: Any, positive: Any) -> float:
    """Area under the ROC curve of ``score`` for detecting ``positive`` (bool), via the
    Mann–Whitney statistic with average ranks for ties. NaN if only one class is present."""
    s = np.asarray(score, np.float64).ravel()
    y = np.asarray(positive).astype(bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binned_error(error: Any, energy: Any, valid: Any | None = None, n_bins: int = 10
                 ) -> pd.DataFrame:
    """Mean error per energy-quantile bin (bins hold equal pixel counts, split by rank so
    ties cannot empty a bin).

    Returns a DataFrame indexed by ``bin`` (0 = lowest energy) with ``energy_lo``,
    ``energy_hi``, ``energy_mean``, ``error_mean`` and ``count``.
    """
    e, s = _flat_valid(error, energy, valid)
    cols = ["energy_lo", "energy_hi", "energy_mean", "error_mean", "count"]
    if e.size == 0:
        return pd.DataFrame(columns=cols).rename_axis("bin")
    order = np.argsort(s, kind="stable")
    bins = np.empty(e.size, np.int64)
    bins[order] = np.arange(e.size) * n_bins // e.size
    rows = []
    for b in range(min(n_bins, e.size)):
        m = bins == b
        rows.append({"bin": b, "energy_lo": float(s[m].min()), "energy_hi": float(s[m].max()),
                     "energy_mean": float(s[m].mean()), "error_mean": float(e[m].mean()),
                     "count": int(m.sum())})
    return pd.DataFrame(rows).set_index("bin")


def energy_error_report(energy: Any, error: Any, wrong: Any | None = None, valid: Any | None = None,
                        n_steps: int = 20) -> dict[str, float]:
    """Summary numbers of how well ``energy`` predicts ``error``: ``spearman``, ``ause``,
    ``aurg``, ``ause_rel``, ``n_pixels`` and, when ``wrong`` (bool map) is given, ``auroc``."""
    e, s = _flat_valid(error, energy, valid)
    sp = sparsification(error, energy, valid, n_steps)
    out = {"spearman": spearman(s, e) if e.size else float("nan"),
           "ause": sp["ause"], "aurg": sp["aurg"], "ause_rel": sp["ause_rel"],
           "n_pixels": sp["n_pixels"]}
    if wrong is not None:
        s_all = to_numpy(energy).astype(np.float64).ravel()
        w = to_numpy(wrong).astype(bool).ravel()
        ok = np.isfinite(s_all)
        if valid is not None:
            ok &= to_numpy(valid).astype(bool).ravel()
        out["auroc"] = auroc(s_all[ok], w[ok])
    return out


# --------------------------------------------------------------------------- corruptions
def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur_axis(img: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    r = len(k) // 2
    pad = [(0, 0)] * img.ndim
    pad[axis] = (r, r)
    p = np.pad(img, pad, mode="reflect" if img.shape[axis] > r else "edge")
    out = np.zeros_like(img)
    n = img.shape[axis]
    for i, w in enumerate(k):   # a short loop over taps, vectorised over the image
        out += w * np.take(p, np.arange(i, i + n), axis=axis)
    return out


def _noise(rgb, strength, rng):
    # Gaussian noise, sigma up to 80 grey levels: clearly visible, content still recognisable.
    return rgb.astype(np.float64) + rng.normal(0.0, 80.0 * strength, rgb.shape)


def _blur(rgb, strength, rng):
    sigma = 6.0 * strength   # up to σ = 6 px
    if sigma < 0.3:
        return rgb.astype(np.float64)
    k = _gaussian_kernel(sigma)
    return _blur_axis(_blur_axis(rgb.astype(np.float64), k, 0), k, 1)


def _occlusion(rgb, strength, rng):
    # A mid-grey rectangle covering up to half of the image, placed by the seed.
    out = rgb.astype(np.float64).copy()
    h, w = rgb.shape[:2]
    area = 0.5 * strength
    bh, bw = int(round(h * np.sqrt(area))), int(round(w * np.sqrt(area)))
    if bh == 0 or bw == 0:
        return out
    y = int(rng.integers(0, h - bh + 1))
    x = int(rng.integers(0, w - bw + 1))
    out[y:y + bh, x:x + bw] = 128.0
    return out


def _brightness(rgb, strength, rng):
    # Darkening (dusk / under-exposure): strength 1 keeps 10 % of the light.
    return rgb.astype(np.float64) * (1.0 - 0.9 * strength)


def _contrast(rgb, strength, rng):
    # Pull every pixel towards the image mean; strength 1 = flat grey image.
    x = rgb.astype(np.float64)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return mean + (x - mean) * (1.0 - strength)


CORRUPTIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "noise": _noise,
    "blur": _blur,
    "occlusion": _occlusion,
    "brightness": _brightness,
    "contrast": _contrast,
}


def corrupt(rgb: np.ndarray, kind: str, strength: float, seed: int = 0) -> np.ndarray:
    """Apply a named corruption to an H×W×3 uint8 image; returns a new H×W×3 uint8 image.

    ``strength`` in [0, 1]: 0 leaves the image unchanged, 1 is the strongest setting
    (noise σ = 80 levels, blur σ = 6 px, occluder = ½ of the area, brightness × 0.1,
    contrast → flat). ``seed`` makes noise and occluder placement reproducible.
    """
    if kind not in CORRUPTIONS:
        raise XTaskError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)}")
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise XTaskError(f"corruption strength must be in [0, 1], got {strength}")
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise XTaskError(f"corrupt() needs an H×W×3 uint8 image, got {rgb.shape} {rgb.dtype}")
    if strength == 0.0:
        return rgb.copy()
    out = CORRUPTIONS[kind](rgb, strength, np.random.default_rng(seed))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
