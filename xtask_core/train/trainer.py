"""The one training loop, used by ``xtask train``, by fine-tuning jobs and by tests.

:class:`Trainer` builds everything from a :class:`~xtask_core.config.TrainConfig` in its
constructor: datasets (a cached synthetic set is generated on first use), the
:class:`~xtask_core.model.XTaskNet` and :class:`~xtask_core.train.losses.XTaskLoss` (or, for
``task="segmt"|"depth"``, the single-task baseline :class:`~xtask_core.model.stl.STLNet` and
:class:`~xtask_core.train.stl_loss.STLLoss`), the loss balancer (or PCGrad), Adam + StepLR, the
precision path and the run folder (file names:
:class:`~xtask_core.train.run_dir.RunDir`). Each step is :func:`~xtask_core.train.step.train_step`.

Choices worth knowing:

- "Validation loss" (the best-checkpoint criterion) is the *unbalanced* total
  ``label + image`` averaged over validation images: balancer weights change during
  training, so a balanced total would not be comparable between epochs.
- Validation runs every ``val_every`` epochs and always at the end of the run
  (``val_every=0``: only at the end, what a short fine-tune wants). Epochs without validation
  save ``last`` + the resume state only when the last save is :data:`SAVE_EVERY_S` old.
- Random state is re-seeded at the start of every epoch from ``(seed, epoch)``, so a resumed
  run shuffles and augments exactly as an uninterrupted one would, without pickling RNGs.
- Distributed (``torchrun``, env ``WORLD_SIZE > 1``): one process per device, gloo on CPU /
  nccl on CUDA, a DistributedSampler shards the training set and DDP averages gradients.
  Validation runs on rank 0 over the *full* validation set (the other ranks wait at a barrier),
  so metrics are exactly those of a single-process evaluation; only rank 0 writes files.
- Task balance (cross-task runs): every ``cosine_every`` steps the cosine between the label
  and image groups' gradients at the shared encoder is measured (two extra partial backward
  passes on that step; free with PCGrad). Each metrics row carries ``grad_cos`` (mean of the
  row's window's measurements, absent if none) and ``ratio_label`` / ``ratio_image`` (the
  window's group loss over the run's first step's, GradNorm's "inverse training rate"). Not
  measured in distributed runs; PCGrad is refused there (its per-group gradients bypass DDP).
- A NaN/Inf loss aborts with :class:`XTaskError` before the optimiser step, marks the progress
  file ``failed`` and saves nothing, so a good ``best`` is never replaced by a broken one.
"""
from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from xtask_core.checkpoint import default_meta, load_checkpoint, load_train_state, save_checkpoint, save_train_state
from xtask_core.config import ARCH_FIELDS, DATASETS, ModelConfig, TrainConfig
from xtask_core.device import default_device
from xtask_core.errors import XTaskError
from xtask_core.inference.precision import grad_scaler
from xtask_core.io.atomic import remove_stale_tmp
from xtask_core.model.stl import build_model
from xtask_core.train.balancing import balancer_kind, make_balancer
from xtask_core.train.data import SYNTH_DEFAULT, ensure_synthetic, make_loader, make_split, synthetic_has_data
from xtask_core.train.losses import XTaskLoss
from xtask_core.train.run_dir import ProgressFile, RunDir, has_checkpoints, read_progress, step_text
from xtask_core.train.runlog import RunLogger, preload_tensorboard
from xtask_core.train.step import LOSS_KEYS, STEP_KEYS, DivergedError, train_step
from xtask_core.train.stl_loss import STLLoss
from xtask_core.train.train_path import TrainPath, choose_train_path
from xtask_core.train.validate import evaluate, progress_bar, tqdm_enabled

__all__ = ["Trainer", "train", "evaluate", "seed_everything", "make_split", "ensure_synthetic",
           "synthetic_has_data", "has_checkpoints", "read_progress", "ProgressFile", "LOSS_KEYS",
           "METRIC_KEYS", "ARCH_FIELDS", "SYNTH_DEFAULT", "tqdm_enabled"]

# scalar metrics copied into metrics.csv / TensorBoard (lists like iou_per_class go to JSON only)
METRIC_KEYS = ("pixel_acc", "miou", "miou_per_image", "abs", "abs_rel", "rmse",
               "delta1", "delta2", "delta3")
