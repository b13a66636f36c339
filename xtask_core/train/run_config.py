"""The :class:`TrainConfig` of a run from the options a user gave (``xtask train`` flags).

Three cases: a new run (per-dataset defaults, then the given options), a fine-tune
(``init_checkpoint``: architecture options not given are read off that checkpoint) and a resume
(the run folder's saved config, then the given options, e.g. more epochs; the architecture and
input size cannot change).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xtask_core.checkpoint import load_checkpoint, load_train_state
from xtask_core.config import ARCH_FIELDS, TrainConfig
from xtask_core.errors import XTaskError
from xtask_core.train.run_dir import RunDir

# what a resume may not change and a fine-tune takes from its checkpoint
_FIXED = ARCH_FIELDS + ("height", "width")


def _resumed(given: dict[str, Any], out: str) -> TrainConfig:
    state_path = RunDir(out).state
    if not state_path.exists():
        raise XTaskError(f"cannot resume: {state_path} does not exist")
    saved = load_train_state(state_path).get("train_config")
    if not isinstance(saved, dict):
        raise XTaskError(f"{state_path} holds no training config; cannot resume it")
    changed = [k for k in _FIXED if k in given and given[k] != saved.get(k, getattr(TrainConfig, k))]
    if changed:
        raise XTaskError(f"cannot change {', '.join(changed)} when resuming; start a new run "
                         "with --init_checkpoint instead")
    values = dict(saved)
    values.setdefault("loss_reduction", "masked")  # saved before the option: masked means
    values.update(given)
    values.update(resume=True, out=str(out))
    return TrainConfig.from_dict(values)


def train_config_from_options(given: Mapping[str, Any], *, b1: float | None = None,
                              b2: float | None = None) -> TrainConfig:
    """TrainConfig from the options given (TrainConfig field → value; absent = not given).

    ``b1`` / ``b2``: the original's separate Adam beta flags (the other one keeps its default);
    they cannot be combined with ``betas``. ``resume=True`` needs ``out`` (the run to continue).
    Without ``out`` a new run goes to ``runs/<dataset>-<timestamp>``.
    """
    given = {k: v for k, v in given.items() if v is not None}
    if "betas" in given:
        given["betas"] = tuple(given["betas"])
    if b1 is not None or b2 is not None:
        if "betas" in given:
            raise XTaskError("give either --betas or --b1/--b2, not both")
        base_betas = TrainConfig().betas
        given["betas"] = (b1 if b1 is not None else base_betas[0], b2 if b2 is not None else base_betas[1])
    if given.get("use_pretrain") == "":
        raise XTaskError("--use_pretrain needs a local ResNet weights file (nothing is downloaded), "
                         "e.g. --use_pretrain resnet34.pth")
    if given.pop("resume", False):
        if not given.get("out"):
            raise XTaskError("--resume needs --out RUN_DIR (the run to continue)")
        return _resumed(given, given["out"])
    dataset = given.pop("dataset", None) or "synthetic"
    if given.get("init_checkpoint"):
        loaded = load_checkpoint(given["init_checkpoint"], device="cpu")
        for name in _FIXED:
            given.setdefault(name, getattr(loaded.config, name))
    if not given.get("out"):
        given["out"] = str(Path("runs") / f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return TrainConfig.for_dataset(dataset, **given)
