"""Compare checkpoints: two or more models on the same image and on an evaluation subset."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run app_pages/compare.py`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app_pages import common  # noqa: E402
from xtask_core import explore  # noqa: E402
from xtask_core.viz import colour as viz  # noqa: E402
from xtask_core.viz import figures  # noqa: E402

st.title("Compare checkpoints")
state = common.sidebar()
if state is None:
    st.stop()
st.caption("Two or more checkpoints on the same image, then on an evaluation subset with ground truth. "
           "The first checkpoint picked is the reference the differences are measured against.")

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
n = len(models)

panels = {}
st.subheader("Direct predictions")
st.caption("One column per checkpoint; hover for the class or the depth value. Depth panels share one colour "
           "range (" + ", ".join(sorted({m.depth_unit for m in models})) + ").")
common.class_legend(ref)
for i, (col, m, p) in enumerate(zip(st.columns(n), models, preds)):
    with col:
        panels[f"seg_{i}"] = common.seg_chart(m, p.seg, f"{m.label}: segmentation", key=f"cmp_seg_{i}", ncols=n)
for i, (col, m, p) in enumerate(zip(st.columns(n), models, preds)):
    with col:
        panels[f"depth_{i}"] = common.depth_chart(m, p.depth, f"{m.label}: depth", cmap, vmin, vmax,
                                                  key=f"cmp_depth_{i}", ncols=n)

st.subheader(f"Differences from the reference ({ref.label})")
st.caption("Segmentation: green = same class as the reference, red = a different class (hover names both). "
           "Depth: absolute difference, in the reference's units. Other checkpoints are resized to the "
           "reference's resolution first.")
pairs = st.columns(2 * (n - 1)) if n > 1 else []
for i, (m, p) in enumerate(zip(models[1:], preds[1:]), start=1):
    q = p.resized(*ref_pred.seg.shape) if p.seg.shape != ref_pred.seg.shape else p
    differ = q.seg != ref_pred.seg
    panels[f"seg_diff_{i}"] = viz.seg_error_rgb(q.seg, ref_pred.seg)
    with pairs[2 * (i - 1)]:
        common.rgb_chart(panels[f"seg_diff_{i}"], f"{m.label}: {100 * differ.mean():.1f}% of pixels differ",
                         common.seg_pair_hover(m, q.seg, ref_pred.seg, "reference"), key=f"cmp_sdiff_{i}",
                         ncols=len(pairs))
    with pairs[2 * (i - 1) + 1]:
        panels[f"depth_diff_{i}"] = common.value_chart(np.abs(q.depth - ref_pred.depth), f"{m.label}: |depth − reference|",
                                                       common.depth_unit(ref), "inferno", 0.0, None,
                                                       key=f"cmp_ddiff_{i}", ncols=len(pairs))
common.download_pngs(panels, "cmp_dl")

found = common.samples()
if found:
    st.subheader("Evaluation subset")
    n_img = st.slider("Samples", 1, len(found), min(8, len(found)), key="cmp_n") if len(found) > 1 else 1
    rows, iou_rows, results = [], {}, []
    for m in models:
        preds_m, segs, deps, _ = common.subset(m, n_img)
        res = explore.evaluate_predictions(preds_m, segs, deps, m.num_classes, m.ignore_index)
        results.append(res)
        rows.append(explore.metrics_row(m.label, res) | {"mIoU per image (original)": round(100 * res["miou_per_image"], 2)})
        iou_rows[m.label] = {name: round(100 * v, 2) for name, v in zip(m.class_names, res["iou_per_class"])}
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, column_config=common.metrics_columns(
        ref, None if len({m.depth_kind for m in models}) == 1 else "each model's unit"))
    st.caption(f"Direct predictions on the first {n_img} samples. mIoU = one confusion matrix over the subset; "
               "'per image' = the original code's mean of per-image mIoUs.")
    ious = pd.DataFrame(iou_rows).rename_axis("class").reset_index()
    if len({m.num_classes for m in models}) == 1:
        common.chart(figures.per_class_iou_bar({m.label: r["iou_per_class"] for m, r in zip(models, results)},
                                               ref.class_names, title="IoU per class (%)"), key="cmp_iou_bar")
    with st.expander("IoU per class as a table"):
        st.dataframe(ious, hide_index=True)
    c1, c2 = st.columns(2)
    common.download_csv("Download metrics (CSV)", table, "compare_metrics.csv", key="cmp_csv", container=c1)
    common.download_csv("Download per-class IoU (CSV)", ious, "compare_iou_per_class.csv", key="cmp_iou_csv",
                        container=c2)
    st.markdown("**Confusion matrices**: rows = true class, columns = predicted class, each row sums to 1 "
                "(the diagonal is the recall of that class); hover for pixel counts.")
    for i, (col, m, res) in enumerate(zip(st.columns(n), models, results)):
        with col:
            common.chart(figures.confusion_figure(res["confusion"], m.class_names, "true", title=m.label),
                         key=f"cmp_conf_{i}", height=380)
