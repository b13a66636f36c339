"""xtask_core.train.run_tables: the dashboard's reshaping of training logs."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from xtask_core.train import run_tables


def _run(rows, config=None):
    return SimpleNamespace(metrics=pd.DataFrame(rows), config=config or {}, source="xtask")


STEP_EPOCH = [dict(kind="step", epoch=1, step=1, train_loss=2.0, w_image=1.1),
              dict(kind="epoch", epoch=1, step=2, train_loss=1.8, val_loss=1.5, val_miou=0.2),
              dict(kind="step", epoch=2, step=3, train_loss=1.6, w_image=1.2),
              dict(kind="epoch", epoch=2, step=4, train_loss=1.4, val_loss=1.7, val_miou=0.3)]


def test_epoch_rows_and_curve_frames():
    run = _run(STEP_EPOCH)
    assert list(run_tables.epoch_rows(run.metrics)["step"]) == [2, 4]
    no_kind = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5]})
    assert run_tables.epoch_rows(no_kind) is no_kind
    frames, x = run_tables.curve_frames({"a": run, "empty": _run([])}, per_step=False)
    assert x == "epoch" and list(frames) == ["a"] and list(frames["a"]["step"]) == [2, 4]
    frames, x = run_tables.curve_frames({"a": run}, per_step=True)
    assert x == "step" and len(frames["a"]) == 4
    steps_only = _run([{"step": 5, "train_loss": 1.0}, {"step": 10, "train_loss": 0.5}])
    frames, _ = run_tables.curve_frames({"s": steps_only}, per_step=False)
    assert list(frames["s"]["epoch"]) == [5, 10]                        # plotted against its steps
    indexed = SimpleNamespace(metrics=pd.DataFrame({"loss": [1.0]}, index=pd.Index([3], name="epoch")))
    frames, _ = run_tables.curve_frames({"i": indexed}, per_step=False)
    assert list(frames["i"]["epoch"]) == [3]


def test_chart_columns_keep_only_logged_ones():
    frames, _ = run_tables.curve_frames({"a": _run(STEP_EPOCH)}, per_step=True)
    assert run_tables.chart_columns(frames, ["train_loss", "val_loss", "lr"]) == ["train_loss", "val_loss"]
    assert run_tables.chart_columns(frames, None) == ["w_image"]
    assert run_tables.chart_columns({}, ["train_loss"]) == []


def test_hyper_row_final_and_best():
    cfg = {"train": {"lr": 1e-4, "lambda_2": 0.02, "unrelated": 1}}
    row = run_tables.hyper_row("r", _run(STEP_EPOCH, cfg))
    assert row["run"] == "r" and row["source"] == "xtask" and row["lr"] == 1e-4 and "unrelated" not in row
    assert row["final val_miou"] == 0.3 and row["final train_loss"] == 1.4   # last epoch row, not last step
    assert row["best val_loss"] == 1.5
    assert run_tables.hyper_row("x", SimpleNamespace(metrics=None, config=None)) == {"run": "x", "source": ""}


def test_hyper_row_shows_the_loss_reduction():
    saved_before = run_tables.hyper_row("old", _run(STEP_EPOCH, {"train": {"lr": 1e-4}}))
    assert saved_before["loss_reduction"] == "masked"  # our runs before the option used the masked means
    new = run_tables.hyper_row("new", _run(STEP_EPOCH, {"train": {"loss_reduction": "original"}}))
    assert new["loss_reduction"] == "original"
    original = SimpleNamespace(metrics=None, config={"lr": 1e-4}, source="xtask_mt")
    assert run_tables.hyper_row("exp", original)["loss_reduction"] == "original"


def test_init_checkpoint_of_a_command_line():
    assert run_tables.init_checkpoint_of(["train", "--lr", "1", "--init_checkpoint", "a/b.safetensors"]) \
        == "a/b.safetensors"
    assert run_tables.init_checkpoint_of(["train", "--init_checkpoint=c.pth"]) == "c.pth"
    assert run_tables.init_checkpoint_of(["train", "--init_checkpoint"]) is None
    assert run_tables.init_checkpoint_of([]) is None


def test_discover_runs_labels_and_skips(tmp_path):
    runs = tmp_path / "runs"
    for name in ("r1", "r2"):
        (runs / name).mkdir(parents=True)
        (runs / name / "metrics.csv").write_text("epoch,train_loss\n1,1.0\n")
    found, problems = run_tables.discover_runs([("runs/", runs), ("gone/", tmp_path / "missing")])
    assert problems == [] and sorted(found) == ["r1 (runs/)", "r2 (runs/)"]
    assert found["r1 (runs/)"] == runs / "r1"


def test_newest_mtime_sees_a_file_written_inside(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("x")
    os.utime(run, (1000, 1000))
    os.utime(run / "metrics.csv", (5000, 5000))
    assert run_tables.newest_mtime(run) == pytest.approx(5000)
    assert run_tables.newest_mtime(run / "metrics.csv") == pytest.approx(5000)
    assert run_tables.newest_mtime(Path(tmp_path / "nope")) == 0.0
