"""The run folder: its file names (one place), its status vocabulary and its progress file.

A run folder (``runs/NAME``) holds::

    config.json            train config (+ model config, device, chosen precision path)
    metrics.csv            one row per epoch (kind=epoch) and, with log_every, per N steps
    summary.json           optional final numbers
    events.out.tfevents*   TensorBoard scalars (the same numbers as metrics.csv)
    progress.json          {step, total_steps, epoch, epochs, status, message, pid, pid_start, ...}
    best.safetensors       weights with the lowest validation loss so far (+ meta)
    last.safetensors       weights after the latest finished epoch / the last step
    last.state.pt          optimiser / scheduler / balancer / scaler state for --resume
    cancel                 created by someone else: the trainer stops at its next step
    job.json               written by the job launcher: {pid, pid_start, started, argv, owner, runs_root}
    train.log              a job's stdout + stderr

Every reader and writer (trainer, RunLogger, readers, jobs, the importer) takes the names from
:class:`RunDir`.
"""
from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_write_text
from xtask_core.io.paths import BEST_CHECKPOINT
from xtask_core.train.process import process_start_time

# One status vocabulary for runs (progress.json) and jobs (JobStatus.state).
STATUSES = ("starting", "running", "done", "failed", "cancelled")
TERMINAL = ("done", "failed", "cancelled")


class RunDir:
    """A run folder's paths. ``RunDir(path).metrics`` is ``path/metrics.csv``, and so on; the
    class attributes are the bare file names (for globbing and for folders not yet known)."""

    CONFIG = "config.json"
    METRICS = "metrics.csv"
    SUMMARY = "summary.json"
    PROGRESS = "progress.json"
    JOB = "job.json"
    LOG = "train.log"
    BEST = BEST_CHECKPOINT
    LAST = "last.safetensors"
    STATE = "last.state.pt"
    CANCEL = "cancel"
    TB_PREFIX = "events.out.tfevents"
    CHECKPOINTS = (BEST, LAST, STATE)
    # every file the trainer writes atomically (RunLogger: config / summary / metrics)
    TRAINER_FILES = frozenset(CHECKPOINTS + (PROGRESS, CONFIG, SUMMARY, METRICS))

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    config = property(lambda self: self.path / self.CONFIG)
    metrics = property(lambda self: self.path / self.METRICS)
    summary = property(lambda self: self.path / self.SUMMARY)
    progress = property(lambda self: self.path / self.PROGRESS)
    job = property(lambda self: self.path / self.JOB)
    log = property(lambda self: self.path / self.LOG)
    best = property(lambda self: self.path / self.BEST)
    last = property(lambda self: self.path / self.LAST)
    state = property(lambda self: self.path / self.STATE)
    cancel = property(lambda self: self.path / self.CANCEL)

    def checkpoints(self) -> list[str]:
        """Names of the checkpoint files present (empty list if none)."""
        return [n for n in self.CHECKPOINTS if (self.path / n).exists()]

    def event_files(self) -> list[Path]:
        """TensorBoard event files directly inside the folder, sorted (empty if unreadable)."""
        try:
            return sorted(p for p in self.path.iterdir()
                          if p.name.startswith(self.TB_PREFIX) and p.is_file())
        except OSError:
            return []


def has_checkpoints(run_dir: str | os.PathLike) -> list[str]:
    """Names of checkpoint files already present in ``run_dir`` (empty list if none)."""
    return RunDir(run_dir).checkpoints()


class ProgressFile:
    """``RUN/progress.json``, rewritten atomically so a poller never reads half a file.

    Fields: ``step``, ``total_steps``, ``epoch``, ``epochs``, ``status`` (one of
    :data:`STATUSES`), ``message``, ``updated`` (unix seconds), ``eta_s`` (seconds left, when
    known), the writer's identity ``pid`` + ``pid_start`` (its start time in clock ticks since
    boot, see :mod:`~xtask_core.train.process`) + ``host``, plus whatever the trainer adds
    (latest losses). Writes are throttled to one per ``min_interval`` seconds except status
    changes and ``force=True``.
    """

    STATUSES = STATUSES

    def __init__(self, path: str | os.PathLike, enabled: bool = True, min_interval: float = 0.5):
        self.path = Path(path)
        self.enabled = enabled
        self.min_interval = min_interval
        pid = os.getpid()
        self.state: dict[str, Any] = {"step": 0, "total_steps": 0, "epoch": 0, "epochs": 0,
                                      "status": "starting", "message": "", "pid": pid,
                                      "pid_start": process_start_time(pid),
                                      "host": socket.gethostname()}
        self._last = 0.0

    def update(self, force: bool = False, **fields) -> None:
        if "status" in fields and fields["status"] not in STATUSES:
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
    path = RunDir(run_dir).progress
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as err:  # atomic writes make this unexpected; say which file
        raise XTaskError(f"{path} is not valid JSON: {err}") from None


def step_text(step: int, total: int, eta_s: float | None) -> str:
    """``"step k of n, about 12 s left"`` (ETA part only when known); the progress line."""
    text = f"step {int(step)} of {int(total)}" if total else f"step {int(step)}"
    if eta_s is not None and eta_s >= 0 and step < total:
        text += f", about {format_seconds(eta_s)} left"
    return text


def format_seconds(seconds: float) -> str:
    """``"42 s"`` / ``"3 min 5 s"`` / ``"2 h 4 min"`` (rounded to whole seconds)."""
    s = max(0, round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def parse_csv_text(text: str) -> tuple[list[str], list[dict], list[str], bool]:
    """metrics.csv text → (header, rows as dicts of str, error strings, had_partial_line)."""
    partial = bool(text) and not text.endswith("\n")
    if partial:
        cut = text.rfind("\n")
        text = text[:cut + 1] if cut >= 0 else ""
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        return [], [], [], partial
    header = [h.strip() for h in lines[0]]
    errors = []
    if any(not h for h in header) or len(set(header)) != len(header):
        return [], [], ["metrics.csv: malformed header (empty or duplicate column names)"], partial
    rows, bad, first_bad = [], 0, None
    for lineno, rec in enumerate(lines[1:], start=2):
        if not rec:
            continue
        if len(rec) != len(header):
            bad += 1
            first_bad = first_bad or lineno
            continue
        rows.append(dict(zip(header, rec)))
    if bad:
        errors.append(f"metrics.csv: skipped {bad} malformed row(s) (first at line {first_bad})")
    return header, rows, errors, partial
