"""The Fine-tune page's data choice, "before" view, job handling and result sections.

The job runs as a subprocess (:mod:`xtask_core.train.jobs`, its arguments from
:mod:`xtask_core.train.finetune`) that survives reruns and page switches; an
``st.fragment(run_every=…)`` polls its run folder for progress and curves (no threads, no st.*
calls from anywhere but the script). The result is a new run folder under ``runs/`` (never an
existing one) whose ``best.safetensors`` the sidebar picker lists. A λ sweep is one job too: its
folder holds the plan, and each of its k runs is an ordinary run folder beside it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from xtask_app import cache, charts, settings
from xtask_app.downloads import download_csv
from xtask_app.messages import USER_ERRORS, show_error
from xtask_app.selection import ModelState, model_state, select_checkpoint
from xtask_app.ui import tradeoff
from xtask_core.errors import XTaskError
from xtask_core.evaluate.report import before_after_rows
from xtask_core.io.keys import array_key
from xtask_core.train import finetune, jobs, run_readers
from xtask_core.train.run_dir import RunDir
from xtask_core.train.run_tables import balancing_of, init_checkpoint_of, run_point
from xtask_core.viz import colour as viz
from xtask_core.viz import figures
from xtask_core.viz.display import depth_range

POLL_S = 1.0
N_TRAIN, N_VAL = 32, 8          # the small synthetic sets fine-tunes use (rendered once, cached)
LR_CHOICES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
LAMBDA_CHOICES = list(finetune.LAMBDA_CHOICES)
_BALANCING_NAMES = {"none": "none (fixed λ)", "uncertainty": "uncertainty weights (Kendall)", "gradnorm": "GradNorm",
                    "pcgrad": "PCGrad (project conflicting gradients)"}
BALANCING_LABELS = {k: _BALANCING_NAMES.get(k, k) for k in finetune.BALANCING}
LOSS_COLUMNS = ["train_loss", "train_seg", "train_depth", "train_tseg", "train_tdep"]
VAL_COLUMNS = ["epoch", "step", "val_loss", "val_miou", "val_pixel_acc", "val_abs"]
RUN_KEY, ERROR_KEY = "ft_run", "ft_error"


def fmt_lambda(v: float) -> str:
    """λ as shown on the sliders: 0, 1e-05 … 0.01, 0.1, 1."""
    return "0" if v == 0 else f"{v:g}"


def sweep_defaults(lam: float) -> list[float]:
    """Default sweep: 0, a decade below ``lam``, ``lam`` and a decade above (those on the scale)."""
    i = LAMBDA_CHOICES.index(lam) if lam in LAMBDA_CHOICES else len(LAMBDA_CHOICES) // 2
    return sorted({LAMBDA_CHOICES[0]} | {LAMBDA_CHOICES[j] for j in (i - 2, i, i + 2) if 0 <= j < len(LAMBDA_CHOICES)})


def owner() -> str:
    """One fine-tune at a time per app server: on a laptop CPU two would only halve each other's
    speed, and a fixed owner key lets a reloaded tab re-attach to the running job."""
    return os.environ.get("XTASK_JOB_OWNER", "app")


def cache_root() -> Path:
    return settings.runs_dir() / ".cache"


# --------------------------------------------------------------------------- data
def plan(state: ModelState, source: str | None, folder_text: str = "") -> finetune.DataPlan:
    """The data decision for ``state``'s model (a typed folder is resolved inside the allowed roots)."""
    cfg = state.config
    dataset, task = state.meta.get("dataset"), getattr(cfg, "task", "both")
    if source is None:
        return finetune.plan_data(cfg.num_classes, dataset, "street", task=task)   # carries the reason
    folder = None
    if source == "folder" and folder_text.strip():
        try:
            folder = settings.resolve_user_path(folder_text)
        except USER_ERRORS as err:
            return finetune.DataPlan(False, source="folder", message=" ".join(str(err).split()))
    return finetune.plan_data(cfg.num_classes, dataset, source, folder, task=task)


def data_root(cfg, data: finetune.DataPlan) -> Path:
    """The folder the fine-tune reads: the named one, or a small synthetic set at the model's size."""
    if data.folder is not None:
        return data.folder
    return finetune.small_set(data.source, cache_root(), cfg.height, cfg.width, n_train=N_TRAIN, n_val=N_VAL)


