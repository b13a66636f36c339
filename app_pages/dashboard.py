"""Training dashboard: read training logs and overlay several runs.

Sources: our run folders (``runs/``, ``checkpoints/``), TensorBoard folders and the original
code's ``exps/NNN`` folders, found under the repo's runs/ and checkpoints/ plus one folder the
user types (inside the allowed roots). Reading is :mod:`xtask_core.train.runlog`'s job; this page
only picks, plots and tabulates. Every source and every chart is drawn inside its own guard,
so one broken log shows its own error and everything else still renders.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone `streamlit run app_pages/dashboard.py`
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from app_pages import common  # noqa: E402
from xtask_core.train import runlog  # noqa: E402
from xtask_core.viz import figures  # noqa: E402

MAX_DEFAULT = 4   # runs selected by default
# (title, columns to plot, y label). Columns missing from a run are skipped for that run.
CHARTS = [
    ("Total loss", ["train_loss", "val_loss"], "loss (unbalanced label + image)"),
    ("Loss components: training", ["train_seg", "train_depth", "train_tseg", "train_tdep"], "loss"),
    ("Loss components: validation", ["val_seg", "val_depth", "val_tseg", "val_tdep"], "loss"),
    ("Segmentation metrics (validation)", ["val_miou", "val_miou_per_image", "val_pixel_acc"], "score"),
    ("Depth errors (validation)", ["val_abs", "val_abs_rel", "val_rmse"], "error (model units)"),
    ("Task weights (uncertainty / GradNorm)", None, "weight"),   # None: every w_* column
    ("Learning rate", ["lr"], "lr"),
]
HYPER = ["dataset", "enc_layers", "num_classes", "epochs", "max_steps", "batch_size", "lr", "lambda_1",
         "lambda_2", "lp", "tdep_loss", "tseg_loss", "method", "uncertainty_weights", "gradnorm",
         "init_checkpoint"]
FINAL = ["train_loss", "val_loss", "val_miou", "val_miou_per_image", "val_pixel_acc", "val_abs",
         "val_abs_rel", "val_rmse", "val_delta1"]

st.title("Training dashboard")
common.sidebar()   # shared picker; the dashboard itself reads logs, not weights
st.caption("Training logs of our runs, shipped checkpoints, TensorBoard folders and the original "
           "code's exps/ folders. Pick several runs to overlay them.")


# --------------------------------------------------------------------------- sources
def _roots() -> list[tuple[str, Path]]:
    roots = [("runs/", common.runs_dir()), ("checkpoints/", common.checkpoint_dir())]
    typed = st.text_input("Another folder with runs, TensorBoard logs or an original exps/ folder",
                          key="dash_folder", placeholder="e.g. /data/xtask_mt/exps",
                          help="Must lie inside checkpoints/, runs/ or a folder in XTASK_ALLOWED_ROOTS")
    if typed.strip():
        try:
            roots.append((typed.strip(), common.resolve_user_path(typed)))
        except common.USER_ERRORS as err:
            common.show_error(err)
    return roots


def _discover(roots) -> dict[str, Path]:
    """label → run path, from every root; a root that fails to list shows its own error."""
    found: dict[str, Path] = {}
    for name, root in roots:
        if not Path(root).is_dir():
            continue
        try:
            items = runlog.find_runs([root])
        except Exception as err:  # noqa: BLE001 - one bad folder must not hide the others
            st.error(f"Could not list runs in {name}: {' '.join(str(err).split())}")
            continue
        for item in items:
            path = Path(getattr(item, "path", item))
            label = f"{getattr(item, 'name', path.name)} ({name})"
            if label in found and found[label] != path:
                label = f"{path.name} ({path.parent})"
            found[label] = path
    return found


@st.cache_data(max_entries=64, show_spinner=False)
def _read(path: str, stamp: float):
    # stamp = newest mtime in the folder: a run still being written is read again.
    return runlog.read_run(path)


def _stamp(path: Path) -> float:
    try:
        return max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.iterdir()]) if path.is_dir() \
            else path.stat().st_mtime
    except OSError:
        return 0.0


roots = _roots()
available = _discover(roots)
if not available:
    st.info("No runs found. Train one (`xtask train … --out runs/NAME`), fine-tune on the Fine-tune "
            "page, or type a folder holding TensorBoard logs or an original exps/ folder.")
labels = list(available)
picked = st.multiselect("Runs", labels, default=labels[:MAX_DEFAULT], key="dash_runs")

runs = {}
for label in picked:
    path = available[label]
    try:
        run = _read(str(path), _stamp(path))
    except Exception as err:  # noqa: BLE001 - show this run's error, keep the others
        st.error(f"{label}: could not read it: {' '.join(str(err).split())}")
        continue
    for problem in getattr(run, "errors", None) or []:
        st.warning(f"{label}: {problem}")
    runs[label] = run


# --------------------------------------------------------------------------- charts
def _epoch_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch rows when the log also has per-step rows (``kind`` column), else all rows."""
    if "kind" in df and (df["kind"] == "epoch").any():
        return df[df["kind"] == "epoch"]
    return df


