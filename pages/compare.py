"""Compare checkpoints: two or more models on the same image and on an evaluation subset."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run pages/compare.py`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from pages import common  # noqa: E402
from xtask_core import explore, viz  # noqa: E402

st.title("Compare checkpoints")
state = common.sidebar()
if state is None:
    st.stop()

models = common.choose_checkpoints("Checkpoints to compare (the first is the reference)", "cmp_models")
if len(models) < 2:
    st.info("Pick at least two checkpoints (add more with 'Load another checkpoint' in the sidebar).")
    st.stop()

picked = common.image_picker(models[0], "cmp")
if picked is None:
    st.stop()
cmap = st.selectbox("Depth colour map", common.CMAPS, key="cmp_cmap")
preds = [common.predict(m, picked.rgb, picked.key) for m in models]
ref, ref_pred = models[0], preds[0]
vmin, vmax = explore.depth_range([p.depth for p in preds])
st.caption(f"Reference: **{ref.label}**. Difference maps are against it, at its resolution.")

panels = {}
cols = st.columns(len(models))
for i, (col, m, p) in enumerate(zip(cols, models, preds)):
    with col:
        st.markdown(f"**{m.label}**")
        panels[f"seg_{i}"] = common.seg_chart(m, p.seg, "direct segmentation", key=f"cmp_seg_{i}")
        panels[f"depth_{i}"] = common.depth_chart(m, p.depth, "direct depth", cmap, vmin, vmax,
                                                  key=f"cmp_depth_{i}")
        if i == 0:
            continue
        q = p.resized(*ref_pred.seg.shape) if p.seg.shape != ref_pred.seg.shape else p
        differ = q.seg != ref_pred.seg
        panels[f"seg_diff_{i}"] = viz.seg_error_rgb(q.seg, ref_pred.seg)
        common.rgb_chart(panels[f"seg_diff_{i}"], f"seg differs from reference (red): {100 * differ.mean():.1f}%",
                         common.seg_error_hover(m, q.seg, ref_pred.seg, "reference"), key=f"cmp_sdiff_{i}")
        panels[f"depth_diff_{i}"] = common.value_chart(np.abs(q.depth - ref_pred.depth), "|depth − reference|",
                                                       "m" if m.depth_kind == "depth" else "disparity/256",
                                                       "inferno", 0.0, None, key=f"cmp_ddiff_{i}")

found = common.samples()
if found:
    st.subheader("Evaluation subset")
    n = st.slider("Samples", 1, len(found), min(8, len(found)), key="cmp_n") if len(found) > 1 else 1
    rows, iou_rows, results = [], {}, []
    for m in models:
        preds_m, segs, deps, _ = common.subset(m, n)
        res = explore.evaluate_predictions(preds_m, segs, deps, m.num_classes, m.ignore_index)
        results.append(res)
        rows.append(explore.metrics_row(m.label, res) | {"mIoU per image (original)": round(100 * res["miou_per_image"], 2)})
        iou_rows[m.label] = {name: round(100 * v, 2) for name, v in zip(m.class_names, res["iou_per_class"])}
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    st.caption(f"Over the first {n} samples. mIoU = one confusion matrix over the subset; 'per image' = the "
               "original code's mean of per-image mIoUs. Depth errors in each model's unit.")
    ious = pd.DataFrame(iou_rows).rename_axis("class").reset_index()
    st.markdown("**IoU per class (%)**")
    st.dataframe(ious, hide_index=True)
    c1, c2 = st.columns(2)
    common.download_csv("Download metrics (CSV)", table, "compare_metrics.csv", key="cmp_csv", container=c1)
    common.download_csv("Download per-class IoU (CSV)", ious, "compare_iou_per_class.csv", key="cmp_iou_csv",
                        container=c2)
    st.markdown("**Confusion matrices** (rows: true class, normalised per row)")
    for i, (col, m, res) in enumerate(zip(st.columns(len(models)), models, results)):
        col.plotly_chart(common.confusion_figure(res["confusion"], m.class_names, m.label), key=f"cmp_conf_{i}")

st.subheader("Downloads")
common.download_pngs(panels, "cmp_dl")
