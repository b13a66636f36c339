"""Background training jobs: start, poll, cancel a trainer subprocess (UI-agnostic).

A job is ``python -m xtask_core train ... --out RUN_DIR`` started in its own session and
process group, so it survives Streamlit reruns, page switches and even a closed browser tab.
All state lives in the run folder, so any process (another rerun, another page, a reload
of the app) can re-attach to a job by its folder:

``RUN_DIR/job.json``       written here: ``{pid, pid_start, started, argv, owner, runs_root}``
``RUN_DIR/train.log``      the trainer's stdout + stderr
``RUN_DIR/progress.json``  written by the trainer: ``{step, total_steps, epoch, status, message}``
``RUN_DIR/metrics.csv``    written by the trainer: one row every ``--log_every`` steps
``RUN_DIR/cancel``         created by :func:`cancel`; the trainer stops cleanly when it sees it

One job at a time per owner key (e.g. one per browser session): :func:`start_job` takes a lock
file ``RUNS_ROOT/.jobs/<hash(owner)>.lock`` with ``O_CREAT | O_EXCL``, so a double click can
start at most one job; the lock is released when a poll sees the job finished, or taken over
when it is stale. No Streamlit here: the pages poll :func:`poll` from an ``st.fragment``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xtask_core.config import TrainConfig
from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_write_text
from xtask_core.train.process import process_alive, process_start_epoch, process_start_time
from xtask_core.train.run_dir import STATUSES, TERMINAL, RunDir, step_text
from xtask_core.train.run_readers import read_metrics_csv

# A job's state is a run status (one vocabulary); a live job process reads "running".
STATES = STATUSES
_TERMINAL = TERMINAL
LOCK_DIR = ".jobs"
# A lock whose run folder has no job.json after this long belongs to a launcher that died
# between taking the lock and writing job.json (seconds).
_LOCK_GRACE_S = 60.0

# Popen objects of the jobs this process started, by resolved run folder. Keeping them lets
# poll()/cancel() reap the child (no zombies) and report its exit code. After a module
# reload the registry is empty and os.waitpid() still reaps our own children.
_PROCS: dict[str, subprocess.Popen] = {}


@dataclass
class JobHandle:
    """A started (or re-attached) job: its run folder and process."""

    run_dir: Path
    pid: int
    argv: list[str]
    owner: str
    started: float          # seconds since the epoch


@dataclass
class JobStatus:
    """A snapshot of a job, derived from ``progress.json`` and whether its process lives.

    ``state`` is one of :data:`STATES`. ``step``/``total`` count optimiser steps (``total``
    0 when unknown yet). ``metrics`` is ``metrics.csv`` as a DataFrame (empty when none yet).
    ``log_tail`` holds the last lines of ``train.log`` (for a failure: where it went wrong).
    """

    run_dir: Path
    state: str
    step: int = 0
    total: int = 0
    epoch: int = 0
    message: str = ""
    log_tail: list[str] = field(default_factory=list)
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    pid: int | None = None
    alive: bool = False
    returncode: int | None = None
    eta_s: float | None = None

    @property
    def text(self) -> str:
        """One progress line for people: ``"running: step 12 of 30, about 20 s left"`` while the
        steps run, else the state and the trainer's message (``"done: finished: ..."``)."""
        if self.state == "running" and self.total > 0 and 0 < self.step < self.total:
            return f"running: {step_text(self.step, self.total, self.eta_s)}"
        return f"{self.state}: {self.message}" if self.message else self.state

    @property
    def finished(self) -> bool:
        return self.state in _TERMINAL

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] (0 while the total is unknown)."""
        return min(1.0, self.step / self.total) if self.total > 0 else 0.0


# ----------------------------------------------------------------------------- run folders

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_run_name(name: str) -> str:
    """A user-typed run name as one safe folder name: ``[A-Za-z0-9._-]``, no leading dots.

    Separators and anything else become ``-``, so ``"../../etc"`` gives ``"etc"`` and the
    folder can only ever be a direct child of the runs root. Empty result → XTaskError.
    """
    cleaned = _NAME_OK.sub("-", str(name)).strip("-.")
    cleaned = re.sub(r"-{2,}", "-", cleaned)[:80]
    if not cleaned:
        raise XTaskError(f"run name {name!r} has no usable characters (use letters, digits, . _ -)")
    return cleaned


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def check_inside(path: str | os.PathLike, runs_root: str | os.PathLike) -> Path:
    """``path`` resolved, or XTaskError when it is not strictly inside ``runs_root``."""
    path, root = Path(path), Path(runs_root)
    if not _inside(path, root) or path.resolve() == root.resolve():
        raise XTaskError(f"run folder {path} is outside the runs folder {root}")
    return path.resolve()


def new_run_dir(runs_root: str | os.PathLike, name: str | None = None,
                prefix: str = "finetune") -> Path:
    """Create and return a new, empty run folder directly under ``runs_root``.

    Without ``name``: ``PREFIX-YYYYmmdd-HHMMSS-xxxx`` (xxxx random hex). With a user-typed
    ``name``: its sanitised form, plus ``-xxxx`` when that folder already exists. The folder is
    created with ``mkdir(exist_ok=False)``, so an existing run is never reused or overwritten,
    even by two callers racing for the same name.
    """
    root = Path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    if name:
        base = sanitize_run_name(name)
    else:
        base = f"{sanitize_run_name(prefix)}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    for attempt in range(20):
        candidate = base if (name and attempt == 0) else f"{base}-{secrets.token_hex(2)}"
        path = check_inside(root / candidate, root)
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise XTaskError(f"could not find a free run folder name under {root}")


# ----------------------------------------------------------------------------- arguments

def train_argv(train_args: Mapping[str, Any] | TrainConfig, run_dir: str | os.PathLike) -> list[str]:
    """The ``train`` sub-command arguments for ``train_args`` (without the interpreter).

    ``train_args`` is a dict of :class:`TrainConfig` field names → values, or a TrainConfig
    (then only the fields that differ from its dataset's defaults are passed). Values are
    validated by building the TrainConfig here, so a bad value fails before any process
    starts. Booleans become bare flags (``--gradnorm``); ``out`` is always ``run_dir``.
    """
    if isinstance(train_args, TrainConfig):
        cfg = train_args
        defaults = TrainConfig.for_dataset(cfg.dataset).to_dict()
        args = {k: v for k, v in cfg.to_dict().items() if v != defaults.get(k)}
    else:
        args = {k: v for k, v in dict(train_args).items() if v is not None}
        cfg = TrainConfig.for_dataset(args.get("dataset", "synthetic"),
                                      **{k: v for k, v in args.items() if k != "dataset"})
    defaults = TrainConfig.for_dataset(cfg.dataset).to_dict()
    args["dataset"] = cfg.dataset
    args.pop("out", None)
    argv = ["train"]
    for key in sorted(args, key=lambda k: (k != "dataset", k)):
        value = args[key]
        if isinstance(value, bool):
            # Bare flag for True; --no-X turns off a switch whose default is on or auto (None,
            # channels_last); a value equal to its default is left out.
            default = defaults.get(key, False)
            if value and default is not True:
                argv.append(f"--{key}")
            elif not value and default is not False:
                argv.append(f"--no-{key}")
            continue
        if isinstance(value, (tuple, list)):
            argv += [f"--{key}", *[str(v) for v in value]]
            continue
        argv += [f"--{key}", str(value)]
    argv += ["--out", str(Path(run_dir))]
    return argv


# ----------------------------------------------------------------------------- processes

def _reap(run_dir: Path, pid: int, wait_s: float = 0.0) -> int | None:
    """Collect the exit status of ``pid`` if it is our finished child; its return code or None.

    ``wait_s`` > 0 waits that long for the kernel to finish the exit: right after a SIGKILL
    the process may already be a zombie (dead to /proc) before waitpid can collect it.
    """
    proc = _PROCS.get(str(run_dir))
    deadline = time.monotonic() + wait_s
    while True:
        if proc is not None and proc.pid == pid:
            code = proc.poll()
        else:
            try:
                done_pid, status = os.waitpid(pid, os.WNOHANG)
            except (ChildProcessError, OSError):  # not our child (another process started it)
                return None
            code = os.waitstatus_to_exitcode(status) if done_pid else None
        if code is not None or time.monotonic() >= deadline:
            return code
        time.sleep(0.02)


# Slack (s) when comparing a process's start time with the trainer's last progress write: the
# boot time in /proc/stat has whole-second resolution.
_START_SLACK_S = 2.0


def progress_process_alive(progress: Mapping[str, Any] | None) -> bool | None:
    """Whether the trainer that wrote a ``progress.json`` (given as a dict) is still running.

    A process is identified by its pid *and* its start time, never by its command line (in a
    virtual environment under a folder named ``xtask`` every Python process mentions xtask).
    The trainer records ``pid`` and ``pid_start`` (clock ticks since boot) when it starts:
    True when that pid lives with that start time; False when it is gone, a zombie, or the pid
    now belongs to a process with another start time (a recycled pid). Progress files written
    before ``pid_start`` was recorded are judged by ``updated`` (unix seconds of the last
    write): the live process must have started no later than that write (one pid belongs to one
    live process at a time, so a process that already existed then *is* the writer).
    None when it cannot be told: no pid, nothing to compare the start time with, or ``host``
    recorded and it is another machine (a run folder on a shared disk).
    """
    if not progress:
        return None
    pid = progress.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    host = progress.get("host")
    if isinstance(host, str) and host and host != socket.gethostname():
        return None
    if not process_alive(pid):
        return False
    if not Path("/proc").is_dir():
        return True                                   # no /proc (macOS): existence only
    if progress.get("pid_start") is not None:
        return process_start_time(pid) == str(progress["pid_start"])
    updated, started = progress.get("updated"), process_start_epoch(pid)
    if isinstance(updated, (int, float)) and started is not None:
        return started <= float(updated) + _START_SLACK_S
    return None


def _read_json(path: Path) -> dict | None:
    """JSON object in ``path`` or None when missing / half-written / not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_job(run_dir: str | os.PathLike) -> JobHandle | None:
    """The job recorded in ``RUN_DIR/job.json`` or None when there is none."""
    run_dir = Path(run_dir)
    data = _read_json(RunDir(run_dir).job)
    if data is None or not isinstance(data.get("pid"), int):
        return None
    return JobHandle(run_dir=run_dir, pid=data["pid"], argv=list(data.get("argv", [])),
                     owner=str(data.get("owner", "")), started=float(data.get("started", 0.0)))


def log_tail(run_dir: str | os.PathLike, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of ``RUN_DIR/train.log`` (empty when there is no log)."""
    path = RunDir(run_dir).log
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))   # the tail only: logs can grow large
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def read_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    """``RUN_DIR/metrics.csv`` as a DataFrame (epoch/step as columns); empty when missing or not
    parseable yet. The trainer appends rows while we read: ``runlog.read_metrics_csv`` drops a
    torn last line instead of reading it as a row of cut-off numbers."""
    path = RunDir(run_dir).metrics
    if not path.is_file():
        return pd.DataFrame()
    return read_metrics_csv(path, index=False)[0]


# ----------------------------------------------------------------------------- locks

def _lock_path(owner: str, runs_root: Path) -> Path:
    digest = hashlib.sha1(str(owner).encode("utf-8")).hexdigest()[:16]
    return runs_root / LOCK_DIR / f"{digest}.lock"


def _lock_is_stale(lock: Path) -> bool:
    """A lock is stale when its job has finished, or its launcher died before job.json."""
    data = _read_json(lock)
    if data is None:                         # being written right now, or garbage
        try:
            return time.time() - lock.stat().st_mtime > _LOCK_GRACE_S
        except OSError:
            return True
    run_dir = Path(str(data.get("run_dir", "")))
    if read_job(run_dir) is None:
        return time.time() - float(data.get("created", 0.0)) > _LOCK_GRACE_S
    return poll(run_dir, release_lock=False).finished


def _acquire_lock(owner: str, runs_root: Path, run_dir: Path) -> Path:
    lock = _lock_path(owner, runs_root)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _lock_is_stale(lock):
                data = _read_json(lock) or {}
                raise XTaskError(f"a training job is already running ({data.get('run_dir', '?')}); "
                                 "wait for it or cancel it first") from None
            # Take the stale lock over by renaming it away: only one racer's rename succeeds.
            try:
                os.replace(lock, lock.with_name(f"{lock.name}.stale-{secrets.token_hex(4)}"))
            except FileNotFoundError:
                pass
            for stale in lock.parent.glob(f"{lock.name}.stale-*"):
                stale.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"run_dir": str(run_dir), "owner": str(owner), "created": time.time()}, fh)
        return lock
    raise XTaskError("a training job is already starting; try again in a moment")


def _release_lock(owner: str, runs_root: Path, run_dir: Path) -> None:
    """Remove the owner's lock if (and only if) it belongs to ``run_dir``."""
    lock = _lock_path(owner, runs_root)
    data = _read_json(lock)
    if data is not None and Path(str(data.get("run_dir", ""))).resolve() == run_dir.resolve():
        lock.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- public API

def start_job(train_args: Mapping[str, Any] | TrainConfig, run_dir: str | os.PathLike, *,
              python: str = sys.executable, owner: str = "default",
              runs_root: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
              cwd: str | os.PathLike | None = None, argv: list[str] | None = None) -> JobHandle:
    """Launch the trainer on ``train_args`` writing into ``run_dir``; return at once.

    ``run_dir`` must be inside ``runs_root`` (default: its parent) and new: missing or empty
    (e.g. from :func:`new_run_dir`). One running job per ``owner``: a second start while the
    first runs raises XTaskError. ``env`` adds environment variables for the child (e.g.
    ``OMP_NUM_THREADS``). The child runs ``python -m xtask_core train ... --out RUN_DIR`` in a
    new session (own process group), stdin closed, stdout+stderr → ``RUN_DIR/train.log``.
    """
    run_dir = Path(run_dir)
    root = Path(runs_root) if runs_root is not None else run_dir.parent
    run_dir = check_inside(run_dir, root)
    root = root.resolve()
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise XTaskError(f"run folder {run_dir} already exists and is not empty; "
                         "pick a new run name (runs are never overwritten)")
    # argv: another job's command line after the interpreter (e.g. the per-image records job)
    argv = [str(python), *(argv if argv is not None else ["-m", "xtask_core", *train_argv(train_args, run_dir)])]
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _acquire_lock(owner, root, run_dir)
    try:
        child_env = dict(os.environ)
        child_env["PYTHONUNBUFFERED"] = "1"        # log lines reach train.log as they happen
        child_env["XTASK_NO_TQDM"] = "1"           # a log file wants lines, not progress bars
        child_env.update({k: str(v) for k, v in (env or {}).items()})
        with open(RunDir(run_dir).log, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=child_env, cwd=cwd, close_fds=True)
        _PROCS[str(run_dir)] = proc
        started = time.time()
        atomic_write_text(RunDir(run_dir).job, json.dumps({
            "pid": proc.pid, "pid_start": process_start_time(proc.pid), "started": started,
            "argv": argv, "owner": str(owner), "runs_root": str(root)}, indent=2))
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    return JobHandle(run_dir=run_dir, pid=proc.pid, argv=argv, owner=str(owner), started=started)


def _eta(progress: Mapping[str, Any]) -> float | None:
    """Seconds left by the trainer's estimate, less the time since it wrote it (None: unknown)."""
    eta, updated = progress.get("eta_s"), progress.get("updated")
    if not isinstance(eta, (int, float)):
        return None
    if isinstance(updated, (int, float)):
        eta -= max(0.0, time.time() - float(updated))
    return max(0.0, float(eta))


def poll(run_dir: str | os.PathLike, *, log_lines: int = 20, release_lock: bool = True) -> JobStatus:
    """The state of the job in ``run_dir`` (see :class:`JobStatus`); never blocks.

    Rules: a terminal ``progress.json`` status (done / failed / cancelled) is final once the
    process is gone; a live process is ``running``; a dead process whose progress still says
    running (crash, SIGKILL, out of memory) is ``failed`` with the tail of ``train.log`` as the
    message, or ``cancelled`` when the cancel file exists. A run without ``job.json`` (started
    by ``xtask train`` in a terminal) is judged by the pid in its ``progress.json``
    (:func:`progress_process_alive`): gone → ``failed`` with a message starting
    "stopped (process no longer running)". Polling reaps a finished child and releases the
    owner's lock.
    """
    run_dir = Path(run_dir).resolve()
    job = _read_json(RunDir(run_dir).job)
    progress = _read_json(RunDir(run_dir).progress)
    if job is None and progress is None:
        raise XTaskError(f"no training job in {run_dir}")
    pid = job.get("pid") if job else None
    returncode = _reap(run_dir, pid) if isinstance(pid, int) else None
    alive = isinstance(pid, int) and process_alive(pid, job.get("pid_start"))
    if isinstance(pid, int) and not alive and returncode is None:
        returncode = _reap(run_dir, pid, wait_s=1.0)   # a zombie: collect it now
    progress = progress or {}
    p_status = str(progress.get("status", "running"))
    tail = log_tail(run_dir, log_lines)
    status = JobStatus(run_dir=run_dir, state="running", step=int(progress.get("step", 0) or 0),
                       total=int(progress.get("total_steps", 0) or 0),
                       epoch=int(progress.get("epoch", 0) or 0),
                       message=str(progress.get("message", "")), log_tail=tail,
                       metrics=read_metrics(run_dir), pid=pid, alive=alive, returncode=returncode,
                       eta_s=_eta(progress))
    if alive:
        status.state = "running"
        if not progress:
            status.message = "starting…"
    elif p_status in _TERMINAL:
        status.state = p_status
    elif (RunDir(run_dir).cancel).exists() or (job or {}).get("cancel_requested"):
        status.state, status.message = "cancelled", status.message or "cancelled by the user"
    elif job is None:
        # A run started elsewhere (e.g. `xtask train` in a terminal) without job.json: its
        # progress file says running, so check the pid it recorded. A SIGKILL / out-of-memory
        # kill leaves "running" behind forever; a live writer (or one we cannot check) is
        # trusted.
        writer_alive = progress_process_alive(progress)
        status.pid = progress.get("pid") if isinstance(progress.get("pid"), int) else None
        status.alive = bool(writer_alive)
        if writer_alive is False:
            status.state = "failed"
            last = tail[-1] if tail else "no output in train.log"
            status.message = f"stopped (process no longer running) at step {status.step}: {last}"
        else:
            status.state = "running"
    else:
        status.state = "failed"
        code = f" (exit code {returncode})" if returncode is not None else ""
        last = tail[-1] if tail else "no output in train.log"
        status.message = f"the trainer stopped unexpectedly{code}: {last}"
    if status.state == "failed" and not status.message:
        status.message = tail[-1] if tail else "training failed"
    if status.finished and release_lock and job:
        _release_lock(str(job.get("owner", "")), Path(str(job.get("runs_root", run_dir.parent))), run_dir)
        _PROCS.pop(str(run_dir), None)
    return status


def cancel(run_dir: str | os.PathLike, *, grace_s: float = 15.0, term_s: float = 5.0) -> JobStatus:
    """Stop the job in ``run_dir`` and wait until its process is gone; its final status.

    First the polite way: create ``RUN_DIR/cancel`` and give the trainer ``grace_s`` seconds
    to stop at its next step (it then writes ``status: cancelled``). Then SIGINT to the whole
    process group (the trainer turns KeyboardInterrupt into ``cancelled``), then SIGTERM, then
    SIGKILL, a few seconds apart. The child is reaped (no zombie). Signals are only sent while
    the pid still is the process we started (pid reuse is checked). The request is recorded in
    ``job.json`` (``cancel_requested``), so even a job that had to be killed reads ``cancelled``.
    """
    run_dir = Path(run_dir).resolve()
    job = _read_json(RunDir(run_dir).job)
    if job is None:
        raise XTaskError(f"no job started from the app in {run_dir}")
    pid, start = int(job["pid"]), job.get("pid_start")
    if not job.get("cancel_requested"):
        job["cancel_requested"] = time.time()
        atomic_write_text(RunDir(run_dir).job, json.dumps(job, indent=2))
    cancel_file = RunDir(run_dir).cancel

    def wait_gone(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            _reap(run_dir, pid)
            if not process_alive(pid, start):
                return True
            if not cancel_file.exists():
                # The trainer deletes a cancel file it finds while starting up (a leftover of an
                # earlier job); ours was meant for this job, so put it back until it has stopped.
                p_status = (_read_json(RunDir(run_dir).progress) or {}).get("status")
                if p_status not in _TERMINAL:
                    cancel_file.touch()
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    cancel_file.touch()
    for sig, wait_s in ((None, grace_s), (signal.SIGINT, term_s), (signal.SIGTERM, term_s),
                        (signal.SIGKILL, 5.0)):
        if sig is not None and process_alive(pid, start):
            try:
                os.killpg(pid, sig)          # pgid == pid: the child leads its own session
            except (ProcessLookupError, PermissionError):
                pass
        if wait_gone(wait_s):
            break
    proc = _PROCS.get(str(run_dir))
    if proc is not None:
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
    cancel_file.unlink(missing_ok=True)      # a finished run folder keeps no stray cancel flag
    return poll(run_dir)


def find_active_job(owner: str, runs_root: str | os.PathLike) -> JobHandle | None:
    """The running job of ``owner`` under ``runs_root`` (to re-attach after a reload) or None."""
    root = Path(runs_root)
    data = _read_json(_lock_path(owner, root))
    if data is not None:
        run_dir = Path(str(data.get("run_dir", "")))
        if _inside(run_dir, root):
            job = read_job(run_dir)
            if job is not None and not poll(run_dir).finished:
                return job
    # Lock missing (e.g. removed by hand): fall back to scanning run folders for this owner.
    if root.is_dir():
        for job_file in sorted(root.glob(f"*/{RunDir.JOB}"), reverse=True):
            job = read_job(job_file.parent)
            if job is not None and job.owner == str(owner) and not poll(job.run_dir).finished:
                return job
    return None
