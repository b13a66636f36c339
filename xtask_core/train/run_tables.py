"""Training logs reshaped for the dashboard: rows to plot, columns to chart, one summary row a run,
and one trade-off point a run or checkpoint (segmentation quality against depth error).

Inputs are the objects :func:`xtask_core.train.run_readers.read_run` returns (attributes ``metrics``:
DataFrame, ``config``: dict, ``source``), read duck-typed so any reader's result with those
attributes works. Nothing here draws.
"""
from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from xtask_core.evaluate.delta_m import DELTA_M_METRICS, combine_baselines, delta_m, delta_m_terms
from xtask_core.train import run_readers
from xtask_core.train.xtask_mt_format import PUBLISHED_RESULTS

# (title, columns to plot, y label). Columns missing from a run are skipped for that run;
# None = every w_* column (task weights of uncertainty weighting / GradNorm).
CHARTS: list[tuple[str, list[str] | None, str]] = [
    ("Total loss", ["train_loss", "val_loss"], "loss (unbalanced label + image)"),
    ("Loss components: training", ["train_seg", "train_depth", "train_tseg", "train_tdep"], "loss"),
    ("Loss components: validation", ["val_seg", "val_depth", "val_tseg", "val_tdep"], "loss"),
    ("Segmentation metrics (validation)", ["val_miou", "val_miou_per_image", "val_pixel_acc"], "score"),
    ("Depth errors (validation)", ["val_abs", "val_abs_rel", "val_rmse"], "error (model units)"),
    ("Task weights (uncertainty / GradNorm)", None, "weight"),
    ("Task balance: gradient cosine of the label and image groups at the shared encoder", ["grad_cos"],
     "cosine (< 0: the groups conflict)"),
    ("Task balance: each group's training loss over its first value", ["ratio_label", "ratio_image"],
     "L(t) / L(first step)"),
    ("Learning rate", ["lr"], "lr"),
]
# Hyperparameters shown per run (those a run's config has), and the metrics whose last value is shown.
HYPER = ["dataset", "enc_layers", "num_classes", "epochs", "max_steps", "batch_size", "lr", "lambda_1",
         "lambda_2", "lp", "tdep_loss", "tseg_loss", "method", "loss_reduction", "balancing", "uncertainty_weights",
         "gradnorm", "init_checkpoint"]
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
        out[label] = with_loss_ratios(df)
    return out, x


def with_loss_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``ratio_label`` / ``ratio_image`` (each group's training loss over its first
    logged value) derived from ``train_label`` / ``train_image`` when the run did not log them."""
    add = {}
    for group in ("label", "image"):
        col, src = f"ratio_{group}", f"train_{group}"
        if col in df.columns or src not in df.columns:
            continue
        values = pd.to_numeric(df[src], errors="coerce")
        first = values.dropna()
        if not first.empty and first.iloc[0] != 0:
            add[col] = values / float(first.iloc[0])
    return df.assign(**add) if add else df


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
        if row["source"] == "xtask" and train and "loss_reduction" not in train:
            row["loss_reduction"] = "masked"  # our runs saved before the option used the masked means
        elif row["source"] == "xtask_mt":
            row["loss_reduction"] = "original"  # the original code's own runs
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


# --------------------------------------------------------------------------- trade-off points
# Metrics a trade-off point carries (names of SegDepthMetrics.compute(); runs log them as val_<name>).
POINT_METRICS = ("miou", "miou_per_image", "pixel_acc", "abs", "abs_rel", "rmse", "delta1")
SEG_AXES = ("miou", "miou_per_image", "pixel_acc")
DEPTH_AXES = ("abs", "abs_rel", "rmse", "delta1")
AXIS_LABELS = {"miou": "mIoU (dataset: one confusion matrix)", "miou_per_image": "mIoU per image (the original's)",
               "pixel_acc": "pixel accuracy", "abs": "depth Abs error (model units)",
               "abs_rel": "depth Abs Rel", "rmse": "depth RMSE (model units)", "delta1": "δ < 1.25"}
_HEADER_MAX = 16 * 2**20   # a safetensors header larger than this is not one of ours


def balancing_of(train: Mapping) -> str:
    """One word for a run's loss balancing: ``uncertainty | gradnorm | pcgrad | none``."""
    for key, name in (("uncertainty_weights", "uncertainty"), ("gradnorm", "gradnorm"), ("pcgrad", "pcgrad")):
        if train.get(key) is True:
            return name
    return str(train.get("balancing") or "none")


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def dataset_of(train: Mapping, note: str = "") -> str:
    """The dataset a run trained on, as the trade-off groups runs: its ``dataset``, with
    " (synthetic data)" when a real dataset's layout held xtask's synthetic renders (its
    ``input_path`` README says so, or the card's data ``note`` does), so published numbers of the
    real dataset are never set beside it."""
    dataset = str(train.get("dataset") or "?")
    if dataset not in ("cityscapes", "nyuv2"):
        return dataset
    synthetic = "synthetic" in str(note).lower()
    try:
        readme = Path(str(train.get("input_path") or "")) / "README.txt"
        synthetic = synthetic or (readme.is_file() and readme.read_text(errors="replace")[:200].startswith("SYNTHETIC"))
    except OSError:
        pass
    return f"{dataset} (synthetic data)" if synthetic else dataset


