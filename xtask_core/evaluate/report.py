"""Metrics of one image or a handful, shaped as table rows for people to read.

:func:`image_metrics` and :func:`evaluate_predictions` score inference.Prediction objects
against ground truth at the prediction size; :func:`metrics_row` and :func:`before_after_rows`
turn results into rows (percent for fractions, model units for depth errors, and which
direction is better); :func:`energy_error_study` pools pixels of several images to measure
how well the label-free consistency energy predicts the true error.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xtask_core.data.labels import DEPTH_KINDS, dataset_for_classes
from xtask_core.evaluate import analysis
from xtask_core.evaluate.metrics import SegDepthMetrics

# Headline metrics: key in a SegDepthMetrics result → column label in tables.
METRIC_LABELS = {"pixel_acc": "pixel acc", "miou": "mIoU", "abs": "Abs", "abs_rel": "Abs Rel",
                 "rmse": "RMSE", "delta1": "δ<1.25"}
PERCENT_METRICS = ("pixel_acc", "miou", "miou_per_image", "delta1")
# Direction of every metric a table compares: True = higher is better.
HIGHER_IS_BETTER = {"pixel_acc": True, "miou": True, "miou_per_image": True, "delta1": True,
                    "abs": False, "abs_rel": False, "rmse": False, "loss": False}
# Rows of a before/after table: (metric key, name shown).
BEFORE_AFTER_ROWS = [("pixel_acc", "pixel accuracy"), ("miou", "mIoU (dataset)"), ("abs", "depth Abs"),
                     ("abs_rel", "depth Abs Rel"), ("rmse", "depth RMSE"), ("delta1", "δ < 1.25"),
                     ("loss", "val loss")]


# Label sets a model or an image source can carry, as people name them.
LABEL_SET_NAMES = {"cityscapes": "Cityscapes", "nyuv2": "NYUv2"}
# Image sources → label set of their ground truth: raw Cityscapes ids (turned into 7 or 19
# train ids), or the 13 NYUv2 classes. "synthetic" = xtask's street scenes (raw Cityscapes ids);
# "indoor" = its rooms in the NYUv2 layout.
SOURCE_LABEL_SETS = {"cityscapes": "cityscapes", "synthetic": "cityscapes", "street": "cityscapes",
                     "nyuv2": "nyuv2", "indoor": "nyuv2"}
_DEPTH_WORDS = {"disparity": "disparity", "depth": "depth in metres"}
_SOURCE_WORDS = {"cityscapes": "Cityscapes (street classes, disparity)",
                 "nyuv2": "NYUv2 (13 indoor classes, depth in metres)"}


def model_label_set(dataset: str | None, num_classes: int) -> str | None:
    """Label set a model predicts: "cityscapes" (7 or 19 classes from Cityscapes ids), "nyuv2"
    (13 classes), or None when its (dataset, class count) pair is none of these. A missing or
    "unknown" dataset is read off the class count (13 → NYUv2, 7/19 → Cityscapes), as for the
    original code's files."""
    name = str(dataset or "unknown").lower()
    if name == "unknown":
        name = dataset_for_classes(num_classes)
    name = SOURCE_LABEL_SETS.get(name, name)
    if name != "unknown" and dataset_for_classes(num_classes) == name:
        return name
    return None


@dataclass(frozen=True)
class LabelFit:
    """Whether an image source's ground truth can be shown and scored for a model.

    ``seg``/``depth``: that task's ground truth fits the model; ``reason``: one sentence saying
    why some ground truth is left out ("" when everything fits)."""

    seg: bool
    depth: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.seg or self.depth


def labels_fit(source: str | None, dataset: str | None, num_classes: int, depth_kind: str | None = None) -> LabelFit:
    """Can ground truth from ``source`` be compared with a model trained on ``dataset`` with
    ``num_classes`` classes whose depth output is ``depth_kind`` ("disparity" | "depth")?

    ``source``: the image source's label set or dataset ("cityscapes", "synthetic", "street",
    "nyuv2", "indoor"); None (an upload) has no ground truth. Segmentation fits when both use
    the same label set (Cityscapes ids become 7 or 19 train ids; NYUv2 has 13 classes); depth
    fits when it is read the same way (disparity for street scenes, metres for NYUv2), which
    ``depth_kind`` defaults to from ``dataset``. Never raises: an unknown source or model fits
    nothing, and ``reason`` says why.
    """
    if source is None:
        return LabelFit(False, False, "An uploaded image has no ground truth, so errors and metrics "
                                      "that need it are not shown.")
    src = SOURCE_LABEL_SETS.get(str(source).lower())
    if src is None:
        return LabelFit(False, False, f"Unknown image source {source!r}: its ground truth is not shown.")
    mine = model_label_set(dataset, num_classes)
    kind = depth_kind or DEPTH_KINDS.get(str(dataset or "").lower(), "disparity")
    seg = mine == src
    depth = seg and kind == DEPTH_KINDS[src]
    if seg and depth:
        return LabelFit(True, True)
    if not seg:
        model_words = (f"{num_classes} {LABEL_SET_NAMES[mine]} classes" if mine
                       else f"{num_classes} classes of no known label set")
        reason = (f"Ground truth not shown: this image is labelled for {_SOURCE_WORDS[src]}, the model predicts "
                  f"{model_words} and {_DEPTH_WORDS.get(kind, kind)}; metrics that need ground truth are left out.")
    else:
        reason = (f"Depth ground truth not shown: this image has {_DEPTH_WORDS[DEPTH_KINDS[src]]}, the model "
                  f"predicts {_DEPTH_WORDS.get(kind, kind)}.")
    return LabelFit(seg, depth, reason)


