"""The library functions behind ``xtask`` sub-commands, tested without the argument parser."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from xtask_core.config import DATASET_DEFAULTS
from xtask_core.errors import XTaskError
from xtask_core.io.json_safe import json_safe
from xtask_core.tools.checkpoint_eval import loss_options
from xtask_core.train.run_config import train_config_from_options


def test_json_safe_turns_nan_inf_and_arrays_into_json():
    value = {1: [float("nan"), np.float32(2.5)], "t": torch.tensor([1.0, float("inf")]),
             "n": (np.int64(3), "s", None)}
    out = json_safe(value)
    assert out == {"1": [None, 2.5], "t": [1.0, None], "n": [3, "s", None]}
    json.dumps(out, allow_nan=False)  # strict JSON


@pytest.mark.parametrize("dataset", ["cityscapes", "nyuv2"])
def test_loss_options_default_to_the_datasets_training_defaults(dataset):
    opts = loss_options({}, dataset)
    assert math.isclose(opts["lambda_1"], DATASET_DEFAULTS[dataset]["lambda_1"])
    assert math.isclose(opts["lambda_2"], DATASET_DEFAULTS[dataset]["lambda_2"])
    assert opts["reduction"] == "original"


def test_loss_options_take_the_checkpoints_saved_values():
    saved = {"lambda_1": 0.3, "method": "xtc", "tdep_loss": "ssim"}
    opts = loss_options(saved, "cityscapes")
    assert (opts["lambda_1"], opts["method"], opts["tdep_loss"]) == (0.3, "xtc", "ssim")
    assert opts["lambda_2"] == DATASET_DEFAULTS["cityscapes"]["lambda_2"]
    assert opts["reduction"] == "masked"  # a config saved before the option existed


def test_options_new_run_betas_and_default_folder():
    cfg = train_config_from_options({"dataset": "nyuv2", "epochs": 3, "lr": None}, b2=0.5)
    assert cfg.dataset == "nyuv2" and cfg.epochs == 3 and cfg.height == DATASET_DEFAULTS["nyuv2"]["height"]
    assert cfg.betas[1] == 0.5 and cfg.out.startswith("runs")
    with pytest.raises(XTaskError, match="either --betas or --b1/--b2"):
        train_config_from_options({"betas": [0.9, 0.9]}, b1=0.8)


def test_resume_needs_an_existing_run(tmp_path):
    with pytest.raises(XTaskError, match="needs --out"):
        train_config_from_options({"resume": True})
    with pytest.raises(XTaskError, match="does not exist"):
        train_config_from_options({"resume": True, "out": str(tmp_path)})
