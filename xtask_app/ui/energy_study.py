""""Does energy predict the true error?": sparsification curves, error per energy bin and the
summary numbers of :func:`xtask_core.evaluate.report.energy_error_study`, for both tasks."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from xtask_app.charts import chart
from xtask_app.downloads import download_csv
from xtask_core.evaluate.report import study_rows
from xtask_core.viz import figures

STUDY_COLUMNS = {
    "task": "task",
    "spearman": st.column_config.NumberColumn("Spearman ρ", format="%.3f",
                                              help="Rank correlation of energy and true error (1 = same order)"),
    "ause": st.column_config.NumberColumn("AUSE ↓", format="%.4g",
                                          help="Area between the energy and oracle curves "
                                               "(0 = energy ranks like the truth)"),
    "aurg": st.column_config.NumberColumn("AURG ↑", format="%.4g",
                                          help="Area between the random and energy curves (> 0 = better than chance)"),
    "ause_rel": st.column_config.NumberColumn("AUSE / random ↓", format="%.3f"),
    "n_pixels": st.column_config.NumberColumn("pixels"),
    "auroc": st.column_config.NumberColumn("AUROC", format="%.3f",
                                           help="Energy as a detector of wrong pixels (0.5 = chance, 1 = perfect)"),
}
EXPLANATION = (
    "Sparsification: remove the pixels a score ranks worst, step by step, and track the mean true error "
    "of the rest. *Oracle* ranks by the true error (the best possible), *random order* removes pixels "
    "at random (flat). The closer the energy curve is to the oracle (AUSE → 0) and the further below "
    "random (AURG > 0), the better energy flags errors without labels. The bars show the mean true "
    "error in ten equal-count bins of energy: rising bars = high energy means high error.")


def _task_charts(res: dict, task: str, where: str, unit: str, key: str) -> None:
    err_label = "abs error" if task == "depth" else "error rate"
    en_label = f"depth energy ({unit})" if task == "depth" else "KL energy (nats)"
    where_unit = f"{where}, error in {unit}" if task == "depth" else where
    chart(figures.sparsification_figure(res["sparsification"], f"{task}: sparsification ({where_unit})", err_label),
          key=f"{key}_{task}_sp")
    chart(figures.binned_error_figure(res["binned"], f"{task}: true error per energy bin", err_label, en_label),
          key=f"{key}_{task}_bin")


def show_study(study: dict, where: str, unit: str, key: str) -> None:
    """Charts for each task with ground truth (depth left, segmentation right), then one summary
    table and its CSV download. ``unit``: the model's short depth unit."""
    if not study["depth"] and not study["seg"]:
        st.info("Needs ground truth.")
        return
    for col, task in zip(st.columns(2), ("depth", "seg")):
        if not study[task]:
            col.info(f"No {task} ground truth.")
            continue
        with col:
            _task_charts(study[task], task, where, unit, key)
    table = pd.DataFrame(study_rows(study))
    st.dataframe(table, hide_index=True, column_config=STUDY_COLUMNS)
    download_csv("Download summary (CSV)", table, f"energy_vs_error_{key}.csv", key=f"{key}_csv")
