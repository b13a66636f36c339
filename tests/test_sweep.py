"""A λ sweep is one background job that writes k ordinary run folders (tiny model, 2 steps each)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.app_helpers import write_checkpoint
from xtask_core.checkpoint import load_checkpoint
from xtask_core.errors import XTaskError
from xtask_core.train import finetune, jobs, run_readers
from xtask_core.train.run_tables import run_point

TIMEOUT_S = 300   # two trainer subprocesses on 2 cores shared with the whole team


@pytest.fixture
def sweep_inputs(tmp_path):
    ckpt = write_checkpoint(tmp_path / "base.safetensors", seed=0, name="base")
    data = finetune.small_set("street", tmp_path / "cache", 64, 64, n_train=2, n_val=1)
    args = finetune.finetune_args(ckpt, load_checkpoint(ckpt, device="cpu").config, data, steps=2, batch_size=1,
                                  limit_val=1, precision="fp32")
    runs = tmp_path / "runs"
    runs.mkdir()
    return args, runs


@pytest.mark.slow
def test_sweep_job_writes_k_runs(sweep_inputs):
    args, runs = sweep_inputs
    pairs = finetune.sweep_lambdas([0.0, 0.001], "lambda_1", 0.01, 0.02)
    sweep = finetune.start_sweep(args, pairs, runs, name="my sweep", owner="sweep-test")
    assert sweep.name == "my-sweep" and finetune.is_sweep(sweep)
    with pytest.raises(XTaskError, match="already running"):       # one job per owner, sweeps included
        finetune.start_sweep(args, pairs, runs, owner="sweep-test")
    deadline = time.monotonic() + TIMEOUT_S
    while not (status := jobs.poll(sweep)).finished:
        assert time.monotonic() < deadline, jobs.log_tail(sweep)
        time.sleep(1.0)
    assert status.state == "done", (status.message, status.log_tail)
    assert status.message == "2 of 2 runs finished" and status.step == status.total == 4
    planned = finetune.read_sweep(sweep)
    assert [(r["lambda_1"], r["lambda_2"]) for r in planned] == [(0.0, 0.02), (0.001, 0.02)]
    assert [r["status"] for r in planned] == ["done", "done"]
    for r in planned:
        child = Path(r["run_dir"])
        assert child.parent == runs.resolve() and child.name.startswith("my-sweep-")
        assert (child / "best.safetensors").is_file() and (child / "metrics.csv").is_file()
        train = json.loads((child / "config.json").read_text())["train"]
        assert (train["lambda_1"], train["lambda_2"]) == (r["lambda_1"], r["lambda_2"])
        point = run_point(child.name, run_readers.read_run(child))
        assert point is not None and point["miou"] is not None and point["origin"] == "fine-tune"
    assert not (runs / f".{sweep.name}.{finetune.SWEEP_FILE}").exists()     # the plan moved into the sweep folder
    # the lock is free again: a new sweep may start (then is cancelled right away)
    again = finetune.start_sweep(args, pairs, runs, owner="sweep-test")
    final = jobs.cancel(again, grace_s=20.0)
    assert final.state == "cancelled"
    leftovers = [r["run_dir"] for r in finetune.read_sweep(again) if Path(r["run_dir"]).is_dir()]
    assert all(any(Path(p).iterdir()) for p in leftovers)                   # no empty run folder left behind


def test_sweep_refuses_bad_arguments_before_starting(sweep_inputs):
    args, runs = sweep_inputs
    with pytest.raises(XTaskError):
        finetune.start_sweep(dict(args, lr=-1.0), [(0.0, 0.0), (0.1, 0.1)], runs, owner="sweep-bad")
    with pytest.raises(XTaskError, match="at least one"):
        finetune.start_sweep(args, [], runs, owner="sweep-bad")
    assert not [p for p in runs.iterdir()]                                  # nothing created
