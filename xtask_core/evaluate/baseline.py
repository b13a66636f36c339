"""The confidence baseline beside the consistency energy, per pixel.

The consistency energy (KL between the direct and the transferred segmentation) is a
label-free warning light. The model's own confidence is another, and it is free: the softmax
entropy of the direct segmentation, or 1 − its largest class probability. Whether the energy
tells more than that confidence has to be measured, not assumed, so every place that shows the
energy's power to find errors shows these scores beside it, computed the same way.

- :func:`pixel_scores`: the three per-pixel scores of one prediction (H×W float64 each).
- :func:`pixel_study`: pooled over images, for each score, the AUROC for finding wrongly
  classified pixels, Spearman with the 0/1 error, and the sparsification areas.
- :func:`corruption_sweep`: the same as the input is corrupted more and more (the consistency
  literature claims the energy holds up under distribution shift; this measures it).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from xtask_core.evaluate.analysis import auroc, corrupt, sparsification, spearman, to_numpy

__all__ = ["PIXEL_SCORES", "pixel_scores", "pixel_study", "study_table", "corruption_sweep"]

#: per-pixel scores (higher = expected worse): name → label for people
PIXEL_SCORES = {
    "seg_energy": "consistency energy KL(direct ‖ transferred)",
    "entropy": "softmax entropy (baseline)",
    "one_minus_maxprob": "1 − max probability (baseline)",
}


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=0, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=0, keepdims=True))


def pixel_scores(seg_logits: Any, seg_t_logits: Any) -> dict[str, np.ndarray]:
    """The per-pixel scores of one prediction.

    Args:
        seg_logits, seg_t_logits: direct / transferred segmentation logits, C×H×W (numpy or torch).

    Returns ``{"seg_energy", "entropy", "one_minus_maxprob"}``: H×W float64 maps; energy =
    Σ_c p_c (log p_c − log q_c) with p = softmax(direct), q = softmax(transferred), in nats
    (the same quantity as :func:`xtask_core.evaluate.metrics.consistency_energy`); entropy =
    −Σ_c p_c log p_c in nats (0 = certain, ln C = uniform); 1 − max_c p_c in [0, 1 − 1/C].
    """
    s = to_numpy(seg_logits).astype(np.float64)
    t = to_numpy(seg_t_logits).astype(np.float64)
    if s.ndim != 3 or s.shape != t.shape:
        raise ValueError(f"expected two C×H×W logit arrays of one shape, got {s.shape} and {t.shape}")
    log_p, log_q = _log_softmax(s), _log_softmax(t)
    p = np.exp(log_p)
    return {"seg_energy": np.maximum((p * (log_p - log_q)).sum(0), 0.0),
            "entropy": np.maximum(-(p * log_p).sum(0), 0.0),
            "one_minus_maxprob": 1.0 - p.max(0)}


def pixel_study(preds: Sequence, gt_segs: Sequence, ignore_index: int, n_steps: int = 20) -> pd.DataFrame:
    """How well each per-pixel score finds the wrongly classified pixels, pooled over images.

    Args:
        preds: objects with ``seg_logits`` and ``seg_t_logits`` (C×H×W), e.g.
            :class:`~xtask_core.inference.predictor.Prediction`.
        gt_segs: matching H×W train-id ground truth (``ignore_index`` = void); None entries skipped.

    Returns one row per score of :data:`PIXEL_SCORES` with ``score``, ``label``, ``auroc``
    (0.5 = chance, 1 = perfect), ``spearman`` (with the 0/1 error), ``ause``, ``aurg``
    (sparsification over pixels, error-rate units), ``n_pixels`` and ``error_rate``; empty
    when no image has ground truth.
    """
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in PIXEL_SCORES}
    wrong: list[np.ndarray] = []
    for p, gt in zip(preds, gt_segs):
        if gt is None:
            continue
        gt = np.asarray(gt)
        valid = gt != ignore_index
        scores = pixel_scores(p.seg_logits, p.seg_t_logits)
        wrong.append((np.asarray(p.seg_logits).argmax(0) != gt)[valid])
        for k in PIXEL_SCORES:
            pooled[k].append(scores[k][valid])
    cols = ["score", "label", "auroc", "spearman", "ause", "aurg", "n_pixels", "error_rate"]
    if not wrong:
        return pd.DataFrame(columns=cols)
    w = np.concatenate(wrong)
    err = w.astype(np.float64)
    rows = []
    for k, label in PIXEL_SCORES.items():
        s = np.concatenate(pooled[k])
        sp = sparsification(err, s, n_steps=n_steps)
        rows.append({"score": k, "label": label, "auroc": auroc(s, w),
                     "spearman": spearman(s, err) if err.size > 1 else float("nan"),
                     "ause": sp["ause"], "aurg": sp["aurg"], "n_pixels": int(w.size),
                     "error_rate": float(err.mean()) if err.size else float("nan")})
    return pd.DataFrame(rows, columns=cols)


def study_table(study: pd.DataFrame) -> pd.DataFrame:
    """A :func:`pixel_study` result for people: one row per score, AUROC / Spearman / AUSE / AURG."""
    if study.empty:
        return study
    return study[["label", "auroc", "spearman", "ause", "aurg"]].rename(columns={
        "label": "score", "auroc": "AUROC (wrong pixels)", "spearman": "Spearman ρ", "ause": "AUSE ↓",
        "aurg": "AURG ↑"})


def corruption_sweep(predict: Callable[[np.ndarray], Any], rgb: np.ndarray, gt_seg: np.ndarray | None,
                     ignore_index: int, kind: str, strengths: Sequence[float], seed: int = 0) -> pd.DataFrame:
    """Energy and the confidence baseline as one corruption rises.

    Args:
        predict: H×W×3 uint8 → a prediction (``seg_logits``, ``seg_t_logits`` C×H×W at the size of
            ``gt_seg``), e.g. a cached :meth:`Predictor.predict`.
        rgb: the clean input, H×W×3 uint8 (at the model size, as ``Prediction.input_rgb``).
        gt_seg: H×W ground truth or None (then the error and AUROC columns are NaN).
        kind: one of :data:`xtask_core.evaluate.analysis.CORRUPTIONS`; strengths in [0, 1].

    Returns one row per strength: ``strength``, ``seg_energy`` and ``entropy`` (means over the
    image), ``error_rate`` (share of wrong labelled pixels), ``auroc_energy``, ``auroc_entropy``.
    """
    rows = []
    for level in strengths:
        img = corrupt(rgb, kind, float(level), seed=seed) if level > 0 else rgb
        p = predict(img)
        sc = pixel_scores(p.seg_logits, p.seg_t_logits)
        row = {"strength": float(level), "seg_energy": float(sc["seg_energy"].mean()),
               "entropy": float(sc["entropy"].mean()), "error_rate": float("nan"),
               "auroc_energy": float("nan"), "auroc_entropy": float("nan")}
        if gt_seg is not None:
            valid = np.asarray(gt_seg) != ignore_index
            w = (np.asarray(p.seg_logits).argmax(0) != gt_seg)[valid]
            row.update(error_rate=float(w.mean()) if w.size else float("nan"),
                       auroc_energy=auroc(sc["seg_energy"][valid], w),
                       auroc_entropy=auroc(sc["entropy"][valid], w))
        rows.append(row)
    return pd.DataFrame(rows)
