"""The cross-task consistency loss (FACTS §2), returning every component by name.

Four terms, from the model's four outputs ``(seg, seg_t, depth, depth_t)``:

* ``seg``   direct segmentation vs the label map: cross-entropy with ``ignore_index``, averaged
  over all non-ignored pixels of the batch (as ``nn.CrossEntropyLoss``; no label smoothing,
  as in the original).
* ``depth`` direct depth vs the target, masked by ``depth_mask``: one of :data:`DEPTH_LOSS_FNS`.
* ``tdep``  transferred depth (seg→depth net) vs the *detached* direct depth (``method="xtsc"``)
  or vs the depth target (``"xtc"``): one of :data:`TDEP_LOSS_FNS`.
* ``tseg``  transferred segmentation (depth→seg net) vs the argmax of the *detached* direct seg
  (``"xtsc"``) or vs the label map (``"xtc"``): one of :data:`TSEG_LOSS_FNS`, with label smoothing.

Grouping (FACTS §2): ``label = (1-λ1)·seg + λ1·tdep``, ``image = (1-λ2)·depth + λ2·tseg``,
``total = label + image`` (before any balancing, see :mod:`xtask_core.train.balancing`).

Masks of the transferred terms (our decision, following what the original did):

* ``"xtsc"``: ``tdep`` is averaged over ``depth_mask`` and ``tseg`` over ``seg_mask`` (labelled
  pixels), as the original did. The pseudo-targets exist everywhere, but where there is no
  ground truth the direct prediction itself is unsupervised; asking the transfer nets to copy it
  there would push noise through them into the other task's decoder and the shared encoder.
* ``"xtc"``: the targets are the ground truth, so the same masks are required anyway
  (``tseg`` additionally drops ``ignore_index`` pixels).

Differences from the original, on purpose:

* Every masked term is a true masked mean (per image ``Σ mask·f / Σ mask``, then the mean over
  the batch; an image with an empty mask contributes 0 instead of NaN). The original's
  transferred-seg cross-entropy divided by *all* pixels, and its KL used ``batchmean``.
* The KL variant is the per-pixel KL between the smoothed one-hot pseudo-label and the
  softmax over classes. The original reshaped N×C×H×W logits with ``view(N, H·W, C)``, which
  mixes classes and pixels; that bug is *not* reproduced. Its smoothing value was also
  ``ε/(C-2)``; here both variants use the same target distribution (true class ``1-ε``,
  others ``ε/(C-1)``).
* In ``"xtc"`` the original used the direct-depth loss for ``tdep`` and plain cross-entropy for
  ``tseg``; here the configured ``tdep_loss`` / ``tseg_loss`` are used in both methods.

All losses are computed in float32 with autocast disabled, so they behave the same under
mixed precision.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xtask_core.errors import XTaskError

__all__ = ["XTaskLoss", "DEPTH_LOSS_FNS", "TDEP_LOSS_FNS", "TSEG_LOSS_FNS", "ssim", "masked_mean",
           "smoothed_one_hot", "get_loss_fn"]

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


# --------------------------------------------------------------------------- helpers
def _nhw(t: Tensor, name: str) -> Tensor:
    """N×1×H×W or N×H×W → N×H×W (a view)."""
    if t.dim() == 4:
        if t.shape[1] != 1:
            raise XTaskError(f"{name} must have one channel, got shape {tuple(t.shape)}")
        return t[:, 0]
    if t.dim() == 3:
        return t
    raise XTaskError(f"{name} must be N×1×H×W or N×H×W, got shape {tuple(t.shape)}")


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per image ``Σ mask·values / Σ mask``, then the mean over the batch.

    values, mask: N×H×W (mask float in {0, 1} or bool). Returns a 0-dim float tensor.
    An image whose mask is empty contributes 0 (not NaN) to the batch mean; values at masked-out
    pixels never matter, even if they are NaN/Inf.
    """
    mask = mask.to(values.dtype)
    values = torch.where(mask > 0, values, torch.zeros((), dtype=values.dtype, device=values.device))
    num = (values * mask).flatten(1).sum(1)
    den = mask.flatten(1).sum(1)
    per_image = torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))
    return per_image.mean()


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel SSIM index of two N×C×H×W images (3×3 average-pooling windows).

    Constants C1 = 0.01², C2 = 0.03² (images expected roughly in [0, 1], e.g. Cityscapes
    disparity). The border is reflection-padded by one pixel so the map keeps the input size
    (H, W >= 2). Returns an N×C×H×W map; 1 where the windows are identical.
    """
    pad = (1, 1, 1, 1)
    x = F.pad(x, pad, mode="reflect")
    y = F.pad(y, pad, mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    var_x = F.avg_pool2d(x * x, 3, 1) - mu_x * mu_x
    var_y = F.avg_pool2d(y * y, 3, 1) - mu_y * mu_y
    cov = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return num / den


def smoothed_one_hot(labels: Tensor, num_classes: int, label_smoothing: float) -> Tensor:
    """N×H×W int64 labels in [0, C) → N×C×H×W float32 target distribution.

    True class ``1-ε``, every other class ``ε/(C-1)`` (sums to 1 per pixel).
    """
    one_hot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
    eps = float(label_smoothing)
    return one_hot * (1.0 - eps) + (1.0 - one_hot) * (eps / (num_classes - 1))


# --------------------------------------------------------------------------- direct depth
# Each fn(pred N×H×W, target N×H×W, mask N×H×W) -> 0-dim tensor (masked mean, per image then batch).
def _l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    return masked_mean((pred - target).abs(), mask)


def _mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    return masked_mean((pred - target) ** 2, mask)


def _log_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    return masked_mean(torch.log1p((pred - target).abs()), mask)


def _smooth_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    # beta = 1: 0.5·d² for |d| < 1, |d| - 0.5 otherwise
    return masked_mean(F.smooth_l1_loss(pred, target, reduction="none", beta=1.0), mask)


def _ssim_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    # Zero both images outside the mask (as the original did) so windows at the mask border
    # compare only valid values; then clamp((1 - SSIM)/2, 0, 1) averaged over the mask.
    m = mask.to(pred.dtype).unsqueeze(1)
    pred = torch.where(m > 0, pred.unsqueeze(1), torch.zeros((), dtype=pred.dtype, device=pred.device))
    target = torch.where(m > 0, target.unsqueeze(1), torch.zeros((), dtype=target.dtype, device=target.device))
    loss_map = torch.clamp((1.0 - ssim(pred, target)) / 2.0, 0.0, 1.0)[:, 0]
    return masked_mean(loss_map, mask)


DEPTH_LOSS_FNS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "L1": _l1, "MSE": _mse, "logL1": _log_l1, "smoothL1": _smooth_l1,
}
TDEP_LOSS_FNS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "L1": _l1, "ssim": _ssim_loss,
}


# --------------------------------------------------------------------------- transferred seg
# Each fn(logits N×C×H×W, labels N×H×W int64, mask N×H×W, label_smoothing) -> 0-dim tensor.
# Labels at masked-out pixels may be anything (they are replaced by 0 before the one-hot).
def _tseg_cross(logits: Tensor, labels: Tensor, mask: Tensor, label_smoothing: float) -> Tensor:
    q = smoothed_one_hot(labels, logits.shape[1], label_smoothing)
    per_pixel = -(q * F.log_softmax(logits, dim=1)).sum(1)
    return masked_mean(per_pixel, mask)


def _tseg_kl(logits: Tensor, labels: Tensor, mask: Tensor, label_smoothing: float) -> Tensor:
    # KL(q ‖ softmax(logits)) per pixel over the class axis (dim 1); xlogy gives 0·log 0 = 0,
    # so with ε = 0 this equals the cross-entropy.
    q = smoothed_one_hot(labels, logits.shape[1], label_smoothing)
    per_pixel = (torch.xlogy(q, q) - q * F.log_softmax(logits, dim=1)).sum(1)
    return masked_mean(per_pixel, mask)


TSEG_LOSS_FNS: dict[str, Callable[[Tensor, Tensor, Tensor, float], Tensor]] = {
    "cross": _tseg_cross, "kl": _tseg_kl,
}

METHODS = ("xtsc", "xtc")


def get_loss_fn(registry: Mapping[str, Callable], name: str, what: str) -> Callable:
    """Look ``name`` up in ``registry``; unknown names raise XTaskError listing the valid ones."""
    try:
        return registry[name]
    except KeyError:
        raise XTaskError(f"unknown {what} {name!r} (valid: {', '.join(registry)})") from None


# --------------------------------------------------------------------------- the module
class XTaskLoss(nn.Module):
    """Cross-task consistency loss (FACTS §2). Keyword names follow the original's flags.

    Args:
        num_classes: segmentation classes C (>= 2).
        lambda_1: weight of ``tdep`` in the label group (original flag ``alpha``), in [0, 1].
        lambda_2: weight of ``tseg`` in the image group (original flag ``gamma``), in [0, 1].
        label_smoothing: ε of the transferred-seg target (true class 1-ε, others ε/(C-1)).
        lp: direct depth loss, a key of :data:`DEPTH_LOSS_FNS`.
        tdep_loss: transferred depth loss, a key of :data:`TDEP_LOSS_FNS`.
        tseg_loss: transferred seg loss, a key of :data:`TSEG_LOSS_FNS`.
        ignore_index: label of void pixels (250 Cityscapes, -1 NYUv2).
        method: ``"xtsc"`` (transferred vs detached direct) or ``"xtc"`` (transferred vs targets).

    ``forward(outputs, batch)``:
        outputs: ``(seg, seg_t, depth, depth_t)``; seg/seg_t N×C×H×W logits, depth/depth_t
            N×1×H×W (any float dtype). ``seg_t``/``depth_t`` may be None (direct-only): their
            terms are then 0.
        batch: dict with ``seg`` N×H×W int64, ``depth`` N×1×H×W float (0 = invalid) and
            optionally ``seg_mask`` / ``depth_mask`` N×1×H×W float in {0, 1}. Without
            ``depth_mask`` the mask is ``depth > 0``; without ``seg_mask`` it is all pixels
            whose label is not ``ignore_index``.
        Returns dict of 0-dim float32 tensors ``seg, depth, tseg, tdep, label, image, total``
        (units: those of the loss functions; depth terms in the unit of the depth maps).
    """

    def __init__(self, num_classes: int, lambda_1: float = 0.01, lambda_2: float = 0.01,
                 label_smoothing: float = 0.0, lp: str = "L1", tdep_loss: str = "L1",
                 tseg_loss: str = "cross", ignore_index: int = 250, method: str = "xtsc"):
        super().__init__()
        if num_classes < 2:
            raise XTaskError(f"num_classes must be >= 2, got {num_classes}")
        for name, value in (("lambda_1", lambda_1), ("lambda_2", lambda_2)):
            if not 0.0 <= value <= 1.0:
                raise XTaskError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= label_smoothing < 1.0:
            raise XTaskError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if method not in METHODS:
            raise XTaskError(f"unknown method {method!r} (valid: {', '.join(METHODS)})")
        self.num_classes = int(num_classes)
        self.lambda_1 = float(lambda_1)
        self.lambda_2 = float(lambda_2)
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)
        self.method = method
        self.lp, self.tdep_name, self.tseg_name = lp, tdep_loss, tseg_loss
        self.depth_fn = get_loss_fn(DEPTH_LOSS_FNS, lp, "depth loss (lp)")
        self.tdep_fn = get_loss_fn(TDEP_LOSS_FNS, tdep_loss, "tdep_loss")
        self.tseg_fn = get_loss_fn(TSEG_LOSS_FNS, tseg_loss, "tseg_loss")

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, lambda_1={self.lambda_1}, lambda_2={self.lambda_2}, "
                f"label_smoothing={self.label_smoothing}, lp={self.lp}, tdep_loss={self.tdep_name}, "
                f"tseg_loss={self.tseg_name}, ignore_index={self.ignore_index}, method={self.method}")

    def seg_ce(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy over labelled pixels of the batch; 0 (not NaN) if there are none.

        Labels outside [0, C) are treated like ``ignore_index`` (as the metrics do) instead of
        crashing inside ``cross_entropy`` (a device-side assert on CUDA).
        """
        if logits.shape[1] != self.num_classes:
            raise XTaskError(f"segmentation logits have {logits.shape[1]} classes, loss expects {self.num_classes}")
        valid = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        target = torch.where(valid, target, torch.full_like(target, self.ignore_index))
        total = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="sum")
        return total / valid.sum().clamp_min(1).to(total.dtype)

    def forward(self, outputs: Sequence[Tensor | None], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if len(outputs) != 4:
            raise XTaskError(f"outputs must be (seg, seg_t, depth, depth_t), got {len(outputs)} items")
        for key in ("seg", "depth"):
            if key not in batch:
                raise XTaskError(f"batch is missing {key!r} (has: {', '.join(batch)})")
        seg, seg_t, depth, depth_t = outputs
        device_type = seg.device.type
        # fp32 everywhere: log-softmax, SSIM's variance differences and masked sums are
        # precision-sensitive, and autocast would otherwise re-cast some ops to fp16.
        with torch.autocast(device_type=device_type, enabled=False):
            seg = seg.float()
            depth = _nhw(depth.float(), "depth prediction")
            seg_target = batch["seg"].long()
            if seg_target.dim() == 4:
                seg_target = _nhw(seg_target, "seg target")
            depth_target = _nhw(batch["depth"].float(), "depth target")
            if batch.get("depth_mask") is not None:
                depth_mask = _nhw(batch["depth_mask"].float(), "depth_mask")
            else:
                depth_mask = (depth_target > 0).float()
            labelled = ((seg_target != self.ignore_index) & (seg_target >= 0)
                        & (seg_target < self.num_classes)).float()
            if batch.get("seg_mask") is not None:
                labelled = labelled * (_nhw(batch["seg_mask"].float(), "seg_mask") > 0).float()

            loss_seg = self.seg_ce(seg, seg_target)
            loss_depth = self.depth_fn(depth, depth_target, depth_mask)
            zero = loss_seg.new_zeros(())

            if depth_t is None:
                loss_tdep = zero
            else:
                depth_t = _nhw(depth_t.float(), "transferred depth")
                ref = depth.detach() if self.method == "xtsc" else depth_target
                loss_tdep = self.tdep_fn(depth_t, ref, depth_mask)

            if seg_t is None:
                loss_tseg = zero
            else:
                seg_t = seg_t.float()
                if self.method == "xtsc":
                    labels = seg.detach().max(1).indices  # argmax; max() is faster on CPU
                else:
                    # void pixels are masked out; give them a valid class for the one-hot
                    labels = torch.where(labelled > 0, seg_target, torch.zeros_like(seg_target))
                loss_tseg = self.tseg_fn(seg_t, labels, labelled, self.label_smoothing)

            label = (1.0 - self.lambda_1) * loss_seg + self.lambda_1 * loss_tdep
            image = (1.0 - self.lambda_2) * loss_depth + self.lambda_2 * loss_tseg
            return {"seg": loss_seg, "depth": loss_depth, "tseg": loss_tseg, "tdep": loss_tdep,
                    "label": label, "image": image, "total": label + image}
