"""Compare checkpoints: two or more models on the same image and on an evaluation subset."""
import numpy as np
import pandas as pd
import streamlit as st

from xtask_app import cache, charts, downloads, pickers, selection
from xtask_app.selection import shares_labels
from xtask_app.ui import delta_m, eval_source
from xtask_core.evaluate.report import metrics_row, per_class_iou_rows
from xtask_core.viz import colour as viz
from xtask_core.viz import figures
from xtask_core.viz.display import absent_outputs_note, depth_range

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

picked = pickers.image_picker(models[0], "cmp", explain_gt=False)
if picked is None:
    st.stop()
cmap = st.selectbox("Depth colour map", charts.CMAPS, key="cmp_cmap")
preds = [cache.predict(m, picked.rgb, picked.key) for m in models]
ref, ref_pred = models[0], preds[0]
n = len(models)
mixed_depth = len({m.depth_kind for m in models}) > 1
# One colour range per way of reading depth: disparity and metres never share a colour bar.
ranges = {kind: depth_range([p.depth for m, p in zip(models, preds) if m.depth_kind == kind])
          for kind in {m.depth_kind for m in models}}
for m, p in zip(models, preds):
    if absent_outputs_note(p):
        st.caption(f"ℹ️ {m.label}: {absent_outputs_note(p)}")

panels = {}
st.subheader("Direct predictions")
st.caption("One column per checkpoint; hover for the class or the depth value. Depth panels share one colour "
           "range per unit (" + ", ".join(sorted({m.depth_unit for m in models})) + ").")
groups = {}   # one legend per label set
for m in models:
    groups.setdefault((m.label_set, m.num_classes), m)
if len(groups) > 1:
    st.caption("ℹ️ These checkpoints predict different label sets ("
               + "; ".join(f"{', '.join(x.label for x in models if shares_labels(x, g) or x is g)}: "
                           f"{g.label_set_name}" for g in groups.values())
               + "), so each column uses its own classes; differences and shared metrics are only computed "
                 f"between checkpoints with the reference's labels ({ref.label_set_name}).")
for g in groups.values():
    if len(groups) > 1:
        st.markdown(f"<span style='font-size:0.85em'>{g.label_set_name}:</span>", unsafe_allow_html=True)
    charts.class_legend(g)
for i, (col, m, p) in enumerate(zip(st.columns(n), models, preds)):
    with col:
        if p.seg_logits is None:
            st.info(f"{m.label}: no segmentation output.")
        else:
            panels[f"seg_{i}"] = charts.seg_chart(m, p.seg, f"{m.label}: segmentation", key=f"cmp_seg_{i}", ncols=n)
for i, (col, m, p) in enumerate(zip(st.columns(n), models, preds)):
    with col:
        if p.depth is None:
            st.info(f"{m.label}: no depth output.")
            continue
        title = f"{m.label}: depth" + (f" ({m.depth_unit_short})" if mixed_depth else "")
        panels[f"depth_{i}"] = charts.depth_chart(m, p.depth, title, cmap, *ranges[m.depth_kind],
                                                  key=f"cmp_depth_{i}", ncols=n)

st.subheader(f"Differences from the reference ({ref.label})")
diffs, skipped = [], []
ref_size = ref_pred.depth.shape if ref_pred.depth is not None else None
for i, (m, p) in enumerate(zip(models[1:], preds[1:]), start=1):
    q = p.resized(*ref_size) if p.depth is not None and ref_size and p.size != ref_size else p
    if shares_labels(m, ref) and p.seg_logits is not None and ref_pred.seg_logits is not None \
            and q.seg_logits.shape == ref_pred.seg_logits.shape:
        diffs.append(("seg", i, m, q))
    if m.depth_kind == ref.depth_kind and q.depth is not None and ref_pred.depth is not None \
            and q.depth.shape == ref_pred.depth.shape:
        diffs.append(("depth", i, m, q))
    if not shares_labels(m, ref) or m.depth_kind != ref.depth_kind:
        skipped.append(f"{m.label} ({m.label_set_name}, {m.depth_unit})")
