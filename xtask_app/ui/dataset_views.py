"""The Dataset page's views of a records DataFrame: totals and downloads, the ranking (any column,
the drop from checkpoint A to B, one confusion), the table with thumbnails, the thumbnail grid
with click-through links, the confusion matrix, per-class IoU, energy against error beside the
softmax-entropy baseline, and the label-free failure finder. Numbers come from
:mod:`xtask_core.evaluate.record_summary`; nothing here computes a metric."""
from __future__ import annotations

import io
import math
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import streamlit as st
from streamlit.errors import StreamlitAPIException

from xtask_app import settings
from xtask_app.charts import chart
from xtask_app.downloads import download_csv, download_png
from xtask_app.selection import select_checkpoint
from xtask_app.ui import dataset_images as imgs
from xtask_app.ui.dataset import label_of
from xtask_app.ui.dataset_links import open_params
from xtask_core.evaluate import record_summary as rs
from xtask_core.evaluate.delta_m import HIGHER_IS_BETTER
from xtask_core.evaluate.record_store import RECORD_FORMAT, frame_to_table
from xtask_core.viz import colour as viz
from xtask_core.viz import figures

RANKINGS = ("Worst first by a column", "Largest drop from checkpoint A to B", "Most pixels of one confusion")
COLUMNS = ("pixel_error", "miou", "pixel_acc", "seg_energy", "seg_entropy", "seg_disagree", "depth_energy",
           "abs", "abs_rel", "rmse", "delta1", "t_pixel_acc", "t_miou", "t_abs")
DROP_METRICS = ("miou", "pixel_acc", "abs", "abs_rel", "rmse", "delta1", "t_miou", "t_abs")
PAGES = {"Predictions": "app_pages/predictions.py", "Error maps": "app_pages/error_maps.py",
         "Compare": "app_pages/compare.py"}
PAGE_ICONS = {"Predictions": ":material/image:", "Error maps": ":material/error:", "Compare": ":material/compare:"}
GOTO_KEY = "_ds_goto"
SCORE_NAMES = {"seg_energy": "consistency energy", "seg_entropy": "softmax entropy (baseline)"}
ERROR_NAMES = {"pixel_error": "pixel error rate (1 − pixel accuracy)", "miou_error": "per-image mIoU error (1 − mIoU)"}


def short(ckpt: str) -> str:
    """A checkpoint's sidebar label, else its file name with its folder."""
    p = Path(ckpt)
    return label_of(ckpt) or f"{p.parent.name}/{p.name}"


def with_errors(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(pixel_error=rs.error_values(df, "pixel_error"), miou_error=rs.error_values(df, "miou_error"))


def labelled(df: pd.DataFrame) -> bool:
    """True when the records carry ground truth (a dataset split, not a plain folder of images)."""
    return bool(df["pixel_acc"].notna().any())


# --------------------------------------------------------------------------- overview
def overview(df: pd.DataFrame, source: dict) -> None:
    """Dataset-level figures per checkpoint and the records downloads."""
    rows = []
    for name, t in rs.totals(df).items():
        rows.append({"checkpoint": short(name), "images": t["n_images"], "pixel acc (%)": 100 * t["pixel_acc"],
                     "mIoU (%)": 100 * t["miou"], "mIoU per image (%)": 100 * t["miou_per_image"], "Abs": t["abs"],
                     "seg energy (nats)": t["seg_energy"], "softmax entropy (nats)": t["seg_entropy"],
                     "direct ≠ transferred (%)": 100 * t["seg_disagree"]})
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.4g")
                                                        for c in table.columns[2:]})
    buf = io.BytesIO()
    pq.write_table(frame_to_table(df, {"format": RECORD_FORMAT, "source": source}), buf)
    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button("Download records (Parquet)", buf.getvalue(), "records.parquet", key="ds_dl_parquet",
                       mime="application/octet-stream", on_click="ignore")
    download_csv("Download records (CSV)", df.assign(confusion=[" ".join(map(str, v)) for v in df["confusion"]]),
                 "records.csv", key="ds_dl_csv", container=c2)


# --------------------------------------------------------------------------- ranking
def _class_names(state, c: int) -> list[str]:
    names = state.class_names if state is not None and state.num_classes == c else []
    return names if len(names) == c else [f"class {i}" for i in range(c)]


RANK_CODES = dict(zip(("worst", "drop", "confusion"), RANKINGS))
URL_CONTROLS = {"ds_rank": "rank", "ds_rank_col": "col", "ds_drop_metric": "metric"}


