"""xtask_core.inference.transfer: the transfer nets run on ground truth."""
from __future__ import annotations

import numpy as np
import torch

from xtask_core.inference import transfer


def test_transfer_from_ground_truth_feeds_scaled_one_hot(tiny_model):
    seen = {}
    orig_s2d, orig_d2s = tiny_model.trans_s2d.forward, tiny_model.trans_d2s.forward

    def s2d(x):
        seen["s2d"] = x.clone()
        return orig_s2d(x)

    def d2s(x):
        seen["d2s"] = x.clone()
        return orig_d2s(x)

    tiny_model.trans_s2d.forward, tiny_model.trans_d2s.forward = s2d, d2s
    gt = np.zeros((64, 64), np.int64)
    gt[:, 32:] = 3
    gt[0, 0] = 250                                               # void → all-zero logits
    gt_depth = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    out = transfer.transfer_from_ground_truth(tiny_model, gt, gt_depth, 7, 250)
    x = seen["s2d"][0]
    assert x.shape == (7, 64, 64)
    assert x[3, 5, 40] == transfer.GT_LOGIT_SCALE and x[0, 5, 40] == 0 and x[0, 5, 5] == transfer.GT_LOGIT_SCALE
    assert (x[:, 0, 0] == 0).all()
    torch.testing.assert_close(seen["d2s"][0, 0], torch.from_numpy(gt_depth))
    assert out["depth_from_gt_seg"].shape == (64, 64) and out["seg_from_gt_depth"].shape == (7, 64, 64)
    none = transfer.transfer_from_ground_truth(tiny_model, None, None, 7, 250)
    assert none == {"depth_from_gt_seg": None, "seg_from_gt_depth": None}


def test_transfer_from_ground_truth_refuses_a_single_task_model(tiny_config):
    import dataclasses

    import pytest

    from xtask_core.errors import XTaskError
    from xtask_core.model.stl import build_model
    stl = build_model(dataclasses.replace(tiny_config, task="depth")).eval()
    with pytest.raises(XTaskError, match="no task-transfer nets"):
        transfer.transfer_from_ground_truth(stl, np.zeros((64, 64), np.int64), None, 7, 250)