if skipped:
    st.caption(f"ℹ️ Not compared with the reference ({ref.label_set_name}, {ref.depth_unit}) where the classes or "
               f"the depth reading differ: {'; '.join(skipped)}.")
if diffs:
    st.caption("Segmentation: green = same class as the reference, red = a different class (hover names both). "
               "Depth: absolute difference, in the reference's units. Other checkpoints are resized to the "
               "reference's resolution first.")
for col, (task, i, m, q) in zip(st.columns(max(2, len(diffs))), diffs):   # ≥ 2 columns: no full-width map
    with col:
        if task == "seg":
            panels[f"seg_diff_{i}"] = viz.seg_error_rgb(q.seg, ref_pred.seg)
            charts.rgb_chart(panels[f"seg_diff_{i}"], f"{m.label}: {100 * (q.seg != ref_pred.seg).mean():.1f}% of "
                             "pixels differ", charts.seg_pair_hover(m, q.seg, ref_pred.seg, "reference"),
                             key=f"cmp_sdiff_{i}", ncols=max(2, len(diffs)))
        else:
            panels[f"depth_diff_{i}"] = charts.value_chart(
                np.abs(q.depth - ref_pred.depth), f"{m.label}: |depth − reference|", ref.depth_unit_short,
                "inferno", 0.0, None, key=f"cmp_ddiff_{i}", ncols=max(2, len(diffs)))
downloads.download_pngs(panels, "cmp_dl")

# --------------------------------------------------------------------------- evaluation subset
same = [m for m in models if shares_labels(m, ref)]
results, chosen = {}, None
st.subheader("Evaluation subset")
if len(same) < n:
    st.caption(f"ℹ️ The evaluation subset is labelled for the reference ({ref.label_set_name}); left out: "
               + ", ".join(m.label for m in models if m not in same) + ".")
chosen = eval_source.choose(same, "cmp")
if chosen is not None:
    results = chosen.results
    same = [m for m in same if m.label in results]
    table = pd.DataFrame([metrics_row(label, res)
                          | {"mIoU per image (original)": round(100 * res["miou_per_image"], 2)}
                          for label, res in results.items()])
    st.dataframe(table, hide_index=True, column_config=charts.metrics_columns(ref))
    st.caption(f"Direct predictions on {chosen.description}. mIoU = one confusion matrix over the subset; "
               "'per image' = the original code's mean of per-image mIoUs; empty cells: no output for that task.")
    ious = pd.DataFrame(per_class_iou_rows(results, {m.label: m.class_names for m in same}))
    ious = ious.rename_axis("class").reset_index()
    scored = {label: r for label, r in results.items() if np.asarray(r["confusion"]).any()}   # has segmentation
    if scored:
        charts.chart(figures.per_class_iou_bar({label: r["iou_per_class"] for label, r in scored.items()},
                                               ref.class_names, title="IoU per class (%)"), key="cmp_iou_bar")
    with st.expander("IoU per class as a table"):
        st.dataframe(ious, hide_index=True)
    c1, c2 = st.columns(2)
    downloads.download_csv("Download metrics (CSV)", table, "compare_metrics.csv", key="cmp_csv", container=c1)
    downloads.download_csv("Download per-class IoU (CSV)", ious, "compare_iou_per_class.csv", key="cmp_iou_csv",
                           container=c2)
    st.markdown("**Confusion matrices**: rows = true class, columns = predicted class, each row sums to 1 "
                "(the diagonal is the recall of that class); hover for pixel counts.")
    for i, (col, m) in enumerate(zip(st.columns(len(same)), same)):
        with col:
            if not np.asarray(results[m.label]["confusion"]).any():
                st.info(f"{m.label}: no segmentation scored.")
                continue
            charts.chart(figures.confusion_figure(results[m.label]["confusion"], m.class_names, "true",
                                                  title=m.label), key=f"cmp_conf_{i}", height=380)

# --------------------------------------------------------------------------- Δm over single-task baselines
delta_m.show_for_checkpoints(same, results, images=chosen.description if chosen is not None else "")