# epochs without validation save last + resume state only when the last save is this old (s)
SAVE_EVERY_S = 120.0


def _dist_on() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU + CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _pick_device(cfg: TrainConfig, device, distributed: bool, local_rank: int) -> torch.device:
    if cfg.cpu:
        return torch.device("cpu")
    if device is None and distributed and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return default_device(device)


class Trainer:
    """Train an XTaskNet (or a single-task STLNet) from a :class:`TrainConfig` (see the module docstring).

    Args:
        cfg: every option; ``cfg.out`` is the run folder (required), ``cfg.resume`` continues
            from ``out/last.*``.
        device: None = ``cuda:LOCAL_RANK`` / CUDA if available, else CPU; ``cfg.cpu`` forces CPU.
        callbacks: callables ``cb(event, info)`` with event ``"step"`` (info: step, epoch,
            losses), ``"epoch"`` (the metrics row of a validated epoch) or ``"end"`` (the
            summary). Exceptions from a callback propagate (a callback may raise to stop training).

    The constructor builds everything (data, model, optimiser, state of a resumed run, the run
    folder's logger); a failure there is written to ``progress.json`` as ``failed`` (once the
    folder is known to be this run's) and raised. ``fit()`` returns a summary dict: ``status``
    ("done" | "cancelled"), ``epochs_done``, ``step``, ``best_epoch``, ``best_val_loss``,
    ``best`` / ``last`` paths, ``last_row``.
    """

    def __init__(self, cfg: TrainConfig, device: str | torch.device | None = None,
                 callbacks: Iterable[Callable[[str, dict], None]] | None = None):
        if not cfg.out:
            raise XTaskError("the training config needs an output run folder (out / --out)")
        if cfg.dataset not in DATASETS:
            raise XTaskError(f"unknown dataset {cfg.dataset!r} (valid: {', '.join(DATASETS)})")
        self.cfg = cfg
        self.run = RunDir(cfg.out)
        self.run_dir = self.run.path
        self.callbacks = list(callbacks or [])
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.distributed = self.world_size > 1
        if cfg.pcgrad and self.distributed:  # refused before joining the process group
            raise XTaskError("pcgrad runs in one process only (its per-group gradients bypass DDP's "
                             "averaging); train without torchrun or without --pcgrad")
        self.device = _pick_device(cfg, device, self.distributed, int(os.environ.get("LOCAL_RANK", "0")))
        self.rank = self._init_distributed()
        self.is_main = self.rank == 0
        self.progress = ProgressFile(self.run.progress, enabled=self.is_main)
        if self.is_main:
            preload_tensorboard()  # its ~2.4 s import overlaps the set-up instead of the first step
        # Set once the folder check passed: until then the folder may be someone else's run,
        # and a refused start must not write its "failed" status into that run's progress.json.
        self._claimed = False
        self.logger: RunLogger | None = None
        self.epoch = 0
        self.step = 0
        self.start_epoch = 1
        self.best_val = math.inf
        self.best_epoch = 0
        self.best_metrics: dict[str, Any] = {}
        self.init_meta: dict | None = None
        self._last_save = time.monotonic()
        self.saved_epoch = 0  # the epoch whose checkpoints are on disk (0: none yet)
        # task balance: cosine measurements of the current row window, first step's group losses
        self.cos_window: dict[str, list[float]] = {"step": [], "epoch": []}
        self.first_losses: dict[str, float] = {}
        self.measure_cosine = cfg.cosine_every > 0 and cfg.task == "both" and not self.distributed
        self.pcgrad_generator = torch.Generator().manual_seed(cfg.seed)
        try:
            self._prepare_folder()
            seed_everything(cfg.seed)
            self.train_ds = make_split(cfg, "train", augment=True, limit=cfg.limit_train)
            self.val_ds = make_split(cfg, "val", augment=False, limit=cfg.limit_val)
            self.sampler = (DistributedSampler(self.train_ds, shuffle=True, seed=cfg.seed)
                            if self.distributed else None)
            self.generator = torch.Generator()
            self.train_loader = make_loader(self.train_ds, cfg.batch_size, shuffle=True, workers=cfg.workers,
                                            device=self.device, sampler=self.sampler, generator=self.generator)
            self.val_loader = make_loader(self.val_ds, cfg.batch_size, shuffle=False, workers=cfg.workers,
                                          device=self.device)
            self.model = self._build_model().to(self.device)
            self.loss_fn = (XTaskLoss(cfg.num_classes, lambda_1=cfg.lambda_1, lambda_2=cfg.lambda_2,
                                      label_smoothing=cfg.label_smoothing, lp=cfg.lp,
                                      tdep_loss=cfg.tdep_loss, tseg_loss=cfg.tseg_loss,
                                      ignore_index=cfg.ignore_index, method=cfg.method,
                                      reduction=cfg.loss_reduction) if cfg.task == "both"
                            else STLLoss(cfg.task, cfg.num_classes, lp=cfg.lp,
                                         ignore_index=cfg.ignore_index)).to(self.device)
            self.balancer = make_balancer(balancer_kind(cfg.uncertainty_weights, cfg.gradnorm),
                                          device=self.device)
            # precision + memory format: as given, or measured on the first batch (or cached);
            # one choice for all ranks (DDP refuses parameters whose strides differ between ranks)
            self.path_choice = self._agreed_path(cfg)
            self.precision = self.path_choice.precision
            self.channels_last = self.path_choice.channels_last
            if self.channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)
            # balancer.parameters() is [] for balancers that train nothing with our optimiser
            self.optimizer = torch.optim.Adam(list(self.model.parameters()) + self.balancer.parameters(),
                                              lr=cfg.lr, betas=tuple(cfg.betas))
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.scheduler_step_size,
                                                             cfg.scheduler_gamma)
            self.scaler = grad_scaler(self.device, self.precision)
            self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device.index]
                                                if self.device.type == "cuda" else None)
                        if self.distributed else None)
            if cfg.resume:
                self._load_state()
            self.total_steps = self._total_steps()
            if self.is_main:
                self.logger = self._open_logger()
        except BaseException as err:
            self._fail(err)
            raise

    # ------------------------------------------------------------------ setup
    def _agreed_path(self, cfg: TrainConfig) -> TrainPath:
        """The training path: measured (or cached) on rank 0 and broadcast, so every rank runs
        the same precision and memory format; timings on each rank could disagree."""
        choice = None
        if self.is_main:
            choice = choose_train_path(self.model, self.train_ds, cfg, self.device, loss_fn=self.loss_fn)
        if self.distributed and _dist_on():
            box = [choice]
            torch.distributed.broadcast_object_list(box, src=0)
            choice = box[0]
        return choice

    def _init_distributed(self) -> int:
        """Join the process group (distributed runs); this process's rank."""
        if not self.distributed:
            return 0
        if not _dist_on():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            # long timeout: ranks > 0 wait at a barrier while rank 0 validates the full split
            torch.distributed.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo",
                                                 timeout=timedelta(hours=2))
        return torch.distributed.get_rank()

    def _barrier(self) -> None:
        if _dist_on():
            torch.distributed.barrier()

    def _prepare_folder(self) -> None:
        """Check and claim the run folder, generate the synthetic cache (rank 0), then sync."""
        cfg = self.cfg
        if self.is_main:
            existing = self.run.checkpoints()
            if cfg.resume and not self.run.state.exists():
                raise XTaskError(f"cannot resume: {self.run.state} does not exist "
                                 "(train without --resume first)")
            if not cfg.resume and existing:
                raise XTaskError(f"run folder {self.run_dir} already has checkpoints ({', '.join(existing)}); "
                                 "use --resume to continue it or choose a new --out")
            self._claimed = True
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # A SIGKILL during an earlier save leaves ".<name>.<random>.tmp" files (up to a
            # checkpoint's size); one trainer per folder, so its own files' leftovers go now.
            remove_stale_tmp(self.run_dir, owned=RunDir.TRAINER_FILES)
            if cfg.resume and self.run.cancel.exists():  # resuming a cancelled run: that cancel is spent
                self.run.cancel.unlink()
            self.progress.update(status="starting", message="preparing data", epochs=cfg.epochs, force=True)
            if cfg.dataset == "synthetic" and ensure_synthetic(cfg.input_path, seed=cfg.seed,
                                                               workers=cfg.workers):
                self.progress.update(message=f"generated synthetic data in {cfg.input_path}", force=True)
        self._barrier()  # other ranks wait for the folder check and the synthetic cache

    def _build_model(self) -> nn.Module:
        cfg = self.cfg
        mcfg = cfg.model_config()
        model = build_model(mcfg, pretrained_path=cfg.use_pretrain or None)
        if cfg.init_checkpoint and not cfg.resume:
            loaded = load_checkpoint(cfg.init_checkpoint, device="cpu")
            diff = [f"{f} {getattr(loaded.config, f)} (checkpoint) vs {getattr(mcfg, f)} (config)"
                    for f in ARCH_FIELDS if getattr(loaded.config, f) != getattr(mcfg, f)]
            if diff:
                raise XTaskError(f"init_checkpoint {cfg.init_checkpoint} has a different architecture: "
                                 + "; ".join(diff))
            model.load_state_dict(loaded.model.state_dict(), strict=True)
            self.init_meta = loaded.meta
        return model

    def _open_logger(self) -> RunLogger:
        logger = RunLogger(self.run_dir)
        if self.cfg.resume:
            # Rows an interrupted attempt logged after the saved state (step rows of the
            # unfinished epoch) are about to be redone: drop them so none is duplicated.
            logger.drop_rows_after(step=self.step, epoch=self.start_epoch - 1)
        logger.write_config({"train": self.cfg.to_dict(), "model": self.model.config.to_dict(),
                             "device": str(self.device), "precision": self.precision,
                             "channels_last": self.channels_last,
                             "train_path": self.path_choice.to_dict(),
                             "world_size": self.world_size,
                             "train_images": len(self.train_ds), "val_images": len(self.val_ds)})
        return logger

    def _load_state(self) -> None:
        state = load_train_state(self.run.state)
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
        if state.get("balancer"):
            self.balancer.load_state_dict(state["balancer"])
        extra = (state.get("meta") or {}).get("resume", {})
        if self.scaler is not None and extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.start_epoch = int(state["epoch"]) + 1
        self.saved_epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.best_val = float(extra.get("best_val", math.inf))
        self.best_epoch = int(extra.get("best_epoch", 0))
        self.best_metrics = dict(extra.get("best_metrics", {}))
        self.first_losses = dict(extra.get("first_losses", {}))

    def _total_steps(self) -> int:
        total = len(self.train_loader) * self.cfg.epochs
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    # ------------------------------------------------------------------ per step
    def _step(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """One :func:`train_step`; the detached :data:`STEP_KEYS` values as one float64 CPU tensor."""
        reduce_flag = torch.distributed.all_reduce if self.distributed else None
        cfg = self.cfg
        measure = self.measure_cosine and (self.step + 1) % cfg.cosine_every == 0
        try:
            out = train_step(self.ddp or self.model, batch, loss_fn=self.loss_fn, balancer=self.balancer,
                             optimizer=self.optimizer, scaler=self.scaler, precision=self.precision,
                             channels_last=self.channels_last, device=self.device, reduce_flag=reduce_flag,
                             pcgrad=cfg.pcgrad, measure_cosine=measure, generator=self.pcgrad_generator)
        except DivergedError as err:
            parts = ", ".join(f"{k}={v:.4g}" for k, v in err.values.items() if k in LOSS_KEYS)
            raise XTaskError(f"training diverged: loss is NaN/Inf at epoch {self.epoch}, step {self.step + 1} "
                             f"({parts}); nothing was saved for this epoch. Lower --lr or use "
                             "--precision fp32") from None
        self.step += 1
        if measure and math.isfinite(float(out["grad_cos"])):
            for window in self.cos_window.values():
                window.append(float(out["grad_cos"]))
        values = torch.stack([out[k] for k in STEP_KEYS]).double().cpu()
        if not self.first_losses:
            self.first_losses = {k: float(values[STEP_KEYS.index(k)]) for k in ("label", "image")}
        return values

    def _check_cancel(self) -> bool:
        flag = torch.tensor(1.0 if (self.is_main and self.run.cancel.exists()) else 0.0)
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

    def _row(self, kind: str, epoch: int, train_means: list[float], lr: float,
             val: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One metrics.csv row (``kind`` "step" or "epoch"): ``train_<loss>`` means (``train_loss``
        = the unbalanced total), ``val_*`` when validated, balancer weights ``w_image``/``w_label``."""
        row: dict[str, Any] = {"kind": kind, "epoch": epoch, "step": self.step, "lr": lr}
        row.update({f"train_{k}": v for k, v in zip(STEP_KEYS, train_means)})
        row["train_loss"] = row.pop("train_total")
        if val is not None:
            row["val_loss"] = val["loss"]
            row.update({f"val_{k}": val[f"loss_{k}"] for k in LOSS_KEYS if k != "total"})
            row.update({f"val_{k}": val[k] for k in METRIC_KEYS if k in val})
        row.update({k: float(v) for k, v in self.balancer.weights().items()})
        row.update(self._balance_columns(kind, row))
        return row

    def _balance_columns(self, kind: str, row: Mapping[str, Any]) -> dict[str, float]:
        """``grad_cos`` (mean of the measurements since the last row of this ``kind``) and
        ``ratio_label`` / ``ratio_image`` (the row's train group loss over the first step's; a
        group whose first loss is 0, the absent task of a single-task run, gets none)."""
        out: dict[str, float] = {}
        window = self.cos_window[kind]
        if window:
            out["grad_cos"] = sum(window) / len(window)
            window.clear()
        for k in ("label", "image"):
            first = self.first_losses.get(k, 0.0)
            if first > 0 and math.isfinite(first):
                out[f"ratio_{k}"] = float(row[f"train_{k}"]) / first
        return out

    def _meta(self, row: Mapping[str, Any], val: Mapping[str, Any]) -> dict:
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

    def _save(self, epoch: int, row: dict, val: Mapping[str, Any], improved: bool) -> None:
        self._last_save = time.monotonic()
        self.saved_epoch = epoch
        meta = self._meta(row, val)
        if improved:
            save_checkpoint(self.run.best, self.model, meta, overwrite=True)
        save_checkpoint(self.run.last, self.model, meta, overwrite=True)
        state_meta = dict(meta, resume={
            "best_val": self.best_val, "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics, "first_losses": self.first_losses,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None})
        save_train_state(self.run.state, model=self.model, optimizer=self.optimizer,
                         scheduler=self.scheduler, balancer=self.balancer, epoch=epoch, step=self.step,
                         train_config=self.cfg, meta=state_meta)

    def _fail(self, err: BaseException) -> None:
        """Record a failure (or Ctrl-C) in progress.json once the folder is ours; close files."""
        if isinstance(err, KeyboardInterrupt):  # its str() is empty
            msg, status = f"interrupted at step {self.step}; continue with --resume", "cancelled"
        else:
            msg = str(err) if isinstance(err, XTaskError) else f"{type(err).__name__}: {err}"
            status = "failed"
        if self._claimed:
            self.progress.update(status=status, message=msg.splitlines()[0] if msg else status, force=True)
        if self.logger is not None:
            self.logger.close()
        if self.distributed and _dist_on():
            torch.distributed.destroy_process_group()

    # ------------------------------------------------------------------ main loop
    def fit(self) -> dict[str, Any]:
        try:
            summary = self._fit()
        except BaseException as err:
            self._fail(err)
            raise
        if self.logger is not None:
            self.logger.close()
        if self.distributed and _dist_on():
            torch.distributed.destroy_process_group()
        return summary

    def _validate_now(self, epoch: int, stopping: bool) -> bool:
        every = self.cfg.val_every
        return stopping or epoch == self.cfg.epochs or (every > 0 and epoch % every == 0)

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        total = self.total_steps
        self.progress.update(status="running", step=self.step, total_steps=total,
                             epoch=self.start_epoch - 1, epochs=cfg.epochs,
                             message="resumed" if cfg.resume else step_text(self.step, total, None), force=True)
        show_bar = self.is_main and tqdm_enabled()
        status = "done"
        last_row: dict[str, Any] = {}
        epochs_done = self.start_epoch - 1
        t_start, step_start = time.monotonic(), self.step
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
            sums = torch.zeros(len(STEP_KEYS), dtype=torch.float64)
            win = torch.zeros_like(sums)
            n = n_win = 0
            cancelled = False
            for batch in progress_bar(self.train_loader, len(self.train_loader), f"epoch {epoch}/{cfg.epochs}",
                                      show_bar):
                if self._check_cancel():
                    cancelled = True
                    break
                values = self._step(batch)
                bs = int(batch["image"].shape[0])
                sums += values * bs
                win += values * bs
                n += bs
                n_win += bs
                info = {"step": self.step, "epoch": epoch, "losses": dict(zip(STEP_KEYS, values.tolist()))}
                done = self.step - step_start
                eta = (time.monotonic() - t_start) / done * (total - self.step) if done else None
                self.progress.update(step=self.step, epoch=epoch, loss=info["losses"]["total"], eta_s=eta,
                                     message=step_text(self.step, total, eta))
                self._emit("step", info)
                if cfg.log_every and self.step % cfg.log_every == 0 and self.is_main:
                    self.logger.log(self._row("step", epoch, (win / max(n_win, 1)).tolist(), self._lr()))
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
            lr_used = self._lr()
            self.scheduler.step()
            stopping = bool(cfg.max_steps and self.step >= cfg.max_steps)
            if self.is_main:
                last_row = self._end_epoch(epoch, (sums / n).tolist(), lr_used, t0,
                                           self._validate_now(epoch, stopping), show_bar) or last_row
            epochs_done = epoch
            self._barrier()
        summary = {
            "status": status, "epochs_done": epochs_done,
            "step": self.step, "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val if math.isfinite(self.best_val) else None,
            "best_metrics": self.best_metrics,
            "best": str(self.run.best), "last": str(self.run.last),
            "run_dir": str(self.run_dir), "last_row": last_row, "precision": self.precision,
            "channels_last": self.channels_last, "device": str(self.device),
        }
        if status == "cancelled":
            msg = (f"cancelled at step {self.step}; checkpoints are those of epoch {self.saved_epoch}"
                   if self.saved_epoch else f"cancelled at step {self.step}; no checkpoint was saved")
        else:
            msg = (f"finished: best val loss {summary['best_val_loss']:.4g} at epoch {self.best_epoch}"
                   if summary["best_val_loss"] is not None else "finished (nothing to do)")
        self.progress.update(status=status, message=msg, step=self.step, eta_s=0.0, force=True)
        self._emit("end", summary)
        return summary

    def _end_epoch(self, epoch: int, train_means: list[float], lr: float, t0: float, validate: bool,
                   show_bar: bool) -> dict | None:
        """Rank 0 after an epoch: validate (when due), log the row, save; the row or None."""
        cfg = self.cfg
        if not validate:
            # no validation pass; save for --resume only when the last save is a while ago, so a
            # short run (a fine-tune) writes its checkpoints once, at the end
            if time.monotonic() - self._last_save >= SAVE_EVERY_S:
                self._save(epoch, {"epoch": epoch, "train_loss": train_means[0]}, {}, improved=False)
            return None
        self.progress.update(message=f"validating after step {self.step}", force=True)
        val = evaluate(self.model, self.val_loader, num_classes=cfg.num_classes,
                       ignore_index=cfg.ignore_index, device=self.device, loss_fn=self.loss_fn,
                       precision=self.precision, channels_last=self.channels_last, progress=show_bar)
        row = self._row("epoch", epoch, train_means, lr, val)
        row["seconds"] = time.time() - t0
        if not math.isfinite(row["val_loss"]):
            raise XTaskError(f"validation loss is NaN/Inf at epoch {epoch}; nothing was saved "
                             "for this epoch. Lower --lr or use --precision fp32")
        improved = row["val_loss"] < self.best_val
        if improved:
            self.best_val, self.best_epoch = row["val_loss"], epoch
            self.best_metrics = {k: val.get(k) for k in METRIC_KEYS if k in val}
        row["best_epoch"] = self.best_epoch
        self.logger.log(row)
        self._save(epoch, row, val, improved)
        self.progress.update(epoch=epoch, step=self.step, val_loss=row["val_loss"],
                             message=f"{step_text(self.step, self.total_steps, None)} done, "
                                     f"val loss {row['val_loss']:.4g}", force=True)
        self._emit("epoch", row)
        return row


def train(cfg: TrainConfig, device: str | torch.device | None = None, **kw) -> dict[str, Any]:
    """Convenience: ``Trainer(cfg, device, **kw).fit()``."""
    return Trainer(cfg, device=device, **kw).fit()
