"""The Fine-tune page's job handling and result sections.

The job runs as a subprocess (:mod:`xtask_core.train.jobs`, its arguments from
:mod:`xtask_core.train.finetune`) that survives reruns and page
switches; an ``st.fragment(run_every=…)`` polls its run folder for progress and curves (no
threads, no st.* calls from anywhere but the script). The result is a new run folder under
``runs/`` (never an existing one) whose ``best.safetensors`` the sidebar picker lists.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from xtask_app import cache, settings
from xtask_app.downloads import download_csv
from xtask_app.messages import USER_ERRORS, show_error
from xtask_app.selection import ModelState, model_state, select_checkpoint
from xtask_core.data.samples import find_samples, load_sample
from xtask_core.errors import XTaskError
from xtask_core.evaluate.report import before_after_rows
from xtask_core.io.keys import array_key
from xtask_core.train import finetune, jobs
from xtask_core.train.run_tables import init_checkpoint_of
from xtask_core.viz import colour as viz
from xtask_core.viz import figures
from xtask_core.viz.display import depth_range

POLL_S = 1.0
N_TRAIN, N_VAL = 32, 8          # the small synthetic set fine-tunes use (rendered once, cached)
LR_CHOICES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
BALANCING_LABELS = {"none": "none (fixed λ)", "uncertainty": "uncertainty weights (Kendall)",
                    "gradnorm": "GradNorm"}
LOSS_COLUMNS = ["train_loss", "train_seg", "train_depth", "train_tseg", "train_tdep"]
VAL_COLUMNS = ["epoch", "step", "val_loss", "val_miou", "val_pixel_acc", "val_abs"]
RUN_KEY, ERROR_KEY = "ft_run", "ft_error"


def owner() -> str:
    """One fine-tune at a time per app server: on a laptop CPU two would only halve each other's
    speed, and a fixed owner key lets a reloaded tab re-attach to the running job."""
    return os.environ.get("XTASK_JOB_OWNER", "app")


def cache_root() -> Path:
    return settings.runs_dir() / ".cache"


def data_root(cfg) -> Path:
    """The small synthetic fine-tune set at the model's input size (rendered once)."""
    return finetune.small_synthetic_set(cache_root(), cfg.height, cfg.width, n_train=N_TRAIN, n_val=N_VAL)


def current_status():
    """The session's job status (re-attaching to a job still running after a reload), or None."""
    ss = st.session_state
    if not ss.get(RUN_KEY):
        found = jobs.find_active_job(owner(), settings.runs_dir())
        if found is not None:
            ss[RUN_KEY] = str(found.run_dir)
    return poll(ss[RUN_KEY]) if ss.get(RUN_KEY) else None


def poll(run_dir: str):
    try:
        return jobs.poll(run_dir)
    except XTaskError as err:
        show_error(err)
        return None


def start(state: ModelState) -> None:
    """Button callback: make the data, a new run folder, and launch the job with the widgets' values."""
    ss = st.session_state
    ss.pop(ERROR_KEY, None)
    run_dir = None
    try:
        args = finetune.finetune_args(
            str(state.path), state.config, data_root(state.config), steps=ss["ft_steps"],
            lambda_1=ss["ft_lambda_1"], lambda_2=ss["ft_lambda_2"], lr=ss["ft_lr"], batch_size=ss["ft_batch"],
            lp=ss["ft_lp"], tdep_loss=ss["ft_tdep"], tseg_loss=ss["ft_tseg"], balancing=ss["ft_balancing"],
            ignore_index=state.ignore_index, limit_val=N_VAL)
        run_dir = jobs.new_run_dir(settings.runs_dir(), ss.get("ft_name", "").strip() or None)
        jobs.start_job(args, run_dir, owner=owner(), runs_root=settings.runs_dir())
    except USER_ERRORS as err:
        if run_dir is not None and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()   # nothing started in it: leave no empty run behind
        ss[ERROR_KEY] = " ".join(str(err).split())
        return
    ss[RUN_KEY] = str(run_dir)


def cancel(run_dir: str) -> None:
    try:
        jobs.cancel(run_dir, grace_s=10.0)
    except USER_ERRORS as err:
        st.session_state[ERROR_KEY] = " ".join(str(err).split())


# --------------------------------------------------------------------------- progress
def curves(metrics: pd.DataFrame) -> None:
    """Loss components per step, the task weights when balancing is on, validation rows."""
    if metrics.empty or "step" not in metrics:
        st.caption("Curves appear after the first logged step.")
        return
    steps = metrics[metrics["kind"] == "step"] if "kind" in metrics else metrics
    cols = [c for c in LOSS_COLUMNS if c in steps]
    if not steps.empty and cols:
        st.plotly_chart(figures.curves_figure(steps, cols, x="step", title="Training loss components "
                                              "(unbalanced, per logged step)", yaxis_title="loss"),
                        key="ft_loss_chart")
    weights = [c for c in steps if str(c).startswith("w_")]
    if weights:
        st.plotly_chart(figures.curves_figure(steps, weights, x="step", title="Task weights (balancing)",
                                              yaxis_title="weight"), key="ft_weight_chart")
    epochs = metrics[metrics["kind"] == "epoch"] if "kind" in metrics else metrics.iloc[0:0]
    if not epochs.empty and "val_loss" in epochs:
        st.markdown("**Validation** (end of each pass over the small set)")
        st.dataframe(epochs[[c for c in VAL_COLUMNS if c in epochs]], hide_index=True)


def progress(status, run_dir: str) -> None:
    name = Path(run_dir).name
    label = (f"{name}: step {status.step}/{status.total}" if status.total
             else f"{name}: {status.message or 'starting…'}")
    st.progress(status.fraction, text=label)
    if status.message:
        st.caption(status.message)
    curves(status.metrics)