def _frames(runs_: dict, per_step: bool) -> tuple[dict[str, pd.DataFrame], str]:
    """label → rows to plot, and the x column: ``step`` for per-step rows, else ``epoch``."""
    x = "step" if per_step else "epoch"
    out = {}
    for label, run in runs_.items():
        df = getattr(run, "metrics", None)
        if df is None or df.empty:
            continue
        if x not in df.columns and df.index.name in ("epoch", "step"):
            df = df.reset_index()
        df = df if per_step else _epoch_rows(df)
        if x not in df.columns:
            if "step" not in df.columns:
                continue
            x_run = "step"           # a log without epochs: plot it against steps
            df = df.assign(epoch=df[x_run]) if x == "epoch" else df
        out[label] = df
    return out, x


per_step = st.toggle("Per-step rows (when logged)", value=False, key="dash_per_step",
                     help="Fine-tunes log a row every few steps; full trainings a row per epoch")
if runs:
    st.subheader("Curves")
    frames, x_col = _frames(runs, per_step)
    for title, columns, ylabel in CHARTS:
        try:
            ys = (sorted({c for df in frames.values() for c in df.columns if str(c).startswith("w_")})
                  if columns is None else [c for c in columns
                                           if any(c in df.columns and df[c].notna().any()
                                                  for df in frames.values())])
            if not ys:
                st.caption(f"{title}: not logged by the selected runs.")
                continue
            fig = figures.curves_figure(frames, ys, x=x_col, title=title, yaxis_title=ylabel)
            fig.update_layout(height=340)
            st.plotly_chart(fig, key=f"dash_chart_{title}")
        except Exception as err:  # noqa: BLE001 - one broken chart, the others still render
            st.error(f"{title}: could not draw it: {' '.join(str(err).split())}")


# --------------------------------------------------------------------------- tables
def _hyper_row(label: str, run) -> dict:
    cfg = getattr(run, "config", None) or {}
    train = cfg.get("train", cfg) if isinstance(cfg, dict) else {}
    row = {"run": label, "source": str(getattr(run, "source", ""))}
    row.update({k: train.get(k) for k in HYPER if isinstance(train, dict) and k in train})
    df = getattr(run, "metrics", None)
    if df is not None and not df.empty:
        epochs = _epoch_rows(df)
        for k in FINAL:
            if k in epochs and epochs[k].notna().any():
                row[f"final {k}"] = float(epochs[k].dropna().iloc[-1])
        if "val_loss" in epochs and epochs["val_loss"].notna().any():
            row["best val_loss"] = float(epochs["val_loss"].min())
    return row


if runs:
    st.subheader("Hyperparameters and final metrics")
    try:
        table = pd.DataFrame([_hyper_row(label, run) for label, run in runs.items()])
        st.dataframe(table, hide_index=True)
        common.download_csv("Download table (CSV)", table, "runs.csv", key="dash_csv")
    except Exception as err:  # noqa: BLE001
        st.error(f"Could not build the run table: {' '.join(str(err).split())}")

st.subheader("Published results, for reference")
st.caption("Numbers reported in the original paper's README (ResNet34, real Cityscapes / NYUv2). "
           "They are **published numbers, not produced by this app**; our demo runs use synthetic data "
           "and are not comparable to them.")
try:
    st.dataframe(runlog.published_results(), hide_index=True)
except Exception as err:  # noqa: BLE001
    st.error(f"Published table unavailable: {' '.join(str(err).split())}")
