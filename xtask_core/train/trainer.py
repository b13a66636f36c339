"""The one training loop, used by ``xtask train``, by fine-tuning jobs and by tests.

:class:`Trainer` builds everything from a :class:`~xtask_core.config.TrainConfig`: datasets
(a cached synthetic set is generated on first use), the :class:`~xtask_core.model.XTaskNet`,
:class:`~xtask_core.train.losses.XTaskLoss`, the loss balancer, Adam + StepLR, mixed precision, and
the run folder::

    RUN/config.json          train config (+ model config) as written by RunLogger
    RUN/metrics.csv          one row per epoch (``kind=epoch``) and, with log_every, per N steps
    RUN/events.out.tfevents* TensorBoard scalars
    RUN/progress.json        {step, total_steps, epoch, epochs, status, message, ...}, atomic
    RUN/best.safetensors     weights with the lowest validation loss so far (+ meta)
    RUN/last.safetensors     weights after the latest finished epoch
    RUN/last.state.pt        optimiser / scheduler / balancer / scaler state for ``--resume``
    RUN/cancel               created by someone else: stop at the next step, status "cancelled"

Choices worth knowing:

- "Validation loss" (the best-checkpoint criterion) is the *unbalanced* total
  ``label + image`` averaged over validation images: balancer weights change during
  training, so a balanced total would not be comparable between epochs.
- Random state is re-seeded at the start of every epoch from ``(seed, epoch)``, so a resumed
  run shuffles and augments exactly as an uninterrupted one would, without pickling RNGs.
- Distributed (``torchrun``, env ``WORLD_SIZE > 1``): one process per device, gloo on CPU /
  nccl on CUDA, a DistributedSampler shards the training set and DDP averages gradients.
  Validation runs on rank 0 over the *full* validation set (the other ranks wait at a barrier),
  so metrics are exactly those of a single-process evaluation; only rank 0 writes files.
- A NaN/Inf loss aborts with :class:`XTaskError` before the optimiser step, marks the progress
  file ``failed`` and saves nothing, so a good ``best`` is never replaced by a broken one.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from xtask_core.config import DATASETS, ModelConfig, TrainConfig
from xtask_core.device import default_device
from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_write_text, remove_stale_tmp

LOSS_KEYS = ("total", "seg", "depth", "tseg", "tdep", "label", "image")
# scalar metrics copied into metrics.csv / TensorBoard (lists like iou_per_class go to JSON only)
METRIC_KEYS = ("pixel_acc", "miou", "miou_per_image", "abs", "abs_rel", "rmse",
               "delta1", "delta2", "delta3")
CHECKPOINT_FILES = ("best.safetensors", "last.safetensors", "last.state.pt")
# Every file the trainer writes atomically in its run folder (RunLogger: config / summary / metrics).
RUN_FILES = frozenset(CHECKPOINT_FILES + ("progress.json", "config.json", "summary.json", "metrics.csv"))
SYNTH_DEFAULT = dict(n_train=400, n_val=100, height=256, width=512)  # cached synthetic set
ARCH_FIELDS = ("enc_layers", "num_classes", "mid_features", "ttnet_features", "wider_ttnet",
               "batch_norm")


# --------------------------------------------------------------------------- small helpers
def _rank() -> int:
    return torch.distributed.get_rank() if _dist_on() else 0


def _dist_on() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def tqdm_enabled() -> bool:
    """Progress bars only for a human: stderr is a TTY and XTASK_NO_TQDM is not set."""
    if os.environ.get("XTASK_NO_TQDM", "") not in ("", "0"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _bar(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool = False) -> dict:
    """Move every tensor of a batch dict to ``device`` (non-blocking from pinned memory)."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if k == "image" and channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def _float_outputs(outputs) -> tuple:
    """Autocast outputs → float32 (None stays None): losses and metrics are computed in fp32."""
    return tuple(None if o is None else o.float() for o in outputs)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU + CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def has_checkpoints(run_dir: str | os.PathLike) -> list[str]:
    """Names of checkpoint files already present in ``run_dir`` (empty list if none)."""
    run_dir = Path(run_dir)
    return [n for n in CHECKPOINT_FILES if (run_dir / n).exists()]