def controls_from_url() -> None:
    """A new session opened by an address with ``?rank=worst|drop|confusion&col=…&metric=…`` starts
    with those ranking controls (values the widgets do not offer are ignored)."""
    ss, q = st.session_state, st.query_params
    for key, name in URL_CONTROLS.items():
        value = q.get(name)
        if key in ss or value is None:
            continue
        if key == "ds_rank" and value in RANK_CODES:
            ss[key] = RANK_CODES[value]
        elif (key == "ds_rank_col" and value in COLUMNS) or (key == "ds_drop_metric" and value in DROP_METRICS):
            ss[key] = value


def controls_to_url() -> None:
    """Mirror the ranking controls in the address, so copying it shares the view."""
    codes = {v: k for k, v in RANK_CODES.items()}
    for key, name in URL_CONTROLS.items():
        value = st.session_state.get(key)
        value = codes.get(value, value)
        if value is not None and st.query_params.get(name) != str(value):
            st.query_params[name] = str(value)


def ranking(df: pd.DataFrame, state) -> tuple[pd.DataFrame, str]:
    """Ranking widgets → (rows ranked worst first with ``value`` and ``checkpoint`` to draw, what
    ``value`` is). One-line info and an empty frame when a ranking does not apply. The controls
    come from the address in a new session and go back into it."""
    controls_from_url()
    try:
        return _ranking(df, state)
    finally:
        controls_to_url()


def _ranking(df: pd.DataFrame, state) -> tuple[pd.DataFrame, str]:
    ckpts = list(dict.fromkeys(df["checkpoint"]))
    has_gt = labelled(df)
    modes = list(RANKINGS) if has_gt else [RANKINGS[0]]
    if len(ckpts) < 2 and RANKINGS[1] in modes:
        modes.remove(RANKINGS[1])
    if st.session_state.get("ds_rank") not in modes:
        st.session_state["ds_rank"] = modes[0]
    mode = st.radio("Rank images by", modes, horizontal=True, key="ds_rank")
    data = with_errors(df)
    empty = data.iloc[0:0].assign(value=[])
    if mode == RANKINGS[1]:
        c1, c2, c3 = st.columns(3)
        metric = c1.selectbox("Metric", DROP_METRICS, key="ds_drop_metric")
        a = c2.selectbox("Checkpoint A", ckpts, format_func=short, key="ds_a")
        b = c3.selectbox("Checkpoint B", ckpts, index=1, format_func=short, key="ds_b")
        if a == b:
            st.info("Pick two different checkpoints.")
            return empty, ""
        drop = rs.worsening(data, metric, a, b)
        rows = data[data["checkpoint"] == b].set_index("image").loc[drop["image"]].reset_index()
        what = f"drop in {metric} from A to B (A − B when higher is better)"
        return rows.assign(value=drop["worse"].to_numpy(), a_value=drop["a"].to_numpy(),
                           b_value=drop["b"].to_numpy()), what
    c1, c2 = st.columns(2)
    ck = c1.selectbox("Checkpoint", ckpts, format_func=short, key="ds_rank_ckpt")
    part = data[data["checkpoint"] == ck]
    if mode == RANKINGS[2]:
        c = int(round(math.sqrt(max(len(v) for v in part["confusion"]))))
        names = _class_names(state, c)
        t1, t2 = c2.columns(2)
        true_c = t1.selectbox("True class", range(c), format_func=names.__getitem__, key="ds_true")
        pred_c = t2.selectbox("Predicted as", range(c), index=min(1, c - 1), format_func=names.__getitem__,
                              key="ds_pred")
        ranked = rs.rank_by_confusion(part, true_c, pred_c)
        rows = part.set_index("image").loc[ranked["image"]].reset_index()
        return rows.assign(value=ranked["pixels"].to_numpy()), f"pixels of {names[true_c]} predicted as {names[pred_c]}"
    cols = [c for c in COLUMNS if c in data and (has_gt or c in rs.SCORES)]
    if st.session_state.get("ds_rank_col") not in cols:
        st.session_state["ds_rank_col"] = "pixel_error" if has_gt else "seg_energy"
    col = c2.selectbox("Column", cols, key="ds_rank_col")
    base = col[2:] if col.startswith("t_") else col
    worst_low = HIGHER_IS_BETTER.get(base, False)
    ranked = part.sort_values([col, "index"], ascending=[worst_low, True], na_position="last", kind="stable")
    return ranked.assign(value=ranked[col]).reset_index(drop=True), col + (" (lowest first)" if worst_low else
                                                                           " (highest first)")


