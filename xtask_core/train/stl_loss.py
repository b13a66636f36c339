"""Loss of a single-task baseline (:class:`~xtask_core.model.stl.STLNet`), as the original's ``main_stl.py``.

``task="segmt"``: cross-entropy with ``ignore_index`` over the labelled pixels of the batch
(:meth:`XTaskLoss.seg_ce`). ``task="depth"``: the masked direct-depth loss ``lp`` (per image
``Σ mask·f / Σ mask``, then the batch mean; :data:`~xtask_core.train.losses.DEPTH_LOSS_FNS`).

The result has the keys of :class:`~xtask_core.train.losses.XTaskLoss` (``seg, depth, tseg, tdep,
label, image, total``) so the training step, logs and pages treat both nets alike: the absent
task's terms, both transferred terms and the absent group are 0, and ``total`` is the one task's
loss. Balancing is meaningless with one group (uncertainty weighting would drive the empty
group's log-variance to −∞): single-task runs use the plain sum.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from xtask_core.data.labels import CITYSCAPES_IGNORE
from xtask_core.errors import XTaskError
from xtask_core.train.losses import XTaskLoss

STL_LOSS_TASKS = ("segmt", "depth")


def _nhw(t: Tensor, name: str) -> Tensor:
    """N×1×H×W or N×H×W → N×H×W."""
    if t.dim() == 4 and t.shape[1] == 1:
        return t[:, 0]
    if t.dim() == 3:
        return t
    raise XTaskError(f"{name} must be N×1×H×W or N×H×W, got shape {tuple(t.shape)}")


class STLLoss(nn.Module):
    """Single-task loss.

    Args:
        task: ``"segmt"`` or ``"depth"``.
        num_classes: segmentation classes C (checked against the logits for ``"segmt"``).
        lp: direct depth loss, a key of ``DEPTH_LOSS_FNS`` (``L1`` | ``MSE`` | ``logL1`` | ``smoothL1``).
        ignore_index: label of void pixels (250 Cityscapes, -1 NYUv2).

    ``forward(outputs, batch)``: outputs ``(seg, None, None, None)`` or ``(None, None, depth, None)``
    (what :class:`STLNet` returns); batch with ``seg`` N×H×W int64 and/or ``depth`` N×1×H×W float
    (0 = invalid) and optional ``depth_mask``. Returns 0-dim float32 tensors under the keys
    ``seg, depth, tseg, tdep, label, image, total`` (see the module docstring).
    """

    def __init__(self, task: str, num_classes: int, lp: str = "L1", ignore_index: int = CITYSCAPES_IGNORE):
        super().__init__()
        if task not in STL_LOSS_TASKS:
            raise XTaskError(f"single-task loss needs task 'segmt' or 'depth', got {task!r}")
        self.task = task
        # the direct terms of the cross-task loss, reused: same CE, same masked depth loss
        self.terms = XTaskLoss(num_classes, lambda_1=0.0, lambda_2=0.0, lp=lp, ignore_index=ignore_index)

    def extra_repr(self) -> str:
        return f"task={self.task}, lp={self.terms.lp}, ignore_index={self.terms.ignore_index}"

    def forward(self, outputs: Sequence[Tensor | None], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if len(outputs) != 4:
            raise XTaskError(f"outputs must be (seg, seg_t, depth, depth_t), got {len(outputs)} items")
        seg, _, depth, _ = outputs
        pred = seg if self.task == "segmt" else depth
        if pred is None:
            raise XTaskError(f"a {self.task} loss needs the model's {self.task} output; it is None")
        key = "seg" if self.task == "segmt" else "depth"
        if key not in batch:
            raise XTaskError(f"batch is missing {key!r} (has: {', '.join(batch)})")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            if self.task == "segmt":
                target = batch["seg"].long()
                if target.dim() == 4:
                    target = _nhw(target, "seg target")
                loss = self.terms.seg_ce(pred.float(), target)
            else:
                p = _nhw(pred.float(), "depth prediction")
                t = _nhw(batch["depth"].float(), "depth target")
                mask = (_nhw(batch["depth_mask"].float(), "depth_mask") if batch.get("depth_mask") is not None
                        else (t > 0).float())
                loss = self.terms.depth_fn(p, t, mask)
        zero = loss.new_zeros(())
        seg_l, depth_l = (loss, zero) if self.task == "segmt" else (zero, loss)
        return {"seg": seg_l, "depth": depth_l, "tseg": zero, "tdep": zero,
                "label": seg_l, "image": depth_l, "total": loss}
