"""The fine-tune recipe the app's Fine-tune page runs as a job: its arguments, its small
synthetic data set, and a quick validation of a checkpoint on that set.

A fine-tune is a short ``xtask train`` run (``max_steps`` steps, ``--init_checkpoint``) started
by :func:`xtask_core.train.jobs.start_job`. A short run validates once, at its end
(``val_every=0``), and logs a metrics row per step so the page can draw live curves.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from xtask_core.config import TrainConfig
from xtask_core.data.synthetic import write_dataset
from xtask_core.device import default_device
from xtask_core.errors import XTaskError
from xtask_core.train.data import make_loader, make_split
from xtask_core.train.losses import XTaskLoss
from xtask_core.train.trainer import ARCH_FIELDS
from xtask_core.train.validate import evaluate

__all__ = ["BALANCING", "finetune_args", "small_synthetic_set", "quick_eval"]

BALANCING = {"none": {}, "uncertainty": {"uncertainty_weights": True}, "gradnorm": {"gradnorm": True}}
# Model config fields a fine-tune must copy from its base checkpoint (the trainer refuses a mismatch).
_ARCH = ARCH_FIELDS + ("height", "width")


def finetune_args(init_checkpoint: str | os.PathLike, model_config, data_root: str | os.PathLike, *,
                  steps: int = 30, lambda_1: float = 0.01, lambda_2: float = 0.01, lr: float = 1e-4,
                  batch_size: int = 2, lp: str = "L1", tdep_loss: str = "L1", tseg_loss: str = "cross",
                  balancing: str = "none", ignore_index: int = 250, limit_val: int = 0,
                  workers: int = 0, precision: str = "auto", loss_reduction: str = "original") -> dict:
    """Train arguments that fine-tune ``init_checkpoint`` for ``steps`` optimiser steps.

    The architecture and input size (``model_config``: a ModelConfig) are copied from the base
    checkpoint; the data is a Cityscapes-layout folder read as the synthetic set. Every step
    logs a metrics row when ``steps <= 100`` (else about 100 rows in all), so the page can draw
    live curves. ``epochs`` is large so that ``max_steps`` is what ends the run. Unknown
    ``balancing`` (``none | uncertainty | gradnorm``) raises XTaskError; ``loss_reduction`` is
    ``original | masked`` (``TrainConfig.loss_reduction``).
    """
    if balancing not in BALANCING:
        raise XTaskError(f"balancing must be one of {', '.join(BALANCING)}, got {balancing!r}")
    if int(steps) < 1:
        raise XTaskError(f"steps must be >= 1, got {steps}")
    args = {name: getattr(model_config, name) for name in _ARCH}
    args.update(dataset="synthetic", input_path=str(data_root), init_checkpoint=str(init_checkpoint),
                max_steps=int(steps), epochs=10_000, log_every=max(1, int(steps) // 100), val_every=0,
                lambda_1=float(lambda_1), lambda_2=float(lambda_2), lr=float(lr),
                batch_size=int(batch_size), lp=lp, tdep_loss=tdep_loss, tseg_loss=tseg_loss,
                ignore_index=int(ignore_index), limit_val=int(limit_val), workers=int(workers),
                precision=precision, loss_reduction=loss_reduction, **BALANCING[balancing])
    TrainConfig.for_dataset("synthetic", **{k: v for k, v in args.items() if k != "dataset"})
    return args


def small_synthetic_set(cache_root: str | os.PathLike, height: int, width: int, *,
                        n_train: int = 32, n_val: int = 8, seed: int = 0) -> Path:
    """A small synthetic street-scene set (Cityscapes layout) for quick fine-tunes, made once.

    Lives in ``cache_root/synthetic-{n_train}-{n_val}-{height}x{width}-s{seed}``. It is
    rendered into a temporary sibling folder and renamed into place, so a reader never sees a
    half-written set and two sessions generating at once both end with one complete copy.
    Images are rendered at the model's input size (``height``×``width`` pixels), so the loader
    does no resizing work.
    """
    root = Path(cache_root)
    final = root / f"synthetic-{n_train}-{n_val}-{height}x{width}-s{seed}"
    if (final / "leftImg8bit" / "val").is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        write_dataset(tmp, n_train=n_train, n_val=n_val, seed=seed, height=height, width=width,
                      workers=0)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "leftImg8bit" / "val").is_dir():   # lost a race is fine; else raise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def quick_eval(loaded, data_root: str | os.PathLike, *, limit: int = 8, batch_size: int = 4,
                        ignore_index: int | None = None, device=None) -> dict:
    """Validation metrics of a loaded checkpoint on the first ``limit`` images of ``data_root``.

    ``loaded`` is a ``checkpoint.Loaded``; its model is only run (in eval mode, no gradients),
    never changed, so a cached shared model may be passed. Images are read at the model's
    input size. Returns :func:`xtask_core.train.validate.evaluate`'s dict (``pixel_acc``, ``miou``,
    ``abs``, ``abs_rel``, ``rmse``, ``delta1``..., ``loss``), depth errors in model units.
    """
    mcfg = loaded.config
    ignore = int(loaded.meta.get("ignore_index", 250) if ignore_index is None else ignore_index)
    cfg = TrainConfig.for_dataset("synthetic", input_path=str(data_root), num_classes=mcfg.num_classes,
                                  height=mcfg.height, width=mcfg.width, ignore_index=ignore)
    ds = make_split(cfg, "val", augment=False, limit=limit)
    model = loaded.model
    dev = next(model.parameters()).device if device is None else default_device(device)
    loader = make_loader(ds, batch_size, shuffle=False, workers=0, device=dev)
    loss_fn = XTaskLoss(mcfg.num_classes, ignore_index=ignore).to(dev)
    return evaluate(model, loader, num_classes=mcfg.num_classes, ignore_index=ignore, device=dev,
                    loss_fn=loss_fn)
