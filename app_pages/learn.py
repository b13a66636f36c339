"""Learn: a guided lesson on cross-task consistency, run on the live model."""
import pandas as pd
import streamlit as st

from xtask_app import cache, charts, downloads, pickers, selection
from xtask_app.ui import baseline as baseline_ui
from xtask_core.evaluate.report import energy_error_study, energy_row, has_energy, image_metrics, study_sentences
from xtask_core.inference.transfer import transfer_from_ground_truth
from xtask_core.viz.display import absent_outputs_note, apply_corruptions, depth_range, energy_scale, wipe

st.title("Learn: cross-task consistency, hands on")
state = selection.sidebar()
if state is None:
    st.stop()

st.markdown(
    "A four-step lesson on the model selected in the sidebar. You will see that one network gives "
    "**two routes** to each answer, that the two routes **disagree when the input gets hard**, "
    "that this disagreement (the *consistency energy*) **points at errors without any label**, and "
    "what the task-transfer nets actually learnt.")
if state.meta.get("dataset") == "synthetic":
    st.caption("The demo model was trained on synthetic street scenes; pick a sample image for a fair test.")
elif state.label_set == "nyuv2":
    st.caption("This model predicts the 13 NYUv2 indoor classes and depth in metres: steps 3 and 4 need an "
               "indoor image with NYUv2 labels (an indoor sample or an NYUv2 dataset split).")

# --------------------------------------------------------------------------- step 1
st.header("Step 1 · Two routes to the same answer", divider="gray")
st.markdown(
    "The **direct** heads look at the image and predict segmentation and depth. The **transfer nets** "
    "never see the image: one turns the predicted *depth* into a segmentation, the other turns the "
    "predicted *segmentation* into depth. Training asks both routes to agree, so each task checks "
    "the other. Pick an image and compare the two routes below (top: segmentation, bottom: depth).")
picked = pickers.image_picker(state, "learn")
if picked is None:
    st.stop()
# The model sees the image at its own input size, so corrupt that (cheap, and what matters).
clean_pred = cache.predict(state, picked.rgb, picked.key)
clean_rgb = clean_pred.input_rgb
if not has_energy(clean_pred):
    # A single-task model has one route and no transfer nets: the lesson needs both.
    st.info(f"{absent_outputs_note(clean_pred)} This lesson compares two routes to each answer, so it needs a "
            "cross-task checkpoint: pick one in the sidebar.")
    cols = st.columns(2)
    cols[0].image(clean_rgb, caption="input", width="stretch")
    with cols[1]:
        if clean_pred.seg_logits is not None:
            charts.seg_chart(state, clean_pred.seg, "direct segmentation", key="learn_stl", ncols=2)
        elif clean_pred.depth is not None:
            charts.depth_chart(state, clean_pred.depth, "direct depth", "magma",
                               *charts.prediction_depth_range(clean_pred), key="learn_stl", ncols=2)
    st.stop()
clean_panels = charts.prediction_panels(state, clean_pred)
cols = st.columns(5)
cols[0].image(clean_rgb, caption="input (clean)", width="stretch")
for col, (name, caption) in zip(cols[1:], (("seg", "direct segmentation"), ("seg_t", "transferred: depth → seg"),
                                            ("depth", "direct depth"), ("depth_t", "transferred: seg → depth"))):
    col.image(clean_panels[name], caption=caption, width="stretch")
st.caption("Depth colours: bright = large values (" + state.depth_unit + ("; near is bright" if state.depth_kind ==
           "disparity" else "; far is bright") + "). A well-trained model gives similar pictures along both routes.")

# --------------------------------------------------------------------------- step 2
st.header("Step 2 · Break the input, watch the routes drift apart", divider="gray")
st.markdown(
    "Make the image harder with the sliders. The direct predictions degrade first; the transferred "
    "ones, computed from those degraded predictions, stop matching them, and the **energy** (how "
    "much the two routes disagree) rises. Nothing here uses a label.")
