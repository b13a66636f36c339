"""Training dashboard: read training logs and overlay several runs.

Sources: our run folders (``runs/``, ``checkpoints/``), TensorBoard folders and the original
code's ``exps/NNN`` folders, found under the repo's runs/ and checkpoints/ plus one folder the
user types (inside the allowed roots). Reading is :mod:`xtask_core.train.run_readers`' job and
reshaping :mod:`xtask_core.train.run_tables`'; this page only picks, plots and tabulates. Every
source and every chart is drawn inside its own guard, so one broken log shows its own error and
everything else still renders.
"""
from pathlib import Path

import pandas as pd
import streamlit as st

from xtask_app import downloads, selection, settings
from xtask_app.messages import USER_ERRORS, show_error
from xtask_app.ui import delta_m, tradeoff
from xtask_core.io.paths import find_checkpoints
from xtask_core.train import run_readers, run_tables, xtask_mt_format
from xtask_core.viz import figures

MAX_DEFAULT = 4   # runs selected by default

st.title("Training dashboard")
selection.sidebar()   # shared picker; the dashboard itself reads logs, not weights
st.caption("Training logs of our runs, shipped checkpoints, TensorBoard folders and the original "
           "code's exps/ folders. Pick several runs to overlay them.")


def source_roots() -> list[tuple[str, Path]]:
    """runs/, checkpoints/ and the folder typed by the user (refused with one line when outside)."""
    roots = [("runs/", settings.runs_dir()), ("checkpoints/", settings.checkpoint_dir())]
    typed = st.text_input("Another folder with runs, TensorBoard logs or an original exps/ folder",
                          key="dash_folder", placeholder="e.g. /data/xtask_mt/exps",
                          help="Must lie inside checkpoints/, runs/ or a folder in XTASK_ALLOWED_ROOTS")
    if typed.strip():
        try:
            roots.append((typed.strip(), settings.resolve_user_path(typed)))
        except USER_ERRORS as err:
            show_error(err)
    return roots


@st.cache_data(max_entries=64, show_spinner=False)
def read_run(path: str, stamp: float):
    # stamp = newest mtime in the folder: a run still being written is read again.
    return run_readers.read_run(path)


def read_picked(picked: list[str], available: dict[str, Path], quiet: bool = False) -> dict:
    """label → Run for each picked run; a run that cannot be read shows its own error (unless
    ``quiet``: then it is only left out)."""
    runs = {}
    for label in picked:
        path = available[label]
        try:
            run = read_run(str(path), run_tables.newest_mtime(path))
        except Exception as err:  # noqa: BLE001 - show this run's error, keep the others
            if not quiet:
                st.error(f"{label}: could not read it: {' '.join(str(err).split())}")
            continue
        for problem in [] if quiet else getattr(run, "errors", None) or []:
            st.warning(f"{label}: {problem}")
        runs[label] = run
    return runs


def draw_curves(runs: dict, per_step: bool) -> None:
    frames, x_col = run_tables.curve_frames(runs, per_step)
    for title, columns, ylabel in run_tables.CHARTS:
        try:
            ys = run_tables.chart_columns(frames, columns)
            if not ys:
                st.caption(f"{title}: not logged by the selected runs.")
                continue
            fig = figures.curves_figure(frames, ys, x=x_col, title=title, yaxis_title=ylabel)
            fig.update_layout(height=340)
            st.plotly_chart(fig, key=f"dash_chart_{title}")
        except Exception as err:  # noqa: BLE001 - one broken chart, the others still render
            st.error(f"{title}: could not draw it: {' '.join(str(err).split())}")


available, problems = run_tables.discover_runs(source_roots())
for problem in problems:
    st.error(problem)
if not available:
    st.info("No runs found. Train one (`xtask train … --out runs/NAME`), fine-tune on the Fine-tune "
            "page, or type a folder holding TensorBoard logs or an original exps/ folder.")
labels = list(available)
picked = st.multiselect("Runs", labels, default=labels[:MAX_DEFAULT], key="dash_runs")
runs = read_picked(picked, available)

per_step = st.toggle("Per-step rows (when logged)", value=False, key="dash_per_step",
                     help="Fine-tunes log a row every few steps; full trainings a row per epoch")
if runs:
    st.subheader("Curves")
    draw_curves(runs, per_step)
    st.subheader("Hyperparameters and final metrics")
    try:
        table = pd.DataFrame([run_tables.hyper_row(label, run) for label, run in runs.items()])
        st.dataframe(table, hide_index=True)
        downloads.download_csv("Download table (CSV)", table, "runs.csv", key="dash_csv")
    except Exception as err:  # noqa: BLE001
        st.error(f"Could not build the run table: {' '.join(str(err).split())}")

st.subheader("Trade-off: segmentation against depth, every run and checkpoint")
try:
    everything = read_picked(labels, available, quiet=True)
    roots = {"shipped": settings.checkpoint_dir(), "run": settings.runs_dir()}
    points, missing = run_tables.tradeoff_points(
        everything, {label: tradeoff.origin_of(available[label], roots) for label in everything},
        [(c.label, c.path) for c in find_checkpoints(settings.checkpoint_dir(), None)])
    tradeoff.section(points, missing, key="dash_trade")
    st.markdown("**Multi-task gain Δm%** over the single-task baselines of the same dataset")
    delta_m.show(points, key="dash_dm", where="the runs and checkpoints here",
                 note="Each run's own recorded validation numbers: fair only between runs validated on the same "
                      "images for comparable training (Compare evaluates checkpoints on one subset).")
except Exception as err:  # noqa: BLE001 - the rest of the dashboard still renders
    st.error(f"Trade-off view unavailable: {' '.join(str(err).split())}")

st.subheader("Published results, for reference")
st.caption("Numbers reported in the original paper's README (ResNet34, real Cityscapes / NYUv2). "
           "They are **published numbers, not produced by this app**; our demo runs use synthetic data "
           "and are not comparable to them.")
try:
    st.dataframe(xtask_mt_format.published_results(), hide_index=True)
except Exception as err:  # noqa: BLE001
    st.error(f"Published table unavailable: {' '.join(str(err).split())}")
