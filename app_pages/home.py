"""Home: what cross-task consistency is, one live figure, the device, where to go next."""
import streamlit as st

from xtask_app import cache, charts, pickers, selection, settings
from xtask_core.io.keys import array_key

st.title("Cross-task consistency explorer")
state = selection.sidebar()

st.markdown(
    "One network looks at a picture (a street scene, a room) and predicts two things at once: **semantic "
    "segmentation** (what each pixel is) and **depth** (how far away it is). Two small "
    "**task-transfer nets** then translate each prediction into the other task: depth → "
    "segmentation and segmentation → depth. Training asks the translated prediction to agree "
    "with the direct one, so the two tasks check each other; where they still disagree at test "
    "time (the *consistency energy*), the model is often wrong, and it can tell you so without "
    "any label.")

st.caption(f"Running on: **{settings.device_label()}**.")

if state is None:
    st.info("Load a checkpoint in the sidebar to see the live model.")
    st.stop()

found = pickers.fitting_samples(state) or settings.samples()   # an image of the model's own kind first
if found:
    s = found[0]
    rgb, _, _ = pickers.sample_arrays(state, s)
    pred = cache.predict(state, rgb, array_key(rgb))
    panels = charts.prediction_panels(state, pred, cmap="magma")
    st.subheader(f"The live model on {s.name}")
    charts.class_legend(state)
    near_far = "near" if state.depth_kind == "disparity" else "far"
    cols = st.columns(3)
    cols[0].image(pred.input_rgb, caption="input (as the model sees it)", width="stretch")
    for col, (name, caption) in zip(cols[1:], (("seg", "direct segmentation"),
                                               ("seg_t", "transferred from depth (depth → seg net)"))):
        if name in panels:
            col.image(panels[name], caption=caption, width="stretch")
    cols = st.columns(3)
    cols[0].caption("Top row: segmentation; bottom row: depth. *Direct* predictions come from the "
                    "image; *transferred* ones see only the other task's prediction, never the image. "
                    "Where the two agree the model is consistent.")
    for col, (name, caption) in zip(cols[1:], (("depth", f"direct depth (bright = {near_far})"),
                                               ("depth_t", "transferred from segmentation (seg → depth net)"))):
        if name in panels:
            col.image(panels[name], caption=caption, width="stretch")
else:
    st.info(f"No sample images in {settings.samples_dir()}; the other pages accept uploads.")

if state.meta.get("dataset") == "synthetic":
    st.warning("Honest note: the demo checkpoint and sample images are **synthetic** street scenes "
               "rendered by xtask (real Cityscapes cannot be shipped). Expect it to work on them and "
               "poorly on real photos; load your own Cityscapes or NYUv2 checkpoint in the sidebar.")

st.subheader("Where next")
st.markdown(
    "- **Predictions**: pick or upload an image; direct and transferred outputs, hover values, "
    "metrics against ground truth, a 3D point cloud.\n"
    "- **Error maps**: where the model is wrong, and whether the label-free energy finds it.\n"
    "- **Compare checkpoints**: two or more models on the same images and an evaluation subset.\n"
    "- **Fine-tune** / **Training dashboard**: short fine-tuning runs and training curves.\n"
    "- **Learn**: corrupt the input and watch consistency react; see what the transfer nets learnt.")