class ProgressFile:
    """``RUN/progress.json``, rewritten atomically so a poller never reads half a file.

    Fields: ``step``, ``total_steps``, ``epoch``, ``epochs``, ``status``
    (``starting|running|done|failed|cancelled``), ``message``, ``updated`` (unix seconds),
    ``pid``, plus whatever the trainer adds (latest losses). Writes are throttled to one per
    ``min_interval`` seconds except status changes and ``force=True``.
    """

    STATUSES = ("starting", "running", "done", "failed", "cancelled")

    def __init__(self, path: str | os.PathLike, enabled: bool = True, min_interval: float = 0.5):
        self.path = Path(path)
        self.enabled = enabled
        self.min_interval = min_interval
        self.state: dict[str, Any] = {"step": 0, "total_steps": 0, "epoch": 0, "epochs": 0,
                                      "status": "starting", "message": "", "pid": os.getpid()}
        self._last = 0.0

    def update(self, force: bool = False, **fields) -> None:
        if "status" in fields and fields["status"] not in self.STATUSES:
            raise ValueError(f"bad progress status {fields['status']!r}")
        changed = "status" in fields and fields["status"] != self.state.get("status")
        self.state.update(fields)
        now = time.time()
        if not self.enabled or not (force or changed or now - self._last >= self.min_interval):
            return
        self.state["updated"] = now
        self._last = now
        atomic_write_text(self.path, json.dumps(self.state, default=float, indent=1))


def read_progress(run_dir: str | os.PathLike) -> dict | None:
    """The run's progress.json as a dict, or None if there is none yet."""
    path = Path(run_dir) / "progress.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as err:  # atomic writes make this unexpected; say which file
        raise XTaskError(f"{path} is not valid JSON: {err}") from None


