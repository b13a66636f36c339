"""Validation: run a model over a loader and average metrics and (unbalanced) losses per image."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from xtask_core.device import default_device
from xtask_core.errors import XTaskError
from xtask_core.evaluate.metrics import SegDepthMetrics
from xtask_core.inference.precision import autocast
from xtask_core.train.step import LOSS_KEYS, float_outputs, to_device

# Validation splits up to this many images use the numpy metric kernels (numba's import and
# cached-kernel load, ~0.65 s on a 2-core EPYC, costs more than they save on so few images).
SMALL_SPLIT = 32


def tqdm_enabled() -> bool:
    """Progress bars only for a human: stderr is a TTY and XTASK_NO_TQDM is not set."""
    if os.environ.get("XTASK_NO_TQDM", "") not in ("", "0"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(iterable, total: int | None, desc: str, enabled: bool):
    """``iterable`` wrapped in a tqdm bar when ``enabled`` (tqdm imported only then)."""
    if not enabled:
        return iterable
    from tqdm import tqdm  # only for a terminal run: not imported by jobs and tests

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Mapping[str, Any]], *, num_classes: int,
             ignore_index: int, device: str | torch.device | None = None,
             loss_fn: nn.Module | None = None, precision: str = "fp32", direct_only: bool = False,
             channels_last: bool = False, limit_batches: int = 0, progress: bool = False,
             desc: str = "val") -> dict[str, Any]:
    """Run ``model`` over ``loader`` and return metrics (+ mean losses if ``loss_fn``).

    Args:
        model: an XTaskNet (or DDP-unwrapped module); put in eval mode for the duration and
            restored to its previous mode afterwards.
        loader: yields batch dicts (``image`` N×3×H×W float, ``seg`` N×H×W int64, ``depth``
            N×1×H×W float, ``depth_mask`` N×1×H×W float).
        precision: a *resolved* precision ("fp32" | "bf16" | "fp16"); outputs are cast to
            float32 before losses and metrics.
        direct_only: skip the transfer nets (faster); transferred losses are then not computed.
        limit_batches: stop after this many batches (0 = all).

    Returns a dict with every key of :meth:`SegDepthMetrics.compute` (``miou`` = one
    confusion matrix over the split, ``miou_per_image`` = the original's per-image average;
    depth errors in the dataset's depth unit), ``n_images``, and with a loss function
    ``loss`` (= mean unbalanced ``total``) and ``loss_<component>`` for every component,
    averaged per image.
    """
    dev = default_device(device)
    was_training = model.training
    model.eval()
    metrics = SegDepthMetrics(num_classes, ignore_index)
    n_items = len(loader.dataset) if hasattr(loader, "dataset") and hasattr(loader.dataset, "__len__") else None
    if n_items is not None and n_items <= SMALL_SPLIT:
        # a few images: numpy kernels finish before numba would have loaded its compiled ones
        metrics.cpu_backend = "numpy"
    sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64)
    n = 0
    total = len(loader) if hasattr(loader, "__len__") else None
    try:
        for i, batch in enumerate(progress_bar(loader, total, desc, progress)):
            if limit_batches and i >= limit_batches:
                break
            batch = to_device(batch, dev, channels_last)
            with autocast(dev, precision):
                outputs = model(batch["image"], direct_only=direct_only)
            outputs = float_outputs(outputs)
            bs = int(batch["image"].shape[0])
            if loss_fn is not None and not direct_only:
                losses = loss_fn(outputs, batch)
                sums += torch.stack([losses[k].detach().double().cpu() for k in LOSS_KEYS]) * bs
            metrics.update(outputs[0], outputs[2], batch["seg"], batch["depth"],
                           batch.get("depth_mask"))
            n += bs
    finally:
        model.train(was_training)
    if n == 0:
        raise XTaskError("evaluation saw no images (empty dataset or limit 0)")
    result: dict[str, Any] = dict(metrics.compute())
    result["n_images"] = n
    if loss_fn is not None and not direct_only:
        means = (sums / n).tolist()
        result["loss"] = means[0]
        for k, v in zip(LOSS_KEYS, means):
            result[f"loss_{k}"] = v
    return result