c = st.columns(4)
strengths = {"noise": c[0].slider("Noise", 0.0, 1.0, 0.0, 0.05, key="learn_noise", help="Gaussian pixel noise"),
             "blur": c[1].slider("Blur", 0.0, 1.0, 0.0, 0.05, key="learn_blur", help="Gaussian blur"),
             "occlusion": c[2].slider("Occlusion", 0.0, 1.0, 0.0, 0.05, key="learn_occ",
                                      help="Grey blocks hiding part of the scene"),
             "brightness": c[3].slider("Darken", 0.0, 1.0, 0.0, 0.05, key="learn_dark", help="Lower the brightness")}
if any(strengths.values()):
    bad_rgb = apply_corruptions(clean_rgb, strengths, seed=0)
    bad_pred = cache.predict(state, bad_rgb, picked.key, corruption=strengths)
else:
    bad_rgb, bad_pred = clean_rgb, clean_pred
    st.info("All sliders are at 0, so the input below is the clean image. Move a slider to corrupt it.")

c1, c2 = st.columns([3, 2])
with c1:
    pos = st.slider("Before ↔ after (wipe)", 0.0, 1.0, 0.5, 0.01, key="learn_wipe",
                    help="Left of the white line: the corrupted input the model now sees; right: the clean one")
    st.image(wipe(clean_rgb, bad_rgb, pos), caption="Input · left of the line: corrupted · right: clean",
             width="stretch")
rows, maps = [], {}
for name, p in (("clean", clean_pred), ("corrupted", bad_pred)):
    row, maps[name] = energy_row(name, p, picked.gt_seg, picked.gt_depth, state.num_classes, state.ignore_index,
                                 state.depth_unit_short)
    rows.append(row)
table = pd.DataFrame(rows)
with c2:
    st.markdown("**Energy before and after** (means over the image)")
    st.dataframe(table.set_index("input").T.rename_axis("quantity"), width="stretch")
    st.caption("Energy columns need no label; the accuracy rows (when the image has ground truth) show the "
               "real damage. Both should move together.")
    downloads.download_csv("Download numbers (CSV)", table, "learn_corruption.csv", key="learn_csv")

e, clean_e = maps["corrupted"], maps["clean"]
vmin, vmax = charts.prediction_depth_range(bad_pred)
panels = {}
st.markdown("**The two routes on the current input, and their disagreement** (energy colour scales are "
            "fixed at 3× the clean image's 99th percentile, so energy visibly grows as you corrupt)")
charts.class_legend(state)
cols = st.columns(3)
with cols[0]:
    panels["direct_seg"] = charts.seg_chart(state, bad_pred.seg, "direct segmentation (from the image)",
                                            key="learn_seg")
with cols[1]:
    panels["transferred_seg"] = charts.seg_chart(state, bad_pred.seg_t, "transferred (from direct depth)",
                                                 key="learn_segt")
with cols[2]:
    panels["seg_energy"] = charts.value_chart(e["seg_kl"], "seg energy: KL(direct ‖ transferred)", "nats", "inferno",
                                              0.0, energy_scale(clean_e["seg_kl"]), key="learn_segen")
cols = st.columns(3)
with cols[0]:
    panels["direct_depth"] = charts.depth_chart(state, bad_pred.depth, "direct depth (from the image)", "magma",
                                                vmin, vmax, key="learn_dep")
with cols[1]:
    panels["transferred_depth"] = charts.depth_chart(state, bad_pred.depth_t, "transferred (from direct seg)",
                                                     "magma", vmin, vmax, key="learn_dept")
with cols[2]:
    panels["depth_energy"] = charts.value_chart(e["depth_abs"], "depth energy: |transferred − direct|",
                                                state.depth_unit_short, "inferno", 0.0,
                                                energy_scale(clean_e["depth_abs"]), key="learn_depen")
downloads.download_pngs(panels, "learn_dl")

# --------------------------------------------------------------------------- step 3
st.header("Step 3 · Energy points at errors, without labels", divider="gray")
has_gt = picked.gt_seg is not None or picked.gt_depth is not None
NEEDS_GT = (f"This needs ground truth in the model's label set ({state.label_set_name}): pick a sample or a "
            "dataset item that has it above.")
if not has_gt:
    st.info("This step compares energy with the true error. " + NEEDS_GT)
