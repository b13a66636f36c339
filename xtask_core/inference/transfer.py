"""Run only the task-transfer nets, on ground truth instead of predictions.

"What did the transfer nets learn?": feed the seg → depth net the true segmentation and the
depth → seg net the true depth, and compare their outputs with the true other task.
"""
from __future__ import annotations

import numpy as np
import torch

from xtask_core.errors import XTaskError

GT_LOGIT_SCALE = 10.0  # one-hot × 10 → softmax puts ~0.9999 on the true class for ≤ 19 classes


@torch.no_grad()
def transfer_from_ground_truth(model: torch.nn.Module, gt_seg: np.ndarray | None,
                               gt_depth: np.ndarray | None, num_classes: int, ignore_index: int,
                               logit_scale: float = GT_LOGIT_SCALE) -> dict[str, np.ndarray | None]:
    """Run only the task-transfer nets on ground truth.

    - ``depth_from_gt_seg`` (h×w float32, model depth units): ``model.trans_s2d`` fed the one-hot
      ground-truth segmentation scaled by ``logit_scale``. The s2d net applies log-softmax to its
      input, so scaled one-hot acts as near-certain logits; ignored pixels get all-zero logits
      (a uniform distribution: "no idea").
    - ``seg_from_gt_depth`` (C×h×w float32 logits): ``model.trans_d2s`` fed the ground-truth
      depth (invalid pixels stay 0, as in training targets).

    A missing ground truth (None) gives None for that output. h, w must be multiples of 8 (TTNet
    pooling). ``model`` is only read (no_grad, not mutated). A model without transfer nets (a
    single-task baseline) raises a one-line XTaskError.
    """
    if not (hasattr(model, "trans_s2d") and hasattr(model, "trans_d2s")):
        raise XTaskError("this model has no task-transfer nets (a single-task baseline), so there is nothing "
                         "to feed ground truth to")
    p = next(model.parameters())
    out: dict[str, np.ndarray | None] = {"depth_from_gt_seg": None, "seg_from_gt_depth": None}
    if gt_seg is not None:
        seg = torch.as_tensor(np.asarray(gt_seg), dtype=torch.int64)
        valid = (seg >= 0) & (seg < num_classes) & (seg != ignore_index)
        onehot = torch.zeros((num_classes, *seg.shape), dtype=torch.float32)
        onehot.scatter_(0, torch.where(valid, seg, 0)[None], 1.0)
        onehot *= valid[None].float() * logit_scale
        d = model.trans_s2d(onehot[None].to(p.device, p.dtype))
        out["depth_from_gt_seg"] = d[0, 0].float().cpu().numpy()
    if gt_depth is not None:
        dep = torch.as_tensor(np.asarray(gt_depth), dtype=torch.float32)[None, None]
        s = model.trans_d2s(dep.to(p.device, p.dtype))
        out["seg_from_gt_depth"] = s[0].float().cpu().numpy()
    return out
