"""Dataset: checkpoints over a whole split, a folder of images or a records file; images ranked by
error, energy, checkpoint Δ or a confusion; click-through to the other pages."""
import streamlit as st

from xtask_app import selection
from xtask_app.messages import USER_ERRORS, show_error
from xtask_app.ui import dataset as ds
from xtask_app.ui import dataset_energy as energy
from xtask_app.ui import dataset_views as views
from xtask_app.ui.dataset_links import source_text

st.title("Dataset")
state = selection.sidebar()
views.follow()   # a click-through button of the last run: switch page now
st.caption("One or more checkpoints over a whole split or a folder of images: per-image records (metrics, "
           "consistency energy, the model's own confidence, confusion counts), ranked, with click-through to the "
           "other pages. Evaluation runs in the background; you may switch pages or reload.")
if state is None:
    st.info("Load a checkpoint in the sidebar first.")
    st.stop()

ss = st.session_state
run_dir = ds.current_job()
status = ds.status(run_dir) if run_dir else None
running = status is not None and status.state == "running"

with st.container(border=True):
    checkpoints = ds.pick_checkpoints()
    source = ds.pick_source((state.config.height, state.config.width), state.num_classes)
    if source is not None and source["kind"] != "file":
        c1, c2, c3 = st.columns([1, 1, 3])
        batch = int(c3.slider("Batch size", 1, 16, 4, key="ds_batch", disabled=running))
        c1.button("Evaluate", type="primary", key="ds_start", on_click=ds.start, args=(checkpoints, source, batch),
                  disabled=running or not checkpoints)
        if running:
            c2.button("Cancel", key="ds_cancel", on_click=ds.cancel, args=(run_dir,))
        st.caption(f"At {state.config.height}×{state.config.width} (the sidebar checkpoint's input size). Rows "
                   "already computed (by `xtask eval --per-image`, or earlier here) come from the cache.")
    if ss.get(ds.ERROR_KEY):
        st.error(ss[ds.ERROR_KEY])

# ---- what is shown: a records file (typed, or in the address) or the job's rows
records = None
try:
    if source is not None and source["kind"] == "file":
        records, ident = ds.read_file(source["path"])
        st.query_params[ds.URL_RECORDS] = source["path"]
    elif run_dir:
        if running:
            ds.live(run_dir)
        elif status is not None:
            (st.success if status.state == "done" else st.warning)(ds.progress_line(status))
            ds.share_address(run_dir)
        records, ident = ds.job_records(run_dir)
except USER_ERRORS as err:
    show_error(err)
    st.stop()
if records is None or records.empty:
    if run_dir is None or not running:
        st.info("Pick checkpoints and a source, then **Evaluate** (or open a records file).")
    st.stop()

st.subheader("Records")
st.markdown(f"**{records['image'].nunique()} images × {records['checkpoint'].nunique()} checkpoint(s)** on "
            f"{source_text(ident)}" + (" (still arriving)" if running else ""))
views.overview(records, ident)

tabs = st.tabs(["Images", "Confusion and per-class IoU", "Energy vs error", "Failure finder"])
with tabs[0]:
    ranked, what = views.ranking(records, state)
    views.grid(ranked, records, ident, what)
    with st.expander("All images as a table", expanded=False):
        views.table(ranked, records, ident, what)
with tabs[1]:
    if views.labelled(records):
        try:
            views.confusion(records, state)
            views.class_iou(records, state)
        except USER_ERRORS as err:
            show_error(err)
    else:
        st.info("No ground truth in these records: the confusion matrix needs labels.")
with tabs[2]:
    energy.energy_vs_error(records)
with tabs[3]:
    energy.failure_finder(records, ident)