def _point(label: str, origin: str, path, train: Mapping, metrics: Mapping, extra: Mapping, note: str = "") -> dict:
    task = str(train.get("task") or "both")
    init = str(train.get("init_checkpoint") or "")
    row = {"label": label, "origin": "fine-tune" if origin == "run" and init else origin, "path": str(path),
           "dataset": dataset_of(train, note), "task": task,
           "lambda_1": _float(train.get("lambda_1")), "lambda_2": _float(train.get("lambda_2")),
           "balancing": balancing_of(train), "lr": _float(train.get("lr")),
           "steps": train.get("max_steps") or None, "epochs": train.get("epochs"), "init_checkpoint": init}
    row.update({m: _float(metrics.get(m)) for m in POINT_METRICS})
    row.update(extra)
    return row


def _best_row(df: pd.DataFrame) -> pd.Series | None:
    """The validated row the best checkpoint comes from: lowest ``val_loss`` (the trainer keeps
    best.* by it), else the last row with any validation metric; None without one."""
    cols = [f"val_{m}" for m in POINT_METRICS if f"val_{m}" in df.columns]
    if not cols:
        return None
    rows = epoch_rows(df)
    rows = rows[rows[cols].notna().any(axis=1)]
    if rows.empty:
        return None
    if "val_loss" in rows and rows["val_loss"].notna().any():
        return rows.loc[pd.to_numeric(rows["val_loss"], errors="coerce").idxmin()]
    return rows.iloc[-1]


