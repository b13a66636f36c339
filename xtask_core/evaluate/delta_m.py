"""Multi-task gain Δm% over single-task baselines, and the one registry of metric directions.

Δm (Maninis et al., CVPR 2019; the field's standard summary of a multi-task model)::

    Δm% = 100 · mean over metrics j of  s_j · (M_mtl,j − M_stl,j) / M_stl,j

with ``s_j = +1`` when higher is better and ``−1`` when lower is better, so a positive Δm means
the multi-task model beats its single-task baselines on average. ``M_stl`` comes from two
single-task nets: segmentation metrics from the ``segmt`` one, depth metrics from the ``depth``
one (:func:`combine_baselines`). Both sides must be evaluated on the same images with the same
metric code (:class:`~xtask_core.evaluate.metrics.SegDepthMetrics`).

:data:`HIGHER_IS_BETTER` is the single source of which way each metric points; pages and
reports read it rather than keeping their own copy.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from xtask_core.errors import XTaskError

__all__ = ["HIGHER_IS_BETTER", "SEG_METRICS", "DEPTH_METRICS", "DELTA_M_METRICS",
           "higher_is_better", "combine_baselines", "delta_m_terms", "delta_m"]

#: metric name (a key of ``SegDepthMetrics.compute()`` or of a run's metrics) → True when a
#: larger value is better. ``loss`` is the validation loss runs log (lower is better).
HIGHER_IS_BETTER: dict[str, bool] = {
    "pixel_acc": True, "miou": True, "miou_per_image": True,
    "delta1": True, "delta2": True, "delta3": True,
    "abs": False, "abs_rel": False, "rmse": False,
    "loss": False,
}
SEG_METRICS = ("pixel_acc", "miou", "miou_per_image")
DEPTH_METRICS = ("abs", "abs_rel", "rmse", "delta1", "delta2", "delta3")
#: the default Δm set: the four columns of the original paper's table (mIoU, Pix Acc, Abs,
#: Abs Rel), two per task so neither task outweighs the other. ``miou`` is the dataset-level one.
DELTA_M_METRICS = ("miou", "pixel_acc", "abs", "abs_rel")


def higher_is_better(name: str) -> bool:
    """Direction of metric ``name``; :class:`XTaskError` for a name without one."""
    try:
        return HIGHER_IS_BETTER[name]
    except KeyError:
        raise XTaskError(f"no direction known for metric {name!r} "
                         f"(known: {', '.join(HIGHER_IS_BETTER)})") from None


def combine_baselines(seg_stl: Mapping[str, float], depth_stl: Mapping[str, float]) -> dict[str, float]:
    """One baseline dict: :data:`SEG_METRICS` from the segmentation net's metrics, :data:`DEPTH_METRICS`
    from the depth net's (keys absent from a side are left out)."""
    out = {k: seg_stl[k] for k in SEG_METRICS if k in seg_stl}
    out.update({k: depth_stl[k] for k in DEPTH_METRICS if k in depth_stl})
    return out


def _usable(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def delta_m_terms(mtl: Mapping[str, float], stl: Mapping[str, float],
                  metrics: Sequence[str] = DELTA_M_METRICS) -> dict[str, float]:
    """Per-metric signed relative change in percent, ``s_j · (M_mtl − M_stl) / M_stl · 100``.

    Metrics missing or non-finite on either side, or with ``M_stl == 0`` (no relative change
    defined), are left out of the result; the caller can tell which by the keys.
    """
    out = {}
    for name in metrics:
        sign = 1.0 if higher_is_better(name) else -1.0
        m, s = mtl.get(name), stl.get(name)
        if not (_usable(m) and _usable(s)) or s == 0:
            continue
        out[name] = sign * (float(m) - float(s)) / float(s) * 100.0
    return out


def delta_m(mtl: Mapping[str, float], stl: Mapping[str, float],
            metrics: Sequence[str] = DELTA_M_METRICS) -> float:
    """Δm% of ``mtl`` over ``stl`` (dicts metric → value) across ``metrics``.

    The mean of :func:`delta_m_terms`; NaN when no metric is usable on both sides. Values are
    taken as they are: fractions and percentages give the same Δm as long as both sides agree.
    """
    terms = delta_m_terms(mtl, stl, metrics)
    return sum(terms.values()) / len(terms) if terms else math.nan
