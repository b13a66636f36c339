"""``xtask eval``'s library function: one checkpoint on one dataset split → a JSON-ready report.

It sits above ``train/`` because the reported validation loss is the training loss
(:class:`~xtask_core.train.losses.XTaskLoss` with the checkpoint's own loss options) on the split
the trainer would build (:func:`~xtask_core.train.data.make_split`). The metrics themselves come
from :func:`xtask_core.evaluate.split.evaluate_split`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from xtask_core.checkpoint import load_checkpoint
from xtask_core.config import DATASET_DEFAULTS, DATASETS, TrainConfig
from xtask_core.errors import XTaskError
from xtask_core.evaluate.split import evaluate_split
from xtask_core.io.json_safe import json_safe
from xtask_core.train.data import make_split
from xtask_core.train.losses import XTaskLoss
from xtask_core.train.stl_loss import STLLoss

MIOU_DEFINITIONS = {
    "miou": "dataset-level mIoU: one confusion matrix accumulated over every evaluated pixel of "
            "the split, IoU per class, mean over classes that occur (the standard definition)",
    "miou_per_image": "the original xtask_mt definition: for each image the mean IoU over the "
                      "classes present in its prediction or target, then averaged over images",
}
# TrainConfig fields that are XTaskLoss arguments of the same name
_LOSS_FIELDS = ("lambda_1", "lambda_2", "label_smoothing", "lp", "tdep_loss", "tseg_loss", "method")


def loss_options(saved: dict[str, Any], dataset: str) -> dict[str, Any]:
    """XTaskLoss keyword arguments of a checkpoint: its saved training config's loss options,
    the dataset's TrainConfig defaults for the ones it lacks."""
    base = TrainConfig.for_dataset(dataset)
    opts = {k: saved.get(k, getattr(base, k)) for k in _LOSS_FIELDS}
    # a training summary saved before the option existed was trained with the masked means
    opts["reduction"] = saved.get("loss_reduction", "masked" if saved else base.loss_reduction)
    return opts


def evaluate_checkpoint(checkpoint: str, *, dataset: str | None = None, input_path: str | None = None,
                        split: str = "val", limit: int = 0, direct_only: bool = False,
                        batch_size: int = 8, height: int | None = None, width: int | None = None,
                        workers: int | None = None, device=None, precision: str = "fp32",
                        exact: bool = False) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on a dataset split → JSON-ready dict (see ``xtask eval --help``).

    Runs :func:`xtask_core.evaluate.split.evaluate_split`: the fast path at ``precision`` by default,
    the model itself in eager fp32 with ``exact=True``. Both mIoU definitions are reported
    (:data:`MIOU_DEFINITIONS`); NaN/Inf become None, so a single-task baseline (``task``
    ``"segmt"`` / ``"depth"``, its loss :class:`~xtask_core.train.stl_loss.STLLoss`) reports None
    for the other task's metrics.
    """
    loaded = load_checkpoint(checkpoint, device=device)
    dev = next(loaded.model.parameters()).device
    mcfg, meta = loaded.config, loaded.meta
    if dataset is None:
        dataset = meta.get("dataset")
        if dataset not in DATASETS:
            raise XTaskError(f"the checkpoint does not record a known dataset ({dataset!r}); "
                             f"pass --dataset ({', '.join(DATASETS)})")
    defaults = DATASET_DEFAULTS[dataset]
    input_path = input_path or defaults["input_path"]
    if not Path(input_path).exists():
        hint = " (create it with: xtask synth --out DIR)" if dataset == "synthetic" else ""
        raise XTaskError(f"dataset folder {input_path} does not exist{hint}")
    saved = (meta.get("training") or {}).get("train_config") or {}
    ignore_index = defaults["ignore_index"]
    cfg = TrainConfig.for_dataset(dataset, input_path=str(input_path), num_classes=mcfg.num_classes,
                                  height=height or mcfg.height, width=width or mcfg.width,
                                  ignore_index=ignore_index)
    ds = make_split(cfg, split, augment=False, limit=limit)
    opts = loss_options(saved, dataset)
    loss_fn = (XTaskLoss(mcfg.num_classes, ignore_index=ignore_index, **opts) if mcfg.task == "both"
               else STLLoss(mcfg.task, mcfg.num_classes, lp=opts["lp"], ignore_index=ignore_index)).to(dev)
    t0 = time.time()
    res = evaluate_split(loaded, ds, batch_size=batch_size, fast=not exact, precision=precision,
                         direct_only=direct_only, workers=workers, loss_fn=loss_fn, device=dev,
                         ignore_index=ignore_index)
    seconds = time.time() - t0
    names = list(meta.get("class_names") or [f"class {i}" for i in range(mcfg.num_classes)])
    ious = list(res.get("iou_per_class") or [])
    out: dict[str, Any] = {
        "checkpoint": str(checkpoint), "source": loaded.source, "dataset": dataset,
        "input_path": str(input_path), "split": split, "n_images": res["n_images"],
        "num_classes": mcfg.num_classes, "input_size": [cfg.height, cfg.width], "task": mcfg.task,
        "direct_only": direct_only, "precision": res["precision"], "device": str(dev), "seconds": seconds,
        "exact": exact, "model_path": res["eval_path"],
        "miou": res.get("miou"), "miou_per_image": res.get("miou_per_image"),
        "pixel_acc": res.get("pixel_acc"),
    }
    for k in ("abs", "abs_rel", "rmse", "delta1", "delta2", "delta3"):
        out[k] = res.get(k)
    out["depth_unit"] = meta.get("depth_kind", "disparity")
    out["depth_unit_note"] = meta.get("depth_scale_note", "")
    out["iou_per_class"] = {names[i] if i < len(names) else f"class {i}": v for i, v in enumerate(ious)}
    if "loss" in res:
        out["loss"] = {k.removeprefix("loss_"): res[k] for k in res if k.startswith("loss_")}
    out["definitions"] = dict(MIOU_DEFINITIONS, loss="unbalanced total = label + image group losses, "
                                                      "mean per image, with the checkpoint's loss options")
    if dataset == "synthetic":
        out["note"] = "synthetic street scenes: numbers are not comparable with real Cityscapes"
    return json_safe(out)
