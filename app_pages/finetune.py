"""Fine-tune: continue training the selected checkpoint for a few steps in the background.

Thin page: the job runs as a subprocess (``xtask_core.train.jobs``) that survives reruns and page
switches; an ``st.fragment(run_every=…)`` polls its run folder for progress and curves (no
threads, no st.* calls from anywhere but the script). The result is a new run folder under
``runs/`` (never an existing one) whose ``best.safetensors`` the shared picker lists.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run app_pages/finetune.py`
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app_pages import common  # noqa: E402
from xtask_core.config import DEPTH_LOSSES, TDEP_LOSSES, TSEG_LOSSES  # noqa: E402
from xtask_core.errors import XTaskError  # noqa: E402
from xtask_core.train import jobs  # noqa: E402
from xtask_core.viz import colour as viz  # noqa: E402
from xtask_core.viz import figures  # noqa: E402

# One fine-tune at a time per app server: on a laptop CPU two would only halve each other's
# speed, and a fixed owner key lets a reloaded tab re-attach to the running job.
OWNER = os.environ.get("XTASK_JOB_OWNER", "app")
POLL_S = 1.0
N_TRAIN, N_VAL = 32, 8          # the small synthetic set fine-tunes use (rendered once, cached)
LR_CHOICES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
BALANCING_LABELS = {"none": "none (fixed λ)", "uncertainty": "uncertainty weights (Kendall)",
                    "gradnorm": "GradNorm"}
LOSS_COLUMNS = ["train_loss", "train_seg", "train_depth", "train_tseg", "train_tdep"]
METRIC_ROWS = [("pixel_acc", "pixel accuracy", True), ("miou", "mIoU (dataset)", True),
               ("abs", "depth Abs", False), ("abs_rel", "depth Abs Rel", False),
               ("rmse", "depth RMSE", False), ("delta1", "δ < 1.25", True), ("loss", "val loss", False)]

st.title("Fine-tune")
state = common.sidebar()
st.caption("Continue training the checkpoint selected in the sidebar for a few steps, with your own "
           "loss weights, and see what changes. The job runs in the background: you may switch pages.")
if state is None:
    st.info("Load a checkpoint in the sidebar first.")
    st.stop()

runs_root = common.runs_dir()
cache_root = runs_root / ".cache"
ss = st.session_state

# Re-attach to a job that is still running (after a reload or from another tab).
if not ss.get("ft_run"):
    found = jobs.find_active_job(OWNER, runs_root)
    if found is not None:
        ss["ft_run"] = str(found.run_dir)


def _poll(run_dir: str):
    try:
        return jobs.poll(run_dir)
    except XTaskError as err:
        common.show_error(err)
        return None


def _base_of(run_dir: str) -> str | None:
    """The checkpoint a run started from (its --init_checkpoint), from job.json."""
    job = jobs.read_job(run_dir)
    if job is None or "--init_checkpoint" not in job.argv:
        return None
    return job.argv[job.argv.index("--init_checkpoint") + 1]


status = _poll(ss["ft_run"]) if ss.get("ft_run") else None
running = status is not None and status.state == "running"
cfg = state.config
compatible = cfg.num_classes in (7, 19)

# --------------------------------------------------------------------------- settings
st.subheader("Settings")
st.markdown(f"Base checkpoint: **{state.label}** (ResNet{cfg.enc_layers}, {cfg.num_classes} classes, "
            f"{cfg.height}×{cfg.width}). Data: a small **synthetic** street-scene set "
            f"({N_TRAIN} train / {N_VAL} validation images at the model's size, rendered once).")
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
c2.select_slider("Learning rate", LR_CHOICES, value=1e-4, key="ft_lr", disabled=running,
                 format_func=lambda v: f"{v:g}")
c2.slider("Steps", 1, 300, 30, key="ft_steps", disabled=running,
          help="Optimiser steps; about 30 take a minute on a laptop CPU with the demo model")
c2.slider("Batch size", 1, 8, 2, key="ft_batch", disabled=running)
c3.selectbox("Depth loss (lp)", DEPTH_LOSSES, key="ft_lp", disabled=running)
c3.selectbox("Transferred-depth loss", TDEP_LOSSES, key="ft_tdep", disabled=running)
c3.selectbox("Transferred-seg loss", TSEG_LOSSES, key="ft_tseg", disabled=running)
st.radio("Loss balancing", list(BALANCING_LABELS), format_func=BALANCING_LABELS.get,
         horizontal=True, key="ft_balancing", disabled=running)
st.text_input("Run name (optional)", key="ft_name", disabled=running, max_chars=60,
              placeholder="finetune-<date>-<time>-<random>",
              help="Letters, digits, . _ - ; a new folder under runs/ is always created")


def _start(base_path: str) -> None:
    """Button callback: make the data, a new run folder, and launch the job."""
    ss.pop("ft_error", None)
    run_dir = None
    try:
        data = jobs.small_synthetic_set(cache_root, cfg.height, cfg.width, n_train=N_TRAIN, n_val=N_VAL)
        args = jobs.finetune_args(
            base_path, cfg, data, steps=ss["ft_steps"], lambda_1=ss["ft_lambda_1"],
            lambda_2=ss["ft_lambda_2"], lr=ss["ft_lr"], batch_size=ss["ft_batch"], lp=ss["ft_lp"],
            tdep_loss=ss["ft_tdep"], tseg_loss=ss["ft_tseg"], balancing=ss["ft_balancing"],
            ignore_index=state.ignore_index, limit_val=N_VAL)
        run_dir = jobs.new_run_dir(runs_root, ss.get("ft_name", "").strip() or None)
        jobs.start_job(args, run_dir, owner=OWNER, runs_root=runs_root)
    except common.USER_ERRORS as err:
        if run_dir is not None and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()   # nothing started in it: leave no empty run behind
        ss["ft_error"] = " ".join(str(err).split())
        return
    ss["ft_run"] = str(run_dir)


def _cancel(run_dir: str) -> None:
    try:
        jobs.cancel(run_dir, grace_s=10.0)
    except common.USER_ERRORS as err:
        ss["ft_error"] = " ".join(str(err).split())


b1, b2, _ = st.columns([1, 1, 4])
b1.button("Start fine-tuning", type="primary", key="ft_start", on_click=_start,
          args=(str(state.path),), disabled=running or not compatible)
if running:
    b2.button("Cancel", key="ft_cancel", on_click=_cancel, args=(ss["ft_run"],))
if ss.get("ft_error"):
    st.error(ss["ft_error"])


# --------------------------------------------------------------------------- progress
def _curves(metrics: pd.DataFrame) -> None:
    """Loss components per step and, when balancing is on, the task weights."""
    if metrics.empty or "step" not in metrics:
        st.caption("Curves appear after the first logged step.")
        return
    steps = metrics[metrics["kind"] == "step"] if "kind" in metrics else metrics
    cols = [c for c in LOSS_COLUMNS if c in steps]
    if not steps.empty and cols:
        fig = figures.curves_figure(steps, cols, x="step", title="Training loss components "
                                    "(unbalanced, per logged step)", yaxis_title="loss")
        st.plotly_chart(fig, key="ft_loss_chart")
    weights = [c for c in steps if str(c).startswith("w_")]
    if weights:
        fig = figures.curves_figure(steps, weights, x="step", title="Task weights (balancing)",
                                    yaxis_title="weight")
        st.plotly_chart(fig, key="ft_weight_chart")
    epochs = metrics[metrics["kind"] == "epoch"] if "kind" in metrics else metrics.iloc[0:0]
    if not epochs.empty and "val_loss" in epochs:
        st.markdown("**Validation** (end of each pass over the small set)")
        show = [c for c in ("epoch", "step", "val_loss", "val_miou", "val_pixel_acc", "val_abs")
                if c in epochs]
        st.dataframe(epochs[show], hide_index=True)


def _progress(st_, run_dir: str) -> None:
    name = Path(run_dir).name
    label = (f"{name}: step {st_.step}/{st_.total}" if st_.total else f"{name}: {st_.message or 'starting…'}")
    st.progress(st_.fraction, text=label)
    if st_.message:
        st.caption(st_.message)
    _curves(st_.metrics)


@st.fragment(run_every=POLL_S)
def _live(run_dir: str) -> None:
    """Re-drawn every POLL_S seconds while the job runs; a full rerun once it ends."""
    now = _poll(run_dir)
    if now is None:
        return
    _progress(now, run_dir)
    if now.finished:
        st.rerun()   # whole page: re-enable Start, show the results


if running:
    st.subheader("Progress")
    _live(ss["ft_run"])


# --------------------------------------------------------------------------- results
@st.cache_data(max_entries=16, show_spinner="Evaluating on the validation images…")
def _metrics(key: tuple, data_root: str, _loaded) -> dict:
    # key = (resolved checkpoint path, mtime, size): a changed file is evaluated again.
    out = jobs.evaluate_checkpoint(_loaded, data_root, limit=N_VAL)
    return {k: v for k, v in out.items() if isinstance(v, (int, float))}


def _file_key(path: Path) -> tuple:
    info = path.stat()
    return str(path.resolve()), info.st_mtime, info.st_size


def _model_state(label: str, path: Path) -> common.ModelState:
    loaded, predictor = common.get_model(path)
    return common.ModelState(label, path, loaded, predictor)


def _results(st_, run_dir: str) -> None:
    run = Path(run_dir)
    if st_.state == "failed":
        st.error(f"Fine-tuning failed: {st_.message}")
        with st.expander("Last lines of train.log"):
            st.code("\n".join(st_.log_tail) or "(empty)")
        return
    if st_.state == "cancelled":
        st.warning(f"Fine-tuning was cancelled at step {st_.step}. {st_.message}")
    ckpts = [n for n in ("best", "last") if (run / f"{n}.safetensors").is_file()]
    if not ckpts:
        if st_.state == "done":
            st.warning("The run finished without saving a checkpoint.")
        return
    if st_.state == "done":
        st.success(f"Done: saved as a new run **{run.name}** ({run}). It is now listed in the sidebar "
                   f"checkpoint picker as “run: {run.name}”.")
    _progress(st_, run_dir)
    base_path = _base_of(run_dir)
    if base_path is None or not Path(base_path).is_file():
        st.info("The base checkpoint of this run is no longer available for a before/after view.")
        return
    which = st.radio("Fine-tuned checkpoint", ckpts, horizontal=True, key="ft_which",
                     format_func=lambda n: {"best": "best (lowest val loss)", "last": "last step"}[n])
    tuned_path = run / f"{which}.safetensors"
    if state.path.resolve() == tuned_path.resolve():
        st.caption(f"The sidebar already uses this fine-tuned checkpoint ({state.label}): every page now shows it.")
    else:
        st.button("Use the fine-tuned model now", key="ft_use", on_click=common.select_checkpoint,
                  args=(tuned_path, f"fine-tuned: {run.name}/{which}"),
                  help="Select it in the sidebar, so Predictions, Error maps, Learn… all use it")
    try:
        base = _model_state("base", Path(base_path))
        tuned = _model_state(f"{run.name}/{which}", tuned_path)
        data_root = jobs.small_synthetic_set(cache_root, cfg.height, cfg.width, n_train=N_TRAIN,
                                             n_val=N_VAL)
        sample = next(s for s in common.explore.find_samples(data_root) if s.name.startswith("val/"))
        rgb, gt_seg, _ = common.explore.load_sample(sample.image, sample.label, sample.disparity,
                                                    base.config.num_classes, base.config.height,
                                                    base.config.width)
        key = common.explore.array_key(rgb)
        before, after = common.predict(base, rgb, key), common.predict(tuned, rgb, key)
        rows = []
        m_before = _metrics(_file_key(base.path), str(data_root), base.loaded)
        m_after = _metrics(_file_key(tuned.path), str(data_root), tuned.loaded)
    except (StopIteration, *common.USER_ERRORS) as err:
        common.show_error(err if not isinstance(err, StopIteration)
                          else XTaskError("the fine-tune set has no validation image"))
        return
    st.subheader("Before / after on a fixed validation image")
    pal, ign = state.palette, state.ignore_index
    depth_lo, depth_hi = common.explore.depth_range([before.depth, after.depth])   # one shared, robust range
    c = st.columns(3)
    c[0].image(before.input_rgb, caption=f"input ({sample.name})", width="stretch")
    c[1].image(viz.colorize_seg(before.seg, pal, ign), caption="segmentation: base", width="stretch")
    c[2].image(viz.colorize_seg(after.seg, pal, ign), caption=f"segmentation: fine-tuned ({which})",
               width="stretch")
    c = st.columns(3)
    if gt_seg is not None:
        c[0].image(viz.colorize_seg(gt_seg, pal, ign), caption="ground-truth segmentation", width="stretch")
    c[1].image(viz.colorize_depth(before.depth, vmin=depth_lo, vmax=depth_hi),
               caption="depth: base (same colour scale)", width="stretch")
    c[2].image(viz.colorize_depth(after.depth, vmin=depth_lo, vmax=depth_hi),
               caption=f"depth: fine-tuned ({which})", width="stretch")

    st.subheader(f"Validation metrics ({N_VAL} synthetic images)")
    for key_, name, higher in METRIC_ROWS:
        if key_ in m_before and key_ in m_after:
            delta = m_after[key_] - m_before[key_]
            better = (delta > 0) == higher if delta else None
            rows.append({"metric": name, "before": m_before[key_], "after": m_after[key_],
                         "change": delta, "better?": "—" if better is None else ("yes" if better else "no")})
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    st.caption("Depth errors are in the model's units (disparity/256 for Cityscapes-style models). "
               "A few steps on a tiny synthetic set mostly show the direction a setting pushes in, "
               "not a converged result.")
    common.download_csv("Download before/after CSV", table, f"{run.name}-before-after.csv", key="ft_csv")


if status is not None and not running:
    st.subheader("Result")
    _results(status, ss["ft_run"])
