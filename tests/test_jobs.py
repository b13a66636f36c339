"""Background jobs with a REAL tiny training subprocess (64×128 synthetic data, ResNet18/8/4).

Each real job costs a Python + torch start-up (a few seconds on 2 cores), so the scenarios
are grouped: one job runs to completion, one is refused-then-cancelled, one is SIGKILLed.
The error paths that need no trainer at all use a stand-in "interpreter" shell script.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from xtask_core.errors import XTaskError
from xtask_core.train import jobs

TIMEOUT_S = 240  # generous: the 2 cores are shared with the whole team


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from xtask_core.data.synthetic import write_dataset
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, n_train=4, n_val=2, seed=0, height=64, width=128, workers=0)
    return out


def tiny_args(data: Path, steps: int) -> dict:
    return dict(dataset="synthetic", input_path=str(data), height=64, width=128, enc_layers=18,
                mid_features=8, ttnet_features=4, batch_size=2, max_steps=steps, log_every=1,
                limit_train=4, limit_val=2, cpu=True, precision="fp32", channels_last=False, workers=0,
                epochs=1000)


CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # be gentle to teammates


def wait_for(run_dir: Path, predicate, timeout: float = TIMEOUT_S) -> jobs.JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = jobs.poll(run_dir)
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; last status {status.state} {status.message} {status.log_tail[-5:]}")
        time.sleep(0.25)


def gone(pid: int) -> bool:
    """True when ``pid`` does not exist at all (a zombie still has a /proc entry)."""
    return not Path(f"/proc/{pid}").exists()


def test_job_runs_to_completion(tmp_path, tiny_data):
    runs = tmp_path / "runs"
    run_dir = jobs.new_run_dir(runs)
    assert run_dir.parent == runs and run_dir.name.startswith("finetune-")
    handle = jobs.start_job(tiny_args(tiny_data, 3), run_dir, owner="alice", runs_root=runs, env=CHILD_ENV)
    job = json.loads((run_dir / "job.json").read_text())
    assert job["pid"] == handle.pid and job["owner"] == "alice"
    assert job["argv"][1:4] == ["-m", "xtask_core", "train"] and "--out" in job["argv"]
    assert jobs.find_active_job("alice", runs).run_dir == run_dir.resolve()

    status = wait_for(run_dir, lambda s: s.finished)
    assert status.state == "done", (status.message, status.log_tail)
    assert status.step == 3 and status.total == 3 and status.fraction == 1.0
    assert (run_dir / "best.safetensors").is_file()
    assert len(status.metrics) >= 3                       # --log_every 1: a row per step
    assert gone(handle.pid)                               # reaped by poll: no zombie left
    assert jobs.find_active_job("alice", runs) is None    # lock released once finished
    # A finished run is never reused: a new start into it is refused.
    with pytest.raises(XTaskError, match="not empty"):
        jobs.start_job(tiny_args(tiny_data, 1), run_dir, owner="alice", runs_root=runs)


def test_double_start_refused_then_cancel(tmp_path, tiny_data):
    runs = tmp_path / "runs"
    first, second = jobs.new_run_dir(runs), jobs.new_run_dir(runs)
    assert first != second
    handle = jobs.start_job(tiny_args(tiny_data, 100_000), first, owner="bob", runs_root=runs,
                            env=CHILD_ENV)
    with pytest.raises(XTaskError, match="already running"):
        jobs.start_job(tiny_args(tiny_data, 2), second, owner="bob", runs_root=runs)
    assert not (second / "job.json").exists()
    # Another owner is not blocked by bob's job (we do not start it: one real job is enough).
    assert jobs.find_active_job("carol", runs) is None
    assert jobs.find_active_job("bob", runs).pid == handle.pid

    wait_for(first, lambda s: s.step >= 1 or s.finished)  # really training, not just importing
    status = jobs.cancel(first, grace_s=30)
    assert status.state == "cancelled", (status.message, status.log_tail)
    assert gone(handle.pid)
    assert not (first / "best.safetensors.tmp").exists()
    assert jobs.find_active_job("bob", runs) is None
    # The lock is free again: bob may start a new job (refused only because the folder is taken).
    with pytest.raises(XTaskError, match="not empty"):
        jobs.start_job(tiny_args(tiny_data, 2), first, owner="bob", runs_root=runs)


def test_killed_job_is_failed_with_log_tail(tmp_path, tiny_data):
    runs = tmp_path / "runs"
    run_dir = jobs.new_run_dir(runs, name="kill me")
    assert run_dir.name == "kill-me"
    handle = jobs.start_job(tiny_args(tiny_data, 100_000), run_dir, owner="dan", runs_root=runs,
                            env=CHILD_ENV)
    wait_for(run_dir, lambda s: s.step >= 1 or s.finished)
    os.killpg(handle.pid, signal.SIGKILL)
    status = wait_for(run_dir, lambda s: s.finished, timeout=30)
    assert status.state == "failed"
    assert "stopped unexpectedly" in status.message and "-9" in status.message, (status.message, status.log_tail)
    assert status.log_tail                                # the user sees what it printed last
    assert gone(handle.pid)
    assert jobs.find_active_job("dan", runs) is None


# ----------------------------------------------------------------------------- no trainer needed

def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the interpreter: it ignores ``-m xtask_core train``."""
    script = tmp_path / "fakepy"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_crash_before_progress_is_failed(tmp_path):
    runs = tmp_path / "runs"
    run_dir = jobs.new_run_dir(runs)
    py = fake_python(tmp_path, 'echo "Traceback (most recent call last):"; echo "RuntimeError: boom"; exit 3')
    jobs.start_job({"dataset": "synthetic"}, run_dir, python=py, owner="e", runs_root=runs)
    status = wait_for(run_dir, lambda s: s.finished, timeout=30)
    assert status.state == "failed"
    assert status.message == "the trainer stopped unexpectedly (exit code 3): RuntimeError: boom"
    assert status.log_tail[-2:] == ["Traceback (most recent call last):", "RuntimeError: boom"]


