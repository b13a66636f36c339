"""Training logs reshaped for the dashboard: rows to plot, columns to chart, one summary row a run.

Inputs are the objects :func:`xtask_core.train.run_readers.read_run` returns (attributes ``metrics``:
DataFrame, ``config``: dict, ``source``), read duck-typed so any reader's result with those
attributes works. Nothing here draws.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from xtask_core.train import run_readers

# (title, columns to plot, y label). Columns missing from a run are skipped for that run;
# None = every w_* column (task weights of uncertainty weighting / GradNorm).
CHARTS: list[tuple[str, list[str] | None, str]] = [
    ("Total loss", ["train_loss", "val_loss"], "loss (unbalanced label + image)"),
    ("Loss components: training", ["train_seg", "train_depth", "train_tseg", "train_tdep"], "loss"),
    ("Loss components: validation", ["val_seg", "val_depth", "val_tseg", "val_tdep"], "loss"),
    ("Segmentation metrics (validation)", ["val_miou", "val_miou_per_image", "val_pixel_acc"], "score"),
    ("Depth errors (validation)", ["val_abs", "val_abs_rel", "val_rmse"], "error (model units)"),
    ("Task weights (uncertainty / GradNorm)", None, "weight"),
    ("Learning rate", ["lr"], "lr"),
]
# Hyperparameters shown per run (those a run's config has), and the metrics whose last value is shown.
HYPER = ["dataset", "enc_layers", "num_classes", "epochs", "max_steps", "batch_size", "lr", "lambda_1",
         "lambda_2", "lp", "tdep_loss", "tseg_loss", "method", "balancing", "uncertainty_weights", "gradnorm",
         "init_checkpoint"]
FINAL = ["train_loss", "val_loss", "val_miou", "val_miou_per_image", "val_pixel_acc", "val_abs",
         "val_abs_rel", "val_rmse", "val_delta1"]


def epoch_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch rows when the log also has per-step rows (``kind`` column), else all rows."""
    if "kind" in df and (df["kind"] == "epoch").any():
        return df[df["kind"] == "epoch"]
    return df


def curve_frames(runs: Mapping[str, object], per_step: bool) -> tuple[dict[str, pd.DataFrame], str]:
    """label → rows to plot, and the x column: ``step`` for per-step rows, else ``epoch``.

    Runs without metrics are left out; a log without an epoch column is plotted against its
    steps (its ``epoch`` column then holds the step)."""
    x = "step" if per_step else "epoch"
    out = {}
    for label, run in runs.items():
        df = getattr(run, "metrics", None)
        if df is None or df.empty:
            continue
        if x not in df.columns and df.index.name in ("epoch", "step"):
            df = df.reset_index()
        df = df if per_step else epoch_rows(df)
        if x not in df.columns:
            if "step" not in df.columns:
                continue
            df = df.assign(epoch=df["step"]) if x == "epoch" else df
        out[label] = df
    return out, x


def chart_columns(frames: Mapping[str, pd.DataFrame], columns: Sequence[str] | None) -> list[str]:
    """The columns of one chart that some run logged (with at least one value); ``None`` means
    every ``w_*`` column of any run, sorted."""
    if columns is None:
        return sorted({c for df in frames.values() for c in df.columns if str(c).startswith("w_")})
    return [c for c in columns if any(c in df.columns and df[c].notna().any() for df in frames.values())]


def hyper_row(label: str, run) -> dict:
    """One summary row of a run: ``run``, ``source``, the :data:`HYPER` settings its config has,
    ``final <metric>`` for each :data:`FINAL` metric (last epoch value) and ``best val_loss``."""
    cfg = getattr(run, "config", None) or {}
    train = cfg.get("train", cfg) if isinstance(cfg, dict) else {}
    row = {"run": label, "source": str(getattr(run, "source", ""))}
    if isinstance(train, dict):
        row.update({k: train[k] for k in HYPER if k in train})
    df = getattr(run, "metrics", None)
    if df is not None and not df.empty:
        epochs = epoch_rows(df)
        for k in FINAL:
            if k in epochs and epochs[k].notna().any():
                row[f"final {k}"] = float(epochs[k].dropna().iloc[-1])
        if "val_loss" in epochs and epochs["val_loss"].notna().any():
            row["best val_loss"] = float(epochs["val_loss"].min())
    return row


def init_checkpoint_of(argv: Sequence[str]) -> str | None:
    """The ``--init_checkpoint`` value of a training command line (a fine-tune's base), or None."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--init_checkpoint" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--init_checkpoint="):
            return arg.split("=", 1)[1]
    return None


def discover_runs(roots: Sequence[tuple[str, Path]]) -> tuple[dict[str, Path], list[str]]:
    """Runs under each ``(name, folder)`` root: ``{"<run name> (<root name>)": path}`` and one
    one-line problem per root that could not be listed (the other roots still count). Missing
    folders are skipped; a label clash between roots falls back to "<folder> (<parent>)"."""
    found: dict[str, Path] = {}
    problems: list[str] = []
    for name, root in roots:
        if not Path(root).is_dir():
            continue
        try:
            items = run_readers.find_runs([root])
        except Exception as err:  # noqa: BLE001 - one bad folder must not hide the others
            problems.append(f"Could not list runs in {name}: {' '.join(str(err).split())}")
            continue
        for item in items:
            path = Path(getattr(item, "path", item))
            label = f"{getattr(item, 'name', path.name)} ({name})"
            if label in found and found[label] != path:
                label = f"{path.name} ({path.parent})"
            found[label] = path
    return found, problems


def newest_mtime(path: Path) -> float:
    """Newest modification time of a folder and its direct entries (or of a file); 0 when
    unreadable. A cache key that changes while a run is still being written."""
    try:
        if path.is_dir():
            return max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.iterdir()])
        return path.stat().st_mtime
    except OSError:
        return 0.0