@st.fragment(run_every=POLL_S)
def live(run_dir: str) -> None:
    """Re-drawn every POLL_S seconds while the job runs; a full rerun once it ends."""
    now = poll(run_dir)
    if now is None:
        return
    progress(now, run_dir)
    if now.finished:
        st.rerun()   # whole page: re-enable Start, show the results


# --------------------------------------------------------------------------- results
@st.cache_data(max_entries=16, show_spinner="Evaluating on the validation images…")
def _val_metrics(key: tuple, root: str, _loaded) -> dict:
    # key = (resolved checkpoint path, mtime, size): a changed file is evaluated again.
    out = finetune.quick_eval(_loaded, root, limit=N_VAL)
    return {k: v for k, v in out.items() if isinstance(v, (int, float))}


def _outcome(status, run: Path) -> list[str]:
    """Say how the run ended; the checkpoints it saved ("best", "last")."""
    if status.state == "failed":
        st.error(f"Fine-tuning failed: {status.message}")
        with st.expander("Last lines of train.log"):
            st.code("\n".join(status.log_tail) or "(empty)")
        return []
    if status.state == "cancelled":
        st.warning(f"Fine-tuning was cancelled at step {status.step}. {status.message}")
    ckpts = [n for n in ("best", "last") if (run / f"{n}.safetensors").is_file()]
    if not ckpts and status.state == "done":
        st.warning("The run finished without saving a checkpoint.")
    elif status.state == "done":
        st.success(f"Done: saved as a new run **{run.name}** ({run}). It is now listed in the sidebar "
                   f"checkpoint picker as “run: {run.name}”.")
    return ckpts


def _use_button(state: ModelState, run: Path, which: str) -> None:
    tuned_path = run / f"{which}.safetensors"
    if state.path.resolve() == tuned_path.resolve():
        st.caption(f"The sidebar already uses this fine-tuned checkpoint ({state.label}): every page now shows it.")
    else:
        st.button("Use the fine-tuned model now", key="ft_use", on_click=select_checkpoint,
                  args=(tuned_path, f"fine-tuned: {run.name}/{which}"),
                  help="Select it in the sidebar, so Predictions, Error maps, Learn… all use it")


def _before_after_images(state: ModelState, base: ModelState, tuned: ModelState, which: str, root: Path) -> None:
    sample = next((s for s in find_samples(root) if s.name.startswith("val/")), None)
    if sample is None:
        raise XTaskError("the fine-tune set has no validation image")
    cfg = base.config
    rgb, gt_seg, _ = load_sample(sample.image, sample.label, sample.disparity, cfg.num_classes, cfg.height, cfg.width)
    before, after = cache.predict(base, rgb, array_key(rgb)), cache.predict(tuned, rgb, array_key(rgb))
    st.subheader("Before / after on a fixed validation image")
    pal, ign = state.palette, state.ignore_index
    lo, hi = depth_range([before.depth, after.depth])   # one shared, robust range
    c = st.columns(3)
    c[0].image(before.input_rgb, caption=f"input ({sample.name})", width="stretch")
    c[1].image(viz.colorize_seg(before.seg, pal, ign), caption="segmentation: base", width="stretch")
    c[2].image(viz.colorize_seg(after.seg, pal, ign), caption=f"segmentation: fine-tuned ({which})", width="stretch")
    c = st.columns(3)
    if gt_seg is not None:
        c[0].image(viz.colorize_seg(gt_seg, pal, ign), caption="ground-truth segmentation", width="stretch")
    c[1].image(viz.colorize_depth(before.depth, vmin=lo, vmax=hi), caption="depth: base (same colour scale)",
               width="stretch")
    c[2].image(viz.colorize_depth(after.depth, vmin=lo, vmax=hi), caption=f"depth: fine-tuned ({which})",
               width="stretch")


def _metrics_table(base: ModelState, tuned: ModelState, root: Path, run: Path) -> None:
    m_before = _val_metrics(cache.file_key(base.path), str(root), base.loaded)
    m_after = _val_metrics(cache.file_key(tuned.path), str(root), tuned.loaded)
    st.subheader(f"Validation metrics ({N_VAL} synthetic images)")
    table = pd.DataFrame(before_after_rows(m_before, m_after))
    st.dataframe(table, hide_index=True)
    st.caption("Depth errors are in the model's units (disparity/256 for Cityscapes-style models). "
               "A few steps on a tiny synthetic set mostly show the direction a setting pushes in, "
               "not a converged result.")
    download_csv("Download before/after CSV", table, f"{run.name}-before-after.csv", key="ft_csv")


def results(state: ModelState, status, run_dir: str) -> None:
    """How the run ended, a button to use it, and before/after images and metrics."""
    run = Path(run_dir)
    ckpts = _outcome(status, run)
    if not ckpts:
        return
    progress(status, run_dir)
    job = jobs.read_job(run_dir)
    base_path = init_checkpoint_of(job.argv) if job is not None else None
    if base_path is None or not Path(base_path).is_file():
        st.info("The base checkpoint of this run is no longer available for a before/after view.")
        return
    which = st.radio("Fine-tuned checkpoint", ckpts, horizontal=True, key="ft_which",
                     format_func=lambda n: {"best": "best (lowest val loss)", "last": "last step"}[n])
    _use_button(state, run, which)
    try:
        base = model_state("base", base_path)
        tuned = model_state(f"{run.name}/{which}", run / f"{which}.safetensors")
        root = data_root(base.config)
        _before_after_images(state, base, tuned, which, root)
        _metrics_table(base, tuned, root, run)
    except USER_ERRORS as err:
        show_error(err)
