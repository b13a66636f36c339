"""Learn: a guided lesson on cross-task consistency, run on the live model."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run app_pages/learn.py`
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app_pages import common  # noqa: E402
from xtask_core import explore  # noqa: E402
from xtask_core.evaluate import analysis  # noqa: E402

st.title("Learn: cross-task consistency, hands on")
state = common.sidebar()
if state is None:
    st.stop()

st.markdown(
    "A four-step lesson on the model selected in the sidebar. You will see that one network gives "
    "**two routes** to each answer, that the two routes **disagree when the input gets hard**, "
    "that this disagreement (the *consistency energy*) **points at errors without any label**, and "
    "what the task-transfer nets actually learnt.")
if state.meta.get("dataset") == "synthetic":
    st.caption("The demo model was trained on synthetic street scenes; pick a sample image for a fair test.")

# --------------------------------------------------------------------------- step 1
st.header("Step 1 · Two routes to the same answer", divider="gray")
st.markdown(
    "The **direct** heads look at the image and predict segmentation and depth. The **transfer nets** "
    "never see the image: one turns the predicted *depth* into a segmentation, the other turns the "
    "predicted *segmentation* into depth. Training asks both routes to agree, so each task checks "
    "the other. Pick an image and compare the two routes below (top: segmentation, bottom: depth).")
picked = common.image_picker(state, "learn")
if picked is None:
    st.stop()

# --------------------------------------------------------------------------- step 2 controls
# The model sees the image at its own input size, so corrupt that (cheap, and what matters).
clean_pred = common.predict(state, picked.rgb, picked.key)
clean_rgb = clean_pred.input_rgb
clean_panels = common.prediction_panels(state, clean_pred)
cols = st.columns(5)
cols[0].image(clean_rgb, caption="input (clean)", width="stretch")
for col, (name, caption) in zip(cols[1:], (("seg", "direct segmentation"), ("seg_t", "transferred: depth → seg"),
                                            ("depth", "direct depth"), ("depth_t", "transferred: seg → depth"))):
    col.image(clean_panels[name], caption=caption, width="stretch")
st.caption("Depth colours: bright = large values (" + state.depth_unit + ("; near is bright" if state.depth_kind ==
           "disparity" else "; far is bright") + "). A well-trained model gives similar pictures along both routes.")

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
    bad_rgb = explore.apply_corruptions(clean_rgb, strengths, seed=0)
    bad_pred = common.predict(state, bad_rgb, picked.key, corruption=strengths)
else:
    bad_rgb, bad_pred = clean_rgb, clean_pred
    st.info("All sliders are at 0, so the input below is the clean image. Move a slider to corrupt it.")

c1, c2 = st.columns([3, 2])
with c1:
    pos = st.slider("Before ↔ after (wipe)", 0.0, 1.0, 0.5, 0.01, key="learn_wipe",
                    help="Left of the white line: the corrupted input the model now sees; right: the clean one")
    st.image(explore.wipe(clean_rgb, bad_rgb, pos), caption="Input · left of the line: corrupted · right: clean",
             width="stretch")

rows, maps = [], {}
for name, p in (("clean", clean_pred), ("corrupted", bad_pred)):
    e = analysis.energy_maps(p.seg_logits, p.seg_t_logits, p.depth, p.depth_t)
    maps[name] = e
    row = {"input": name, "seg energy KL (nats)": round(e["seg_kl_mean"], 4),
           f"depth energy ({common.depth_unit(state)})": round(e["depth_abs_mean"], 5),
           "direct vs transferred disagree (%)": round(100 * float(e["disagree"].mean()), 2)}
    if picked.gt_seg is not None or picked.gt_depth is not None:
        m = explore.image_metrics(p.seg_logits, p.depth, picked.gt_seg, picked.gt_depth,
                                  state.num_classes, state.ignore_index)
        row.update({"direct pixel acc (%)": round(100 * m["pixel_acc"], 2), "direct depth Abs": round(m["abs"], 5)})
    rows.append(row)
table = pd.DataFrame(rows)
with c2:
    st.markdown("**Energy before and after** (means over the image)")
    st.dataframe(table.set_index("input").T.rename_axis("quantity"), width="stretch")
    st.caption("Energy columns need no label; the accuracy rows (when the image has ground truth) show the "
               "real damage. Both should move together.")
    common.download_csv("Download numbers (CSV)", table, "learn_corruption.csv", key="learn_csv")

e = maps["corrupted"]
vmin, vmax = common.depth_range(state, bad_pred)
panels = {}
st.markdown("**The two routes on the current input, and their disagreement** (energy colour scales are "
            "fixed at 3× the clean image's 99th percentile, so energy visibly grows as you corrupt)")
common.class_legend(state)
cols = st.columns(3)
with cols[0]:
    panels["direct_seg"] = common.seg_chart(state, bad_pred.seg, "direct segmentation (from the image)", key="learn_seg")
with cols[1]:
    panels["transferred_seg"] = common.seg_chart(state, bad_pred.seg_t, "transferred (from direct depth)",
                                                 key="learn_segt")
with cols[2]:
    panels["seg_energy"] = common.value_chart(e["seg_kl"], "seg energy: KL(direct ‖ transferred)", "nats", "inferno",
                                              0.0, explore.energy_scale(maps["clean"]["seg_kl"]), key="learn_segen")
cols = st.columns(3)
with cols[0]:
    panels["direct_depth"] = common.depth_chart(state, bad_pred.depth, "direct depth (from the image)", "magma",
                                                vmin, vmax, key="learn_dep")
with cols[1]:
    panels["transferred_depth"] = common.depth_chart(state, bad_pred.depth_t, "transferred (from direct seg)",
                                                     "magma", vmin, vmax, key="learn_dept")
with cols[2]:
    panels["depth_energy"] = common.value_chart(e["depth_abs"], "depth energy: |transferred − direct|",
                                                common.depth_unit(state), "inferno", 0.0,
                                                explore.energy_scale(maps["clean"]["depth_abs"]), key="learn_depen")
common.download_pngs(panels, "learn_dl")

# --------------------------------------------------------------------------- step 3
st.header("Step 3 · Energy points at errors, without labels", divider="gray")
if picked.gt_seg is None and picked.gt_depth is None:
    st.info("This step compares energy with the true error, so it needs ground truth: pick a sample or a "
            "dataset item above.")
else:
    study = explore.energy_error_study([bad_pred], [picked.gt_seg], [picked.gt_depth], state.ignore_index)
    bits = []
    if study["seg"]:
        r = study["seg"]["report"]
        bits.append(f"- **Segmentation**: ranking pixels by energy finds the wrong ones with AUROC "
                    f"**{r['auroc']:.2f}** (0.5 = a coin toss, 1 = perfect).")
    if study["depth"]:
        r = study["depth"]["report"]
        bits.append(f"- **Depth**: rank correlation between energy and the true error: Spearman ρ = "
                    f"**{r['spearman']:.2f}** (0 = unrelated, 1 = same order).")
    st.markdown("On the current input, using the ground truth only to *check* the energy:\n" + "\n".join(bits))
    st.caption("One image is a small sample: values near chance say the energy tells little about *this* image's "
               "errors. A checkpoint trained without the consistency losses (λ1 = λ2 = 0) has untrained transfer "
               "nets, so its energy carries no signal at all. The Error maps page pools a subset of images and "
               "draws the full analysis (sparsification curves, error per energy bin).")

# --------------------------------------------------------------------------- step 4
st.header("Step 4 · What did the transfer nets learn?", divider="gray")
st.markdown(
    "Feed the transfer nets the **ground truth** instead of a prediction: the seg → depth net gets the true "
    "segmentation, the depth → seg net the true depth. If they learnt the geometry of street scenes (road "
    "below, sky above, cars at a plausible distance), their outputs resemble the true other task.")
if picked.gt_seg is None and picked.gt_depth is None:
    st.info("This needs ground truth: pick a sample or a dataset item above.")
else:
    t = explore.transfer_from_ground_truth(state.loaded.model, picked.gt_seg, picked.gt_depth,
                                           state.num_classes, state.ignore_index)
    cols = st.columns(2)
    if t["depth_from_gt_seg"] is not None:
        with cols[0]:
            st.markdown("**Segmentation → depth**")
            common.seg_chart(state, picked.gt_seg, "input: true segmentation", key="learn_gts", ncols=2)
            lo, hi = explore.depth_range([t["depth_from_gt_seg"], picked.gt_depth])
            panels["s2d_of_gt"] = common.depth_chart(state, t["depth_from_gt_seg"], "output: depth from the seg → depth net",
                                                     "magma", lo, hi, key="learn_s2d", ncols=2)
            if picked.gt_depth is not None:
                common.depth_chart(state, picked.gt_depth, "true depth, to compare (same colours)", "magma", lo, hi,
                                   key="learn_gtd", ncols=2)
    if t["seg_from_gt_depth"] is not None:
        with cols[1]:
            st.markdown("**Depth → segmentation**")
            lo, hi = explore.depth_range([picked.gt_depth])
            common.depth_chart(state, picked.gt_depth, "input: true depth", "magma", lo, hi, key="learn_gtd2", ncols=2)
            labels = t["seg_from_gt_depth"].argmax(0)
            panels["d2s_of_gt"] = common.seg_chart(state, labels, "output: segmentation from the depth → seg net",
                                                   key="learn_d2s", ncols=2)
            if picked.gt_seg is not None:
                common.seg_chart(state, picked.gt_seg, "true segmentation, to compare", key="learn_gts2", ncols=2)
    m_seg = explore.image_metrics(t["seg_from_gt_depth"], None, picked.gt_seg, None,
                                  state.num_classes, state.ignore_index)
    m_dep = explore.image_metrics(None, t["depth_from_gt_seg"], None, picked.gt_depth,
                                  state.num_classes, state.ignore_index)
    st.caption(f"Depth→seg on true depth: pixel accuracy {100 * m_seg['pixel_acc']:.1f}%, "
               f"mIoU {100 * m_seg['miou']:.1f}%. Seg→depth on true segmentation: Abs {m_dep['abs']:.4g} "
               f"{common.depth_unit(state)}, Abs Rel {m_dep['abs_rel']:.3g} (nan where that ground truth is missing).")

st.header("What to take away", divider="gray")
st.markdown(
    "1. One network, two routes per task: direct (from the image) and transferred (from the other task).\n"
    "2. Training them to agree couples the tasks: depth errors show up as segmentation disagreements and back.\n"
    "3. At test time their disagreement, the consistency energy, rises where the model is wrong, with no label "
    "needed: a built-in warning light.\n"
    "4. Try it: the **Fine-tune** page trains with your own λ1 / λ2 (how strongly the routes must agree) and "
    "the **Compare checkpoints** page puts the result next to the original.")
