"""Configuration dataclasses.

``ModelConfig`` builds an :class:`~xtask_core.model.XTaskNet` and is saved inside every
checkpoint, so a checkpoint can always be rebuilt without typing flags again.
``TrainConfig`` holds every training flag of the original code (same names), with
per-dataset defaults from :data:`DATASET_DEFAULTS`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from xtask_core.errors import XTaskError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ENC_LAYERS = (18, 34, 50, 101, 152)
DEPTH_LOSSES = ("L1", "MSE", "logL1", "smoothL1")
TDEP_LOSSES = ("L1", "ssim")
TSEG_LOSSES = ("cross", "kl")
METHODS = ("xtsc", "xtc")
# How the loss reduces masked terms: "original" = the original code's arithmetic, "masked" = true
# masked means (xtask_core.train.losses explains both; its REDUCTIONS registry has the same keys).
LOSS_REDUCTIONS = ("original", "masked")
DATASETS = ("synthetic", "cityscapes", "nyuv2")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TASKS = ("both", "segmt", "depth")  # "both" = the cross-task net; one task = single-task baseline


def _from_dict(cls, data: Mapping[str, Any]):
    """Build dataclass ``cls`` from ``data``; unknown keys raise (no silent typos)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise XTaskError(f"unknown {cls.__name__} keys: {', '.join(unknown)} "
                         f"(valid: {', '.join(sorted(names))})")
    kwargs = dict(data)
    for f in fields(cls):  # JSON turns tuples into lists; give tuples back
        if f.name in kwargs and isinstance(kwargs[f.name], list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture + preprocessing of one XTaskNet. Everything needed to rebuild it."""

    enc_layers: int = 34            # ResNet depth: 18, 34, 50, 101 or 152
    num_classes: int = 7            # segmentation classes (7 or 19 Cityscapes, 13 NYUv2)
    mid_features: int = 128         # decoder width (original: 128)
    ttnet_features: int = 64        # first TTNet stage width; stages are f, 2f, 4f (original: 64)
    wider_ttnet: bool = False       # doubles every TTNet width (original flag)
    batch_norm: bool = False        # BatchNorm inside the TTNets (original flag)
    height: int = 128               # input size the model was trained at (must be /32)
    width: int = 256
    mean: tuple = IMAGENET_MEAN     # input normalisation travels with the weights
    std: tuple = IMAGENET_STD
    task: str = "both"              # "both" (XTaskNet) or one task, "segmt" | "depth" (STLNet baseline)

    def __post_init__(self):
        if self.task not in TASKS:
            raise XTaskError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.enc_layers not in ENC_LAYERS:
            raise XTaskError(f"enc_layers must be one of {ENC_LAYERS}, got {self.enc_layers}")
        if self.num_classes < 2:
            raise XTaskError(f"num_classes must be >= 2, got {self.num_classes}")
        for name in ("mid_features", "ttnet_features"):
            if getattr(self, name) < 1:
                raise XTaskError(f"{name} must be positive")
        if self.height % 32 or self.width % 32:
            raise XTaskError(f"height and width must be multiples of 32, got {self.height}x{self.width}")

    @property
    def ttnet_widths(self) -> tuple:
        f = self.ttnet_features * (2 if self.wider_ttnet else 1)
        return (f, 2 * f, 4 * f)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)


# The architecture: every ModelConfig field but the input size and normalisation. A checkpoint
# loaded into a config must match it on these; a resumed run cannot change them.
ARCH_FIELDS = tuple(f.name for f in fields(ModelConfig) if f.name not in ("height", "width", "mean", "std"))

# Per-dataset defaults of the original code (docs/BACKGROUND.md). "synthetic" is read as Cityscapes.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "cityscapes": dict(height=128, width=256, epochs=250, batch_size=8, scheduler_step_size=80,
                       scheduler_gamma=0.5, lambda_1=0.01, lambda_2=0.01, num_classes=7,
                       ignore_index=250, input_path="data/cityscapes"),
    "nyuv2": dict(height=288, width=384, epochs=100, batch_size=6, scheduler_step_size=60,
                  scheduler_gamma=0.5, lambda_1=0.0001, lambda_2=0.0001, num_classes=13,
                  ignore_index=-1, input_path="data/nyu"),
}
DATASET_DEFAULTS["synthetic"] = dict(DATASET_DEFAULTS["cityscapes"], input_path="data/synthetic")


@dataclass
class TrainConfig:
    """Every training flag of the original code, plus a few of ours (marked)."""

    dataset: str = "cityscapes"
    input_path: str = ""
    out: str = ""                       # run folder (ours)
    height: int = 128
    width: int = 256
    epochs: int = 250
    max_steps: int = 0                  # ours: stop after this many optimiser steps (0 = off)
    batch_size: int = 8
    lr: float = 1e-4
    betas: tuple = (0.9, 0.99)
    scheduler_step_size: int = 80
    scheduler_gamma: float = 0.5
    lambda_1: float = 0.01              # original flag "alpha": weight of transferred depth loss
    lambda_2: float = 0.01              # original flag "gamma": weight of transferred seg loss
    label_smoothing: float = 0.0
    lp: str = "L1"
    tdep_loss: str = "L1"
    tseg_loss: str = "cross"
    method: str = "xtsc"                # ours: "xtc" compares transferred outputs with targets
    loss_reduction: str = "original"    # ours: "original" (the original's arithmetic) | "masked" (masked means)
    uncertainty_weights: bool = False
    gradnorm: bool = False
    num_classes: int = 7
    ignore_index: int = 250
    enc_layers: int = 34
    use_pretrain: str = ""              # path to a local torchvision ResNet state dict ("" = none)
    batch_norm: bool = False
    wider_ttnet: bool = False
    mid_features: int = 128             # ours: decoder width
    ttnet_features: int = 64            # ours: TTNet base width
    workers: int = 2
    cpu: bool = False
    seed: int = 0                       # ours
    precision: str = "auto"             # ours: auto | fp32 | bf16 | fp16 (auto: mixed where the device has it)
    channels_last: bool | None = None   # ours: channels-last memory format; None = auto (see precision.py)
    resume: bool = False                # ours: continue from out/last.*
    limit_train: int = 0                # ours: use only the first N training samples (0 = all)
    limit_val: int = 0                  # ours: use only the first N validation samples (0 = all)
    init_checkpoint: str = ""           # ours: start from these weights (fine-tuning)
    log_every: int = 0                  # ours: also log a metrics row every N steps (0 = per epoch)
    val_every: int = 1                  # ours: validate every N epochs (0 = only at the end of the run)
    task: str = "both"                  # original main_stl.py --task: both (cross-task) | segmt | depth (baseline)
    pcgrad: bool = False                # PCGrad on the label / image groups' gradients (the original's MTAN baseline)
    cosine_every: int = 50              # ours: gradient cosine of the two groups at the encoder every N steps (0 = off)

    def __post_init__(self):
        choices = dict(dataset=DATASETS, lp=DEPTH_LOSSES, tdep_loss=TDEP_LOSSES,
                       tseg_loss=TSEG_LOSSES, method=METHODS, precision=PRECISIONS,
                       loss_reduction=LOSS_REDUCTIONS)
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise XTaskError(f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}")
        if self.uncertainty_weights + self.gradnorm + self.pcgrad > 1:
            raise XTaskError("choose at most one of uncertainty_weights, gradnorm and pcgrad")
        if self.task not in TASKS:
            raise XTaskError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.task != "both" and (self.uncertainty_weights or self.gradnorm or self.pcgrad):
            raise XTaskError(f"a single-task run (task {self.task}) has one loss: uncertainty_weights, "
                             "gradnorm and pcgrad balance two and cannot be used with it")
        if self.cosine_every < 0:
            raise XTaskError(f"cosine_every must be >= 0, got {self.cosine_every}")
        for name in ("lambda_1", "lambda_2"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise XTaskError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise XTaskError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.height % 32 or self.width % 32:
            raise XTaskError(f"height and width must be multiples of 32, got {self.height}x{self.width}")
        if self.batch_size < 1 or self.epochs < 1 or self.lr <= 0:
            raise XTaskError("batch_size and epochs must be >= 1 and lr > 0")

    @classmethod
    def for_dataset(cls, dataset: str, **overrides) -> TrainConfig:
        """Defaults of ``dataset`` (:data:`DATASET_DEFAULTS`) updated by ``overrides``."""
        if dataset not in DATASET_DEFAULTS:
            raise XTaskError(f"unknown dataset {dataset!r} (valid: {', '.join(DATASETS)})")
        values = dict(DATASET_DEFAULTS[dataset], dataset=dataset)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return _from_dict(cls, values)

    def model_config(self) -> ModelConfig:
        return ModelConfig(enc_layers=self.enc_layers, num_classes=self.num_classes,
                           mid_features=self.mid_features, ttnet_features=self.ttnet_features,
                           wider_ttnet=self.wider_ttnet, batch_norm=self.batch_norm,
                           height=self.height, width=self.width, task=self.task)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)
