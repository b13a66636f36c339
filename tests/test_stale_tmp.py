"""Leftovers of atomic writes killed mid-save (``.<name>.<random>.tmp``): readers ignore them,
the trainer removes them when it starts or resumes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xtask_core.io.atomic import atomic_path, atomic_tmp_target, remove_stale_tmp

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py

# A writer that dies by SIGKILL in the middle of an atomic save, as `kill -9` or the OOM killer
# would do it: atomic_path's clean-up never runs.
KILLED_WRITER = """
import os, signal, sys
from xtask_core.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_tmp_names_recognised():
    assert atomic_tmp_target(".best.safetensors.k2x8a_q1.tmp") == "best.safetensors"
    assert atomic_tmp_target("/a/b/.progress.json.abcdefgh.tmp") == "progress.json"
    for name in ("best.safetensors", "notes.tmp", ".hidden", ".x.tmp", "a.b.c.tmp"):
        assert atomic_tmp_target(name) is None, name
    # the names atomic_path really makes match the pattern
    with atomic_path(Path("/tmp") / f"xtask-test-{os.getpid()}.json") as tmp:
        assert atomic_tmp_target(tmp) == f"xtask-test-{os.getpid()}.json"


def test_remove_stale_tmp_owned_age_and_others(tmp_path):
    old = time.time() - 3600
    files = {
        ".best.safetensors.abcd1234.tmp": 0,   # owned: removed even when fresh
        ".job.json.fresh123.tmp": 0,           # not owned, fresh: another writer may be mid-save
        ".job.json.stale123.tmp": old,         # not owned, an hour old: removed
        "notes.tmp": old,                      # not atomic_path's pattern: kept
        "best.safetensors": old,               # the real file: kept
    }
    for name, mtime in files.items():
        (tmp_path / name).write_bytes(b"x")
        if mtime:
            os.utime(tmp_path / name, (mtime, mtime))
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()   # a folder is never touched
    removed = remove_stale_tmp(tmp_path, owned=("best.safetensors",))
    assert [p.name for p in removed] == [".best.safetensors.abcd1234.tmp", ".job.json.stale123.tmp"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([".dir.abcdefgh.tmp", ".job.json.fresh123.tmp", "best.safetensors", "notes.tmp"])
    assert remove_stale_tmp(tmp_path / "missing") == []


def test_killed_save_leaves_tmp_that_readers_ignore(tmp_path):
    from xtask_core.io.paths import find_checkpoints
    from xtask_core.train import run_readers
    from xtask_core.train.run_dir import has_checkpoints

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"name": "r1"}')
    target = run / "best.safetensors"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -9
    leftovers = [p for p in run.iterdir() if atomic_tmp_target(p) == "best.safetensors"]
    assert len(leftovers) == 1 and leftovers[0].read_bytes() == b"half a checkpoint"
    assert not target.exists()
    # readers look for exact names / suffixes: the leftover is not a checkpoint or a run
    assert has_checkpoints(run) == []
    assert find_checkpoints(tmp_path / "runs", tmp_path / "runs") == []
    assert sorted(run.glob("*.safetensors")) == []
    refs = run_readers.find_runs(tmp_path / "runs")
    assert [r.path for r in refs] == [run]
    assert run_readers.read_run(run).errors == []
    # a second leftover next to a real checkpoint: discovery still finds only the real one
    target.write_bytes(b"real")
    assert has_checkpoints(run) == ["best.safetensors"]
    assert [c.path for c in find_checkpoints(None, tmp_path / "runs")] == [target]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    from xtask_core.data import synthetic

    root = tmp_path_factory.mktemp("synth_tmp")
    synthetic.write_dataset(root, n_train=3, n_val=1, seed=3, height=64, width=128, workers=0)
    return root


def test_trainer_removes_stale_tmp_on_start_and_resume(synth_root, tmp_path, monkeypatch):
    from xtask_core.config import TrainConfig
    from xtask_core.train.trainer import Trainer

    monkeypatch.setenv("XTASK_NO_TQDM", "1")

    def cfg(out, **kw):
        return TrainConfig.for_dataset(
            "synthetic", input_path=str(synth_root), out=str(out), enc_layers=18, mid_features=8,
            ttnet_features=4, height=64, width=128, batch_size=3, cpu=True, precision="fp32",
            workers=0, seed=1, limit_train=3, limit_val=1, **kw)

    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".progress.json.aaaaaaaa.tmp", run / ".config.json.bbbbbbbb.tmp"]
    for p in stale:
        p.write_text("left by a killed run")
    fresh_foreign = run / ".job.json.cccccccc.tmp"        # e.g. the app writing job.json now
    fresh_foreign.write_text("{}")
    Trainer(cfg(run, epochs=1)).fit()
    assert not any(p.exists() for p in stale)
    assert fresh_foreign.exists()                          # not the trainer's, too fresh to judge
    # SIGKILL during the epoch-1 checkpoint save, then --resume
    stale = [run / ".last.safetensors.dddddddd.tmp", run / ".last.state.pt.eeeeeeee.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    summary = Trainer(cfg(run, epochs=2, resume=True)).fit()
    assert summary["status"] == "done" and summary["step"] == 2
    assert not any(p.exists() for p in stale)
    assert sorted(p.name for p in run.iterdir() if atomic_tmp_target(p)) == [".job.json.cccccccc.tmp"]


def test_atomic_write_onto_a_directory_is_one_clear_error(tmp_path):
    from xtask_core.errors import XTaskError

    (tmp_path / "out").mkdir()
    with pytest.raises(XTaskError, match="is a directory, not a file"):
        with atomic_path(tmp_path / "out"):
            raise AssertionError("must not be reached")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not any((tmp_path / "out").iterdir())
