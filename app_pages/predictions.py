"""Predictions: one image through the current checkpoint, direct and transferred outputs side by side."""
import pandas as pd
import streamlit as st

from xtask_app import cache, charts, downloads, pickers, selection
from xtask_core.evaluate.report import image_metrics, metrics_row
from xtask_core.viz.display import absent_outputs_note

st.title("Predictions")
state = selection.sidebar()
if state is None:
    st.stop()

picked = pickers.image_picker(state, "pred")
if picked is None:
    st.stop()
pred = cache.predict(state, picked.rgb, picked.key)
missing = absent_outputs_note(pred)
if missing:
    st.caption(f"ℹ️ {missing}")

# Display-only controls: they never re-run the model (the prediction above is cached).
c1, c2, c3 = st.columns([2, 2, 3])
alpha = c1.slider("Segmentation overlay opacity", 0.0, 1.0, 0.6, 0.05, key="pred_alpha") \
    if pred.seg_logits is not None else 1.0
cmap = c2.selectbox("Depth colour map", charts.CMAPS, key="pred_cmap")
kinds = ["ground truth", "direct"] + (["transferred"] if pred.seg_t_logits is not None or pred.depth_t is not None
                                      else [])
show = c3.multiselect("Panels", kinds, default=kinds, key="pred_panels")

h, w = picked.rgb.shape[:2]
c1, c2 = st.columns([3, 2])
c1.image(picked.rgb, caption=f"Input {picked.name}: {w}×{h} px (the model sees it resized to "
         f"{state.config.width}×{state.config.height})", width="stretch")
c2.markdown("**How to read this page**\n\n"
            "- *Direct*: what the network predicts from the image.\n"
            "- *Transferred*: what a task-transfer net makes of the **other** task's direct "
            "prediction; it never sees the image.\n"
            "- Where direct and transferred agree, the two tasks are consistent.\n"
            "- Hover any panel for the value under the cursor.")


def panel_list(gt, direct, transferred) -> list[tuple[str, object]]:
    """(name, map) of the panels picked in "Panels" (ground truth only when there is one)."""
    items = [("ground truth", gt), ("direct", direct), ("transferred", transferred)]
    return [(n, a) for n, a in items if n in show and a is not None]


panels = {}
if pred.seg_logits is not None:
    st.subheader("Segmentation")
    st.caption(f"Class colours over the input at {alpha:.0%} opacity; hover a pixel for its class."
               + (" Transferred = the depth → segmentation net applied to the direct depth."
                  if pred.seg_t_logits is not None else ""))
    charts.class_legend(state)
    cols_seg = panel_list(picked.gt_seg, pred.seg, pred.seg_t)
    n_seg = max(1, len(cols_seg))
    for col, (name, labels) in zip(st.columns(n_seg), cols_seg):
        with col:
            panels[f"seg_{name.replace(' ', '_')}"] = charts.seg_chart(
                state, labels, f"{name} segmentation", pred.input_rgb, alpha, key=f"pred_seg_{name}", ncols=n_seg)

if pred.depth is not None:
    st.subheader("Depth")
    st.caption(f"Colour bar in {state.depth_unit}"
               + (", bright = near; hover also gives metres through the Cityscapes stereo camera"
                  if state.depth_kind == "disparity" else ", bright = far")
               + ". Blank pixels have no depth (no ground-truth value, or ≤ 0 in a prediction). All panels share one "
               "colour range." + (" Transferred = the segmentation → depth net applied to the direct segmentation."
                                  if pred.depth_t is not None else ""))
    cols_dep = panel_list(picked.gt_depth, pred.depth, pred.depth_t)
    vmin, vmax = charts.prediction_depth_range(pred, *(d for n, d in cols_dep if n == "ground truth"))
    n_dep = max(1, len(cols_dep))
    for col, (name, depth) in zip(st.columns(n_dep), cols_dep):
        with col:
            panels[f"depth_{name.replace(' ', '_')}"] = charts.depth_chart(
                state, depth, f"{name} depth", cmap, vmin, vmax, key=f"pred_depth_{name}", ncols=n_dep)
downloads.download_pngs(panels, "pred_dl")

if picked.gt_seg is not None or picked.gt_depth is not None:
    st.subheader("This image's metrics")
    routes = [("direct", pred.seg_logits, pred.depth)]
    if pred.seg_t_logits is not None or pred.depth_t is not None:
        routes.append(("transferred", pred.seg_t_logits, pred.depth_t))
    table = pd.DataFrame([metrics_row(name, image_metrics(seg, dep, picked.gt_seg, picked.gt_depth,
                                                          state.num_classes, state.ignore_index))
                          for name, seg, dep in routes])
    st.dataframe(table, hide_index=True, column_config=charts.metrics_columns(state))
    st.caption("mIoU over the classes present in this image (prediction ∪ ground truth); void / invalid "
               "pixels are left out; empty cells: no ground truth or no output for that task. "
               "Transferred = the transfer nets' outputs scored against the same ground truth.")
    downloads.download_csv("Download metrics (CSV)", table, "metrics.csv", key="pred_csv")

if pred.depth is not None:
    st.subheader("3D point cloud")
    colour_by = st.radio("Colour points by", ["segmentation", "image"] if pred.seg_logits is not None else ["image"],
                         horizontal=True, key="pred_cloud_colour")
    st.caption("Every pixel of the direct depth lifted to 3-D (axes in metres) with a pinhole camera: "
               + ("the Cityscapes focal length and stereo baseline turn disparity into metres"
                  if state.depth_kind == "disparity" else "the network's depth is already in metres; an assumed "
                  "60° horizontal field of view")
               + "; pixels without depth or beyond 80 m are left out. Drag to rotate, scroll to zoom.")
    charts.point_cloud_chart(state, pred, colour_by, key="pred_cloud")
