"""Fine-tune: continue training the selected checkpoint for a few steps in the background.

Widgets and layout only: the job (a subprocess that survives reruns and page switches, polled
by an ``st.fragment``) and the result sections live in :mod:`xtask_app.ui.finetune`.
"""
import streamlit as st

from xtask_app import selection
from xtask_app.ui import finetune as ft
from xtask_core.config import DEPTH_LOSSES, TDEP_LOSSES, TSEG_LOSSES

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
compatible = cfg.num_classes in (7, 19)

st.subheader("Settings")
st.markdown(f"Base checkpoint: **{state.label}** (ResNet{cfg.enc_layers}, {cfg.num_classes} classes, "
            f"{cfg.height}×{cfg.width}). Data: a small **synthetic** street-scene set "
            f"({ft.N_TRAIN} train / {ft.N_VAL} validation images at the model's size, rendered once).")
if not compatible:
    st.info(f"This checkpoint has {cfg.num_classes} classes; fine-tuning here uses the synthetic "
            "Cityscapes-layout set, which needs a 7- or 19-class model. Use `xtask train "
            "--init_checkpoint` with your own data instead.")

c1, c2, c3 = st.columns(3)
c1.slider("λ1: weight of the transferred-depth loss (label group)", 0.0, 1.0, 0.01, 0.005,
          key="ft_lambda_1", disabled=running,
          help="label loss = (1-λ1)·segmentation + λ1·transferred depth")
c1.slider("λ2: weight of the transferred-seg loss (image group)", 0.0, 1.0, 0.01, 0.005,
          key="ft_lambda_2", disabled=running,
          help="image loss = (1-λ2)·depth + λ2·transferred segmentation")
c2.select_slider("Learning rate", ft.LR_CHOICES, value=1e-4, key="ft_lr", disabled=running,
                 format_func=lambda v: f"{v:g}")
c2.slider("Steps", 1, 300, 30, key="ft_steps", disabled=running,
          help="Optimiser steps; about 30 take a minute on a laptop CPU with the demo model")
c2.slider("Batch size", 1, 8, 2, key="ft_batch", disabled=running)
c3.selectbox("Depth loss (lp)", DEPTH_LOSSES, key="ft_lp", disabled=running)
c3.selectbox("Transferred-depth loss", TDEP_LOSSES, key="ft_tdep", disabled=running)
c3.selectbox("Transferred-seg loss", TSEG_LOSSES, key="ft_tseg", disabled=running)
st.radio("Loss balancing", list(ft.BALANCING_LABELS), format_func=ft.BALANCING_LABELS.get,
         horizontal=True, key="ft_balancing", disabled=running)
st.text_input("Run name (optional)", key="ft_name", disabled=running, max_chars=60,
              placeholder="finetune-<date>-<time>-<random>",
              help="Letters, digits, . _ - ; a new folder under runs/ is always created")

b1, b2, _ = st.columns([1, 1, 4])
b1.button("Start fine-tuning", type="primary", key="ft_start", on_click=ft.start, args=(state,),
          disabled=running or not compatible)
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
