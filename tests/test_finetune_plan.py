"""xtask_core.train.finetune: which data fits a model, λ scale and sweeps, arguments, small sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.tiny import tiny_model_config
from xtask_core.errors import XTaskError
from xtask_core.train import finetune


def test_label_set_and_default_lambda():
    assert finetune.label_set(7) == finetune.label_set(19, "synthetic") == "cityscapes"
    assert finetune.label_set(13, "nyuv2") == finetune.label_set(13) == "nyuv2"
    assert finetune.label_set(13, "cityscapes") is None and finetune.label_set(19, "nyuv2") is None
    assert finetune.label_set(5) is None
    assert finetune.default_lambda(7) == 0.01 and finetune.default_lambda(13, "nyuv2") == 1e-4
    assert finetune.data_sources(19) == ("street", "folder") and finetune.data_sources(13) == ("indoor", "folder")
    assert finetune.data_sources(5) == ()


def test_lambda_scale_is_logarithmic_with_zero():
    ch = finetune.LAMBDA_CHOICES
    assert ch[0] == 0.0 and ch[1] == 1e-5 and ch[-1] == 1.0 and list(ch) == sorted(ch)
    assert 0.01 in ch and 1e-4 in ch                      # both defaults are on the scale
    ratios = [b / a for a, b in zip(ch[1:], ch[2:])]
    assert all(2.9 < r < 3.4 for r in ratios)             # 1, 3, 10, 30, … evenly spaced in log


def test_plan_data_decisions(tmp_path):
    street = finetune.plan_data(7, "synthetic", "street")
    assert street.ok and street.dataset == "synthetic" and street.folder is None
    indoor = finetune.plan_data(13, "nyuv2", "indoor")
    assert indoor.ok and indoor.dataset == "nyuv2"
    wrong = finetune.plan_data(13, "nyuv2", "street")
    assert not wrong.ok and "Cityscapes labels" in wrong.message and "\n" not in wrong.message
    assert not finetune.plan_data(7, None, "indoor").ok
    none = finetune.plan_data(5, None, "street")
    assert not none.ok and "5 classes" in none.message
    assert not finetune.plan_data(13, "nyuv2", "folder").ok                       # no folder named yet
    assert "not a folder" in finetune.plan_data(13, "nyuv2", "folder", tmp_path / "nope").message
    with pytest.raises(XTaskError, match="unknown fine-tune data source"):
        finetune.plan_data(7, None, "moon")


def _nyu_folder(root: Path, splits=("train", "val")) -> Path:
    for split in splits:
        for sub in ("image", "label", "depth"):
            (root / split / sub).mkdir(parents=True)
        np.save(root / split / "image" / "0.npy", np.zeros((16, 16, 3), np.float32))
        np.save(root / split / "label" / "0.npy", np.zeros((16, 16), np.float32))
        np.save(root / split / "depth" / "0.npy", np.ones((16, 16, 1), np.float32))
    return root


def test_plan_data_folder_layouts(tmp_path):
    nyu = _nyu_folder(tmp_path / "nyu")
    ok = finetune.plan_data(13, "nyuv2", "folder", nyu)
    assert ok.ok and ok.dataset == "nyuv2" and ok.folder == nyu
    half = _nyu_folder(tmp_path / "half", splits=("train",))
    bad = finetune.plan_data(13, "nyuv2", "folder", half)
    assert not bad.ok and "no val/image" in bad.message
    # an NYUv2 folder is not Cityscapes data for a 7-class model
    assert not finetune.plan_data(7, "synthetic", "folder", nyu).ok


def test_finetune_args_dataset_and_balancing(tmp_path):
    cfg = tiny_model_config(num_classes=13)
    args = finetune.finetune_args("base.safetensors", cfg, tmp_path, steps=20, dataset="nyuv2", ignore_index=-1,
                                  lambda_1=0.0, lambda_2=1e-5)
    assert args["dataset"] == "nyuv2" and args["num_classes"] == 13 and args["max_steps"] == 20
    assert args["lambda_1"] == 0.0 and args["lambda_2"] == 1e-5 and args["height"] == 64
    if "cosine_every" in args:
        assert args["cosine_every"] == 4                  # about 5 measurements per run
    with pytest.raises(XTaskError, match="balancing must be one of"):
        finetune.finetune_args("b", cfg, tmp_path, balancing="magic", dataset="nyuv2", ignore_index=-1)
    if "pcgrad" in finetune.BALANCING:
        assert finetune.finetune_args("b", cfg, tmp_path, balancing="pcgrad", dataset="nyuv2",
                                      ignore_index=-1)["pcgrad"] is True


def test_sweep_lambdas():
    assert finetune.sweep_lambdas([0.01, 0, 0.001, 0.01], "both", 0.5, 0.5) == [(0, 0), (0.001, 0.001), (0.01, 0.01)]
    assert finetune.sweep_lambdas([1e-4, 1e-3], "lambda_1", 0.2, 0.3) == [(1e-4, 0.3), (1e-3, 0.3)]
    assert finetune.sweep_lambdas([1e-4, 1e-3], "lambda_2", 0.2, 0.3) == [(0.2, 1e-4), (0.2, 1e-3)]
    for bad, match in (([0.1], "2 to"), ([0.1, 2.0], r"\[0, 1\]"), ([float("nan"), 0.1], r"\[0, 1\]")):
        with pytest.raises(XTaskError, match=match):
            finetune.sweep_lambdas(bad, "both", 0, 0)
    with pytest.raises(XTaskError, match="unknown sweep mode"):
        finetune.sweep_lambdas([0, 1], "diagonal", 0, 0)


def test_small_sets_are_made_once(tmp_path):
    street = finetune.small_set("street", tmp_path, 64, 64, n_train=2, n_val=1)
    assert (street / "leftImg8bit" / "val").is_dir()
    indoor = finetune.small_set("indoor", tmp_path, 64, 64, n_train=2, n_val=1)
    assert sorted(p.name for p in (indoor / "val" / "image").iterdir()) == ["0.npy"]
    stamp = (indoor / "val" / "image" / "0.npy").stat().st_mtime_ns
    assert finetune.small_set("indoor", tmp_path, 64, 64, n_train=2, n_val=1) == indoor
    assert (indoor / "val" / "image" / "0.npy").stat().st_mtime_ns == stamp     # not rendered again
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]       # no temp folder left
    with pytest.raises(XTaskError, match="unknown synthetic set"):
        finetune.small_set("forest", tmp_path, 64, 64)


@pytest.mark.parametrize("task", ["segmt", "depth"])
def test_quick_eval_of_a_single_task_model(tmp_path, task):
    from xtask_core.checkpoint import default_meta, load_checkpoint, save_checkpoint
    from xtask_core.model.stl import build_model
    root = finetune.small_set("street", tmp_path, 64, 64, n_train=1, n_val=2)
    cfg = tiny_model_config(task=task)
    path = save_checkpoint(tmp_path / "stl.safetensors", build_model(cfg).eval(), default_meta(7, "synthetic"))
    out = finetune.quick_eval(load_checkpoint(path, device="cpu"), root, limit=2)
    present, absent = ("miou", "abs") if task == "segmt" else ("abs", "miou")
    assert np.isfinite(out[present]) and np.isnan(out[absent]) and np.isfinite(out["loss"])
    assert out["n_images"] == 2


def test_read_sweep_statuses(tmp_path):
    import json
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs = []
    for i, prog in enumerate(({"status": "done", "step": 3}, {"status": "running", "step": 1, "pid": dead.pid,
                                                                "pid_start": "1"}, None)):
        child = tmp_path / f"s-{i}"
        child.mkdir()
        if prog is not None:
            (child / "progress.json").write_text(json.dumps(prog))
        runs.append({"run_dir": str(child), "lambda_1": 0.1 * i, "lambda_2": 0.0, "args": {}})
    sweep = tmp_path / "s"
    sweep.mkdir()
    assert finetune.read_sweep(sweep) == [] and not finetune.is_sweep(sweep)
    (sweep / finetune.SWEEP_FILE).write_text(json.dumps({"runs": runs}))
    got = finetune.read_sweep(sweep)
    assert finetune.is_sweep(sweep)
    assert [r["status"] for r in got] == ["done", "stopped", "waiting"] and [r["step"] for r in got] == [3, 1, 0]
