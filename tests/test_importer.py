"""Import of an original xtask_mt ``exps/NNN`` folder (built here in the original layout)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from tests.tiny import tiny_model_config
from xtask_core import cli
from xtask_core.tools.import_xtask_mt import (
    find_experiment_block,
    parse_key_values,
    scores_from,
    train_params_from,
)

RESULTS = """==========
Experiment #006
Parameters: enc=34, lr=0.0001, beta=(0.9, 0.99), lp=L1, tsegmt=cross, alpha=0.01, gamma=0.01, smoothing=0.0
Pix Acc: 0.100, mIoU: 0.200
==========
Experiment #007
Parameters: enc=18, lr=0.0002, beta=(0.9, 0.999), lp=MSE, tsegmt=kl, alpha=0.02, gamma=0.03, smoothing=0.1
Optimizer: Adam, Scheduler: StepLR(step size=80, gamma=0.5)
shallow decoder: False (if not written, then True)
transfernet type: conv, use_uncertainty: True, use gradloss: False
Pix Acc: 0.936, mIoU: 0.665
Scores - RMSE: 0.0300, iRMSE: 1.0000, iRMSE log: 0.2000, Abs: 0.0122, Abs Rel: 0.1940, Sqrt Rel: 0.0100, delta1: 0.9000, delta2: 0.9500, delta3: 0.9800
"""
INDV = """Date: Nov-25-2020 10:00:00
arguments:
   predicting at size [64*128]
   batch size: 8, train for 3 epochs
   optimizer: Adam, scheduler: StepLR(step size=80, gamma=0.5)
   enc=18, numclasses=7, lr=0.0002, beta=(0.9, 0.999), lp=MSE, tsegmt=kl, alpha=0.02, gamma=0.03, smoothing=0.1
"""


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py


@pytest.fixture
def exp_dir(tmp_path):
    """exps/007 exactly as the original code leaves it: model.pth is a plain state dict."""
    from xtask_core.model import XTaskNet

    exps = tmp_path / "exps"
    exp = exps / "007"
    (exp / "model").mkdir(parents=True)
    torch.manual_seed(1)
    model = XTaskNet(tiny_model_config(width=128))
    torch.save(model.state_dict(), exp / "model" / "model.pth")
    np.save(exp / "model" / "tr_losses.npy", np.array([3.0, 2.0, 1.5]))
    np.save(exp / "model" / "va_losses.npy", np.array([2.5, 1.8, 1.9]))
    (exp / "indv_results.txt").write_text(INDV)
    (exps / "results.txt").write_text(RESULTS)
    return exp, model


def test_parsers_read_the_original_text():
    block = find_experiment_block(RESULTS, 7)
    assert block.startswith("Experiment #007") and "#006" not in block
    values = parse_key_values(block)
    assert values["beta"] == [0.9, 0.999] and values["steplr_step_size"] == 80
    assert values["gamma"] == 0.03 and values["steplr_gamma"] == 0.5  # scheduler gamma kept apart
    scores = scores_from(values)
    assert scores == pytest.approx({"pixel_acc": 0.936, "miou_per_image": 0.665, "rmse": 0.03, "irmse": 1.0,
                                    "irmse_log": 0.2, "abs": 0.0122, "abs_rel": 0.194, "sqrt_rel": 0.01,
                                    "delta1": 0.9, "delta2": 0.95, "delta3": 0.98})
    params = train_params_from({**parse_key_values(INDV), **values})
    assert params["lambda_1"] == 0.02 and params["lambda_2"] == 0.03 and params["tseg_loss"] == "kl"
    assert params["height"] == 64 and params["width"] == 128 and params["epochs"] == 3
    assert params["uncertainty_weights"] is True and params["scheduler_step_size"] == 80
    assert find_experiment_block(RESULTS, 8) is None


def test_import_command_builds_a_readable_run(exp_dir, tmp_path, capsys):
    exp, model = exp_dir
    run = tmp_path / "imported"
    assert cli.main(["import-xtask-mt", str(exp), "--out", str(run)]) == 0
    assert "imported" in capsys.readouterr().out

    from xtask_core.checkpoint import load_checkpoint

    loaded = load_checkpoint(run / "best.safetensors", device="cpu")
    assert (loaded.config.enc_layers, loaded.config.num_classes) == (18, 7)
    assert (loaded.config.height, loaded.config.width) == (64, 128)  # from indv_results
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    training = loaded.meta["training"]
    assert training["best_epoch"] == 2 and training["val_loss"] == pytest.approx(1.8)
    assert training["original_scores"]["miou_per_image"] == pytest.approx(0.665)

    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["train_loss"]) for r in rows] == [3.0, 2.0, 1.5]
    assert [float(r["val_loss"]) for r in rows] == [2.5, 1.8, 1.9]
    config = json.loads((run / "config.json").read_text())
    assert "xtask_mt" in json.dumps(config) and "0.665" in json.dumps(config)
    assert (run / "xtask_mt_results.txt").read_text().startswith("Experiment #007")

    from xtask_core.train.runlog import read_run

    read = read_run(run)
    assert list(read.metrics["val_loss"]) == [2.5, 1.8, 1.9]

    # never over an existing run
    assert cli.main(["import-xtask-mt", str(exp), "--out", str(run)]) == 2
    assert "already has checkpoints" in capsys.readouterr().err


def test_import_tolerates_missing_logs_but_not_missing_weights(exp_dir, tmp_path, capsys):
    exp, _ = exp_dir
    (exp / "model" / "tr_losses.npy").unlink()
    (exp / "indv_results.txt").unlink()
    run = tmp_path / "partial"
    assert cli.main(["import-xtask-mt", str(exp), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "tr_losses.npy not found" in out and "assuming 128x256" in out

    (exp / "model" / "model.pth").unlink()
    assert cli.main(["import-xtask-mt", str(exp), "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no model/model.pth" in err and err.count("\n") == 1
