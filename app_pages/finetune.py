"""Fine-tune: continue training the selected checkpoint for a few steps in the background, or run
a λ sweep (k short runs in one job) and see the trade-off they make.

Widgets and layout only: the data decision, the "before" view, the job (a subprocess that survives
reruns and page switches, polled by an ``st.fragment``) and the result sections live in
:mod:`xtask_app.ui.finetune` and :mod:`xtask_core.train.finetune`.
"""
import streamlit as st

from xtask_app import selection
from xtask_app.ui import finetune as ft
from xtask_core.config import DEPTH_LOSSES, LOSS_REDUCTIONS, TDEP_LOSSES, TSEG_LOSSES
from xtask_core.train.finetune import MAX_SWEEP, SOURCES, SWEEP_MODES, data_sources, default_lambda

st.title("Fine-tune")
state = selection.sidebar()
st.caption("Continue training the checkpoint selected in the sidebar for a few steps, with your own "
           "loss weights, and see what changes. The job runs in the background: you may switch pages.")
if state is None:
    st.info("Load a checkpoint in the sidebar first.")
    st.stop()

ss = st.session_state
status = ft.current_status()
running = status is not None and status.state == "running"
cfg = state.config
single_task = getattr(cfg, "task", "both") != "both"

st.subheader("Settings")
st.markdown(f"Base checkpoint: **{state.label}** (ResNet{cfg.enc_layers}, {cfg.num_classes} classes, "
            f"{cfg.height}×{cfg.width}).")
sources = data_sources(cfg.num_classes, state.meta.get("dataset"))
source = None
if sources:
    d1, d2 = st.columns([2, 3])
    if ss.get("ft_source") not in sources:
        ss["ft_source"] = sources[0]
    source = d1.radio("Training data", sources, format_func=SOURCES.get, key="ft_source", disabled=running,
                      help=f"Synthetic sets: {ft.N_TRAIN} train / {ft.N_VAL} validation images at the model's "
                           "size, rendered once. A folder must lie inside the allowed folders.")
    if source == "folder":
        d2.text_input("Dataset folder (train and val splits in the layout of the model's labels)", key="ft_folder",
                      disabled=running, placeholder="e.g. data/nyu or data/cityscapes")
data = ft.plan(state, source, ss.get("ft_folder", "") if source == "folder" else "")
if not data.ok:
    st.info(data.message)

lam = default_lambda(cfg.num_classes, state.meta.get("dataset"))
for k in ("ft_lambda_1", "ft_lambda_2"):   # first visit, or a checkpoint of another label set: its default λ
    if k not in ss or ss.get("ft_lambda_default") != lam:
        ss[k] = lam
ss["ft_lambda_default"] = lam
c1, c2, c3 = st.columns(3)
c1.select_slider("λ1: weight of the transferred-depth loss (label group)", ft.LAMBDA_CHOICES,
                 key="ft_lambda_1", disabled=running or single_task, format_func=ft.fmt_lambda,
                 help="label loss = (1-λ1)·segmentation + λ1·transferred depth; log scale, 0 switches the term off")
c1.select_slider("λ2: weight of the transferred-seg loss (image group)", ft.LAMBDA_CHOICES,
                 key="ft_lambda_2", disabled=running or single_task, format_func=ft.fmt_lambda,
                 help="image loss = (1-λ2)·depth + λ2·transferred segmentation; log scale")
c2.select_slider("Learning rate", ft.LR_CHOICES, value=1e-4, key="ft_lr", disabled=running,
                 format_func=lambda v: f"{v:g}")
c2.slider("Steps", 1, 300, 30, key="ft_steps", disabled=running,
          help="Optimiser steps (per run of a sweep); about 30 take a minute on a laptop CPU with the demo model")
c2.slider("Batch size", 1, 8, 2, key="ft_batch", disabled=running)
c3.selectbox("Depth loss (lp)", DEPTH_LOSSES, key="ft_lp", disabled=running)
c3.selectbox("Transferred-depth loss", TDEP_LOSSES, key="ft_tdep", disabled=running)
c3.selectbox("Transferred-seg loss", TSEG_LOSSES, key="ft_tseg", disabled=running)
c3.selectbox("Loss reduction", LOSS_REDUCTIONS, key="ft_loss_reduction", disabled=running,
             help="original: the original code's arithmetic (λ means what it meant in the paper); masked: every "
                  "masked term averaged over the pixels its mask keeps, so a term's weight does not depend on "
                  "how much of the image is void or invalid")
st.radio("Loss balancing", list(ft.BALANCING_LABELS), format_func=ft.BALANCING_LABELS.get,
         horizontal=True, key="ft_balancing", disabled=running or single_task)
if single_task:
    st.caption(f"A single-task ({cfg.task}) model has one loss: λ and balancing do not apply.")

sweep = st.toggle("λ sweep: several short runs, one after another, each a new run", key="ft_sweep",
                  disabled=running or single_task)
if sweep:
    s1, s2 = st.columns([3, 2])
    s1.multiselect(f"λ values (2 to {MAX_SWEEP})", ft.LAMBDA_CHOICES, default=ft.sweep_defaults(lam),
                   key="ft_sweep_values", format_func=ft.fmt_lambda, max_selections=MAX_SWEEP, disabled=running)
    s2.radio("Sweep", list(SWEEP_MODES), format_func=SWEEP_MODES.get, key="ft_sweep_mode", disabled=running)
    k = len(ss.get("ft_sweep_values", []))
    st.caption(f"{k} runs × {ss['ft_steps']} steps; the other settings above apply to every run. Each run's "
               "point appears in the trade-off below when it finishes.")
st.text_input("Run name (optional)", key="ft_name", disabled=running, max_chars=60,
              placeholder="finetune-<date>-<time>-<random>",
              help="Letters, digits, . _ - ; a new folder under runs/ is always created")

b1, b2, _ = st.columns([1, 1, 4])
b1.button("Start the sweep" if sweep else "Start fine-tuning", type="primary", key="ft_start",
          on_click=ft.start, args=(state, data), disabled=running or not data.ok)
if running:
    b2.button("Cancel", key="ft_cancel", on_click=ft.cancel, args=(ss[ft.RUN_KEY],))
if ss.get(ft.ERROR_KEY):
    st.error(ss[ft.ERROR_KEY])

if running:
    st.subheader("Progress")
    ft.live(ss[ft.RUN_KEY])
elif status is not None:
    st.subheader("Result")
    ft.results(state, status, ss[ft.RUN_KEY])
else:
    ft.before_view(state, data)