def run_point(label: str, run, origin: str = "run") -> dict | None:
    """One trade-off point of a run (our folders or the original's exps/NNN), or None when it has
    no validation metric. Our runs: the metrics of the epoch with the lowest validation loss (the
    epoch best.* holds); the original's: the scores of its results file, whose mIoU is the
    per-image one (``miou_per_image``)."""
    cfg = getattr(run, "config", None) or {}
    train = cfg.get("train", cfg) if isinstance(cfg, dict) else {}
    train = train if isinstance(train, dict) else {}
    extra = {"source": str(getattr(run, "source", "")), "val_images": cfg.get("val_images")}
    if getattr(run, "source", "") == "xtask_mt":
        summary = dict(getattr(run, "summary", None) or {})
        if "miou" in summary:
            summary["miou_per_image"] = summary.pop("miou")
        train = {"dataset": train.get("dataset", "?"), "lambda_1": train.get("alpha"), "lambda_2": train.get("gamma"),
                 **{k: v for k, v in train.items() if k in HYPER}}
        metrics = summary
    else:
        df = getattr(run, "metrics", None)
        if df is None or df.empty:
            return None
        if df.index.name in ("epoch", "step", "row"):
            df = df.reset_index()
        row = _best_row(df)
        if row is None:
            return None
        metrics = {m: row.get(f"val_{m}") for m in POINT_METRICS}
        extra["epoch"] = _float(row.get("epoch"))
    point = _point(label, origin, getattr(run, "path", ""), train, metrics, extra)
    return point if any(point[m] is not None for m in POINT_METRICS) else None


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict stored in one of our ``.safetensors`` checkpoints, read from its header
    only (no tensor is loaded); {} for any other file or an unreadable header."""
    try:
        with open(path, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            if not 0 < n <= _HEADER_MAX:
                return {}
            header = json.loads(fh.read(n).decode("utf-8"))
        meta = json.loads((header.get("__metadata__") or {}).get("meta") or "{}")
    except (OSError, ValueError, struct.error, AttributeError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def checkpoint_point(label: str, path: str | os.PathLike, origin: str = "shipped") -> dict | None:
    """A trade-off point of a checkpoint file from the validation metrics and training config its
    card records (``meta.training``), or None when it records none."""
    meta = read_checkpoint_meta(path)
    training = meta.get("training") or {}
    metrics = training.get("metrics") if isinstance(training, dict) else None
    if not isinstance(metrics, dict):
        return None
    train = training.get("train_config") or {}
    train = dict(train) if isinstance(train, dict) else {}
    train.setdefault("dataset", meta.get("dataset", "?"))
    extra = {"source": "checkpoint card", "epoch": training.get("best_epoch")}
    point = _point(label, origin, path, train, metrics, extra, note=str(meta.get("data_note", "")))
    return point if any(point[m] is not None for m in POINT_METRICS) else None


def tradeoff_points(runs: Mapping[str, object], origins: Mapping[str, str] | None = None,
                    checkpoints: Sequence[tuple[str, Path]] = ()) -> tuple[pd.DataFrame, list[str]]:
    """Every run and checkpoint as a point: (DataFrame, one row each; labels without metrics).

    ``runs``: label → Run; ``origins``: label → ``shipped | run | folder`` (default ``run``; a run
    with an init checkpoint becomes ``fine-tune``). ``checkpoints``: (label, file) pairs of
    checkpoints that are not inside one of ``runs``' folders; their point comes from the card.
    Columns: label, origin, path, dataset, task, lambda_1, lambda_2, balancing, lr, steps, epochs,
    init_checkpoint, the :data:`POINT_METRICS`, source, epoch, val_images."""
    rows, missing = [], []
    origins = origins or {}
    run_dirs = {Path(getattr(r, "path", "")).resolve() for r in runs.values()}
    for label, run in runs.items():
        p = run_point(label, run, origins.get(label, "run"))
        (rows.append(p) if p else missing.append(label))
    for label, path in checkpoints:
        if Path(path).resolve().parent in run_dirs:
            continue
        p = checkpoint_point(label, path)
        (rows.append(p) if p else missing.append(label))
    return pd.DataFrame(rows), missing


def stl_baselines(points: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """Single-task baselines per dataset: ``{dataset: {"segmt": point, "depth": point}}`` (a task
    present only). Several runs of one task: the best one (highest mIoU for segmt, lowest Abs
    for depth), the usual choice of a reference."""
    out: dict[str, dict[str, dict]] = {}
    if points.empty or "task" not in points:
        return out
    for (dataset, task), group in points[points["task"].isin(["segmt", "depth"])].groupby(["dataset", "task"]):
        key, ascending = ("miou", False) if task == "segmt" else ("abs", True)
        if key not in group or group[key].isna().all():
            key = "miou_per_image" if task == "segmt" else "rmse"
        if key not in group or group[key].isna().all():
            continue
        best = group.sort_values(key, ascending=ascending, na_position="last").iloc[0]
        out.setdefault(str(dataset), {})[str(task)] = best.to_dict()
    return out


def delta_m_rows(points: pd.DataFrame, baselines: Mapping[str, Mapping[str, Mapping]],
                 metrics: Sequence[str] = DELTA_M_METRICS) -> pd.DataFrame:
    """Δm% of every cross-task point over the single-task baselines of its dataset (both tasks
    needed): columns label, dataset, Δm %, one ``Δ <metric> %`` per metric, and the baselines'
    labels. Empty when no dataset has both baselines."""
    rows = []
    if points.empty:
        return pd.DataFrame(rows)
    for _, p in points[points["task"] == "both"].iterrows():
        base = baselines.get(str(p["dataset"]), {})
        if "segmt" not in base or "depth" not in base:
            continue
        stl = combine_baselines(base["segmt"], base["depth"])
        mtl = {m: p.get(m) for m in metrics}
        value = delta_m(mtl, stl, metrics)
        if math.isnan(value):
            continue
        row = {"label": p["label"], "dataset": p["dataset"], "Δm %": value}
        row.update({f"Δ {m} %": v for m, v in delta_m_terms(mtl, stl, metrics).items()})
        row.update({"segmentation baseline": base["segmt"]["label"], "depth baseline": base["depth"]["label"]})
        rows.append(row)
    return pd.DataFrame(rows)


def published_points(datasets: Sequence[str]) -> pd.DataFrame:
    """The original paper's published rows for ``datasets`` (cityscapes / nyuv2 only: they are on
    the real data) as trade-off points: percentages as fractions like ours; its mIoU is the
    per-image one, so it is ``miou_per_image`` (no dataset-level mIoU); Cityscapes' Abs Rel is
    printed in percent, NYUv2's as a ratio."""
    rows = []
    for r in PUBLISHED_RESULTS:
        if r["dataset"] not in datasets:
            continue
        rel = r["abs_rel"] / 100.0 if r["dataset"] == "cityscapes" else r["abs_rel"]
        rows.append({"label": f"{r['model']} (published)", "dataset": r["dataset"], "origin": "published",
                     "miou_per_image": r["miou"] / 100.0, "pixel_acc": r["pixel_acc"] / 100.0,
                     "abs": r["abs"], "abs_rel": rel, "source": r["source"]})
    return pd.DataFrame(rows)
