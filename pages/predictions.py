"""Predictions: one image through the current checkpoint, direct and transferred outputs side by side."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run pages/predictions.py`
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from pages import common  # noqa: E402
from xtask_core import explore  # noqa: E402

st.title("Predictions")
state = common.sidebar()
if state is None:
    st.stop()

picked = common.image_picker(state, "pred")
if picked is None:
    st.stop()
pred = common.predict(state, picked.rgb, picked.key)

# Display-only controls: they never re-run the model (the prediction above is cached).
c1, c2, c3 = st.columns([2, 2, 3])
alpha = c1.slider("Segmentation overlay opacity", 0.0, 1.0, 0.6, 0.05, key="pred_alpha")
cmap = c2.selectbox("Depth colour map", common.CMAPS, key="pred_cmap")
show = c3.multiselect("Panels", ["ground truth", "direct", "transferred"],
                      default=["ground truth", "direct", "transferred"], key="pred_panels")

h, w = picked.rgb.shape[:2]
st.image(picked.rgb, caption=f"{picked.name}: {w}×{h} px (the model sees it resized to "
         f"{state.config.width}×{state.config.height})", width=min(max(w, 360), 1024))

has_gt = picked.gt_seg is not None
cols_seg = [("ground truth", picked.gt_seg)] if has_gt and "ground truth" in show else []
cols_seg += [(n, a) for n, a in (("direct", pred.seg), ("transferred", pred.seg_t)) if n in show]
panels = {}
st.subheader("Segmentation")
st.caption("Hover a pixel for its class. Transferred = the depth → segmentation net applied to the "
           "direct depth.")
for col, (name, labels) in zip(st.columns(max(1, len(cols_seg))), cols_seg):
    with col:
        panels[f"seg_{name}"] = common.seg_chart(state, labels, f"{name} segmentation", pred.input_rgb,
                                                 alpha, key=f"pred_seg_{name}")

st.subheader("Depth")
st.caption(f"Model unit: {state.depth_unit}. Hover a pixel for its value. Transferred = the "
           "segmentation → depth net applied to the direct segmentation.")
cols_dep = [("ground truth", picked.gt_depth)] if picked.gt_depth is not None and "ground truth" in show else []
cols_dep += [(n, a) for n, a in (("direct", pred.depth), ("transferred", pred.depth_t)) if n in show]
vmin, vmax = common.depth_range(state, pred)
for col, (name, depth) in zip(st.columns(max(1, len(cols_dep))), cols_dep):
    with col:
        panels[f"depth_{name}"] = common.depth_chart(state, depth, f"{name} depth", cmap, vmin, vmax,
                                                     key=f"pred_depth_{name}")

if has_gt:
    st.subheader("This image's metrics")
    rows = []
    for name, seg, dep in (("direct", pred.seg_logits, pred.depth), ("transferred", pred.seg_t_logits, pred.depth_t)):
        m = explore.image_metrics(seg, dep, picked.gt_seg, picked.gt_depth, state.num_classes, state.ignore_index)
        rows.append(explore.metrics_row(name, m))
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    st.caption("mIoU here is over the classes present in this image (prediction ∪ ground truth); "
               f"depth errors are in {state.depth_unit}; void / invalid pixels are left out.")
    common.download_csv("Download metrics (CSV)", table, "metrics.csv", key="pred_csv")
else:
    st.info("No ground truth for this image, so no metrics: pick a sample or a dataset item for those.")

st.subheader("3D point cloud")
st.caption("Every pixel lifted to 3D with the direct depth, coloured by the direct segmentation: a pinhole "
           + ("camera with the Cityscapes focal length and stereo baseline turning disparity into metres"
              if state.depth_kind == "disparity" else "camera with an assumed 60° field of view")
           + "; pixels without depth or beyond 80 m are left out. Drag to rotate.")
st.plotly_chart(common.point_cloud_figure(state, pred), key="pred_cloud")

st.subheader("Downloads")
common.download_pngs(panels, "pred_dl")