# --------------------------------------------------------------------------- links
def _go(page: str, params: dict, checkpoint: str) -> None:
    """Button callback: make the row's checkpoint the sidebar's (same session) and remember where
    to go; :func:`follow` switches page at the top of the next run."""
    select_checkpoint(checkpoint)
    st.session_state[GOTO_KEY] = (page, params)


def follow() -> None:
    """Switch to the page a link button asked for (call near the top of the page)."""
    goto = st.session_state.pop(GOTO_KEY, None)
    if goto is not None:
        try:
            st.switch_page(goto[0], query_params=goto[1])
        except StreamlitAPIException as err:   # page run on its own (tests): say where it would go
            st.info(f"Would open {goto[0]} with {urlencode(goto[1], doseq=True)} ({type(err).__name__})")


def links(source: dict, row, ckpts: list[str], key: str) -> None:
    """Buttons that open this row's image (of a dataset split or of a plain folder) in Predictions /
    Error maps / Compare, with the row's checkpoint in the sidebar; the address they land on carries
    the image and the checkpoints, so it can be shared."""
    labels = [lb for lb in (label_of(c) for c in ckpts) if lb]
    params = open_params(source, str(row["image"]), int(row["index"]), labels, settings.samples_dir())
    if params is None:       # a source without a root folder: nothing the other pages could read
        st.caption("This records file does not say where its images are: they cannot be opened here.")
        return
    if label_of(ckpts[0]) is None:
        st.caption("Checkpoint not available here: the other pages would show another model.")
        return
    for name, page in PAGES.items():     # stacked: a quarter-width tile has no room for three side by side
        st.button(name, key=f"{key}_{name}", on_click=_go, args=(page, params, ckpts[0]), width="stretch",
                  help=f"Open this image in {name}", icon=PAGE_ICONS[name])


def row_checkpoints(row, df: pd.DataFrame) -> list[str]:
    """The row's checkpoint first (Compare's reference), then A of a drop or the others."""
    first = str(row.get("checkpoint"))
    others = [c for c in dict.fromkeys(df["checkpoint"]) if c != first]
    return [first, *others]


# --------------------------------------------------------------------------- table and grid
def table(ranked: pd.DataFrame, df: pd.DataFrame, source: dict, what: str, n_thumbs: int = 60) -> None:
    """Sortable (click a header), filterable table of the ranked images with thumbnails; selecting a
    row shows its links."""
    c1, c2 = st.columns([2, 1])
    needle = c1.text_input("Filter image names", key="ds_filter", placeholder="part of a file name")
    only = c2.number_input(f"Only value ≥ (value = {what})", value=None, key="ds_min", format="%.4g")
    view = ranked
    if needle:
        view = view[view["image"].str.contains(needle, case=False, regex=False)]
    if only is not None:
        view = view[view["value"] >= only]
    view = view.reset_index(drop=True)
    key = imgs.source_key(source)
    thumbs = [imgs.thumb_uri(key, str(r.image), int(r.index), int(r.num_classes)) if i < n_thumbs else ""
              for i, r in enumerate(view.itertuples())]
    shown = pd.DataFrame({"rank": np.arange(1, len(view) + 1), "thumbnail": thumbs, "image": view["image"],
                          "checkpoint": [short(c) for c in view["checkpoint"]], "value": view["value"]})
    for c in ("pixel_acc", "miou", "seg_energy", "seg_entropy", "abs"):
        if c in view:
            shown[c] = view[c].to_numpy()
    event = st.dataframe(shown, hide_index=True, key="ds_table", on_select="rerun", selection_mode="single-row",
                         column_config={"thumbnail": st.column_config.ImageColumn("input", width="small"),
                                        "value": st.column_config.NumberColumn(what[:40], format="%.4g")})
    st.caption(f"{len(view)} rows; thumbnails for the first {min(n_thumbs, len(view))}. Click a column header to "
               "sort, a row's left edge to select it.")
    picked = getattr(getattr(event, "selection", None), "rows", None) or []
    if picked:
        row = view.iloc[int(picked[0])]
        st.markdown(f"**Open {row['image']}** ({short(row['checkpoint'])}):")
        links(source, row, row_checkpoints(row, df), "ds_table_link")


