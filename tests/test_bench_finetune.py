"""The fine-tune figure of ``xtask bench``: its breakdown arithmetic, its table, and one real
instrumented job of a tiny model (no timing assertions: the CPU is shared)."""
from __future__ import annotations

import pytest

from xtask_core.tools import bench_finetune as bf
from xtask_core.tools import bench_report


def test_split_parts_rest_is_what_the_parts_leave():
    parts = {"process start": 0.5, "imports": 2.0, "parts": {"steps": 10.0, "validation": 3.0, "data": 0.5}}
    got = bf.split_parts(20.0, parts)
    assert got == {"process start": 0.5, "imports": 2.0, "steps": 10.0, "validation": 3.0, "data": 0.5,
                   "rest": pytest.approx(4.0)}
    assert sum(got.values()) == pytest.approx(20.0)


def test_format_parts_one_column_per_tree():
    lines = bench_report.format_parts({"current": {"imports": 1.0, "steps": 4.0},
                                       "baseline": {"imports": 2.0, "steps": 5.0, "validation": 6.0}})
    assert "current" in lines[1] and "baseline" in lines[1]
    row = {ln.split()[0]: ln.split()[1:] for ln in lines[2:-1]}
    assert row["imports"] == ["1.0", "2.0"] and row["validation"] == ["-", "6.0"]
    assert lines[-1].split()[-2:] == ["5.0", "13.0"]  # click to done = the sum of the parts
    assert bench_report.format_parts(None) == [] and bench_report.format_parts({"current": None}) == []


@pytest.mark.slow
def test_instrumented_job_of_a_tiny_model(tmp_path, tiny_model, repo_root, monkeypatch):
    from xtask_core.checkpoint import save_checkpoint
    from xtask_core.train.finetune import small_set

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("XTASK_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model, {"dataset": "synthetic"})
    cfg = tiny_model.config
    data = small_set("street", tmp_path / "data", cfg.height, cfg.width, n_train=4, n_val=2)
    runs = tmp_path / "runs"
    runs.mkdir()
    res = bf.time_job(repo_root, ckpt, data, runs, instrument=True,
                      defaults={"steps": 2, "batch_size": 2, "limit_val": 2})
    assert res["state"] == "done" and res["step"] == 2, res
    parts = res["parts"]
    # every phase the trainer went through was timed, and the parts add up to click-to-done
    assert {"process start", "imports", "set-up", "steps", "data", "validation", "checkpoint writes",
            "rest"} <= set(parts)
    assert all(v > 0 for k, v in parts.items() if k != "rest"), parts
    assert sum(parts.values()) == pytest.approx(res["seconds"])
    assert (runs / res["run_dir"].split("/")[-1] / "best.safetensors").is_file()
    assert res["cpu_s"] > 0
    wall, cpu = bf.plain_loop_s(ckpt, data, steps=3, batch=2)   # 2 batches per epoch: wraps round once
    assert wall > 0 and cpu > 0
