"""Error maps: where the model is wrong, and how well label-free consistency energy finds it."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run pages/error_maps.py`
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from pages import common  # noqa: E402
from xtask_core import analysis, explore, viz  # noqa: E402

st.title("Error maps")
state = common.sidebar()
if state is None:
    st.stop()
st.caption("True errors need ground truth (samples or a dataset split). Consistency energy — how "
           "much the direct and transferred predictions disagree — needs none.")

picked = common.image_picker(state, "err")
if picked is None:
    st.stop()
pred = common.predict(state, picked.rgb, picked.key)
energy = analysis.energy_maps(pred.seg_logits, pred.seg_t_logits, pred.depth, pred.depth_t)
cmap = st.selectbox("Error colour map", ["inferno", "magma", "viridis", "turbo", "gray"], key="err_cmap")
unit = "m" if state.depth_kind == "depth" else "disparity/256"
panels = {}

st.subheader("Depth")
cols = st.columns(3)
if picked.gt_depth is not None:
    d = analysis.depth_error_maps(pred.depth, picked.gt_depth)
    with cols[0]:
        panels["depth_abs_error"] = common.value_chart(d["abs"], "|direct − ground truth|", unit, cmap,
                                                       0.0, None, key="err_dabs")
    with cols[1]:
        panels["depth_rel_error"] = common.value_chart(d["rel"], "relative error |p − t| / t", "×", cmap,
                                                       0.0, None, key="err_drel")
else:
    cols[0].info("No depth ground truth for this image.")
with cols[2]:
    panels["depth_energy"] = common.value_chart(energy["depth_abs"], "energy |transferred − direct|", unit,
                                                cmap, 0.0, None, key="err_den")

st.subheader("Segmentation")
cols = st.columns(3)
if picked.gt_seg is not None:
    s = analysis.seg_error_map(pred.seg, picked.gt_seg, state.ignore_index)
    panels["seg_wrong"] = viz.seg_error_rgb(pred.seg, picked.gt_seg, state.ignore_index)
    with cols[0]:
        common.rgb_chart(panels["seg_wrong"], f"wrong pixels (red): {100 * s['wrong'].sum() / max(1, s['valid'].sum()):.1f}%",
                         common.seg_error_hover(state, pred.seg, picked.gt_seg), key="err_wrong")
else:
    cols[0].info("No segmentation ground truth for this image.")
panels["seg_disagreement"] = viz.seg_error_rgb(pred.seg_t, pred.seg)
with cols[1]:
    common.rgb_chart(panels["seg_disagreement"], f"direct ≠ transferred (red): {100 * energy['disagree'].mean():.1f}%",
                     common.seg_error_hover(state, pred.seg_t, pred.seg, "direct"), key="err_disagree")
st.caption("Wrong pixels: red where the direct segmentation differs from the ground truth (black = void). "
           "Disagreement: red where the transferred segmentation differs from the direct one — no label needed.")
with cols[2]:
    panels["seg_energy"] = common.value_chart(energy["seg_kl"], "energy KL(direct ‖ transferred)", "nats",
                                              cmap, 0.0, None, key="err_sen")

if picked.gt_seg is not None:
    st.markdown("**Error by true class** (which classes the model gets wrong, and what it takes them for)")
    by_class = analysis.error_by_class(pred.seg, picked.gt_seg, state.num_classes, state.ignore_index,
                                       state.class_names).reset_index()
    st.dataframe(by_class, hide_index=True)
    common.download_csv("Download error by class (CSV)", by_class, "error_by_class.csv", key="err_cls_csv")


def show_study(study: dict, where: str, key: str) -> None:
    """Sparsification curves, binned error and summary numbers for both tasks."""
    if not study["depth"] and not study["seg"]:
        st.info("Needs ground truth.")
        return
    rows = []
    cols = st.columns(2)
    for col, task, err_label, en_label in ((cols[0], "depth", f"|depth error| ({unit})", "depth energy"),
                                           (cols[1], "seg", "error rate", "KL energy")):
        res = study[task]
        if not res:
            col.info(f"No {task} ground truth.")
            continue
        col.plotly_chart(common.sparsification_figure(res["sparsification"], f"{task}: sparsification, {where}",
                                                      err_label), key=f"{key}_{task}_sp")
        col.plotly_chart(common.binned_figure(res["binned"], f"{task}: true error per energy bin", err_label,
                                              en_label), key=f"{key}_{task}_bin")
        rows.append({"task": task, **{k: round(float(v), 4) for k, v in res["report"].items()}})
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    common.download_csv("Download summary (CSV)", table, f"energy_vs_error_{key}.csv", key=f"{key}_csv")


st.subheader("Does energy predict the true error?")
st.caption("Sparsification: drop the pixels the score ranks worst and track the mean error of the "
           "rest. The closer the energy curve is to the oracle (AUSE → 0) and the further below "
           "random (AURG > 0), the better energy flags errors without labels. Spearman: rank "
           "correlation of energy and error; AUROC: energy as a detector of wrong pixels (0.5 = chance).")
st.markdown("**This image**")
show_study(explore.energy_error_study([pred], [picked.gt_seg], [picked.gt_depth], state.ignore_index),
           "this image", "err_one")

n_avail = len(common.samples())
if n_avail:
    st.markdown("**A subset of samples** (pixels of all images pooled)")
    n = st.slider("Samples", 1, n_avail, min(8, n_avail), key="err_n") if n_avail > 1 else 1
    preds, segs, deps, _ = common.subset(state, n)
    show_study(explore.energy_error_study(preds, segs, deps, state.ignore_index), f"{n} samples", "err_sub")

st.subheader("Downloads")
common.download_pngs(panels, "err_dl")