else:
    study = energy_error_study([bad_pred], [picked.gt_seg], [picked.gt_depth], state.ignore_index)
    st.markdown("On the current input, using the ground truth only to *check* the energy:\n"
                + "\n".join(study_sentences(study)))
    st.caption("One image is a small sample: values near chance say the energy tells little about *this* image's "
               "errors. A checkpoint trained without the consistency losses (λ1 = λ2 = 0) has untrained transfer "
               "nets, so its energy carries no signal at all. The Error maps page pools a subset of images and "
               "draws the full analysis (sparsification curves, error per energy bin).")
    baseline_ui.learn_section(state, clean_rgb, bad_pred, picked.gt_seg)   # energy beside the confidence

# --------------------------------------------------------------------------- step 4
st.header("Step 4 · What did the transfer nets learn?", divider="gray")
st.markdown(
    "Feed the transfer nets the **ground truth** instead of a prediction: the seg → depth net gets the true "
    "segmentation, the depth → seg net the true depth. If they learnt the geometry of the scenes they were "
    "trained on (" + ("floor below, walls behind the furniture, ceiling above" if state.label_set == "nyuv2" else
                      "road below, sky above, cars at a plausible distance")
    + "), their outputs resemble the true other task.")
if not has_gt:
    st.info(NEEDS_GT)
else:
    t = transfer_from_ground_truth(state.loaded.model, picked.gt_seg, picked.gt_depth,
                                   state.num_classes, state.ignore_index)
    cols = st.columns(2)
    if t["depth_from_gt_seg"] is not None:
        with cols[0]:
            st.markdown("**Segmentation → depth**")
            charts.seg_chart(state, picked.gt_seg, "input: true segmentation", key="learn_gts", ncols=2)
            lo, hi = depth_range([t["depth_from_gt_seg"], picked.gt_depth])
            charts.depth_chart(state, t["depth_from_gt_seg"], "output: depth from the seg → depth net",
                               "magma", lo, hi, key="learn_s2d", ncols=2)
            if picked.gt_depth is not None:
                charts.depth_chart(state, picked.gt_depth, "true depth, to compare (same colours)", "magma", lo, hi,
                                   key="learn_gtd", ncols=2)
    if t["seg_from_gt_depth"] is not None:
        with cols[1]:
            st.markdown("**Depth → segmentation**")
            lo, hi = depth_range([picked.gt_depth])
            charts.depth_chart(state, picked.gt_depth, "input: true depth", "magma", lo, hi, key="learn_gtd2", ncols=2)
            charts.seg_chart(state, t["seg_from_gt_depth"].argmax(0), "output: segmentation from the depth → seg net",
                             key="learn_d2s", ncols=2)
            if picked.gt_seg is not None:
                charts.seg_chart(state, picked.gt_seg, "true segmentation, to compare", key="learn_gts2", ncols=2)
    m_seg = image_metrics(t["seg_from_gt_depth"], None, picked.gt_seg, None, state.num_classes, state.ignore_index)
    m_dep = image_metrics(None, t["depth_from_gt_seg"], None, picked.gt_depth, state.num_classes, state.ignore_index)
    st.caption(f"Depth→seg on true depth: pixel accuracy {100 * m_seg['pixel_acc']:.1f}%, "
               f"mIoU {100 * m_seg['miou']:.1f}%. Seg→depth on true segmentation: Abs {m_dep['abs']:.4g} "
               f"{state.depth_unit_short}, Abs Rel {m_dep['abs_rel']:.3g} (nan where that ground truth is missing).")

st.header("What to take away", divider="gray")
st.markdown(
    "1. One network, two routes per task: direct (from the image) and transferred (from the other task).\n"
    "2. Training them to agree couples the tasks: depth errors show up as segmentation disagreements and back.\n"
    "3. At test time their disagreement, the consistency energy, rises where the model is wrong, with no label "
    "needed: a built-in warning light.\n"
    "4. Try it: the **Fine-tune** page trains with your own λ1 / λ2 (how strongly the routes must agree) and "
    "the **Compare checkpoints** page puts the result next to the original.")
