"""End-to-end tests of the ``xtask`` command: synth → train → eval → predict → resume, errors.

Everything is tiny (64×128 synthetic scenes, 6 train / 3 val, ResNet18 with 8-wide decoders
and 4-wide TTNets, one epoch on the CPU) so the module runs in well under a minute.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from xtask_core import cli
from xtask_core.config import TrainConfig
from xtask_core.errors import XTaskError

TINY = ["--enc_layers", "18", "--mid_features", "8", "--ttnet_features", "4", "--height", "64",
        "--width", "128", "--batch_size", "3", "--cpu", "--precision", "fp32", "--workers", "0"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _epoch_rows(path: Path) -> list[dict]:
    return [r for r in _rows(path) if r.get("kind", "epoch") == "epoch"]


def _run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, needle=None):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("xtask: error: ")
    assert "Traceback" not in err
    if needle:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    code = cli.main(["synth", "--out", str(root), "--n-train", "6", "--n-val", "3",
                     "--height", "64", "--width", "128", "--seed", "3"])
    assert code == 0
    return root


@pytest.fixture(scope="module")
def trained_run(synth_root, tmp_path_factory):
    os.environ["XTASK_NO_TQDM"] = "1"
    run = tmp_path_factory.mktemp("runs") / "base"
    code = cli.main(["train", "--dataset", "synthetic", "--input_path", str(synth_root),
                     "--out", str(run), "--epochs", "1", *TINY])
    assert code == 0
    return run


def test_train_writes_a_complete_run(trained_run):
    for name in ("config.json", "metrics.csv", "progress.json", "best.safetensors",
                 "last.safetensors", "last.state.pt"):
        assert (trained_run / name).is_file(), name
    assert list(trained_run.rglob("events.out.tfevents*")), "no TensorBoard events"
    rows = _epoch_rows(trained_run / "metrics.csv")
    assert len(rows) == 1
    row = rows[0]
    for col in ("epoch", "step", "lr", "train_loss", "train_seg", "train_depth", "train_tseg",
                "train_tdep", "val_loss", "val_seg", "val_depth", "val_miou", "val_miou_per_image",
                "val_pixel_acc", "val_abs", "val_abs_rel", "w_image", "w_label", "seconds"):
        assert col in row, col
    assert int(row["epoch"]) == 1 and int(row["step"]) == 2  # 6 images / batch 3
    assert float(row["lr"]) == pytest.approx(1e-4)
    assert np.isfinite(float(row["val_loss"]))
    progress = json.loads((trained_run / "progress.json").read_text())
    assert progress["status"] == "done" and progress["step"] == 2 and progress["total_steps"] == 2

    from xtask_core.checkpoint import load_checkpoint

    loaded = load_checkpoint(trained_run / "best.safetensors", device="cpu")
    assert loaded.config.enc_layers == 18 and (loaded.config.height, loaded.config.width) == (64, 128)
    training = loaded.meta["training"]
    assert training["train_config"]["dataset"] == "synthetic"
    assert training["val_loss"] == pytest.approx(float(row["val_loss"]))
    assert "miou" in training["metrics"] and "miou_per_image" in training["metrics"]


def test_eval_json_reports_both_miou_definitions(trained_run, synth_root, tmp_path, capsys):
    out_json = tmp_path / "eval.json"
    code, out, err = _run(["eval", "--checkpoint", str(trained_run / "best.safetensors"),
                           "--input_path", str(synth_root), "--split", "val", "--json", str(out_json),
                           "--cpu"], capsys)
    assert code == 0, err
    assert "mIoU (dataset-level)" in out and "per-image" in out
    res = json.loads(out_json.read_text())
    assert res["dataset"] == "synthetic" and res["n_images"] == 3
    for key in ("miou", "miou_per_image", "pixel_acc", "abs", "abs_rel", "rmse", "delta1",
                "iou_per_class", "definitions", "loss"):
        assert key in res, key
    assert set(res["definitions"]) >= {"miou", "miou_per_image"}
    assert 0.0 <= res["miou"] <= 1.0 and 0.0 <= res["pixel_acc"] <= 1.0
    assert len(res["iou_per_class"]) == 7
    # eval uses the same loss as training: its val loss equals the logged one
    row = _epoch_rows(trained_run / "metrics.csv")[0]
    assert res["loss"]["total"] == pytest.approx(float(row["val_loss"]), rel=1e-4)

    code, out, err = _run(["eval", "--checkpoint", str(trained_run / "best.safetensors"),
                           "--input_path", str(synth_root), "--limit", "1", "--direct_only",
                           "--cpu"], capsys)
    assert code == 0, err


def test_predict_writes_pngs_npys_and_summary(trained_run, synth_root, tmp_path, capsys):
    image = next((synth_root / "leftImg8bit" / "val").rglob("*.png"))
    out_dir = tmp_path / "pred"
    code, out, err = _run(["predict", "--checkpoint", str(trained_run / "best.safetensors"),
                           "--image", str(image), "--out", str(out_dir), "--cpu"], capsys)
    assert code == 0, err
    for name in ("input.png", "seg.png", "seg_transferred.png", "depth.png", "depth_transferred.png",
                 "summary.json"):
        assert (out_dir / name).is_file(), name
    seg = np.load(out_dir / "seg.npy")
    depth_t = np.load(out_dir / "depth_transferred.npy")
    logits = np.load(out_dir / "seg_logits.npy")
    assert seg.shape == (64, 128) and depth_t.shape == (64, 128) and logits.shape == (7, 64, 128)
    assert np.array_equal(seg, logits.argmax(0))
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["model_input_size"] == [64, 128]
    fractions = summary["seg_class_fraction"]
    assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-4)
    assert summary["consistency"]["seg_agreement"] == pytest.approx(
        float((seg == np.load(out_dir / "seg_transferred.npy")).mean()))


def test_resume_continues_and_adds_one_row(trained_run, tmp_path, capsys):
    import torch

    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    before = _rows(run / "metrics.csv")
    code, out, err = _run(["train", "--out", str(run), "--resume", "--epochs", "2"], capsys)
    assert code == 0, err
    after = _rows(run / "metrics.csv")
    assert len(after) == len(before) + 1
    assert [int(r["epoch"]) for r in _epoch_rows(run / "metrics.csv")] == [1, 2]
    assert int(after[-1]["step"]) == 4  # continued from step 2, not from 0
    state = torch.load(run / "last.state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 4
    assert state["train_config"]["enc_layers"] == 18  # the saved config, not the CLI defaults
    # resuming a finished run again does nothing and says so
    code, out, err = _run(["train", "--out", str(run), "--resume", "--epochs", "2"], capsys)
    assert code == 0 and len(_rows(run / "metrics.csv")) == len(after)


def test_refuses_to_train_into_a_run_with_checkpoints(trained_run, synth_root, capsys):
    mtime = (trained_run / "best.safetensors").stat().st_mtime_ns
    code, out, err = _run(["train", "--dataset", "synthetic", "--input_path", str(synth_root),
                           "--out", str(trained_run), "--epochs", "1", *TINY], capsys)
    _assert_one_line_error(code, err, "already has checkpoints")
    assert (trained_run / "best.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("argv, needle", [
    (["eval", "--checkpoint", "/nonexistent/model.safetensors", "--dataset", "synthetic"], "not found"),
    (["train", "--lp", "L7"], "invalid choice"),
    (["train", "--dataset", "synthetic", "--height", "65", "--out", "/tmp/never"], "multiples of 32"),
    (["train", "--epochs", "0"], ">= 1"),
    (["predict", "--checkpoint", "x.safetensors"], "required"),
    (["import-xtask-mt", "/nonexistent/exps/001", "--out", "/tmp/never"], "not found"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_gives_one_line_and_exit_2(argv, needle, capsys):
    code, out, err = _run(argv, capsys)
    _assert_one_line_error(code, err, needle)


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(os.urandom(2048))
    code, out, err = _run(["eval", "--checkpoint", str(bad), "--dataset", "synthetic",
                           "--input_path", str(tmp_path)], capsys)
    _assert_one_line_error(code, err)


def test_help_for_every_command(capsys):
    assert cli.main(["--help"]) == 0
    assert "import-xtask-mt" in capsys.readouterr().out
    for command in ("synth", "train", "eval", "predict", "import-xtask-mt", "bench"):
        assert cli.main([command, "--help"]) == 0, command
        assert "usage:" in capsys.readouterr().out


def test_every_train_config_field_is_a_flag():
    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    options = {s for action in train._actions for s in action.option_strings}
    missing = [f.name for f in fields(TrainConfig) if f"--{f.name}" not in options]
    assert not missing, missing
    for original in ("--alpha", "--gamma", "--b1", "--b2", "--notqdm", "-e", "-b", "-j"):
        assert original in options, original


def test_per_dataset_defaults_and_aliases():
    parser = cli.build_parser()
    cfg = cli.train_config_from_args(parser.parse_args(["train", "--dataset", "nyuv2", "--alpha", "0.3"]))
    assert cfg.lambda_1 == 0.3 and cfg.lambda_2 == 0.0001  # --alpha given, --gamma from NYUv2 table
    assert (cfg.height, cfg.width, cfg.batch_size, cfg.epochs) == (288, 384, 6, 100)
    assert cfg.scheduler_step_size == 60 and cfg.num_classes == 13 and cfg.ignore_index == -1
    cfg = cli.train_config_from_args(parser.parse_args(
        ["train", "--dataset", "cityscapes", "--gamma", "0.2", "--b2", "0.999", "--no-channels_last"]))
    assert cfg.lambda_2 == 0.2 and cfg.lambda_1 == 0.01 and cfg.betas == (0.9, 0.999)
    assert (cfg.height, cfg.width, cfg.batch_size, cfg.epochs, cfg.num_classes) == (128, 256, 8, 250, 7)
    assert cfg.channels_last is False


def test_subprocess_train_with_step_logging(synth_root, tmp_path):
    """The real ``python -m xtask_core`` entry point, as background jobs launch it."""
    run = tmp_path / "job"
    env = dict(os.environ, XTASK_NO_TQDM="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "xtask_core", "train", "--dataset", "synthetic",
                           "--input_path", str(synth_root), "--out", str(run), "--epochs", "3",
                           "--max_steps", "2", "--log_every", "1", "--limit_val", "1", *TINY],
                          capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = _rows(run / "metrics.csv")
    assert [r["kind"] for r in rows] == ["step", "step", "epoch"]
    assert [int(r["step"]) for r in rows] == [1, 2, 2]
    progress = json.loads((run / "progress.json").read_text())
    assert progress["status"] == "done" and progress["step"] == 2

    bad = subprocess.run([sys.executable, "-m", "xtask_core", "train", "--out", str(run), "--resume",
                          "--enc_layers", "34"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "cannot change enc_layers" in bad.stderr


def test_ctrl_c_exits_130_and_debug_shows_the_exception(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_synth", interrupted)
    assert cli.main(["synth", "--out", "/tmp/never"]) == 130
    assert capsys.readouterr().err.strip() == "xtask: interrupted"

    monkeypatch.setenv("XTASK_DEBUG", "1")
    with pytest.raises(XTaskError):
        cli.main(["eval", "--checkpoint", "/nonexistent.safetensors", "--dataset", "synthetic"])
