"""Energy against error over a split, always beside the softmax-entropy baseline, and the
label-free failure finder. Figures from :func:`xtask_core.evaluate.record_summary.score_vs_error`
and :func:`~xtask_core.evaluate.record_summary.score_curves`."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from xtask_app.charts import chart
from xtask_app.downloads import download_csv
from xtask_app.ui import dataset_views as views
from xtask_app.ui.baseline import energy_or_confidence
from xtask_core.evaluate import record_summary as rs
from xtask_core.viz import figures

SCORES = ("seg_energy", "seg_entropy")
HONEST = (
    "**What energy can and cannot tell.** The consistency energy measures how much the two routes to the "
    "answer disagree (the direct segmentation and the one transferred from the predicted depth). High energy "
    "flags images where the tasks do not fit together: unusual scenes, corruptions, confusing objects. It "
    "cannot see a mistake both routes make the same way (a confidently wrong, consistent prediction), it "
    "does not know the labels, and a checkpoint trained without the consistency losses has transfer nets "
    "that disagree everywhere, so its energy ranks nothing. It is a ranking to look at first, not an error "
    "measurement: check the top images yourself.")
LIVE_MODEL = (
    "Measured on this machine with the shipped demo-consistency model on 60 fresh synthetic images (seed "
    "160607): per-image Spearman with the pixel error rate 0.53 for the energy and 0.70 for the softmax "
    "entropy; precision of the 20 top-ranked among the 20 worst 0.55 (energy) vs 0.60 (entropy), chance "
    "0.33; with per-image mIoU as the error, −0.12 vs 0.19 (per-image mIoU mostly reflects which rare "
    "classes are present). Per pixel (first 30 of those images) the AUROC for finding wrong pixels is "
    "{px_energy} for the energy, {px_entropy} for the entropy and {px_maxprob} for 1 − max probability. "
    "On 200 other fresh images (seed 916016) the same order holds: Spearman 0.61 vs 0.78, precision@20 0.30 vs "
    "0.45 (chance 0.10). On this model the energy tells less than the model's own confidence; it is free and "
    "label-free, but not better.")
PIXEL_AUROC = {"px_energy": "0.86", "px_entropy": "0.95", "px_maxprob": "0.95"}


def _fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.2f}"


def verdict(row_e: pd.Series, row_h: pd.Series) -> str:
    """One sentence comparing energy and entropy on one checkpoint (by Spearman)."""
    return energy_or_confidence(row_e["spearman"], row_h["spearman"], margin=0.05,
                                does="ranks images by their real error", do="rank the images",
                                measure="Spearman", fmt=".2f",
                                missing="Too few labelled images to compare.")


def energy_vs_error(df: pd.DataFrame, key: str = "ds") -> None:
    """Per checkpoint: Spearman, precision@k and the pooled sparsification curve of the energy and
    of the entropy against the chosen per-image error. ``key`` prefixes the widget keys (the
    Dataset page: "ds"; Error maps uses the same figures under its own prefix)."""
    if not views.labelled(df):
        st.info("Needs ground truth: evaluate a dataset split (or the shipped samples). For a folder of "
                "unlabelled images use the failure finder.")
        return
    c1, c2 = st.columns(2)
    error = c1.radio("Error measure", list(views.ERROR_NAMES), format_func=views.ERROR_NAMES.get, key=f"{key}_err",
                     horizontal=True)
    n = int(df.groupby("checkpoint").size().min())
    k = int(c2.slider("k (top-k energy among the k worst)", 1, n, max(1, min(20, n // 3)),
                      key=f"{key}_k")) if n > 1 else 1
    res = rs.score_vs_error(df, scores=SCORES, errors=(error,), k=k)
    table = res.assign(checkpoint=[views.short(c) for c in res["checkpoint"]],
                       score=[views.SCORE_NAMES[s] for s in res["score"]])
    st.dataframe(table[["checkpoint", "score", "n", "spearman", "precision_at_k", "chance_at_k", "ause", "aurg"]],
                 hide_index=True, column_config={
                     "spearman": st.column_config.NumberColumn("Spearman ρ", format="%.3f",
                                                               help="Rank correlation of the score with the error"),
                     "precision_at_k": st.column_config.NumberColumn(f"precision@{k}", format="%.2f",
                                                                     help="Share of the k top-scored images among "
                                                                          "the k worst"),
                     "chance_at_k": st.column_config.NumberColumn("chance", format="%.2f"),
                     "ause": st.column_config.NumberColumn("AUSE ↓", format="%.4g"),
                     "aurg": st.column_config.NumberColumn("AURG ↑", format="%.4g")})
    download_csv("Download (CSV)", table, "dataset_energy_vs_error.csv", key=f"{key}_eve_csv")
    ckpts = list(dict.fromkeys(df["checkpoint"]))
    for col, ck in zip(st.columns(min(2, len(ckpts))) * math.ceil(len(ckpts) / 2), ckpts):
        with col:
            part = df[df["checkpoint"] == ck]
            curves = rs.score_curves(part, SCORES, error)
            fig = figures.sparsification_figure({views.SCORE_NAMES[s]: curves[s] for s in SCORES},
                                                f"{views.short(ck)}: remove the images a score ranks worst")
            fig.update_layout(xaxis_title="images removed (%)",
                              yaxis_title=f"mean {views.ERROR_NAMES[error].split(' (')[0]} of the rest")
            chart(fig, key=f"{key}_sp_{ck}", height=460)
            mine = res[res["checkpoint"] == ck].set_index("score")
            st.caption(verdict(mine.loc["seg_energy"], mine.loc["seg_entropy"]))
    st.caption("Sparsification over images: drop the images a score ranks worst, step by step, and follow the "
               "mean error of the rest; the oracle drops the truly worst first. " + LIVE_MODEL.format(**PIXEL_AUROC))


def failure_finder(df: pd.DataFrame, source: dict) -> None:
    """Images ranked by energy alone (no label used), an honest note, and, with labels, how well
    that ranking matched the real error."""
    ckpts = list(dict.fromkeys(df["checkpoint"]))
    ck = st.selectbox("Checkpoint", ckpts, format_func=views.short, key="ds_ff_ckpt")
    part = views.with_errors(df[df["checkpoint"] == ck])
    ranked = part.sort_values(["seg_energy", "index"], ascending=[False, True], kind="stable")
    st.markdown(HONEST)
    if views.labelled(part):
        k = max(1, min(20, len(part) // 3))
        r = rs.score_vs_error(part, scores=SCORES, errors=("pixel_error",), k=k).set_index("score")
        e, h = r.loc["seg_energy"], r.loc["seg_entropy"]
        st.markdown(f"**How well it matched here** (these images have labels): of the {k} images the energy ranks "
                    f"first, **{e['precision_at_k'] * k:.0f}** are among the {k} with the highest pixel error rate "
                    f"(a random ranking finds {_fmt(e['chance_at_k'] * k)} on average; the entropy baseline finds "
                    f"{h['precision_at_k'] * k:.0f}); Spearman with the error {_fmt(e['spearman'])} (entropy "
                    f"{_fmt(h['spearman'])}).")
    else:
        st.caption("These images have no labels, so how well the ranking matches the real error cannot be "
                   "measured here; on labelled data the Energy vs error tab measures it.")
    views.grid(ranked.assign(value=ranked["seg_energy"]).reset_index(drop=True), df, source, "seg energy (nats)",
               key="ds_ff", default_overlay="energy map (KL)")
