"""Error maps: where the model is wrong, and how well label-free consistency energy finds it."""
import streamlit as st

from xtask_app import cache, charts, downloads, pickers, selection
from xtask_app.messages import USER_ERRORS, show_error
from xtask_app.ui import baseline as baseline_ui
from xtask_app.ui import eval_source
from xtask_app.ui.dataset_energy import energy_vs_error
from xtask_app.ui.energy_study import EXPLANATION, show_study
from xtask_core.evaluate import analysis
from xtask_core.evaluate.report import energy_error_study, has_energy
from xtask_core.viz import colour as viz
from xtask_core.viz.display import absent_outputs_note

st.title("Error maps")
state = selection.sidebar()
if state is None:
    st.stop()
st.caption("Where is the model wrong? True errors need ground truth in the model's label set (a sample or a "
           "dataset split). Consistency energy, how much the direct and transferred predictions disagree, needs "
           "no label: the bottom of the page measures how well it finds the true errors.")

picked = pickers.image_picker(state, "err")
if picked is None:
    st.stop()
pred = cache.predict(state, picked.rgb, picked.key)
missing = absent_outputs_note(pred)
if missing:
    st.caption(f"ℹ️ {missing}")
energy = analysis.energy_maps(pred.seg_logits, pred.seg_t_logits, pred.depth, pred.depth_t) if has_energy(pred) \
    else None
cmap = st.selectbox("Error colour map", ["inferno", "magma", "viridis", "turbo", "gray"], key="err_cmap",
                    help="Dark = small, bright = large, for every error and energy map")
unit = state.depth_unit_short
panels = {}

if pred.depth is not None:
    st.subheader("Depth")
    st.caption(f"Errors need ground truth (blank = no ground-truth depth); energy needs none. "
               f"Depth errors in {state.depth_unit}; relative error is a ratio (0.1 = 10 % off).")
    maps = []
    if picked.gt_depth is not None:
        d = analysis.depth_error_maps(pred.depth, picked.gt_depth)
        maps += [("depth_abs_error", d["abs"], "|direct − ground truth|", unit, "err_dabs"),
                 ("depth_rel_error", d["rel"], "relative error |p − t| / t", "ratio", "err_drel")]
    if energy is not None:
        maps.append(("depth_energy", energy["depth_abs"], "energy |transferred − direct|", unit, "err_den"))
    if not maps:
        st.info("Nothing to draw for depth: this image has no depth ground truth the model can be scored "
                "against, and the model has no transferred depth.")
    for col, (name, values, title, u, key) in zip(st.columns(3), maps):
        with col:
            panels[name] = charts.value_chart(values, title, u, cmap, 0.0, None, key=key)

if pred.seg_logits is not None:
    st.subheader("Segmentation")
    st.caption("Wrong pixels: green = correct, red = the direct segmentation differs from the ground truth, "
               "black = void. Disagreement: red where the transferred segmentation differs from the direct one, "
               "no label needed. Energy: KL divergence between the two class distributions, in nats.")
    cols = iter(st.columns(3))
    if picked.gt_seg is not None:
        s = analysis.seg_error_map(pred.seg, picked.gt_seg, state.ignore_index)
        panels["seg_wrong"] = viz.seg_error_rgb(pred.seg, picked.gt_seg, state.ignore_index)
        rate = 100 * float(s["wrong"][s["valid"]].mean()) if s["valid"].any() else float("nan")
        with next(cols):
            charts.rgb_chart(panels["seg_wrong"], f"wrong pixels (red): {rate:.1f}%",
                             charts.seg_pair_hover(state, pred.seg, picked.gt_seg), key="err_wrong")
    if energy is not None:
        panels["seg_disagreement"] = viz.seg_error_rgb(pred.seg_t, pred.seg)
        with next(cols):
            charts.rgb_chart(panels["seg_disagreement"],
                             f"direct ≠ transferred (red): {100 * energy['disagree'].mean():.1f}%",
                             charts.seg_pair_hover(state, pred.seg_t, pred.seg, "direct"), key="err_disagree")
        with next(cols):
            panels["seg_energy"] = charts.value_chart(energy["seg_kl"], "energy KL(direct ‖ transferred)", "nats",
                                                      cmap, 0.0, None, key="err_sen")
    elif picked.gt_seg is None:
        st.info("Nothing to draw for segmentation: no ground truth the model can be scored against, and no "
                "transferred segmentation.")
downloads.download_pngs(panels, "err_dl")

if picked.gt_seg is not None and pred.seg_logits is not None:
    st.markdown("**Error by true class**: which classes the model gets wrong, and what it takes them for")
    by_class = analysis.error_by_class(pred.seg, picked.gt_seg, state.num_classes, state.ignore_index,
                                       state.class_names).reset_index()
    st.dataframe(by_class, hide_index=True, column_config={
        "class": st.column_config.NumberColumn("id"),
        "name": "true class", "pixels": "pixels", "wrong": "wrong pixels",
        "error_rate": st.column_config.NumberColumn("error rate", format="percent"),
        "confused_with": st.column_config.TextColumn("most often predicted as",
                                                     help="The commonest wrong class for this true class"),
        "confused_share": st.column_config.NumberColumn("share of its errors", format="percent")})
    downloads.download_csv("Download error by class (CSV)", by_class, "error_by_class.csv", key="err_cls_csv")

st.subheader("Does energy predict the true error?")
if energy is None:
    st.info("This model has no transferred outputs, so there is no consistency energy to test.")
    st.stop()
st.caption(EXPLANATION)
tab_one, tab_sub = st.tabs(["This image", "Many images (samples or a split)"])
with tab_one:
    if picked.gt_seg is None and picked.gt_depth is None:
        st.info("Needs ground truth in the model's label set: pick a sample or a dataset item that has it.")
    else:
        show_study(energy_error_study([pred], [picked.gt_seg], [picked.gt_depth], state.ignore_index),
                   "this image", unit, "err_one")
        baseline_ui.pixel_baseline([pred], [picked.gt_seg], state.ignore_index, "this image", "err_bl_one")
with tab_sub:
    chosen = eval_source.choose([state], "err")
    if chosen is not None and state.label in chosen.columns:
        st.markdown(f"**Per image**, on {chosen.description}: does the energy rank the images by their real "
                    "error, and better than the model's own confidence?")
        rows = chosen.rows_of(state.label)
        energy_vs_error(rows, key="err_img")
        st.markdown("**Per pixel**: the maps are not kept in the records, so the model runs again on a few images "
                    "chosen from them, and their pixels are pooled.")
        c1, c2 = st.columns([2, 1])
        how = c1.selectbox("Images", list(eval_source.PICKS), key="err_pick",
                     format_func=lambda k: eval_source.PICKS[k].format(n="n"))
        n = int(c2.slider("n", 1, len(rows), min(8, len(rows)), key="err_pix_n")) if len(rows) > 1 else 1
        try:
            preds, segs, deps = eval_source.pixel_inputs(state, chosen, eval_source.pick_rows(rows, how, n))
        except USER_ERRORS as err:
            show_error(err)
            st.stop()
        where = eval_source.study_where(chosen, how, n)
        show_study(energy_error_study(preds, segs, deps, state.ignore_index), where, unit, "err_sub")
        baseline_ui.pixel_baseline(preds, segs, state.ignore_index, where, "err_bl_sub")
