"""Display helpers for looking at predictions: shared colour ranges, fixed energy scales, a
before/after wipe and stacked input corruptions. Arrays in, arrays or numbers out."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from xtask_core.errors import XTaskError
from xtask_core.evaluate.analysis import corrupt


def depth_range(maps: Iterable[np.ndarray | None]) -> tuple[float, float]:
    """One robust (vmin, vmax) shared by several depth maps (1st–99th percentile of their valid
    (finite, > 0) pixels), so panels side by side use the same colours for the same value.
    None entries are skipped; no valid pixel at all gives (0, 1)."""
    vals = [np.asarray(m, np.float64).ravel() for m in maps if m is not None]
    v = np.concatenate(vals) if vals else np.zeros(0)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def energy_scale(clean_map: np.ndarray, factor: float = 3.0, q: float = 99.0) -> float:
    """Fixed top of an energy colour scale: ``factor`` × the ``q``-th percentile of the clean
    image's energy (finite pixels), at least 1e-6. Fixing it on the clean image makes energy
    visibly *grow* when the input is corrupted instead of being re-normalised away."""
    v = np.asarray(clean_map, np.float64)
    v = v[np.isfinite(v)]
    top = float(np.percentile(v, q)) * factor if v.size else 0.0
    return max(1e-6, top)


def apply_corruptions(rgb: np.ndarray, strengths: Mapping[str, float], seed: int = 0) -> np.ndarray:
    """Apply several :func:`xtask_core.evaluate.analysis.corrupt` corruptions in the order given
    (e.g. noise, blur, occlusion, brightness; strengths in [0, 1]); zero strengths are skipped.
    H×W×3 uint8 in and out (always a new array)."""
    out = np.asarray(rgb)
    for i, (kind, strength) in enumerate(strengths.items()):
        if strength:
            out = corrupt(out, kind, float(strength), seed=seed + i)
    return out if out is not rgb else out.copy()


def wipe(before: np.ndarray, after: np.ndarray, position: float) -> np.ndarray:
    """Before/after wipe: columns left of ``position``·W come from ``after``, the rest from
    ``before``, with a 2-px white divider. Both H×W×3 uint8 of the same shape."""
    if before.shape != after.shape:
        raise XTaskError(f"wipe needs equal shapes, got {before.shape} and {after.shape}")
    w = before.shape[1]
    cut = int(round(np.clip(position, 0.0, 1.0) * w))
    out = before.copy()
    out[:, :cut] = after[:, :cut]
    if 0 < cut < w:
        out[:, max(0, cut - 1): cut + 1] = 255
    return out


def absent_outputs_note(pred) -> str:
    """One line naming what a Prediction lacks, "" when it has all four outputs: a single-task
    model predicts one task only (None for the other), and without transferred outputs there is
    no consistency energy."""
    has_seg, has_depth = pred.seg_logits is not None, pred.depth is not None
    has_transfer = pred.seg_t_logits is not None and pred.depth_t is not None
    if not has_seg and not has_depth:
        return "This prediction has neither segmentation nor depth."
    if not has_seg or not has_depth:
        task, other = ("depth", "segmentation") if has_seg is False else ("segmentation", "depth")
        return (f"This single-task model predicts {task} only: there is no {other}, and no transferred "
                "output or consistency energy.")
    if not has_transfer:
        return "This prediction has no transferred outputs, so there is no consistency energy."
    return ""
