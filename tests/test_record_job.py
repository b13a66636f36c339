"""The per-image records background job (xtask_core.tools.record_job) with a tiny model."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from tests.tiny import tiny_model_config
from xtask_core.errors import XTaskError
from xtask_core.evaluate.records import records_for
from xtask_core.evaluate.sources import dataset_source
from xtask_core.tools import record_job

SIZE = (64, 64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from xtask_core.checkpoint import save_checkpoint
    from xtask_core.data.synthetic import write_dataset
    from xtask_core.model import XTaskNet

    base = tmp_path_factory.mktemp("recjob")
    write_dataset(base / "synth", n_train=0, n_val=3, seed=777, height=SIZE[0], width=SIZE[1])
    torch.manual_seed(0)
    save_checkpoint(base / "a.safetensors", XTaskNet(tiny_model_config(height=SIZE[0], width=SIZE[1])))
    folder = base / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(30):
        cv2.imwrite(str(folder / f"img{i:02d}.png"), rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return base


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XTASK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _wait(run_dir, timeout=90.0):
    end = time.time() + timeout
    while time.time() < end:
        st = record_job.poll(run_dir)
        if st.finished:
            return st
        time.sleep(0.2)
    raise AssertionError(f"job did not finish: {record_job.poll(run_dir).text}")


def _spec(files, **src):
    source = {"kind": "dataset", "dataset": "synthetic", "root": str(files / "synth"), "split": "val",
              "size": list(SIZE), "num_classes": 7} | src
    return {"checkpoints": [str(files / "a.safetensors")], "source": source, "batch_size": 2}


@pytest.mark.slow
def test_job_writes_the_same_records_as_a_direct_run(files, tmp_path):
    jobs_root = tmp_path / "jobs"
    run_dir = record_job.start(_spec(files), jobs_root, owner="t1")
    assert record_job.find_active("t1", jobs_root) in (run_dir, None)   # None only if it already finished
    st = _wait(run_dir)
    assert st.state == "done", st.text + "\n" + "\n".join(st.log_tail)
    assert st.step == st.total == 3 and "3 rows" in st.message
    got = record_job.records(run_dir)
    src = dataset_source("synthetic", files / "synth", "val", SIZE, num_classes=7)
    want = records_for([str(files / "a.safetensors")], src, cache=False, batch_size=2, device="cpu")
    pd.testing.assert_frame_equal(got.drop(columns="confusion"), want.drop(columns="confusion"))
    assert all(np.array_equal(a, b) for a, b in zip(got["confusion"], want["confusion"]))
    assert record_job.spec_of(run_dir)["batch_size"] == 2
    assert record_job.latest("t1", jobs_root) == run_dir and record_job.find_active("t1", jobs_root) is None
    assert record_job.latest("someone else", jobs_root) is None


@pytest.mark.slow
def test_cancel_and_skipped_files(files, tmp_path):
    jobs_root = tmp_path / "jobs"
    spec = _spec(files) | {"source": {"kind": "folder", "root": str(files / "photos"), "size": list(SIZE)},
                           "batch_size": 1}
    run_dir = record_job.start(spec, jobs_root, owner="t2")
    with pytest.raises(XTaskError, match="already running"):
        record_job.start(spec, jobs_root, owner="t2")            # one job per owner
    st = record_job.cancel(run_dir, grace_s=30)
    assert st.state == "cancelled" and not st.alive
    assert len(record_job.records(run_dir)) < 30                 # stopped early, file readable
    # the same folder to the end: the non-image is skipped with a warning line and counted
    run2 = record_job.start(spec, jobs_root, owner="t2")
    st = _wait(run2, timeout=180)
    assert st.state == "done", st.text
    assert "1 file(s) skipped" in st.message and len(record_job.records(run2)) == 30
    assert any("notes.txt" in line for line in st.log_tail)


def test_bad_specs_fail_before_any_process(files, tmp_path):
    jobs_root = tmp_path / "jobs"
    with pytest.raises(XTaskError, match="at least one checkpoint"):
        record_job.start({"checkpoints": [], "source": {}}, jobs_root)
    with pytest.raises(XTaskError, match="does not exist"):
        record_job.start(_spec(files, root=str(tmp_path / "nowhere")), jobs_root)
    with pytest.raises(XTaskError, match="unknown source kind"):
        record_job.start(_spec(files) | {"source": {"kind": "tape", "size": [64, 64]}}, jobs_root)
    assert not jobs_root.exists() or not any(jobs_root.glob("records-*"))
    assert record_job.records(tmp_path).empty and record_job.spec_of(tmp_path) == {}