def grid(ranked: pd.DataFrame, df: pd.DataFrame, source: dict, what: str, key: str = "ds_grid",
         default_overlay: str = "error map (wrong pixels)") -> None:
    """The top images as tiles with a chosen overlay, each with links; the grid as one PNG."""
    if ranked.empty:
        st.info("No image to show for this ranking.")
        return
    c1, c2 = st.columns(2)
    top = min(24, len(ranked))
    n = c1.slider("Images in the grid", 1, top, min(8, top), key=f"{key}_n") if top > 1 else 1
    options = imgs.OVERLAYS if labelled(df) else tuple(o for o in imgs.OVERLAYS if not o.startswith("error"))
    overlay = c2.selectbox("Overlay", options, key=f"{key}_overlay",
                           index=options.index(default_overlay) if default_overlay in options else 0)
    pictures, captions = [], []
    for start in range(0, n, 4):
        for col, (k, row) in zip(st.columns(4), list(ranked.iloc[start:min(n, start + 4)].iterrows())):
            with col:
                pic, note = imgs.overlay_image(source, row, overlay)
                cap = f"#{k + 1} · {row['image'].split('/')[-1].removesuffix('_leftImg8bit.png')} · {row['value']:.4g}"
                if pic is None:
                    st.info(f"{cap}: {note}")
                    continue
                st.image(pic, caption=cap + (f" ({note})" if note else ""), width="stretch")
                pictures.append(imgs.thumbnail(pic, 256))
                captions.append(f"#{k + 1} {row['value']:.4g}")
                links(source, row, row_checkpoints(row, df), f"{key}_{k}")
    st.caption(f"Ranked by {what}; overlay: {overlay}.")
    if pictures:
        download_png("Download the grid (PNG)", viz.grid(pictures, 4, captions), "dataset_grid.png", key=f"{key}_png")


# --------------------------------------------------------------------------- dataset level
def _rank_confusion(ck: str, t: int, p: int) -> None:
    ss = st.session_state
    ss["ds_rank"], ss["ds_rank_ckpt"], ss["ds_true"], ss["ds_pred"] = RANKINGS[2], ck, t, p


def _on_cell(ck: str, names: list[str]) -> None:
    points = st.session_state.get("ds_conf_chart", {}).get("selection", {}).get("points", [])
    if points and points[0].get("y") in names and points[0].get("x") in names:
        _rank_confusion(ck, names.index(points[0]["y"]), names.index(points[0]["x"]))


def confusion(df: pd.DataFrame, state) -> None:
    """The split's confusion matrix of one checkpoint; clicking a cell (or a button for the largest
    confusions) ranks the images by it in the Images tab."""
    ckpts = list(dict.fromkeys(df["checkpoint"]))
    ck = st.selectbox("Checkpoint", ckpts, format_func=short, key="ds_conf_ckpt")
    part = df[df["checkpoint"] == ck]
    m = rs.confusion_matrix(part)
    names = _class_names(state, m.shape[0])
    fig = figures.confusion_figure(m, names, "true", title=f"{short(ck)}: rows = true class, each row sums to 1")
    fig.update_layout(height=420)
    st.plotly_chart(fig, key="ds_conf_chart", on_select=lambda: _on_cell(ck, names), selection_mode="points")
    off = [(int(m[t, p]), t, p) for t in range(len(names)) for p in range(len(names)) if t != p and m[t, p] > 0]
    st.markdown("**Largest confusions**: click one (or a cell above) to rank the images by it in the Images tab.")
    cells = sorted(off, reverse=True)[:6]
    for col, (count, t, p) in zip(st.columns(3) * 2 if len(cells) > 3 else st.columns(3), cells):
        col.button(f"{names[t]} → {names[p]} ({count:,} px)", key=f"ds_cell_{t}_{p}", on_click=_rank_confusion,
                   args=(ck, t, p))


def class_iou(df: pd.DataFrame, state) -> None:
    """Per-class IoU of every checkpoint over the split, with Δ from the first."""
    c = int(round(math.sqrt(max(len(v) for v in df["confusion"]))))
    table_ = rs.class_iou_table(df, _class_names(state, c))
    shown = table_.rename(columns=lambda x: short(x) if x in set(df["checkpoint"]) else
                          (f"Δ {short(x[2:])}" if x.startswith("Δ ") else x))
    iou_cols = [short(x) for x in dict.fromkeys(df["checkpoint"])]
    chart(figures.per_class_iou_bar({k: shown[k].to_numpy() for k in iou_cols}, list(shown["class"]),
                                    title="IoU per class over the split (%)"), key="ds_iou_bar")
    st.dataframe(shown, hide_index=True, column_config={k: st.column_config.NumberColumn(format="%.3f")
                                                        for k in shown.columns[1:]})
    download_csv("Download per-class IoU (CSV)", shown, "dataset_iou_per_class.csv", key="ds_iou_csv")
