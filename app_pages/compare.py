"""Compare checkpoints: two or more models on the same image and on an evaluation subset."""
import numpy as np
import pandas as pd
import streamlit as st

from xtask_app import cache, charts, downloads, pickers, selection, settings
from xtask_core.evaluate.report import evaluate_predictions, metrics_row, per_class_iou_rows
from xtask_core.viz import colour as viz
from xtask_core.viz import figures
from xtask_core.viz.display import depth_range

st.title("Compare checkpoints")
state = selection.sidebar()
if state is None:
    st.stop()
st.caption("Two or more checkpoints on the same image, then on an evaluation subset with ground truth. "
           "The first checkpoint picked is the reference the differences are measured against.")

models = selection.choose_checkpoints("Checkpoints to compare (the first is the reference)", "cmp_models")
if len(models) < 2:
    st.info("Pick at least two checkpoints (add more with 'Load another checkpoint' in the sidebar).")
    st.stop()

picked = pickers.image_picker(models[0], "cmp")
if picked is None:
    st.stop()
cmap = st.selectbox("Depth colour map", charts.CMAPS, key="cmp_cmap")
preds = [cache.predict(m, picked.rgb, picked.key) for m in models]
ref, ref_pred = models[0], preds[0]
vmin, vmax = depth_range([p.depth for p in preds])
n = len(models)

panels = {}
st.subheader("Direct predictions")
st.caption("One column per checkpoint; hover for the class or the depth value. Depth panels share one colour "
           "range (" + ", ".join(sorted({m.depth_unit for m in models})) + ").")
charts.class_legend(ref)
for i, (col, m, p) in enumerate(zip(st.columns(n), models, preds)):
    with col:
        panels[f"seg_{i}"] = charts.seg_chart(m, p.seg, f"{m.label}: segmentation", key=f"cmp_seg_{i}", ncols=n)
for i, (col, m, p) in enumerate(zip(st.columns(n), models, preds)):
    with col:
        panels[f"depth_{i}"] = charts.depth_chart(m, p.depth, f"{m.label}: depth", cmap, vmin, vmax,
                                                  key=f"cmp_depth_{i}", ncols=n)

st.subheader(f"Differences from the reference ({ref.label})")
st.caption("Segmentation: green = same class as the reference, red = a different class (hover names both). "
           "Depth: absolute difference, in the reference's units. Other checkpoints are resized to the "
           "reference's resolution first.")
pairs = st.columns(2 * (n - 1))
for i, (m, p) in enumerate(zip(models[1:], preds[1:]), start=1):
    q = p.resized(*ref_pred.seg.shape) if p.seg.shape != ref_pred.seg.shape else p
    panels[f"seg_diff_{i}"] = viz.seg_error_rgb(q.seg, ref_pred.seg)
    with pairs[2 * (i - 1)]:
        charts.rgb_chart(panels[f"seg_diff_{i}"], f"{m.label}: {100 * (q.seg != ref_pred.seg).mean():.1f}% of "
                         "pixels differ", charts.seg_pair_hover(m, q.seg, ref_pred.seg, "reference"),
                         key=f"cmp_sdiff_{i}", ncols=len(pairs))
    with pairs[2 * (i - 1) + 1]:
        panels[f"depth_diff_{i}"] = charts.value_chart(
            np.abs(q.depth - ref_pred.depth), f"{m.label}: |depth − reference|", ref.depth_unit_short, "inferno",
            0.0, None, key=f"cmp_ddiff_{i}", ncols=len(pairs))
downloads.download_pngs(panels, "cmp_dl")

found = settings.samples()
if not found:
    st.stop()
st.subheader("Evaluation subset")
n_img = st.slider("Samples", 1, len(found), min(8, len(found)), key="cmp_n") if len(found) > 1 else 1
results = {}
for m in models:
    preds_m, segs, deps, _ = pickers.subset(m, n_img)
    results[m.label] = evaluate_predictions(preds_m, segs, deps, m.num_classes, m.ignore_index)
table = pd.DataFrame([metrics_row(label, res) | {"mIoU per image (original)": round(100 * res["miou_per_image"], 2)}
                      for label, res in results.items()])
st.dataframe(table, hide_index=True, column_config=charts.metrics_columns(
    ref, None if len({m.depth_kind for m in models}) == 1 else "each model's unit"))
st.caption(f"Direct predictions on the first {n_img} samples. mIoU = one confusion matrix over the subset; "
           "'per image' = the original code's mean of per-image mIoUs.")
ious = pd.DataFrame(per_class_iou_rows(results, {m.label: m.class_names for m in models}))
ious = ious.rename_axis("class").reset_index()
if len({m.num_classes for m in models}) == 1:
    charts.chart(figures.per_class_iou_bar({label: r["iou_per_class"] for label, r in results.items()},
                                           ref.class_names, title="IoU per class (%)"), key="cmp_iou_bar")
with st.expander("IoU per class as a table"):
    st.dataframe(ious, hide_index=True)
c1, c2 = st.columns(2)
downloads.download_csv("Download metrics (CSV)", table, "compare_metrics.csv", key="cmp_csv", container=c1)
downloads.download_csv("Download per-class IoU (CSV)", ious, "compare_iou_per_class.csv", key="cmp_iou_csv",
                       container=c2)
st.markdown("**Confusion matrices**: rows = true class, columns = predicted class, each row sums to 1 "
            "(the diagonal is the recall of that class); hover for pixel counts.")
for i, (col, m) in enumerate(zip(st.columns(n), models)):
    with col:
        charts.chart(figures.confusion_figure(results[m.label]["confusion"], m.class_names, "true", title=m.label),
                     key=f"cmp_conf_{i}", height=380)
