"""Distributed training on the CPU: ``torchrun --nproc_per_node 2`` with the gloo backend."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--enc_layers", "18", "--mid_features", "8", "--ttnet_features", "4", "--height", "64",
        "--width", "128", "--batch_size", "2", "--cpu", "--precision", "fp32", "--workers", "0"]


def _torchrun() -> list[str] | None:
    exe = Path(sys.executable).with_name("torchrun")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("torchrun")
    return [found] if found else None


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    runner = _torchrun()
    if runner is None:
        pytest.skip("torchrun not installed")
    from xtask_core.data import synthetic

    root = tmp_path / "synth"
    synthetic.write_dataset(root, n_train=8, n_val=2, seed=2, height=64, width=128, workers=0)
    run = tmp_path / "ddp"
    env = dict(os.environ, XTASK_NO_TQDM="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([*runner, "--standalone", "--nproc_per_node", "2", "-m", "xtask_core",
                           "train", "--dataset", "synthetic", "--input_path", str(root), "--out", str(run),
                           "--epochs", "1", *TINY],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # only rank 0 talks and writes: one "epoch" line, one metrics row
    assert proc.stdout.count("epoch 1/1") == 1, proc.stdout
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1
    # 8 images / 2 ranks / batch 2 = 2 steps per rank; validation on rank 0 over all 2 images
    assert int(rows[0]["step"]) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["train"]["enc_layers"] == 18
    for name in ("best.safetensors", "last.safetensors", "last.state.pt"):
        assert (run / name).is_file(), name
    assert json.loads((run / "progress.json").read_text())["status"] == "done"