def fixed_image(state: ModelState, dataset: str, root: Path):
    """(rgb, gt_seg, name): validation image 0 of ``root`` at the model size, its labels."""
    cfg = state.config
    rgb, seg, _ = cache.cached_dataset_item(dataset, str(root), "val", 0, cfg.num_classes, cfg.height, cfg.width)
    return rgb, seg, f"val image 0 of {root.name}"


def _seg_img(state: ModelState, seg) -> np.ndarray | None:
    return None if seg is None else viz.colorize_seg(seg, state.palette, state.ignore_index)


def before_view(state: ModelState, data: finetune.DataPlan) -> None:
    """The current checkpoint's predictions on the fixed validation image, before any run."""
    if not data.ok:
        return
    with st.spinner("Preparing the fine-tune data (rendered once)…"):
        root = data_root(state.config, data)
    rgb, gt, name = fixed_image(state, data.dataset, root)
    pred = cache.predict(state, rgb, array_key(rgb))
    st.subheader("Before: the current checkpoint on a fixed validation image")
    c = st.columns(4)
    c[0].image(pred.input_rgb, caption=f"input ({name})", width="stretch")
    if gt is not None:
        c[1].image(_seg_img(state, gt), caption="ground-truth segmentation", width="stretch")
    if pred.seg is not None:
        c[2].image(_seg_img(state, pred.seg), caption="segmentation now", width="stretch")
    if pred.depth is not None:
        lo, hi = depth_range([pred.depth])
        c[3].image(viz.colorize_depth(pred.depth, vmin=lo, vmax=hi), caption=f"depth now ({state.depth_unit_short})",
                   width="stretch")
    st.caption("After a run, this image is shown again with a before/after wipe.")


# --------------------------------------------------------------------------- job
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


def _args(state: ModelState, data: finetune.DataPlan) -> dict:
    ss = st.session_state
    stl = getattr(state.config, "task", "both") != "both"
    return finetune.finetune_args(
        str(state.path), state.config, data_root(state.config, data), steps=ss["ft_steps"],
        lambda_1=ss["ft_lambda_1"], lambda_2=ss["ft_lambda_2"], lr=ss["ft_lr"], batch_size=ss["ft_batch"],
        lp=ss["ft_lp"], tdep_loss=ss["ft_tdep"], tseg_loss=ss["ft_tseg"],
        balancing="none" if stl else ss["ft_balancing"], ignore_index=state.ignore_index, limit_val=N_VAL,
        loss_reduction=ss.get("ft_loss_reduction", "original"),
        dataset=data.dataset)


def start(state: ModelState, data: finetune.DataPlan) -> None:
    """Button callback: make the data and a new run folder (k of them for a sweep), and launch
    the job with the widgets' values."""
    ss = st.session_state
    ss.pop(ERROR_KEY, None)
    run_dir = None
    name = ss.get("ft_name", "").strip() or None
    try:
        args = _args(state, data)
        if ss.get("ft_sweep"):
            pairs = finetune.sweep_lambdas(ss.get("ft_sweep_values", []), ss.get("ft_sweep_mode", "both"),
                                           ss["ft_lambda_1"], ss["ft_lambda_2"])
            ss[RUN_KEY] = str(finetune.start_sweep(args, pairs, settings.runs_dir(), name=name, owner=owner()))
            return
        run_dir = jobs.new_run_dir(settings.runs_dir(), name)
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
def curves(metrics: pd.DataFrame, key: str = "ft") -> None:
    """Loss components per step, the task weights and task balance when logged, validation rows."""
    if metrics.empty or "step" not in metrics:
        st.caption("Curves appear after the first logged step.")
        return
    steps = metrics[metrics["kind"] == "step"] if "kind" in metrics else metrics
    cols = [c for c in LOSS_COLUMNS if c in steps]
    if not steps.empty and cols:
        st.plotly_chart(figures.curves_figure(steps, cols, x="step", title="Training loss components "
                                              "(unbalanced, per logged step)", yaxis_title="loss"),
                        key=f"{key}_loss_chart")
    weights = [c for c in steps if str(c).startswith("w_")]
    balance = [c for c in ("grad_cos", "ratio_label", "ratio_image") if c in steps and steps[c].notna().any()]
    c1, c2 = st.columns(2) if weights and balance else (st.container(), st.container())
    if weights:
        c1.plotly_chart(figures.curves_figure(steps, weights, x="step", title="Task weights (balancing)",
                                              yaxis_title="weight"), key=f"{key}_weight_chart")
    if balance:
        c2.plotly_chart(figures.curves_figure(
            steps.dropna(subset=balance, how="all"), balance, x="step", yaxis_title="value",
            title="Task balance: gradient cosine at the encoder; group loss / first value"),
            key=f"{key}_balance_chart")
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
    if finetune.is_sweep(run_dir):
        sweep_view(run_dir)
    else:
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


