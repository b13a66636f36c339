"""Error maps: where the model is wrong, and how well label-free consistency energy finds it."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run app_pages/error_maps.py`
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app_pages import common  # noqa: E402
from xtask_core import explore  # noqa: E402
from xtask_core.evaluate import analysis  # noqa: E402
from xtask_core.viz import colour as viz  # noqa: E402
from xtask_core.viz import figures  # noqa: E402

st.title("Error maps")
state = common.sidebar()
if state is None:
    st.stop()
st.caption("Where is the model wrong? True errors need ground truth (a sample or a dataset split). "
           "Consistency energy, how much the direct and transferred predictions disagree, needs no label: "
           "the bottom of the page measures how well it finds the true errors.")

picked = common.image_picker(state, "err")
if picked is None:
    st.stop()
pred = common.predict(state, picked.rgb, picked.key)
energy = analysis.energy_maps(pred.seg_logits, pred.seg_t_logits, pred.depth, pred.depth_t)
cmap = st.selectbox("Error colour map", ["inferno", "magma", "viridis", "turbo", "gray"], key="err_cmap",
                    help="Dark = small, bright = large, for every error and energy map")
unit = common.depth_unit(state)
panels = {}

st.subheader("Depth")
st.caption(f"Left and middle need ground truth (blank = no ground-truth depth, e.g. sky); right needs none. "
           f"Depth errors in {state.depth_unit}; relative error is a ratio (0.1 = 10 % off).")
cols = st.columns(3)
if picked.gt_depth is not None:
    d = analysis.depth_error_maps(pred.depth, picked.gt_depth)
    with cols[0]:
        panels["depth_abs_error"] = common.value_chart(d["abs"], "|direct − ground truth|", unit, cmap,
                                                       0.0, None, key="err_dabs")
    with cols[1]:
        panels["depth_rel_error"] = common.value_chart(d["rel"], "relative error |p − t| / t", "ratio", cmap,
                                                       0.0, None, key="err_drel")
else:
    cols[0].info("No depth ground truth for this image.")
with cols[2]:
    panels["depth_energy"] = common.value_chart(energy["depth_abs"], "energy |transferred − direct|", unit,
                                                cmap, 0.0, None, key="err_den")

st.subheader("Segmentation")
st.caption("Wrong pixels: green = correct, red = the direct segmentation differs from the ground truth, "
           "black = void. Disagreement: red where the transferred segmentation differs from the direct one, "
           "no label needed. Energy: KL divergence between the two class distributions, in nats.")
cols = st.columns(3)
if picked.gt_seg is not None:
    s = analysis.seg_error_map(pred.seg, picked.gt_seg, state.ignore_index)
    panels["seg_wrong"] = viz.seg_error_rgb(pred.seg, picked.gt_seg, state.ignore_index)
    with cols[0]:
        rate = 100 * float(s["wrong"][s["valid"]].mean()) if s["valid"].any() else float("nan")
        common.rgb_chart(panels["seg_wrong"], f"wrong pixels (red): {rate:.1f}%",
                         common.seg_pair_hover(state, pred.seg, picked.gt_seg), key="err_wrong")
else:
    cols[0].info("No segmentation ground truth for this image.")
panels["seg_disagreement"] = viz.seg_error_rgb(pred.seg_t, pred.seg)
with cols[1]:
    common.rgb_chart(panels["seg_disagreement"], f"direct ≠ transferred (red): {100 * energy['disagree'].mean():.1f}%",
                     common.seg_pair_hover(state, pred.seg_t, pred.seg, "direct"), key="err_disagree")
with cols[2]:
    panels["seg_energy"] = common.value_chart(energy["seg_kl"], "energy KL(direct ‖ transferred)", "nats",
                                              cmap, 0.0, None, key="err_sen")
common.download_pngs(panels, "err_dl")

if picked.gt_seg is not None:
    st.markdown("**Error by true class**: which classes the model gets wrong, and what it takes them for")
    by_class = analysis.error_by_class(pred.seg, picked.gt_seg, state.num_classes, state.ignore_index,
                                       state.class_names).reset_index()
    st.dataframe(by_class, hide_index=True, column_config={
        "class": st.column_config.NumberColumn("id"),
        "name": "true class", "pixels": "pixels", "wrong": "wrong pixels",
        "error_rate": st.column_config.NumberColumn("error rate", format="percent"),
        "confused_with": st.column_config.TextColumn("most often predicted as",
                                                     help="The commonest wrong class for this true class"),
        "confused_share": st.column_config.NumberColumn("share of its errors", format="percent")})
    common.download_csv("Download error by class (CSV)", by_class, "error_by_class.csv", key="err_cls_csv")

STUDY_COLUMNS = {
    "task": "task",
    "spearman": st.column_config.NumberColumn("Spearman ρ", format="%.3f",
                                              help="Rank correlation of energy and true error (1 = same order)"),
    "ause": st.column_config.NumberColumn("AUSE ↓", format="%.4g",
                                          help="Area between the energy and oracle curves (0 = energy ranks like the truth)"),
    "aurg": st.column_config.NumberColumn("AURG ↑", format="%.4g",
                                          help="Area between the random and energy curves (> 0 = better than chance)"),
    "ause_rel": st.column_config.NumberColumn("AUSE / random ↓", format="%.3f"),
    "n_pixels": st.column_config.NumberColumn("pixels"),
    "auroc": st.column_config.NumberColumn("AUROC", format="%.3f",
                                           help="Energy as a detector of wrong pixels (0.5 = chance, 1 = perfect)"),
}


def show_study(study: dict, where: str, key: str) -> None:
    """Sparsification curves, binned error and summary numbers for both tasks."""
    if not study["depth"] and not study["seg"]:
        st.info("Needs ground truth.")
        return
    rows = []
    cols = st.columns(2)
    for col, task, err_label, en_label in ((cols[0], "depth", "abs error", f"depth energy ({unit})"),
                                           (cols[1], "seg", "error rate", "KL energy (nats)")):
        res = study[task]
        if not res:
            col.info(f"No {task} ground truth.")
            continue
        with col:
            where_unit = f"{where}, error in {unit}" if task == "depth" else where
            common.chart(figures.sparsification_figure(res["sparsification"], f"{task}: sparsification ({where_unit})",
                                                       err_label), key=f"{key}_{task}_sp")
            common.chart(figures.binned_error_figure(res["binned"], f"{task}: true error per energy bin",
                                                     err_label, en_label), key=f"{key}_{task}_bin")
        rows.append({"task": task, **{k: float(v) for k, v in res["report"].items()}})
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, column_config=STUDY_COLUMNS)
    common.download_csv("Download summary (CSV)", table, f"energy_vs_error_{key}.csv", key=f"{key}_csv")


st.subheader("Does energy predict the true error?")
st.caption("Sparsification: remove the pixels a score ranks worst, step by step, and track the mean true error "
           "of the rest. *Oracle* ranks by the true error (the best possible), *random order* removes pixels "
           "at random (flat). The closer the energy curve is to the oracle (AUSE → 0) and the further below "
           "random (AURG > 0), the better energy flags errors without labels. The bars show the mean true "
           "error in ten equal-count bins of energy: rising bars = high energy means high error.")
n_avail = len(common.samples())
tab_one, tab_sub = st.tabs(["This image", f"A subset of the {n_avail} samples" if n_avail else "A subset"])
with tab_one:
    show_study(explore.energy_error_study([pred], [picked.gt_seg], [picked.gt_depth], state.ignore_index),
               "this image", "err_one")
with tab_sub:
    if n_avail:
        n = st.slider("Samples (pixels of all images pooled)", 1, n_avail, min(8, n_avail),
                      key="err_n") if n_avail > 1 else 1
        preds, segs, deps, _ = common.subset(state, n)
        show_study(explore.energy_error_study(preds, segs, deps, state.ignore_index), f"{n} samples", "err_sub")
    else:
        st.info(f"No samples in {common.samples_dir()}.")
