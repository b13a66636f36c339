"""Where user-named files may come from, and which checkpoint files a folder offers.

The app (and any other front end) reads paths a user typed only through :func:`resolve_inside`,
against the folders :func:`allowed_roots` lists. Those folders come from the server's
environment only, so a web user can never widen them. :func:`find_checkpoints` lists the
checkpoint files a picker offers; nothing here opens a checkpoint.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from xtask_core.errors import XTaskError

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")
# The best weights of a run folder, and of a shipped checkpoint folder (same layout);
# train.run_dir.RunDir.BEST is this name.
BEST_CHECKPOINT = "best.safetensors"


def allowed_roots(repo_root: str | os.PathLike, env: Mapping[str, str] | None = None) -> list[Path]:
    """Folders the app may read user-named paths from, resolved and de-duplicated.

    The repo's ``checkpoints/``, ``runs/``, ``sample_images/`` and ``data/``, the override
    folders ``XTASK_CHECKPOINT_DIR``, ``XTASK_RUNS_DIR``, ``XTASK_SAMPLES_DIR`` (set by whoever
    starts the server, so trusted), and every entry of ``XTASK_ALLOWED_ROOTS``
    (``os.pathsep``-separated). A web user can never widen this list: it comes from the server's
    environment only.
    """
    env = os.environ if env is None else env
    repo = Path(repo_root)
    roots = [repo / "checkpoints", repo / "runs", repo / "sample_images", repo / "data"]
    for name in ("XTASK_CHECKPOINT_DIR", "XTASK_RUNS_DIR", "XTASK_SAMPLES_DIR"):
        if env.get(name):
            roots.append(Path(env[name]))
    for item in env.get("XTASK_ALLOWED_ROOTS", "").split(os.pathsep):
        if item.strip():
            roots.append(Path(item.strip()).expanduser())
    out: list[Path] = []
    for r in roots:
        r = r.resolve()
        if r not in out:
            out.append(r)
    return out


def resolve_inside(path: str | os.PathLike, roots: Sequence[Path], base: str | os.PathLike,
                   must_exist: bool = True) -> Path:
    """Resolve a user-typed ``path`` (relative to ``base``) and refuse it unless it lies inside a root.

    Symlinks and ``..`` are resolved first, so neither can escape a root. Raises XTaskError with
    one line naming the allowed folders when the path escapes them or (``must_exist``) is missing.
    """
    text = str(path).strip()
    if not text:
        raise XTaskError("type a path first")
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = Path(base) / p
    p = p.resolve()
    if not any(p == r or p.is_relative_to(r) for r in roots):
        names = ", ".join(str(r) for r in roots)
        raise XTaskError(f"{text} is outside the allowed folders ({names}); "
                         "add its folder to XTASK_ALLOWED_ROOTS to use it")
    if must_exist and not p.exists():
        raise XTaskError(f"{text} does not exist")
    return p


@dataclass(frozen=True)
class CheckpointChoice:
    """One checkpoint a picker offers: ``label`` shown to the user, ``path`` to load."""

    label: str
    path: Path
    kind: str  # "shipped" | "run" | "uploaded" | "path"


def find_checkpoints(checkpoint_dir: str | os.PathLike | None,
                     runs_dir: str | os.PathLike | None) -> list[CheckpointChoice]:
    """Shipped checkpoints (``checkpoint_dir/*.safetensors|.pth|.pt``, plus ``checkpoint_dir/*/best.safetensors``
    run folders) and runs (``runs_dir/*/best.safetensors``), in label order within each folder;
    missing folders give none. Hidden files (a ``.name`` temp file of an interrupted write) are skipped."""
    out: list[CheckpointChoice] = []
    if checkpoint_dir and Path(checkpoint_dir).is_dir():
        d = Path(checkpoint_dir)
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES and not p.name.startswith("."):
                out.append(CheckpointChoice(f"shipped: {p.stem}", p, "shipped"))
            elif p.is_dir() and (p / BEST_CHECKPOINT).is_file():
                out.append(CheckpointChoice(f"shipped: {p.name}", p / BEST_CHECKPOINT, "shipped"))
    if runs_dir and Path(runs_dir).is_dir():
        for p in sorted(Path(runs_dir).iterdir()):
            if p.is_dir() and (p / BEST_CHECKPOINT).is_file():
                out.append(CheckpointChoice(f"run: {p.name}", p / BEST_CHECKPOINT, "run"))
    return out
