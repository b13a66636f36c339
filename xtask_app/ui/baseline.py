"""The confidence baseline beside the consistency energy, per pixel: the one rendering used by the
Error maps page (its energy-vs-error analysis) and the Learn page (step 3, and how both behave
as a corruption rises). Numbers from :mod:`xtask_core.evaluate.baseline`."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from xtask_app import cache
from xtask_app.charts import chart
from xtask_core.evaluate.analysis import CORRUPTIONS
from xtask_core.evaluate.baseline import corruption_sweep, pixel_study, study_table
from xtask_core.io.keys import array_key

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SWEEP_MEASURED = (
    "Measured on this machine, demo-consistency model, 10 fresh synthetic images (mean AUROC for wrong pixels, "
    "energy vs entropy, clean → strength 1): noise 0.85 vs 0.94 → 0.84 vs 0.63 and darkening → 0.66 vs 0.48 "
    "(the energy holds up, the confidence collapses); blur → 0.69 vs 0.83 and occlusion → 0.52 vs 0.60 (the "
    "confidence stays ahead). It depends on the shift.")
NOTE = ("Softmax entropy and 1 − max probability are the model's own confidence: free, label-free, and the "
        "baseline any warning light must beat. The consistency energy is worth its extra forward passes only "
        "where it finds errors the confidence misses.")


def energy_or_confidence(e: float, h: float, *, margin: float, does: str, do: str, measure: str, fmt: str,
                         missing: str) -> str:
    """One honest sentence on which score (energy ``e`` or entropy ``h``, higher = better) wins
    by more than ``margin``: "Here the energy {does} better than the model's own confidence …",
    the converse, or "Energy and entropy {do} about equally well …"; ``missing`` when either is
    not finite. The values follow in brackets, as ``measure`` ``fmt``-formatted numbers."""
    if not (math.isfinite(e) and math.isfinite(h)):
        return missing
    first, second = (e, h) if e >= h else (h, e)
    values = f"({measure} {first:{fmt}} vs {second:{fmt}})"
    if e > h + margin:
        return f"Here the energy {does} better than the model's own confidence {values}."
    if h > e + margin:
        return f"Here the model's own confidence (entropy) {does} better than the energy {values}."
    return f"Energy and entropy {do} about equally well ({measure} {e:{fmt}} vs {h:{fmt}})."


def verdict(study: pd.DataFrame) -> str:
    """Does the energy find wrong pixels better than the entropy (by AUROC)?"""
    if study.empty:
        return "Needs segmentation ground truth."
    s = study.set_index("score")["auroc"]
    return energy_or_confidence(float(s.get("seg_energy", math.nan)), float(s.get("entropy", math.nan)),
                                margin=0.01, does="finds the wrong pixels", do="find the wrong pixels",
                                measure="AUROC", fmt=".3f",
                                missing="Every labelled pixel is right (or every one wrong): nothing to rank.")


def pixel_baseline(preds: Sequence, gt_segs: Sequence, ignore_index: int, where: str, key: str) -> pd.DataFrame:
    """Table of AUROC / Spearman / AUSE / AURG for the energy and the two confidence scores over the
    labelled pixels of ``preds`` (pooled), with the verdict; returns the study (empty without labels)."""
    pairs = [(p, g) for p, g in zip(preds, gt_segs) if p.seg_logits is not None and p.seg_t_logits is not None]
    study = pixel_study([p for p, _ in pairs], [g for _, g in pairs], ignore_index)   # single-task nets: none
    st.markdown(f"**Energy beside the model's own confidence** ({where}, wrongly classified pixels)")
    if study.empty:
        st.info("Needs segmentation ground truth.")
        return study
    st.dataframe(study_table(study), hide_index=True, key=f"{key}_table", column_config={
        c: st.column_config.NumberColumn(format="%.3f") for c in ("AUROC (wrong pixels)", "Spearman ρ")})
    st.caption(verdict(study) + " " + NOTE)
    return study


def sweep_figure(sweep: pd.DataFrame, kind: str) -> go.Figure:
    """AUROC of energy and entropy (left axis) and the error rate (right axis) against the strength."""
    fig = go.Figure()
    x = sweep["strength"]
    fig.add_trace(go.Scatter(x=x, y=sweep["auroc_energy"], name="AUROC: energy", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=x, y=sweep["auroc_entropy"], name="AUROC: entropy (baseline)", mode="lines+markers",
                             line=dict(dash="dash")))
    fig.add_trace(go.Scatter(x=x, y=sweep["error_rate"], name="wrong pixels (share)", yaxis="y2",
                             mode="lines+markers", line=dict(color="grey", dash="dot")))
    fig.update_layout(title=f"{kind}: who finds the wrong pixels as the corruption rises",
                      xaxis_title=f"{kind} strength", yaxis=dict(title="AUROC (0.5 = chance)"),
                      yaxis2=dict(title="wrong pixels", overlaying="y", side="right", rangemode="tozero"),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def sweep_sentence(sweep: pd.DataFrame, kind: str) -> str:
    """How both scores moved from the clean input to the strongest corruption, in one sentence."""
    first, last = sweep.iloc[0], sweep.iloc[-1]
    vals = [first["auroc_energy"], last["auroc_energy"], first["auroc_entropy"], last["auroc_entropy"]]
    if not all(np.isfinite(vals)):
        return "Needs segmentation ground truth with both right and wrong pixels at every strength."
    gain = (vals[1] - vals[3]) - (vals[0] - vals[2])     # how much the energy's lead grew (or its lag shrank)
    held = "the energy holds up better" if gain > 0.01 else "the energy does not hold up better than the entropy"
    return (f"From {first['strength']:g} to {last['strength']:g} {kind}: wrong pixels "
            f"{100 * first['error_rate']:.1f}% → {100 * last['error_rate']:.1f}%; AUROC of the energy "
            f"{vals[0]:.3f} → {vals[1]:.3f}, of the entropy {vals[2]:.3f} → {vals[3]:.3f}: on this image and model "
            f"{held} as the input drifts from the training data.")


def corruption_baseline(predict: Callable[[np.ndarray], object], rgb: np.ndarray, gt_seg: np.ndarray | None,
                        ignore_index: int, key: str) -> pd.DataFrame | None:
    """A corruption picker and the sweep of :data:`STRENGTHS`: figure + sentence (Learn's step 3)."""
    if gt_seg is None:
        st.info("Measuring who finds the errors needs segmentation ground truth: pick a sample or a dataset item.")
        return None
    kind = st.selectbox("Corruption to sweep", list(CORRUPTIONS), key=f"{key}_kind")
    sweep = corruption_sweep(predict, rgb, gt_seg, ignore_index, kind, STRENGTHS)
    chart(sweep_figure(sweep, kind), key=f"{key}_fig")
    st.caption(sweep_sentence(sweep, kind) + " The consistency literature claims the energy holds up under "
               "distribution shift; this is the live model's answer on this image. " + SWEEP_MEASURED)
    return sweep


def learn_section(state, clean_rgb: np.ndarray, pred, gt_seg: np.ndarray | None) -> None:
    """Learn's step 3 addition: the baseline on the current input, then the sweep from the clean
    input (every prediction cached by image content, so redrawing never re-runs the model)."""
    pixel_baseline([pred], [gt_seg], state.ignore_index, "the current input", "learn_bl")
    if pred.seg_t_logits is not None:
        corruption_baseline(lambda img: cache.predict(state, img, array_key(img)), clean_rgb, gt_seg,
                            state.ignore_index, "learn_sweep")