def test_trainer_reported_failure_keeps_its_message(tmp_path):
    """A NaN loss makes the trainer write status failed + its message; poll passes it on."""
    runs = tmp_path / "runs"
    run_dir = jobs.new_run_dir(runs)
    progress = json.dumps({"step": 4, "total_steps": 30, "epoch": 0, "status": "failed",
                           "message": "loss became NaN at step 4; no checkpoint was saved"})
    py = fake_python(tmp_path, f"echo '{progress}' > '{run_dir}/progress.json'; exit 1")
    jobs.start_job({"dataset": "synthetic"}, run_dir, python=py, owner="f", runs_root=runs)
    status = wait_for(run_dir, lambda s: s.finished, timeout=30)
    assert (status.state, status.step, status.total) == ("failed", 4, 30)
    assert status.message == "loss became NaN at step 4; no checkpoint was saved"


def test_stale_lock_is_taken_over(tmp_path):
    runs = tmp_path / "runs"
    py = fake_python(tmp_path, "exit 0")
    a = jobs.new_run_dir(runs)
    jobs.start_job({"dataset": "synthetic"}, a, python=py, owner="g", runs_root=runs)
    time.sleep(0.5)   # finished, but nobody polled it: the lock is still on disk
    assert any((runs / ".jobs").glob("*.lock"))
    b = jobs.new_run_dir(runs)
    jobs.start_job({"dataset": "synthetic"}, b, python=py, owner="g", runs_root=runs)
    assert jobs.poll(a).state == "failed"   # exited without writing progress: not "done"
    wait_for(b, lambda s: s.finished, timeout=30)
    assert not any((runs / ".jobs").glob("*.lock"))


def test_run_names_and_path_escape(tmp_path):
    runs = tmp_path / "runs"
    assert jobs.sanitize_run_name("../../etc/passwd") == "etc-passwd"
    assert jobs.sanitize_run_name("my run #1") == "my-run-1"
    assert jobs.sanitize_run_name(".hidden") == "hidden"
    with pytest.raises(XTaskError):
        jobs.sanitize_run_name("../..")
    escaped = jobs.new_run_dir(runs, name="../outside")
    assert escaped.parent == runs.resolve() and escaped.name == "outside"
    again = jobs.new_run_dir(runs, name="../outside")       # same name: a new folder, not reuse
    assert again != escaped and again.name.startswith("outside-")
    with pytest.raises(XTaskError, match="outside the runs folder"):
        jobs.start_job({"dataset": "synthetic"}, tmp_path / "elsewhere", owner="h", runs_root=runs)
    with pytest.raises(XTaskError, match="outside the runs folder"):
        jobs.start_job({"dataset": "synthetic"}, runs / ".." / "x", owner="h", runs_root=runs)
    with pytest.raises(XTaskError, match="outside the runs folder"):
        jobs.start_job({"dataset": "synthetic"}, runs, owner="h", runs_root=runs)
    with pytest.raises(XTaskError, match="lambda_1"):      # validated before any process starts
        jobs.start_job({"dataset": "synthetic", "lambda_1": 2.0}, runs / "y", owner="h", runs_root=runs)
    assert not (runs / "y").exists()
    with pytest.raises(XTaskError, match="no training job"):
        jobs.poll(escaped)


def test_train_argv_flags(tmp_path):
    from xtask_core.config import TrainConfig
    argv = jobs.train_argv({"dataset": "synthetic", "lambda_1": 0.2, "gradnorm": True,
                            "uncertainty_weights": False, "max_steps": 30}, tmp_path / "r")
    assert argv == ["train", "--dataset", "synthetic", "--gradnorm", "--lambda_1", "0.2",
                    "--max_steps", "30", "--out", str(tmp_path / "r")]
    cfg = TrainConfig.for_dataset("synthetic", lr=0.001, tseg_loss="kl")
    assert jobs.train_argv(cfg, "R") == ["train", "--dataset", "synthetic", "--lr", "0.001",
                                         "--tseg_loss", "kl", "--out", "R"]
    off = jobs.train_argv({"dataset": "synthetic", "channels_last": False, "cpu": False}, "R")
    assert off == ["train", "--dataset", "synthetic", "--no-channels_last", "--out", "R"]
    on = jobs.train_argv({"dataset": "synthetic", "channels_last": True}, "R")  # default is auto (None)
    assert on == ["train", "--dataset", "synthetic", "--channels_last", "--out", "R"]
    from xtask_core.cli import build_parser

    for argv, want in ((on, True), (off, False), (["train", "--dataset", "synthetic", "--out", "R"], None)):
        assert build_parser().parse_args(argv).channels_last is want


