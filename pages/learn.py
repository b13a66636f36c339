"""Learn: a guided demo of cross-task consistency on the live model."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run pages/learn.py`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from pages import common  # noqa: E402
from xtask_core import analysis, explore, viz  # noqa: E402

st.title("Learn: cross-task consistency, hands on")
state = common.sidebar()
if state is None:
    st.stop()

st.markdown(
    "**1. Break the input, watch the tasks disagree.** The direct heads see the image; the "
    "transfer nets only see the *other task's prediction*. When the image gets harder, the "
    "direct predictions degrade, and the two routes to the same answer start to disagree: "
    "the consistency energy rises — and you can see it rise without any label.")

picked = common.image_picker(state, "learn")
if picked is None:
    st.stop()

c = st.columns(4)
strengths = {"noise": c[0].slider("Noise", 0.0, 1.0, 0.0, 0.05, key="learn_noise"),
             "blur": c[1].slider("Blur", 0.0, 1.0, 0.0, 0.05, key="learn_blur"),
             "occlusion": c[2].slider("Occlusion", 0.0, 1.0, 0.0, 0.05, key="learn_occ"),
             "brightness": c[3].slider("Darken", 0.0, 1.0, 0.0, 0.05, key="learn_dark")}
# The model sees the image at its own input size, so corrupt that (cheap, and what matters).
clean_pred = common.predict(state, picked.rgb, picked.key)
clean_rgb = clean_pred.input_rgb
if any(strengths.values()):
    bad_rgb = explore.apply_corruptions(clean_rgb, strengths, seed=0)
    bad_pred = common.predict(state, bad_rgb, picked.key, corruption=strengths)
else:
    bad_rgb, bad_pred = clean_rgb, clean_pred

pos = st.slider("Before ↔ after (wipe)", 0.0, 1.0, 0.5, 0.01, key="learn_wipe",
                help="Left of the line: corrupted; right: clean")
st.image(explore.wipe(clean_rgb, bad_rgb, pos), caption="left: corrupted · right: clean",
         width=min(720, max(480, 2 * clean_rgb.shape[1])))

rows = []
maps = {}
for name, p in (("clean", clean_pred), ("corrupted", bad_pred)):
    e = analysis.energy_maps(p.seg_logits, p.seg_t_logits, p.depth, p.depth_t)
    maps[name] = e
    row = {"input": name, "seg energy KL (nats)": round(e["seg_kl_mean"], 4),
           "depth energy (model units)": round(e["depth_abs_mean"], 5),
           "direct vs transferred disagree (%)": round(100 * float(e["disagree"].mean()), 2)}
    if picked.gt_seg is not None or picked.gt_depth is not None:
        m = explore.image_metrics(p.seg_logits, p.depth, picked.gt_seg, picked.gt_depth,
                                  state.num_classes, state.ignore_index)
        row.update({"direct pixel acc (%)": round(100 * m["pixel_acc"], 2), "direct depth Abs": round(m["abs"], 5)})
    rows.append(row)
table = pd.DataFrame(rows)
st.dataframe(table, hide_index=True)
common.download_csv("Download numbers (CSV)", table, "learn_corruption.csv", key="learn_csv")

e = maps["corrupted"]
vmin, vmax = common.depth_range(state, bad_pred)
panels = {}
cols = st.columns(3)
with cols[0]:
    panels["direct_seg"] = common.seg_chart(state, bad_pred.seg, "direct segmentation", key="learn_seg")
with cols[1]:
    panels["transferred_seg"] = common.seg_chart(state, bad_pred.seg_t, "transferred (from depth)", key="learn_segt")
with cols[2]:
    panels["seg_energy"] = common.value_chart(e["seg_kl"], "seg energy", "nats", "inferno", 0.0,
                                              max(1e-6, float(np.percentile(maps["clean"]["seg_kl"], 99)) * 3),
                                              key="learn_segen")
cols = st.columns(3)
with cols[0]:
    panels["direct_depth"] = common.depth_chart(state, bad_pred.depth, "direct depth", "magma", vmin, vmax,
                                                key="learn_dep")
with cols[1]:
    panels["transferred_depth"] = common.depth_chart(state, bad_pred.depth_t, "transferred (from seg)", "magma",
                                                     vmin, vmax, key="learn_dept")
with cols[2]:
    panels["depth_energy"] = common.value_chart(e["depth_abs"], "depth energy", "model units", "inferno", 0.0,
                                                max(1e-6, float(np.percentile(maps["clean"]["depth_abs"], 99)) * 3),
                                                key="learn_depen")
st.caption("The energy colour scales are fixed at 3× the clean image's 99th percentile, so you see "
           "energy grow as you move the sliders.")

st.markdown(
    "**2. What did the transfer nets learn?** Feed them the *ground truth* instead of a "
    "prediction: the seg→depth net gets the true segmentation, the depth→seg net the true "
    "depth. If they learnt the geometry of street scenes (road below, sky above, cars at a "
    "plausible distance), their outputs resemble the true other task.")
if picked.gt_seg is None and picked.gt_depth is None:
    st.info("This needs ground truth: pick a sample or a dataset item.")
else:
    t = explore.transfer_from_ground_truth(state.loaded.model, picked.gt_seg, picked.gt_depth,
                                           state.num_classes, state.ignore_index)
    cols = st.columns(2)
    if t["depth_from_gt_seg"] is not None:
        with cols[0]:
            common.seg_chart(state, picked.gt_seg, "ground-truth segmentation (input)", key="learn_gts")
            lo, hi = explore.depth_range([t["depth_from_gt_seg"], picked.gt_depth])
            panels["s2d_of_gt"] = common.depth_chart(state, t["depth_from_gt_seg"], "seg→depth net output",
                                                     "magma", lo, hi, key="learn_s2d")
            if picked.gt_depth is not None:
                common.depth_chart(state, picked.gt_depth, "true depth (to compare)", "magma", lo, hi, key="learn_gtd")
    if t["seg_from_gt_depth"] is not None:
        with cols[1]:
            lo, hi = explore.depth_range([picked.gt_depth])
            common.depth_chart(state, picked.gt_depth, "ground-truth depth (input)", "magma", lo, hi, key="learn_gtd2")
            labels = t["seg_from_gt_depth"].argmax(0)
            panels["d2s_of_gt"] = common.seg_chart(state, labels, "depth→seg net output", key="learn_d2s")
            if picked.gt_seg is not None:
                common.seg_chart(state, picked.gt_seg, "true segmentation (to compare)", key="learn_gts2")
    m_seg = explore.image_metrics(t["seg_from_gt_depth"], None, picked.gt_seg, None,
                                  state.num_classes, state.ignore_index)
    m_dep = explore.image_metrics(None, t["depth_from_gt_seg"], None, picked.gt_depth,
                                  state.num_classes, state.ignore_index)
    st.caption(f"Depth→seg on true depth: pixel accuracy {100 * m_seg['pixel_acc']:.1f}%, "
               f"mIoU {100 * m_seg['miou']:.1f}%. Seg→depth on true segmentation: Abs {m_dep['abs']:.4g}, "
               f"Abs Rel {m_dep['abs_rel']:.3g} (nan where that ground truth is missing).")

st.subheader("Downloads")
common.download_pngs(panels, "learn_dl")
