"""The multi-task trade-off view: every run and checkpoint as a point, segmentation quality against
depth error, coloured by λ on a log scale, with the single-task baselines as reference lines and
the original paper's published rows where the dataset matches.

:func:`tradeoff_figure` is pure (DataFrames in, a plotly figure out; tested without Streamlit);
:func:`section` draws it with its axis pickers. The points come from
:func:`xtask_core.train.run_tables.tradeoff_points`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from xtask_core.train.run_tables import AXIS_LABELS, DEPTH_AXES, SEG_AXES, published_points, stl_baselines

LAMBDA_FLOOR = 1e-6     # λ = 0 is drawn one decade below the smallest choice (1e-5), ticked "0"
SYMBOLS = {"shipped": "diamond", "run": "circle", "fine-tune": "square", "folder": "triangle-up",
           "sweep": "star", "base": "diamond-open"}
COLOUR_BY = {"lambda_1": "λ1 (transferred-depth weight)", "lambda_2": "λ2 (transferred-seg weight)"}
MAX_TEXT_LABELS = 12    # more points than this: names on hover only
MAX_LABEL = 24          # longer point names keep their end (sweep runs differ in their λ suffix)
_TICKS = [-6, -5, -4, -3, -2, -1, 0]
_TICK_TEXT = ["0", "1e-5", "1e-4", "1e-3", "0.01", "0.1", "1"]


def lambda_colour(values) -> np.ndarray:
    """log10(λ) for the colour scale; λ = 0 → log10(:data:`LAMBDA_FLOOR`); unknown → NaN."""
    out = []
    for v in values:
        v = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        out.append(np.nan if v is None or v < 0 else math.log10(max(v, LAMBDA_FLOOR)))
    return np.asarray(out, dtype=np.float64)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)


def hover_text(row: Mapping) -> str:
    """The config and metrics of one point, as plotly hover HTML."""
    lines = [f"<b>{row.get('label')}</b> ({row.get('origin')})",
             f"dataset {row.get('dataset')} · task {row.get('task', 'both')} · balancing {row.get('balancing', '–')}",
             f"λ1 {_fmt(row.get('lambda_1'))} · λ2 {_fmt(row.get('lambda_2'))} · lr {_fmt(row.get('lr'))}"]
    length = [f"{k} {_fmt(row.get(k))}" for k in ("steps", "epochs") if row.get(k) not in (None, "", 0)]
    if length:
        lines.append(" · ".join(length))
    if row.get("init_checkpoint"):
        lines.append(f"from {row['init_checkpoint']}")
    metrics = [f"{m} {_fmt(row.get(m))}" for m in (*SEG_AXES, *DEPTH_AXES) if row.get(m) is not None
               and not (isinstance(row.get(m), float) and math.isnan(row.get(m)))]
    lines.append(" · ".join(metrics))
    return "<br>".join(lines)


def short_label(label: str) -> str:
    """A point's name without the picker's prefix / root suffix ("shipped: demo (x/)" → "demo"),
    at most :data:`MAX_LABEL` characters."""
    label = label.split(": ", 1)[-1] if label.split(": ", 1)[0] in ("shipped", "run", "base") else label
    label = label.rsplit(" (", 1)[0] if label.endswith(")") else label
    return label if len(label) <= MAX_LABEL else "…" + label[-(MAX_LABEL - 1):]   # a run's end tells it apart


def _axis_title(name: str) -> str:
    better = "higher" if name in SEG_AXES or name == "delta1" else "lower"
    return f"{AXIS_LABELS.get(name, name)} ({better} is better)"


def tradeoff_figure(points: pd.DataFrame, x: str = "abs", y: str = "miou", colour_by: str = "lambda_1",
                    baselines: Mapping[str, Mapping] | None = None, published: pd.DataFrame | None = None,
                    title: str = "") -> go.Figure:
    """Scatter of ``points`` (rows of :func:`~xtask_core.train.run_tables.tradeoff_points`): ``y``
    against ``x``, one trace per origin (symbol), each point named by its ``name`` column when
    set (else its label, shortened), colour = log10 of column ``colour_by`` on one
    shared colour axis with λ ticks; points without that λ are grey. ``baselines`` (``{"segmt":
    point, "depth": point}``) add a horizontal line at the segmentation baseline's ``y`` and a
    vertical one at the depth baseline's ``x``; ``published`` rows are black crosses. Single-task
    rows of ``points`` are not drawn as points (they are the lines)."""
    fig = go.Figure()
    pts = points[points["task"].fillna("both") == "both"] if "task" in points else points
    if not pts.empty and x in pts and y in pts:
        pts = pts[pts[x].notna() & pts[y].notna()]
    else:
        pts = pts.iloc[0:0]
    for origin, group in pts.groupby("origin", sort=False) if not pts.empty else []:
        colour = lambda_colour(group.get(colour_by, pd.Series([None] * len(group))))
        known = ~np.isnan(colour)
        hover = [hover_text(r) for r in group.to_dict("records")]
        for mask, colour_kw in ((known, dict(color=colour[known], coloraxis="coloraxis")),
                                (~known, dict(color="#9e9e9e"))):
            if not mask.any():
                continue
            names = [str(n) if isinstance(n, str) and n else short_label(str(lb)) for n, lb in
                     zip(group.get("name", pd.Series([None] * len(group))).to_numpy()[mask],
                         group["label"].to_numpy()[mask])]
            fig.add_trace(go.Scatter(
                x=group[x].to_numpy()[mask], y=group[y].to_numpy()[mask],
                mode="markers+text" if len(pts) <= MAX_TEXT_LABELS else "markers",
                name=str(origin) + ("" if mask is known else " (λ unknown)"),
                marker=dict(symbol=SYMBOLS.get(str(origin), "circle"), size=12, line=dict(width=1, color="#333"),
                            **colour_kw),
                text=names, textposition="top center", textfont=dict(size=10), cliponaxis=False,
                hovertext=[h for h, m in zip(hover, mask) if m], hovertemplate="%{hovertext}<extra></extra>"))
    base = baselines or {}
    seg, dep = base.get("segmt"), base.get("depth")
    if seg is not None and _finite(seg.get(y)):
        fig.add_hline(y=float(seg[y]), line=dict(dash="dash", color="#1f77b4"),
                      annotation_text=f"single-task segmentation: {seg['label']}", annotation_position="top left")
    if dep is not None and _finite(dep.get(x)):
        fig.add_vline(x=float(dep[x]), line=dict(dash="dash", color="#d62728"),
                      annotation_text=f"single-task depth: {dep['label']}", annotation_position="top right")
    if published is not None and not published.empty and x in published and y in published:
        pub = published[published[x].notna() & published[y].notna()]
        if not pub.empty:
            fig.add_trace(go.Scatter(
                x=pub[x], y=pub[y], mode="markers+text", text=pub["label"].str.replace(" (published)", ""),
                textposition="top center", textfont=dict(size=10),
                name="published (paper, real data; mIoU per image)",
                marker=dict(symbol="x", size=10, color="black"),
                hovertemplate="%{text}: published in the original README<br>"
                              f"{y} %{{y:.4g}} · {x} %{{x:.4g}}<extra></extra>"))
    fig.update_layout(
        title=title or None, xaxis_title=_axis_title(x), yaxis_title=_axis_title(y), height=460,
        margin=dict(l=10, r=10, t=40 if title else 20, b=10),
        coloraxis=dict(colorscale="Viridis", cmin=_TICKS[0], cmax=_TICKS[-1],
                       colorbar=dict(title=COLOUR_BY.get(colour_by, colour_by).split(" ")[0], tickvals=_TICKS,
                                     ticktext=_TICK_TEXT)),
        showlegend=True, legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return fig


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def point_count(fig: go.Figure) -> int:
    """How many run/checkpoint points a trade-off figure draws (published crosses excluded)."""
    return sum(len(t.x) for t in fig.data if not str(t.name).startswith("published"))


def section(points: pd.DataFrame, missing: list[str], key: str = "trade") -> go.Figure | None:
    """The trade-off view with its pickers (dataset, axes, colour); returns the figure drawn."""
    if points.empty:
        st.info("No run or checkpoint here records validation metrics yet: nothing to place on the trade-off.")
        return None
    counts = points["dataset"].dropna().astype(str).value_counts()
    datasets = sorted(counts.index, key=lambda d: (-counts[d], d))     # the dataset with most points first
    c = st.columns(4)
    dataset = c[0].selectbox("Dataset", datasets, key=f"{key}_dataset") if len(datasets) > 1 else datasets[0]
    pts = points[points["dataset"] == dataset]
    ys = [m for m in SEG_AXES if m in pts and pts[m].notna().any()] or list(SEG_AXES)
    xs = [m for m in DEPTH_AXES if m in pts and pts[m].notna().any()] or list(DEPTH_AXES)
    y = c[1].selectbox("Segmentation axis", ys, key=f"{key}_y", format_func=AXIS_LABELS.get)
    x = c[2].selectbox("Depth axis", xs, key=f"{key}_x", format_func=AXIS_LABELS.get)
    colour = c[3].selectbox("Colour by", list(COLOUR_BY), key=f"{key}_colour", format_func=COLOUR_BY.get)
    baselines = stl_baselines(pts).get(dataset, {})
    published = published_points([dataset])
    fig = tradeoff_figure(pts, x, y, colour, baselines, published)
    st.plotly_chart(fig, key=f"{key}_fig", config={"displaylogo": False})
    notes = [f"{point_count(fig)} point(s) on dataset “{dataset}”, each at the validation epoch its best "
             "checkpoint comes from. Runs validated on different image sets are only roughly comparable."]
    if not baselines:
        notes.append("No single-task baseline of this dataset yet (`xtask train --task segmt` / `--task depth`).")
    if published.empty:
        notes.append("The original paper's published numbers are on real Cityscapes / NYUv2, so they are not "
                     "drawn for this dataset.")
    elif y == "miou":
        notes.append("The published rows use the per-image mIoU: pick that axis to see them.")
    if missing:
        notes.append(f"Without recorded validation metrics (not drawn): {', '.join(missing)}.")
    st.caption(" ".join(notes))
    return fig


def origin_of(path, roots: Mapping[str, object]) -> str:
    """``shipped`` / ``run`` / ``folder``: which of ``roots`` (origin → folder) holds ``path``."""
    p = Path(path).resolve()
    for origin, root in roots.items():
        try:
            p.relative_to(Path(root).resolve())
            return origin
        except ValueError:
            continue
    return "folder"