def image_metrics(seg_logits: np.ndarray | None, depth: np.ndarray | None, gt_seg: np.ndarray | None,
                  gt_depth: np.ndarray | None, num_classes: int, ignore_index: int) -> dict:
    """SegDepthMetrics of one prediction: seg_logits C×h×w (or h×w labels), depth h×w, targets
    at the same h×w (gt_depth: 0 = invalid). A task whose prediction or target is None is
    skipped and its metrics are NaN."""
    m = SegDepthMetrics(num_classes, ignore_index)
    if seg_logits is not None and gt_seg is not None:
        m.update(torch.as_tensor(seg_logits)[None], None,
                 torch.as_tensor(gt_seg, dtype=torch.int64)[None], None)
    if depth is not None and gt_depth is not None:
        m.update(None, torch.as_tensor(depth, dtype=torch.float32)[None, None], None,
                 torch.as_tensor(gt_depth, dtype=torch.float32)[None, None])
    return m.compute()


def evaluate_predictions(preds: Sequence, gt_segs: Sequence, gt_depths: Sequence, num_classes: int,
                         ignore_index: int, transferred: bool = False) -> dict:
    """SegDepthMetrics over a list of predictions and their ground truth (dataset-level mIoU from
    one confusion matrix, plus the original's per-image mIoU). ``transferred`` scores the
    transferred outputs instead of the direct ones. None ground truth skips that task for that image."""
    m = SegDepthMetrics(num_classes, ignore_index)
    for p, gs, gd in zip(preds, gt_segs, gt_depths):
        seg = p.seg_t_logits if transferred else p.seg_logits
        dep = p.depth_t if transferred else p.depth
        gs = gs if seg is not None else None      # a single-task model has no output for the other task
        gd = gd if dep is not None else None
        if gs is None and gd is None:
            continue
        m.update(torch.as_tensor(seg)[None] if gs is not None else None,
                 torch.as_tensor(dep)[None, None] if gd is not None else None,
                 torch.as_tensor(gs)[None] if gs is not None else None,
                 torch.as_tensor(gd)[None, None] if gd is not None else None)
    return m.compute()


def has_energy(pred) -> bool:
    """True when a Prediction has all four outputs (direct and transferred segmentation and
    depth), so its consistency energy exists; a single-task model or a direct-only run has not."""
    return all(getattr(pred, k, None) is not None for k in ("seg_logits", "seg_t_logits", "depth", "depth_t"))


def metrics_row(name: str, m: Mapping) -> dict:
    """One table row of the headline metrics of a SegDepthMetrics result (percent for the
    fractions, raw model units for the depth errors), labelled ``name`` in column "model"."""
    row = {"model": name}
    for key, label in METRIC_LABELS.items():
        v = float(m.get(key, float("nan")))
        row[label] = round(100 * v, 2) if key in PERCENT_METRICS else round(v, 5)
    return row


def per_class_iou_rows(results: Mapping[str, Mapping], class_names: Mapping[str, Sequence[str]]) -> dict:
    """``{model label: {class name: IoU %}}`` from SegDepthMetrics results (``iou_per_class``),
    ready for ``pandas.DataFrame`` (one column per model, one row per class)."""
    return {label: {name: round(100 * float(v), 2) for name, v in zip(class_names[label], res["iou_per_class"])}
            for label, res in results.items()}


def before_after_rows(before: Mapping, after: Mapping) -> list[dict]:
    """Rows ``{metric, before, after, change, better?}`` for every metric of
    :data:`BEFORE_AFTER_ROWS` present in both results. "better?" follows
    :data:`HIGHER_IS_BETTER` ("yes", "no", or "—" when unchanged)."""
    rows = []
    for key, name in BEFORE_AFTER_ROWS:
        if key not in before or key not in after:
            continue
        delta = float(after[key]) - float(before[key])
        verdict = "—" if delta == 0 else ("yes" if (delta > 0) == HIGHER_IS_BETTER[key] else "no")
        rows.append({"metric": name, "before": float(before[key]), "after": float(after[key]),
                     "change": delta, "better?": verdict})
    return rows


