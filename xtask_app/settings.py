"""Where the app finds things: folders (with their environment overrides), the folders a user
may name paths in, the shipped samples, and the device line."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from xtask_core.data.samples import SampleFiles, find_samples
from xtask_core.io.paths import allowed_roots as _allowed_roots
from xtask_core.io.paths import resolve_inside

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_CHECKPOINT_UPLOAD_MB = 500   # a ResNet-152 checkpoint is ~250 MB; refuse anything bigger


def checkpoint_dir() -> Path:
    """Shipped checkpoints: ``$XTASK_CHECKPOINT_DIR`` or the repo's ``checkpoints/``."""
    return Path(os.environ.get("XTASK_CHECKPOINT_DIR") or REPO_ROOT / "checkpoints")


def runs_dir() -> Path:
    """Training runs (fine-tunes land here): ``$XTASK_RUNS_DIR`` or the repo's ``runs/``."""
    return Path(os.environ.get("XTASK_RUNS_DIR") or REPO_ROOT / "runs")


def samples_dir() -> Path:
    """Sample images in the Cityscapes layout: ``$XTASK_SAMPLES_DIR`` or ``sample_images/``."""
    return Path(os.environ.get("XTASK_SAMPLES_DIR") or REPO_ROOT / "sample_images")


def allowed_roots() -> list[Path]:
    """Folders user-typed paths may lie in (see :func:`xtask_core.io.paths.allowed_roots`)."""
    return _allowed_roots(REPO_ROOT)


def resolve_user_path(text: str, must_exist: bool = True) -> Path:
    """A path typed by the user, resolved inside :func:`allowed_roots` (else a one-line XTaskError)."""
    return resolve_inside(text, allowed_roots(), REPO_ROOT, must_exist=must_exist)


def samples() -> list[SampleFiles]:
    """The samples in :func:`samples_dir` (empty when there are none)."""
    return find_samples(samples_dir())


def device_label() -> str:
    """"GPU (<name>)" or "CPU (no GPU found)", for the sidebar and the Home page."""
    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return "CPU (no GPU found)"
