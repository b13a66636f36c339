"""Pure summaries of per-image records (a DataFrame from :func:`~xtask_core.evaluate.records.records_for`
or :func:`~xtask_core.evaluate.record_store.load_records`): what the Dataset page and the CLI show.

- :func:`error_values`: an error per image, higher = worse: ``"pixel_error"`` (1 − pixel_acc),
  ``"miou_error"`` (1 − the image's mIoU), or any numeric column.
- :func:`precision_at_k`: of the k images a score ranks highest, the share that are among the k
  with the largest error (1 = the score finds exactly the worst images; k / n by chance).
- :func:`score_vs_error`: per checkpoint, per score (energy, entropy), Spearman with the error,
  precision at k, and the sparsification areas pooled over images
  (:func:`xtask_core.evaluate.analysis.sparsification` with images instead of pixels).
- :func:`checkpoint_delta`: per image, a metric under checkpoint A and B and B − A.
- :func:`confusion_matrix`, :func:`rank_by_confusion`: the split's confusion matrix from the
  images' counts, and the images ranked by one cell (true class X predicted as Y).
- :func:`totals`: dataset-level figures per checkpoint, recomputed from the records.
- :func:`worsening`: per image, how much worse checkpoint B is than A in a metric (its direction known).
- :func:`class_iou_table`: per-class IoU per checkpoint with the change from the first.
- :func:`score_curves`: the pooled sparsification curves of each score for one checkpoint.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from xtask_core.errors import XTaskError
from xtask_core.evaluate.analysis import sparsification, spearman
from xtask_core.evaluate.delta_m import HIGHER_IS_BETTER

__all__ = ["ERRORS", "SCORES", "error_values", "precision_at_k", "score_vs_error", "checkpoint_delta",
           "confusion_matrix", "rank_by_confusion", "totals", "worsening", "class_iou_table", "score_curves"]

#: built-in per-image errors (higher = worse)
ERRORS = {"pixel_error": "1 − pixel accuracy", "miou_error": "1 − the image's mIoU"}
#: label-free scores (higher = expected worse): consistency energy, and the confidence baseline
SCORES = ("seg_energy", "seg_entropy", "seg_disagree", "depth_energy")


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        raise XTaskError(f"records have no column {name!r}")
    return df[name].to_numpy(dtype=np.float64)


def error_values(df: pd.DataFrame, error: str = "pixel_error") -> np.ndarray:
    """Per-image error (float64, NaN where the image has no label): see :data:`ERRORS`."""
    if error == "pixel_error":
        return 1.0 - _column(df, "pixel_acc")
    if error == "miou_error":
        return 1.0 - _column(df, "miou")
    return _column(df, error)


def precision_at_k(score, error, k: int) -> float:
    """|top-k by score ∩ top-k by error| / k over the entries where both are finite.

    Ties keep input order (stable sort). NaN when fewer than ``k`` finite pairs; k ≥ 1.
    """
    if k < 1:
        raise XTaskError(f"k must be >= 1, got {k}")
    s, e = np.asarray(score, np.float64), np.asarray(error, np.float64)
    ok = np.isfinite(s) & np.isfinite(e)
    s, e = s[ok], e[ok]
    if s.size < k:
        return float("nan")
    top = set(np.argsort(-s, kind="stable")[:k].tolist())
    worst = set(np.argsort(-e, kind="stable")[:k].tolist())
    return len(top & worst) / k


def _by_checkpoint(df: pd.DataFrame):
    yield from df.groupby("checkpoint", sort=False)


def score_vs_error(df: pd.DataFrame, scores: Sequence[str] = ("seg_energy", "seg_entropy"),
                   errors: Sequence[str] = ("pixel_error", "miou_error"), k: int = 20) -> pd.DataFrame:
    """How well each label-free score ranks the images by their real error, per checkpoint.

    Returns one row per (checkpoint, score, error): ``n`` (images with both values), ``spearman``,
    ``precision_at_k`` (with ``k``; NaN if n < k), ``chance_at_k`` (k / n, what a random
    ranking gets on average), ``ause`` / ``aurg`` (sparsification over images: removing the
    images the score ranks worst first, against the oracle and against random; error units).
    """
    rows = []
    for name, part in _by_checkpoint(df):
        for err_name in errors:
            err = error_values(part, err_name)
            for score in scores:
                s = _column(part, score)
                ok = np.isfinite(err) & np.isfinite(s)
                n = int(ok.sum())
                sp = sparsification(err[ok], s[ok], n_steps=20) if n else {"ause": math.nan, "aurg": math.nan}
                rows.append({"checkpoint": name, "score": score, "error": err_name, "n": n,
                             "spearman": spearman(s[ok], err[ok]) if n >= 2 else math.nan,
                             "k": k, "precision_at_k": precision_at_k(s, err, k),
                             "chance_at_k": k / n if n >= k else math.nan,
                             "ause": sp["ause"], "aurg": sp["aurg"]})
    return pd.DataFrame(rows, columns=["checkpoint", "score", "error", "n", "spearman", "k", "precision_at_k",
                                       "chance_at_k", "ause", "aurg"])


def checkpoint_delta(df: pd.DataFrame, metric: str, a: str, b: str) -> pd.DataFrame:
    """Per image: ``metric`` under checkpoint ``a`` and ``b`` and ``delta`` = b − a.

    Only images both checkpoints have. Sorted by ``delta`` ascending (the largest drop from a to
    b first; NaN deltas last). Columns: image, index, a, b, delta (a and b named after the
    checkpoints' labels would clash when equal, so they are literally "a" and "b").
    """
    for c in (a, b):
        if c not in set(df["checkpoint"]):
            raise XTaskError(f"records have no checkpoint {c!r}")
    _column(df, metric)
    left = df[df["checkpoint"] == a][["image", "index", metric]].rename(columns={metric: "a"})
    right = df[df["checkpoint"] == b][["image", metric]].rename(columns={metric: "b"})
    both = left.merge(right, on="image", how="inner")
    both["delta"] = both["b"] - both["a"]
    return both.sort_values(["delta", "index"], kind="stable", na_position="last").reset_index(drop=True)


def _classes(df: pd.DataFrame) -> int:
    sizes = {len(v) for v in df["confusion"] if len(v)}
    if not sizes:
        raise XTaskError("records have no confusion counts (no ground truth)")
    if len(sizes) > 1:
        raise XTaskError("records mix class counts; select one checkpoint first")
    c = int(round(math.sqrt(sizes.pop())))
    return c


def confusion_matrix(df: pd.DataFrame) -> np.ndarray:
    """C×C int64 sum of the images' confusion counts (rows = true class, columns = predicted).

    Pass one checkpoint's rows. Equals ``xtask eval``'s confusion matrix over the same images.
    """
    c = _classes(df)
    stacked = np.stack([np.asarray(v, np.int64) for v in df["confusion"] if len(v)])
    return stacked.sum(0).reshape(c, c)


def rank_by_confusion(df: pd.DataFrame, true_class: int, pred_class: int) -> pd.DataFrame:
    """Images ranked by the pixels of ``true_class`` predicted as ``pred_class``.

    Returns columns checkpoint, image, index, ``pixels`` (that cell's count) and ``share``
    (pixels / the image's labelled pixels of ``true_class``, NaN if it has none), sorted by
    pixels descending (ties in input order); images without the confusion are left out.
    """
    c = _classes(df)
    for v in (true_class, pred_class):
        if not 0 <= int(v) < c:
            raise XTaskError(f"class {v} is out of range 0..{c - 1}")
    cell = int(true_class) * c + int(pred_class)
    row = slice(int(true_class) * c, (int(true_class) + 1) * c)
    pixels = np.array([int(v[cell]) if len(v) else 0 for v in df["confusion"]], np.int64)
    of_true = np.array([int(np.sum(v[row])) if len(v) else 0 for v in df["confusion"]], np.int64)
    share = np.divide(pixels, of_true, out=np.full(pixels.shape, np.nan), where=of_true > 0)
    out = df[["checkpoint", "image", "index"]].assign(pixels=pixels, share=share)
    out = out[out["pixels"] > 0]
    return out.sort_values("pixels", ascending=False, kind="stable").reset_index(drop=True)


def totals(df: pd.DataFrame) -> dict[str, dict]:
    """Dataset-level figures per checkpoint from the records: ``n_images``, ``pixel_acc`` and
    ``miou`` (dataset-level, from the summed confusion), ``iou_per_class``, ``miou_per_image``
    (mean of the images' mIoU), the depth errors pooled over valid pixels (``abs``, ``abs_rel``,
    ``delta1..3`` weighted by ``n_depth_pixels``; ``rmse`` = sqrt of the weighted mean square),
    and the mean ``seg_energy``, ``depth_energy``, ``seg_disagree``, ``seg_entropy``.
    Equal to ``xtask eval`` on the same images up to float rounding. NaN where nothing was labelled.
    """
    out: dict[str, dict] = {}
    nan = math.nan
    for name, part in _by_checkpoint(df):
        res: dict = {"n_images": int(len(part))}
        labelled = [v for v in part["confusion"] if len(v)]
        if labelled:
            conf = confusion_matrix(part).astype(np.float64)
            tp, total = conf.diagonal(), conf.sum()
            union = conf.sum(0) + conf.sum(1) - tp
            iou = np.divide(tp, union, out=np.full(len(tp), nan), where=union > 0)
            res["pixel_acc"] = float(tp.sum() / total) if total else nan
            res["miou"] = float(np.nanmean(iou)) if np.isfinite(iou).any() else nan
            res["iou_per_class"] = iou.tolist()
        else:
            res.update(pixel_acc=nan, miou=nan, iou_per_class=[])
        res["miou_per_image"] = float(part["miou"].mean()) if part["miou"].notna().any() else nan
        for prefix in ("", "t_"):
            w = part["n_depth_pixels"].to_numpy(np.float64)
            n = w.sum()
            for k in ("abs", "abs_rel", "delta1", "delta2", "delta3"):
                v = part[prefix + k].to_numpy(np.float64)
                res[prefix + k] = float(np.nansum(v * w) / n) if n else nan
            r = part[prefix + "rmse"].to_numpy(np.float64)
            res[prefix + "rmse"] = float(math.sqrt(np.nansum(r * r * w) / n)) if n else nan
        for k in ("seg_energy", "depth_energy", "seg_disagree", "seg_entropy"):
            res[k] = float(part[k].mean())
        out[str(name)] = res
    return out


def worsening(df: pd.DataFrame, metric: str, a: str, b: str) -> pd.DataFrame:
    """:func:`checkpoint_delta` plus ``worse`` = how much worse ``b`` is than ``a`` on each image
    (b − a for a lower-is-better metric, a − b for a higher-is-better one; a ``t_`` prefix counts
    as the metric itself), sorted by ``worse`` descending (the largest drop first, NaN last).
    """
    base = metric[2:] if metric.startswith("t_") else metric
    if base not in HIGHER_IS_BETTER:
        raise XTaskError(f"no known direction for {metric!r} (known: {', '.join(HIGHER_IS_BETTER)})")
    out = checkpoint_delta(df, metric, a, b)
    out["worse"] = -out["delta"] if HIGHER_IS_BETTER[base] else out["delta"]
    return out.sort_values(["worse", "index"], ascending=[False, True], kind="stable",
                           na_position="last").reset_index(drop=True)


def class_iou_table(df: pd.DataFrame, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Dataset-level IoU per class (rows) and checkpoint (columns, in order of appearance), from
    the summed confusion counts, plus ``Δ <name>`` = that checkpoint − the first one. Fractions;
    NaN where a class never occurs in either the prediction or the ground truth."""
    tot = {k: v for k, v in totals(df).items() if v["iou_per_class"]}
    if not tot:
        raise XTaskError("records have no confusion counts (no ground truth)")
    sizes = {len(v["iou_per_class"]) for v in tot.values()}
    if len(sizes) > 1:
        raise XTaskError("the checkpoints have different class counts: compare their IoU one by one")
    c = sizes.pop()
    names = list(class_names) if class_names is not None and len(class_names) == c else [f"class {i}" for i in range(c)]
    out = pd.DataFrame({"class": names})
    first = None
    for name, t in tot.items():
        out[name] = t["iou_per_class"]
        if first is None:
            first = name
        else:
            out[f"Δ {name}"] = out[name] - out[first]
    return out


def score_curves(df: pd.DataFrame, scores: Sequence[str] = ("seg_energy", "seg_entropy"),
                 error: str = "pixel_error", n_steps: int = 20) -> dict[str, dict]:
    """Sparsification over images for each score (pass one checkpoint's rows): score → the dict of
    :func:`xtask_core.evaluate.analysis.sparsification` (removing the images the score ranks worst
    first; the oracle removes the truly worst first). Images without the error are left out."""
    err = error_values(df, error)
    out = {}
    for score in scores:
        s = _column(df, score)
        ok = np.isfinite(err) & np.isfinite(s)
        out[score] = sparsification(err[ok], s[ok], n_steps=n_steps)
    return out