# --------------------------------------------------------------------------- sweeps
def sweep_points(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the sweep's runs as a table, trade-off points of those that validated)."""
    rows, points = [], []
    for r in finetune.read_sweep(run_dir):
        rows.append({"run": r["run_dir"].name, "λ1": r["lambda_1"], "λ2": r["lambda_2"], "status": r["status"],
                     "step": r["step"]})
        if RunDir(r["run_dir"]).metrics.is_file():
            try:
                p = run_point(r["run_dir"].name, run_readers.read_run(r["run_dir"]), "sweep")
            except XTaskError:
                p = None
            if p is not None:
                l1, l2 = fmt_lambda(r["lambda_1"]), fmt_lambda(r["lambda_2"])
                p.update(origin="sweep", name=f"λ {l1}" if l1 == l2 else f"λ1 {l1} · λ2 {l2}")
                points.append(p)
    return pd.DataFrame(rows), pd.DataFrame(points)


def _base_point(run_dir: str | Path) -> dict | None:
    """The sweep's base checkpoint evaluated on the sweep's own validation images (comparable)."""
    runs = finetune.read_sweep(run_dir)
    cfg = _run_config(runs[0]["run_dir"]) if runs else {}
    base, root, dataset = cfg.get("init_checkpoint"), cfg.get("input_path"), cfg.get("dataset", "synthetic")
    if not base or not root or not Path(base).is_file() or not Path(root).is_dir():
        return None
    state = model_state("base", base)
    m = _val_metrics(cache.file_key(base), root, dataset, state.loaded)
    train = (state.meta.get("training") or {}).get("train_config") or {}
    return {"label": f"base: {Path(base).parent.name}/{Path(base).name}", "name": "base", "origin": "base",
            "dataset": dataset,
            "task": "both", "lambda_1": train.get("lambda_1"), "lambda_2": train.get("lambda_2"),
            "balancing": balancing_of(train), **m}


def sweep_view(run_dir: str) -> None:
    """The sweep's runs and their trade-off (a point appears when a run has validated)."""
    table, points = sweep_points(run_dir)
    if not table.empty:
        st.dataframe(table, hide_index=True, key="ft_sweep_table")
    base = _base_point(run_dir)
    if base is not None:
        points = pd.concat([points, pd.DataFrame([base])], ignore_index=True)
    if points.empty:
        st.caption("Points appear in the trade-off as each run finishes (it validates at its end).")
        return
    sweep_only = points[points["origin"] == "sweep"] if "origin" in points else points
    colour = "lambda_2" if sweep_only["lambda_1"].nunique() <= 1 < sweep_only["lambda_2"].nunique() else "lambda_1"
    fig = tradeoff.tradeoff_figure(points, "abs", "miou", colour,
                                   title="λ sweep: mIoU against depth Abs on the fine-tune validation images")
    st.plotly_chart(fig, key="ft_sweep_fig", config={"displaylogo": False})
    st.caption(f"{tradeoff.point_count(fig)} point(s). The base checkpoint is evaluated on the same images.")


# --------------------------------------------------------------------------- results
@st.cache_data(max_entries=16, show_spinner="Evaluating on the validation images…")
def _val_metrics(key: tuple, root: str, dataset: str, _loaded) -> dict:
    # key = (resolved checkpoint path, mtime, size): a changed file is evaluated again.
    out = finetune.quick_eval(_loaded, root, limit=N_VAL, dataset=dataset)
    return {k: v for k, v in out.items() if isinstance(v, (int, float))}


def _run_config(run: Path) -> dict:
    """The train config a run recorded (config.json), {} when unreadable."""
    try:
        cfg = json.loads(RunDir(run).config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    train = cfg.get("train", {}) if isinstance(cfg, dict) else {}
    return train if isinstance(train, dict) else {}


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


def _before_after_images(base: ModelState, tuned: ModelState, which: str, root: Path, dataset: str) -> None:
    rgb, gt_seg, name = fixed_image(base, dataset, root)
    before, after = cache.predict(base, rgb, array_key(rgb)), cache.predict(tuned, rgb, array_key(rgb))
    st.subheader("Before / after on a fixed validation image")
    pal, ign = base.palette, base.ignore_index
    views = {}
    if before.seg is not None and after.seg is not None:
        views["segmentation"] = (viz.colorize_seg(before.seg, pal, ign), viz.colorize_seg(after.seg, pal, ign))
    if before.depth is not None and after.depth is not None:
        lo, hi = depth_range([before.depth, after.depth])   # one shared, robust range
        views["depth"] = (viz.colorize_depth(before.depth, vmin=lo, vmax=hi),
                          viz.colorize_depth(after.depth, vmin=lo, vmax=hi))
    c1, c2 = st.columns([1, 2])
    c1.image(before.input_rgb, caption=f"input ({name})", width="stretch")
    if gt_seg is not None:
        c1.image(viz.colorize_seg(gt_seg, pal, ign), caption="ground-truth segmentation", width="stretch")
    with c2:
        shown = st.radio("Wipe", list(views), horizontal=True, key="ft_wipe_view") if len(views) > 1 else \
            next(iter(views), None)
        if shown is not None:
            charts.wipe(*views[shown], left="base", right=f"fine-tuned ({which})", uid=f"ft-wipe-{shown}")
            st.caption("Move the pointer over the image (or the slider) to wipe between the base checkpoint "
                       "(left) and the fine-tuned one (right); depth uses one colour range for both.")


def _metrics_table(base: ModelState, tuned: ModelState, root: Path, run: Path, dataset: str) -> None:
    m_before = _val_metrics(cache.file_key(base.path), str(root), dataset, base.loaded)
    m_after = _val_metrics(cache.file_key(tuned.path), str(root), dataset, tuned.loaded)
    st.subheader(f"Validation metrics ({N_VAL} images of the fine-tune set)")
    table = pd.DataFrame(before_after_rows(m_before, m_after))
    st.dataframe(table, hide_index=True)
    st.caption(f"Depth errors are in the model's units ({base.depth_unit}). A few steps on a tiny set mostly "
               "show the direction a setting pushes in, not a converged result.")
    download_csv("Download before/after CSV", table, f"{run.name}-before-after.csv", key="ft_csv")


def results(state: ModelState, status, run_dir: str) -> None:
    """How the run ended, a button to use it, and before/after images and metrics. For a sweep:
    its runs and trade-off, and the before/after of the run picked."""
    run = Path(run_dir)
    if finetune.is_sweep(run):
        st.caption(status.text)
        sweep_view(run_dir)
        done = [r["run_dir"] for r in finetune.read_sweep(run) if RunDir(r["run_dir"]).best.is_file()]
        if not done:
            return
        run = st.selectbox("Run of the sweep to look at", done, key="ft_sweep_pick", format_func=lambda p: p.name)
        status = jobs.poll(run)
    ckpts = _outcome(status, run)
    if not ckpts:
        return
    if not finetune.is_sweep(run_dir):
        progress(status, str(run))
    train = _run_config(run)
    job = jobs.read_job(run)
    base_path = train.get("init_checkpoint") or (init_checkpoint_of(job.argv) if job is not None else None)
    root = train.get("input_path")
    if not base_path or not Path(base_path).is_file() or not root or not Path(root).is_dir():
        st.info("The base checkpoint or the data of this run is no longer available for a before/after view.")
        return
    which = st.radio("Fine-tuned checkpoint", ckpts, horizontal=True, key="ft_which",
                     format_func=lambda n: {"best": "best (lowest val loss)", "last": "last step"}[n])
    _use_button(state, run, which)
    try:
        base = model_state("base", base_path)
        tuned = model_state(f"{run.name}/{which}", run / f"{which}.safetensors")
        dataset = str(train.get("dataset") or "synthetic")
        _before_after_images(base, tuned, which, Path(root), dataset)
        _metrics_table(base, tuned, Path(root), run, dataset)
    except USER_ERRORS as err:
        show_error(err)