# ----------------------------------------------------------------------------- runs without job.json

def _poll_or_none(run_dir: Path):
    try:
        return jobs.poll(run_dir)
    except XTaskError:          # no progress.json yet
        return None


def test_cli_run_killed_with_sigkill_is_stopped_not_running(tmp_path, tiny_data):
    """`xtask train` started in a terminal (no job.json), then SIGKILLed: its progress.json keeps
    saying "running" (pid inside), and poll must see that the process is gone."""
    import subprocess
    import sys

    run_dir = tmp_path / "cli-run"
    run_dir.mkdir()
    argv = [sys.executable, "-m", "xtask_core", *jobs.train_argv(tiny_args(tiny_data, 100_000), run_dir)]
    with open(run_dir / "train.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **CHILD_ENV})
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            status = _poll_or_none(run_dir)
            if status is not None and (status.step >= 1 or status.finished):
                break
            assert proc.poll() is None, (run_dir / "train.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "trainer did not start"
            time.sleep(0.25)
        assert not (run_dir / "job.json").exists()
        assert status.state == "running" and status.alive and status.pid == proc.pid
    finally:
        proc.kill()               # SIGKILL: no chance to write a final status
        proc.wait(timeout=30)
    progress = json.loads((run_dir / "progress.json").read_text())
    assert progress["status"] == "running" and progress["pid"] == proc.pid   # the stale record
    status = jobs.poll(run_dir)
    assert status.state == "failed" and status.finished and not status.alive
    assert status.message.startswith("stopped (process no longer running) at step "), status.message


def test_progress_pid_checks_liveness_and_identity(tmp_path):
    """A process is identified by pid + start time, never by its command line: in a venv under
    a folder named "xtask" every Python process mentions xtask, and a recycled pid (same number,
    another start time) must not pass for the trainer."""
    import subprocess
    import sys

    from xtask_core.train.process import process_start_time

    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    marked = subprocess.Popen(sleeper + ["xtask_core-test-marker"])    # cmdline mentions xtask
    plain = subprocess.Popen(sleeper)
    try:
        time.sleep(0.2)
        now = time.time()
        alive = jobs.progress_process_alive
        start = process_start_time(marked.pid)
        assert start is not None
        # exact start time recorded (what the trainer writes): compared exactly
        assert alive({"pid": marked.pid, "pid_start": start, "status": "running"}) is True
        # the same pid with another start time is a recycled pid: not our trainer
        assert alive({"pid": marked.pid, "pid_start": str(int(start) + 1)}) is False
        assert alive({"pid": marked.pid, "pid_start": "1"}) is False
        # a command line mentioning xtask proves nothing: without a start time or a last write
        # to compare with, the answer is "cannot tell", for the marked process as for any other
        assert alive({"pid": marked.pid}) is None
        assert alive({"pid": plain.pid}) is None
        # older progress files (no pid_start): the process must predate the last write
        assert alive({"pid": plain.pid, "status": "running", "updated": now}) is True
        assert alive({"pid": marked.pid, "updated": now - 3600}) is False
        # cannot tell: no pid (old files) or another machine (shared disk) → None (trusted)
        assert alive({"status": "running"}) is None
        assert alive({"pid": plain.pid, "host": "some-other-host.invalid"}) is None
        # poll on a folder with only progress.json: a recycled pid is not "running"
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "progress.json").write_text(json.dumps(
            {"pid": plain.pid, "pid_start": "1", "status": "running", "step": 7, "updated": now}))
        status = jobs.poll(run_dir)
        assert status.state == "failed" and status.message.startswith(
            "stopped (process no longer running) at step 7: no output in train.log")
        (run_dir / "progress.json").write_text(json.dumps(
            {"pid": plain.pid, "pid_start": process_start_time(plain.pid), "status": "running",
             "step": 7, "total_steps": 30, "eta_s": 46.0, "updated": time.time()}))
        status = jobs.poll(run_dir)
        assert status.state == "running" and status.text.startswith("running: step 7 of 30, about ")
        assert status.text.endswith(" left") and 40 <= status.eta_s <= 46
    finally:
        for p in (marked, plain):
            p.kill()
            p.wait(timeout=30)
    assert alive({"pid": marked.pid, "pid_start": start}) is False        # killed and reaped
    assert jobs.poll(run_dir).state == "failed"
