"""The trainer's data: the cached synthetic set, dataset splits and DataLoaders."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from xtask_core.config import TrainConfig
from xtask_core.data import make_dataset
from xtask_core.errors import XTaskError

SYNTH_DEFAULT = dict(n_train=400, n_val=100, height=256, width=512)  # cached synthetic set


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
    # the renderer is only needed the first time: imported here, not at every trainer start
    from xtask_core.data import synthetic

    opts = dict(SYNTH_DEFAULT, **sizes)
    synthetic.write_dataset(Path(root), n_train=opts["n_train"], n_val=opts["n_val"], seed=seed,
                            height=opts["height"], width=opts["width"], workers=workers)
    return True


def make_split(cfg: TrainConfig, split: str, augment: bool, limit: int = 0,
               height: int | None = None, width: int | None = None):
    """Dataset of ``cfg.dataset`` for ``split`` (the synthetic set is read as Cityscapes)."""
    name = "cityscapes" if cfg.dataset == "synthetic" else cfg.dataset
    kw: dict[str, Any] = dict(height=height or cfg.height, width=width or cfg.width,
                              augment=augment, limit=limit)
    if name == "cityscapes":
        kw["num_classes"] = cfg.num_classes
    ds = make_dataset(name, cfg.input_path, split, **kw)
    if len(ds) == 0:
        raise XTaskError(f"the {split} split of {cfg.input_path} is empty")
    return ds


def make_loader(ds, batch_size: int, *, shuffle: bool, workers: int, device: torch.device,
                sampler=None, generator=None) -> DataLoader:
    """A DataLoader over ``ds`` (pinned memory for CUDA, persistent workers when any)."""
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, generator=generator, drop_last=False)