def energy_error_study(preds: Sequence, gt_segs: Sequence, gt_depths: Sequence, ignore_index: int,
                       n_steps: int = 20, n_bins: int = 10) -> dict[str, dict]:
    """How well label-free consistency energy predicts the true error, pooled over images.

    ``preds``: inference.Prediction objects; ``gt_segs``/``gt_depths``: matching ground truth at
    the prediction size (None entries are skipped for that task). Pixels of all images are pooled.
    Returns ``{"depth": {...}, "seg": {...}}``, each with ``sparsification`` (analysis dict),
    ``binned`` (DataFrame), ``report`` (spearman, ause, aurg, …, auroc for seg) — or an empty
    dict when no image had that ground truth. Predictions without energy (:func:`has_energy`) are skipped.
    Depth: error = |direct − GT| vs energy =
    |transferred − direct|; seg: error = wrong (0/1) vs energy = KL(direct ‖ transferred).
    """
    dep_err, dep_en, seg_err, seg_en = [], [], [], []
    for p, gs, gd in zip(preds, gt_segs, gt_depths):
        if not has_energy(p):
            continue
        e = analysis.energy_maps(p.seg_logits, p.seg_t_logits, p.depth, p.depth_t)
        if gd is not None:
            d = analysis.depth_error_maps(p.depth, gd)
            dep_err.append(d["abs"][d["valid"]])
            dep_en.append(e["depth_abs"][d["valid"]])
        if gs is not None:
            s = analysis.seg_error_map(p.seg, gs, ignore_index)
            seg_err.append(s["wrong"][s["valid"]].astype(np.float64))
            seg_en.append(e["seg_kl"][s["valid"]])
    out: dict[str, dict] = {"depth": {}, "seg": {}}
    for name, err, en in (("depth", dep_err, dep_en), ("seg", seg_err, seg_en)):
        if not err:
            continue
        err_a, en_a = np.concatenate(err), np.concatenate(en)
        out[name] = {"sparsification": analysis.sparsification(err_a, en_a, n_steps=n_steps),
                     "binned": analysis.binned_error(err_a, en_a, n_bins=n_bins),
                     "report": analysis.energy_error_report(en_a, err_a, wrong=err_a > 0 if name == "seg" else None,
                                                            n_steps=n_steps)}
    return out


def study_rows(study: Mapping[str, Mapping]) -> list[dict]:
    """One row per task of an :func:`energy_error_study` result: ``{"task", **report}`` (floats)."""
    return [{"task": task, **{k: float(v) for k, v in res["report"].items()}}
            for task, res in study.items() if res]


def energy_row(name: str, pred, gt_seg: np.ndarray | None, gt_depth: np.ndarray | None, num_classes: int,
               ignore_index: int, depth_unit: str) -> tuple[dict, dict]:
    """One row of a clean-vs-corrupted table for a Prediction, and its energy maps.

    Row: ``input`` = ``name``, the mean seg energy (KL, nats), mean depth energy (``depth_unit``)
    and the share of pixels whose direct and transferred classes differ (%); with ground truth
    also the direct pixel accuracy (%) and depth Abs (``depth_unit``). Maps:
    :func:`analysis.energy_maps`, or an empty dict (and no energy columns) for a prediction
    without energy (:func:`has_energy`)."""
    row: dict = {"input": name}
    e: dict = {}
    if has_energy(pred):
        e = analysis.energy_maps(pred.seg_logits, pred.seg_t_logits, pred.depth, pred.depth_t)
        row.update({"seg energy KL (nats)": round(e["seg_kl_mean"], 4),
                    f"depth energy ({depth_unit})": round(e["depth_abs_mean"], 5),
                    "direct vs transferred disagree (%)": round(100 * float(e["disagree"].mean()), 2)})
    if gt_seg is not None or gt_depth is not None:
        m = image_metrics(pred.seg_logits, pred.depth, gt_seg, gt_depth, num_classes, ignore_index)
        if pred.seg_logits is not None and gt_seg is not None:
            row["direct pixel acc (%)"] = round(100 * m["pixel_acc"], 2)
        if pred.depth is not None and gt_depth is not None:
            row[f"direct depth Abs ({depth_unit})"] = round(m["abs"], 5)
    return row, e


def study_sentences(study: Mapping[str, Mapping]) -> list[str]:
    """Plain-language lines for an :func:`energy_error_study` result: the seg AUROC and the depth
    Spearman ρ, for the tasks that had ground truth."""
    bits = []
    if study.get("seg"):
        r = study["seg"]["report"]
        bits.append(f"- **Segmentation**: ranking pixels by energy finds the wrong ones with AUROC "
                    f"**{r['auroc']:.2f}** (0.5 = a coin toss, 1 = perfect).")
    if study.get("depth"):
        r = study["depth"]["report"]
        bits.append(f"- **Depth**: rank correlation between energy and the true error: Spearman ρ = "
                    f"**{r['spearman']:.2f}** (0 = unrelated, 1 = same order).")
    return bits