# --------------------------------------------------------------------------- data
def synthetic_has_data(root: str | os.PathLike) -> bool:
    """True if ``root`` holds at least one Cityscapes-layout training and validation image."""
    root = Path(root)
    return all(any((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
               for split in ("train", "val"))


def ensure_synthetic(root: str | os.PathLike, seed: int = 0, workers: int = 0,
                     **sizes) -> bool:
    """Generate the synthetic street-scene set into ``root`` unless it is already there.

    Sizes default to :data:`SYNTH_DEFAULT` (400 train / 100 val at 256×512); the set is a
    cache: generated once, then reused by every run pointing at ``root``. Returns True if it
    generated anything.
    """
    if synthetic_has_data(root):
        return False
    from xtask_core.data import synthetic

    opts = dict(SYNTH_DEFAULT, **sizes)
    synthetic.write_dataset(Path(root), n_train=opts["n_train"], n_val=opts["n_val"], seed=seed,
                            height=opts["height"], width=opts["width"], workers=workers)
    return True


def make_split(cfg: TrainConfig, split: str, augment: bool, limit: int = 0,
               height: int | None = None, width: int | None = None):
    """Dataset of ``cfg.dataset`` for ``split`` (the synthetic set is read as Cityscapes)."""
    from xtask_core.data import make_dataset

    name = "cityscapes" if cfg.dataset == "synthetic" else cfg.dataset
    kw: dict[str, Any] = dict(height=height or cfg.height, width=width or cfg.width,
                              augment=augment, limit=limit)
    if name == "cityscapes":
        kw["num_classes"] = cfg.num_classes
    ds = make_dataset(name, cfg.input_path, split, **kw)
    if len(ds) == 0:
        raise XTaskError(f"the {split} split of {cfg.input_path} is empty")
    return ds


def _loader(ds, batch_size: int, *, shuffle: bool, workers: int, device: torch.device,
            sampler=None, generator=None):
    from torch.utils.data import DataLoader

    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, generator=generator, drop_last=False)


# --------------------------------------------------------------------------- evaluation
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
    from xtask_core.evaluate.metrics import SegDepthMetrics
    from xtask_core.inference.precision import autocast

    dev = default_device(device)
    was_training = model.training
    model.eval()
    metrics = SegDepthMetrics(num_classes, ignore_index)
    sums = torch.zeros(len(LOSS_KEYS), dtype=torch.float64)
    n = 0
    total = len(loader) if hasattr(loader, "__len__") else None
    try:
        for i, batch in enumerate(_bar(loader, total, desc, progress)):
            if limit_batches and i >= limit_batches:
                break
            batch = _to_device(batch, dev, channels_last)
            with autocast(dev, precision):
                outputs = model(batch["image"], direct_only=direct_only)
            outputs = _float_outputs(outputs)
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


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Train an XTaskNet from a :class:`TrainConfig` (see the module docstring for the run folder).

    Args:
        cfg: every option; ``cfg.out`` is the run folder (required), ``cfg.resume`` continues
            from ``out/last.*``.
        device: None = ``cuda:LOCAL_RANK`` / CUDA if available, else CPU; ``cfg.cpu`` forces CPU.
        callbacks: callables ``cb(event, info)`` with event ``"step"`` (info: step, epoch,
            losses), ``"epoch"`` (the metrics row) or ``"end"`` (the summary). Exceptions from a
            callback propagate (a callback may raise to stop training).

    ``fit()`` returns a summary dict: ``status`` ("done" | "cancelled"), ``epochs_done``,
    ``step``, ``best_epoch``, ``best_val_loss``, ``best`` / ``last`` paths, ``last_row``.
    """

    def __init__(self, cfg: TrainConfig, device: str | torch.device | None = None,
                 callbacks: Iterable[Callable[[str, dict], None]] | None = None):
        if not cfg.out:
            raise XTaskError("the training config needs an output run folder (out / --out)")
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.callbacks = list(callbacks or [])
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.distributed = self.world_size > 1
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cfg.cpu:
            self.device = torch.device("cpu")
        elif device is None and self.distributed and torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = default_device(device)
        self.rank = int(os.environ.get("RANK", "0")) if self.distributed else 0
        self.is_main = self.rank == 0
        self.progress = ProgressFile(self.run_dir / "progress.json", enabled=self.is_main)
        self.cancel_path = self.run_dir / "cancel"
        # Set once the folder check passed: until then the folder may be someone else's run,
        # and a refused start must not write its "failed" status into that run's progress.json.
        self._claimed = False

    # ------------------------------------------------------------------ setup
    def _check_run_dir(self) -> None:
        existing = has_checkpoints(self.run_dir)
        if self.cfg.resume:
            if not (self.run_dir / "last.state.pt").exists():
                raise XTaskError(f"cannot resume: {self.run_dir / 'last.state.pt'} does not exist "
                                 "(train without --resume first)")
        elif existing:
            raise XTaskError(f"run folder {self.run_dir} already has checkpoints ({', '.join(existing)}); "
                             "use --resume to continue it or choose a new --out")

    def _init_distributed(self) -> None:
        if not self.distributed or _dist_on():
            return
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        # long timeout: ranks > 0 wait at a barrier while rank 0 validates the full split
        torch.distributed.init_process_group(backend=backend, timeout=timedelta(hours=2))
        self.rank = torch.distributed.get_rank()
        self.is_main = self.rank == 0
        self.progress.enabled = self.is_main

    def _barrier(self) -> None:
        if _dist_on():
            torch.distributed.barrier()

    def _build_model(self) -> nn.Module:
        from xtask_core.model import XTaskNet

        cfg = self.cfg
        mcfg = cfg.model_config()
        model = XTaskNet(mcfg, pretrained_path=cfg.use_pretrain or None)
        if cfg.init_checkpoint and not cfg.resume:
            from xtask_core.checkpoint import load_checkpoint

            loaded = load_checkpoint(cfg.init_checkpoint, device="cpu")
            diff = [f"{f} {getattr(loaded.config, f)} (checkpoint) vs {getattr(mcfg, f)} (config)"
                    for f in ARCH_FIELDS if getattr(loaded.config, f) != getattr(mcfg, f)]
            if diff:
                raise XTaskError(f"init_checkpoint {cfg.init_checkpoint} has a different architecture: "
                                 + "; ".join(diff))
            model.load_state_dict(loaded.model.state_dict(), strict=True)
            self.init_meta = loaded.meta
        return model

    def _setup(self) -> None:
        from xtask_core.inference.precision import (
            grad_scaler,
            resolve_channels_last,
            resolve_precision,
        )
        from xtask_core.train.balancing import make_balancer
        from xtask_core.train.losses import XTaskLoss

        cfg = self.cfg
        self._init_distributed()
        if cfg.dataset not in DATASETS:
            raise XTaskError(f"unknown dataset {cfg.dataset!r} (valid: {', '.join(DATASETS)})")
        if self.is_main:
            self._check_run_dir()
            self._claimed = True
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # A SIGKILL during an earlier save leaves ".<name>.<random>.tmp" files (up to a
            # checkpoint's size); one trainer per folder, so its own files' leftovers go now.
            remove_stale_tmp(self.run_dir, owned=RUN_FILES)
            if cfg.resume and self.cancel_path.exists():  # resuming a cancelled run: that cancel is spent
                self.cancel_path.unlink()
            self.progress.update(status="starting", message="preparing data", epochs=cfg.epochs, force=True)
            if cfg.dataset == "synthetic" and ensure_synthetic(cfg.input_path, seed=cfg.seed,
                                                               workers=cfg.workers):
                self.progress.update(message=f"generated synthetic data in {cfg.input_path}", force=True)
        self._barrier()  # other ranks wait for the folder check and the synthetic cache
        seed_everything(cfg.seed)
        self.precision = resolve_precision(self.device, cfg.precision)
        self.channels_last = resolve_channels_last(self.device, cfg.channels_last)

        self.train_ds = make_split(cfg, "train", augment=True, limit=cfg.limit_train)
        self.val_ds = make_split(cfg, "val", augment=False, limit=cfg.limit_val)
        self.sampler = None
        if self.distributed:
            from torch.utils.data.distributed import DistributedSampler

            self.sampler = DistributedSampler(self.train_ds, shuffle=True, seed=cfg.seed)
        self.generator = torch.Generator()
        self.train_loader = _loader(self.train_ds, cfg.batch_size, shuffle=True, workers=cfg.workers,
                                    device=self.device, sampler=self.sampler, generator=self.generator)
        self.val_loader = _loader(self.val_ds, cfg.batch_size, shuffle=False, workers=cfg.workers,
                                  device=self.device)

        self.init_meta: dict | None = None
        self.model = self._build_model().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = XTaskLoss(cfg.num_classes, lambda_1=cfg.lambda_1, lambda_2=cfg.lambda_2,
                                 label_smoothing=cfg.label_smoothing, lp=cfg.lp,
                                 tdep_loss=cfg.tdep_loss, tseg_loss=cfg.tseg_loss,
                                 ignore_index=cfg.ignore_index, method=cfg.method).to(self.device)
        kind = "uncertainty" if cfg.uncertainty_weights else "gradnorm" if cfg.gradnorm else "none"
        self.balancer_kind = kind
        self.balancer = make_balancer(kind, device=self.device)
        params = list(self.model.parameters())
        if kind == "uncertainty":  # GradNorm steps its own weights with its own optimiser
            params += list(self.balancer.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas))
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.scheduler_step_size,
                                                         cfg.scheduler_gamma)
        self.scaler = grad_scaler(self.device, self.precision)
        self.ddp = None
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

        self.start_epoch = 1
        self.step = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.best_metrics: dict[str, Any] = {}
        if cfg.resume:
            self._load_state()

        self.logger = None
        if self.is_main:
            from xtask_core.train.runlog import RunLogger

            self.logger = RunLogger(self.run_dir)
            if cfg.resume:
                # Rows an interrupted attempt logged after the saved state (step rows of the
                # unfinished epoch) are about to be redone: drop them so none is duplicated.
                self.logger.drop_rows_after(step=self.step, epoch=self.start_epoch - 1)
            self.logger.write_config({"train": cfg.to_dict(),
                                      "model": self.model.config.to_dict(),
                                      "device": str(self.device), "precision": self.precision,
                                      "world_size": self.world_size,
                                      "train_images": len(self.train_ds), "val_images": len(self.val_ds)})

    def _load_state(self) -> None:
        from xtask_core.checkpoint import load_train_state

        state = load_train_state(self.run_dir / "last.state.pt")
        saved = ModelConfig.from_dict(state["config"])
        mine = self.model.config
        diff = [f for f in ARCH_FIELDS + ("height", "width") if getattr(saved, f) != getattr(mine, f)]
        if diff:
            raise XTaskError("cannot resume with a different model: " + ", ".join(
                f"{f} {getattr(saved, f)} (saved) vs {getattr(mine, f)} (now)" for f in diff))
        self.model.load_state_dict(state["model"], strict=True)
        if state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
            # load_state_dict restores the saved lr; a new --lr given on resume must win (the
            # run's config.json records it), keeping the schedule's decay so far.
            saved_lr = (state.get("train_config") or {}).get("lr")
            if saved_lr is not None and float(saved_lr) != float(self.cfg.lr):
                for group in self.optimizer.param_groups:
                    factor = group["lr"] / group.get("initial_lr", saved_lr) if saved_lr else 1.0
                    group["initial_lr"] = self.cfg.lr
                    group["lr"] = self.cfg.lr * factor
        if state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
            # keep the *new* StepLR settings if the user changed them on resume
            self.scheduler.step_size = self.cfg.scheduler_step_size
            self.scheduler.gamma = self.cfg.scheduler_gamma
            self.scheduler.base_lrs = [g.get("initial_lr", g["lr"]) for g in self.optimizer.param_groups]
        if state.get("balancer") and hasattr(self.balancer, "load_state_dict"):
            self.balancer.load_state_dict(state["balancer"])
        extra = (state.get("meta") or {}).get("resume", {})
        if self.scaler is not None and extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.start_epoch = int(state["epoch"]) + 1
        self.step = int(state["step"])
        self.best_val = float(extra.get("best_val", math.inf))
        self.best_epoch = int(extra.get("best_epoch", 0))
        self.best_metrics = dict(extra.get("best_metrics", {}))

    # ------------------------------------------------------------------ per step
    def _total_steps(self) -> int:
        per_epoch = len(self.train_loader)
        total = per_epoch * self.cfg.epochs
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def _train_step(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """One optimiser step; returns the detached loss components (LOSS_KEYS + objective)."""
        from xtask_core.inference.precision import autocast

        net = self.ddp or self.model
        batch = _to_device(batch, self.device, self.channels_last)
        with autocast(self.device, self.precision):
            outputs = net(batch["image"])
        outputs = _float_outputs(outputs)
        losses = self.loss_fn(outputs, batch)
        objective = self.balancer.combine(losses)
        values = torch.stack([losses[k].detach() for k in LOSS_KEYS] + [objective.detach()])
        bad = (~torch.isfinite(values).all()).to(torch.float32)
        if self.distributed:  # every rank must stop together, or the others hang in all-reduce
            torch.distributed.all_reduce(bad)
        if bad.item() > 0:
            parts = ", ".join(f"{k}={v:.4g}" for k, v in zip(LOSS_KEYS, values.tolist()))
            raise XTaskError(f"training diverged: loss is NaN/Inf at epoch {self.epoch}, step {self.step + 1} "
                             f"({parts}); nothing was saved for this epoch. Lower --lr or use --precision fp32")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(objective).backward(retain_graph=self.balancer.needs_graph)
        else:
            objective.backward(retain_graph=self.balancer.needs_graph)
        if self.balancer_kind == "gradnorm":
            # weights move towards equal relative training rates, measured at the last shared conv
            shared = self.model.pretrained_encoder.layer4[-1].conv2.weight
            self.balancer.step(losses, shared)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        return values

    def _check_cancel(self) -> bool:
        flag = torch.tensor(1.0 if (self.is_main and self.cancel_path.exists()) else 0.0)
        if self.distributed:  # rank 0 decides for everyone
            flag = flag.to(self.device) if self.device.type == "cuda" else flag
            torch.distributed.broadcast(flag, 0)
        return bool(flag.item() > 0)

    # ------------------------------------------------------------------ logging / saving
    def _emit(self, event: str, info: dict) -> None:
        for cb in self.callbacks:
            cb(event, info)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _weights(self) -> dict[str, float]:
        try:
            return {k: float(v) for k, v in self.balancer.weights().items()}
        except (AttributeError, TypeError):
            return {}

    def _meta(self, row: Mapping[str, Any], val: Mapping[str, Any]) -> dict:
        from xtask_core.checkpoint import default_meta

        cfg = self.cfg
        meta = default_meta(cfg.num_classes, dataset=cfg.dataset)
        meta["name"] = self.run_dir.name
        if cfg.dataset == "synthetic":
            meta["data_note"] = "trained on procedurally generated synthetic street scenes, not real images"
        meta["training"] = {
            "epochs": int(row["epoch"]), "steps": int(self.step), "best_epoch": self.best_epoch,
            "val_loss": self.best_val, "train_loss": row.get("train_loss"),
            "metrics": {k: val.get(k) for k in METRIC_KEYS if k in val},
            "iou_per_class": val.get("iou_per_class"),
            "precision": self.precision, "device": str(self.device),
            "train_config": cfg.to_dict(),
            "init_checkpoint": cfg.init_checkpoint or None,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        return meta

    def _save(self, epoch: int, row: dict, val: dict, improved: bool) -> None:
        from xtask_core.checkpoint import save_checkpoint, save_train_state

        meta = self._meta(row, val)
        if improved:
            save_checkpoint(self.run_dir / "best.safetensors", self.model, meta, overwrite=True)
        save_checkpoint(self.run_dir / "last.safetensors", self.model, meta, overwrite=True)
        state_meta = dict(meta, resume={
            "best_val": self.best_val, "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None})
        save_train_state(self.run_dir / "last.state.pt", model=self.model, optimizer=self.optimizer,
                         scheduler=self.scheduler, balancer=self.balancer, epoch=epoch, step=self.step,
                         train_config=self.cfg, meta=state_meta)

    def _log_row(self, row: dict) -> None:
        if self.logger is not None:
            self.logger.log(row)

    # ------------------------------------------------------------------ main loop
    def fit(self) -> dict[str, Any]:
        try:
            return self._fit()
        except BaseException as err:
            if isinstance(err, KeyboardInterrupt):  # its str() is empty
                msg = f"interrupted at step {getattr(self, 'step', 0)}; continue with --resume"
            else:
                msg = str(err) if isinstance(err, XTaskError) else f"{type(err).__name__}: {err}"
            status = "cancelled" if isinstance(err, KeyboardInterrupt) else "failed"
            if self._claimed:
                self.progress.update(status=status, message=msg.splitlines()[0] if msg else status,
                                     force=True)
            raise
        finally:
            if getattr(self, "logger", None) is not None:
                self.logger.close()
            if self.distributed and _dist_on():
                torch.distributed.destroy_process_group()

    def _fit(self) -> dict[str, Any]:
        self._setup()
        cfg = self.cfg
        total_steps = self._total_steps()
        self.progress.update(status="running", step=self.step, total_steps=total_steps,
                             epoch=self.start_epoch - 1, epochs=cfg.epochs,
                             message="resumed" if cfg.resume else "training", force=True)
        show_bar = self.is_main and tqdm_enabled()
        status = "done"
        last_row: dict[str, Any] = {}
        epochs_done = self.start_epoch - 1
        for epoch in range(self.start_epoch, cfg.epochs + 1):
            if cfg.max_steps and self.step >= cfg.max_steps:
                break
            self.epoch = epoch
            t0 = time.time()
            # re-seed from (seed, epoch): a resumed run shuffles and augments identically
            seed_everything(cfg.seed * 100_003 + epoch * 1_009 + self.rank)
            self.generator.manual_seed(cfg.seed * 100_003 + epoch)
            if self.sampler is not None:
                self.sampler.set_epoch(epoch)
            self.model.train()
            sums = torch.zeros(len(LOSS_KEYS) + 1, dtype=torch.float64)
            win = torch.zeros_like(sums)
            n = n_win = 0
            cancelled = False
            for batch in _bar(self.train_loader, len(self.train_loader), f"epoch {epoch}/{cfg.epochs}",
                              show_bar):
                if self._check_cancel():
                    cancelled = True
                    break
                values = self._train_step(batch).double().cpu()
                bs = int(batch["image"].shape[0])
                sums += values * bs
                win += values * bs
                n += bs
                n_win += bs
                info = {"step": self.step, "epoch": epoch,
                        "losses": dict(zip(LOSS_KEYS + ("objective",), values.tolist()))}
                self.progress.update(step=self.step, epoch=epoch, loss=info["losses"]["total"])
                self._emit("step", info)
                if cfg.log_every and self.step % cfg.log_every == 0 and self.is_main:
                    means = (win / max(n_win, 1)).tolist()
                    row = {"kind": "step", "epoch": epoch, "step": self.step, "lr": self._lr()}
                    row.update({f"train_{k}": v for k, v in zip(LOSS_KEYS + ("objective",), means)})
                    row["train_loss"] = row.pop("train_total")
                    row.update({f"w_{k.removeprefix('w_')}": v for k, v in self._weights().items()})
                    self._log_row(row)
                    self.progress.update(force=True, step=self.step)
                    win.zero_()
                    n_win = 0
                if cfg.max_steps and self.step >= cfg.max_steps:
                    break
            if cancelled:
                status = "cancelled"
                break
            if n == 0:
                break
            if self.distributed:  # average the epoch's training losses over ranks
                packed = torch.cat([sums, torch.tensor([float(n)], dtype=torch.float64)])
                packed = packed.to(self.device) if self.device.type == "cuda" else packed
                torch.distributed.all_reduce(packed)
                packed = packed.cpu()
                sums, n = packed[:-1], int(packed[-1].item())
            train_means = (sums / n).tolist()
            lr_used = self._lr()
            self.scheduler.step()

            row = None
            if self.is_main:
                self.progress.update(message=f"validating epoch {epoch}", force=True)
                val = evaluate(self.model, self.val_loader, num_classes=cfg.num_classes,
                               ignore_index=cfg.ignore_index, device=self.device, loss_fn=self.loss_fn,
                               precision=self.precision, channels_last=self.channels_last,
                               progress=show_bar)
                row = {"kind": "epoch", "epoch": epoch, "step": self.step, "lr": lr_used}
                row.update({f"train_{k}": v for k, v in zip(LOSS_KEYS + ("objective",), train_means)})
                row["train_loss"] = row.pop("train_total")
                row["val_loss"] = val["loss"]
                row.update({f"val_{k}": val[f"loss_{k}"] for k in LOSS_KEYS if k != "total"})
                row.update({f"val_{k}": val[k] for k in METRIC_KEYS if k in val})
                row.update({f"w_{k.removeprefix('w_')}": v for k, v in self._weights().items()})
                row["seconds"] = time.time() - t0
                if not math.isfinite(row["val_loss"]):
                    raise XTaskError(f"validation loss is NaN/Inf at epoch {epoch}; nothing was saved "
                                     "for this epoch. Lower --lr or use --precision fp32")
                improved = row["val_loss"] < self.best_val
                if improved:
                    self.best_val, self.best_epoch = row["val_loss"], epoch
                    self.best_metrics = {k: val.get(k) for k in METRIC_KEYS if k in val}
                row["best_epoch"] = self.best_epoch
                self._log_row(row)
                self._save(epoch, row, val, improved)
                last_row = row
                epochs_done = epoch
                self.progress.update(epoch=epoch, step=self.step, val_loss=row["val_loss"],
                                     message=f"epoch {epoch}/{cfg.epochs} done, val loss {row['val_loss']:.4g}",
                                     force=True)
                self._emit("epoch", row)
            else:
                epochs_done = epoch
            self._barrier()
        summary = {
            "status": status, "epochs_done": epochs_done,
            "step": self.step, "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val if math.isfinite(self.best_val) else None,
            "best_metrics": self.best_metrics,
            "best": str(self.run_dir / "best.safetensors"), "last": str(self.run_dir / "last.safetensors"),
            "run_dir": str(self.run_dir), "last_row": last_row, "precision": self.precision,
            "device": str(self.device),
        }
        if status == "cancelled":
            msg = f"cancelled at step {self.step}; checkpoints are those of epoch {epochs_done}"
        else:
            msg = (f"finished: best val loss {summary['best_val_loss']:.4g} at epoch {self.best_epoch}"
                   if summary["best_val_loss"] is not None else "finished (nothing to do)")
        self.progress.update(status=status, message=msg, step=self.step, force=True)
        self._emit("end", summary)
        return summary


def train(cfg: TrainConfig, device: str | torch.device | None = None, **kw) -> dict[str, Any]:
    """Convenience: ``Trainer(cfg, device, **kw).fit()``."""
    return Trainer(cfg, device=device, **kw).fit()
