"""Δm%: the multi-task gain of each cross-task model over single-task baselines of its dataset,
shown on the dashboard (runs and checkpoints) and on Compare (models evaluated on one subset).

Δm% = 100 · mean over metrics of ±(M_multi − M_single) / M_single, + where higher is better and
− where lower is better (:mod:`xtask_core.evaluate.delta_m`), so Δm > 0 means the cross-task model
beats its single-task baselines on average. The segmentation metrics come from the ``segmt``
baseline, the depth metrics from the ``depth`` one.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import streamlit as st

from xtask_core.evaluate.delta_m import DELTA_M_METRICS
from xtask_core.train.run_tables import delta_m_rows, stl_baselines

FORMULA = ("Δm% = mean over {metrics} of ±(M_multi − M_single)/M_single · 100 (+ where higher is better, − "
           "where lower is better): above 0 the cross-task model beats its single-task baselines on average.")


def entries_to_points(entries: Iterable[Mapping]) -> pd.DataFrame:
    """Points for Δm from ``entries``: dicts with ``label``, ``task`` (both | segmt | depth),
    ``dataset`` and metric values (``miou``, ``pixel_acc``, ``abs``, ``abs_rel``…) at the top level
    or under ``metrics``."""
    rows = []
    for e in entries:
        row = {"label": e["label"], "task": e.get("task") or "both", "dataset": e.get("dataset") or "?"}
        row.update({k: v for k, v in (e.get("metrics") or {}).items() if isinstance(v, (int, float))})
        row.update({k: v for k, v in e.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        rows.append(row)
    return pd.DataFrame(rows)


def show(points: pd.DataFrame, key: str = "dm", where: str = "these runs", note: str = "") -> pd.DataFrame:
    """Draw the Δm table of ``points`` (trade-off points or :func:`entries_to_points`); say what
    is missing when no dataset has both single-task baselines; ``note`` is added to the caption
    (e.g. which images the numbers come from). Returns the table (maybe empty)."""
    table = delta_m_rows(points, stl_baselines(points)) if not points.empty else pd.DataFrame()
    if table.empty:
        st.caption(f"Δm% needs a segmentation and a depth single-task baseline of the same dataset among "
                   f"{where} (`xtask train --task segmt` and `--task depth`).")
        return table
    num = {c: st.column_config.NumberColumn(c, format="%+.2f") for c in table.columns if "%" in c}
    st.dataframe(table, hide_index=True, column_config=num, key=f"{key}_table")
    st.caption(FORMULA.format(metrics=", ".join(DELTA_M_METRICS)) + " " + note)
    return table


def show_for_checkpoints(models: Sequence, results: Mapping[str, Mapping], key: str = "cmp_dm",
                         images: str = "the evaluation subset") -> pd.DataFrame:
    """Compare's Δm section: ``models`` (ModelStates) evaluated on one subset, ``results`` label →
    metrics dict. A model's task comes from its config (``both`` | ``segmt`` | ``depth``), its
    dataset from its card. Nothing is drawn when no model was evaluated."""
    entries = [{"label": m.label, "task": getattr(m.config, "task", "both"), "dataset": m.meta.get("dataset"),
                "metrics": results[m.label]} for m in models if m.label in results]
    if not entries:
        return pd.DataFrame()
    st.markdown("**Multi-task gain Δm%** over the single-task checkpoints compared here")
    return show(entries_to_points(entries), key=key, where="the checkpoints compared here",
                note=f"All numbers from {images}, so both sides saw the same images.")
