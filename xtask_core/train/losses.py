"""The cross-task consistency loss, returning every component by name.

Four terms, from the model's four outputs ``(seg, seg_t, depth, depth_t)``:

* ``seg``   direct segmentation vs the label map: cross-entropy with ``ignore_index``, averaged
  over all non-ignored pixels of the batch (as ``nn.CrossEntropyLoss``; no label smoothing,
  as in the original).
* ``depth`` direct depth vs the target, masked by ``depth_mask``: one of :data:`DEPTH_LOSS_FNS`.
* ``tdep``  transferred depth (seg→depth net) vs the *detached* direct depth (``method="xtsc"``)
  or vs the depth target (``"xtc"``).
* ``tseg``  transferred segmentation (depth→seg net) vs the argmax of the *detached* direct seg
  (``"xtsc"``) or vs the label map (``"xtc"``).

Grouping: ``label = (1-λ1)·seg + λ1·tdep``, ``image = (1-λ2)·depth + λ2·tseg``,
``total = label + image`` (before any balancing, see :mod:`xtask_core.train.balancing`).

Two reductions (``reduction=``, registry :data:`REDUCTIONS`; the same names as
``xtask_core.config.LOSS_REDUCTIONS``):

``"original"`` (default): the original code's arithmetic, term by term.

* ``seg``: mean over non-ignored pixels. ``depth`` and ``tdep="L1"``: per image
  ``Σ mask·f / Σ mask``, then the batch mean.
* ``tdep="ssim"``: both maps multiplied by the mask, SSIM statistics from 3×3 average pooling
  with stride 1 and no padding (an (H-2)×(W-2) map), loss map ``clamp((1-SSIM)/2, 0, 1)``
  summed per image and divided by the mask's sum over the *full* H×W image, then the batch mean.
* ``tseg`` (``"xtsc"``): logits and the smoothed target distribution multiplied by the seg mask,
  ``-Σ_c q·log_softmax(z)`` per pixel, then the mean over **all** N·H·W pixels (void pixels
  count as 0, so the term shrinks with the void fraction).
* ``"xtc"``: ``tdep`` is the direct-depth loss ``lp`` (not ``tdep_loss``) against the depth
  target; ``tseg`` is plain cross-entropy (no smoothing) over non-ignored pixels, like ``seg``.

``"masked"``: every masked term is a true masked mean (per image ``Σ mask·f / Σ mask``, then the
batch mean; SSIM on a reflection-padded H×W map; ``tseg`` over the labelled pixels only), and
``"xtc"`` uses the configured ``tdep_loss`` / ``tseg_loss`` against the targets. Prefer it when
the effective weight of a term should not depend on how many pixels are void or invalid, e.g.
to compare runs across datasets (or crops) with different void fractions; runs made before the
option existed (the shipped demo checkpoints among them) used it.

Deliberate exceptions to ``"original"`` (in both modes):

* The KL variant of ``tseg`` is the per-pixel KL between the smoothed one-hot pseudo-label
  (true class ``1-ε``, others ``ε/(C-1)``) and the softmax over classes, reduced like the
  cross-entropy of the same mode (so with ε = 0 it equals it). The original reshaped N×C×H×W
  logits with ``view(N, H·W, C)``, which mixes classes and pixels, used ``ε/(C-2)`` off-class
  and a ``batchmean`` (per-image sum) reduction; none of that is reproduced.
* An empty mask (no valid depth, or no labelled pixel) gives 0 for that image (still counted
  in the batch mean) where the original divides by zero and returns NaN.

Masks of the transferred terms: in ``"xtsc"`` the pseudo-targets exist everywhere, but where
there is no ground truth the direct prediction itself is unsupervised; the masks keep the
transfer nets from copying it there (the original did the same).

All losses are computed in float32 with autocast disabled, so they behave the same under
mixed precision.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xtask_core.config import METHODS, TrainConfig
from xtask_core.data.labels import CITYSCAPES_IGNORE
from xtask_core.errors import XTaskError

__all__ = ["XTaskLoss", "DEPTH_LOSS_FNS", "TDEP_LOSS_FNS", "TSEG_LOSS_FNS", "ORIGINAL_TDEP_LOSS_FNS",
           "ORIGINAL_TSEG_LOSS_FNS", "REDUCTIONS", "ssim", "masked_mean", "smoothed_one_hot",
           "get_loss_fn"]

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


def _zero_outside(values: Tensor, mask: Tensor) -> Tensor:
    """``values`` where ``mask > 0``, else 0 (NaN/Inf at masked-out pixels never leak)."""
    return torch.where(mask > 0, values, torch.zeros((), dtype=values.dtype, device=values.device))


def _per_image_ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` per image (both shape N), 0 where ``den`` is 0; then the batch mean."""
    per_image = torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))
    return per_image.mean()


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per image ``Σ mask·values / Σ mask``, then the mean over the batch.

    values, mask: N×H×W (mask float in {0, 1} or bool). Returns a 0-dim float tensor.
    An image whose mask is empty contributes 0 (not NaN) to the batch mean; values at masked-out
    pixels never matter, even if they are NaN/Inf.
    """
    mask = mask.to(values.dtype)
    num = (_zero_outside(values, mask) * mask).flatten(1).sum(1)
    return _per_image_ratio(num, mask.flatten(1).sum(1))


def ssim(x: Tensor, y: Tensor, border: str = "reflect") -> Tensor:
    """Per-pixel SSIM index of two N×C×H×W images (3×3 average-pooling windows, stride 1).

    Constants C1 = 0.01², C2 = 0.03² (images expected roughly in [0, 1], e.g. Cityscapes
    disparity). ``border="reflect"``: the border is reflection-padded by one pixel so the map
    keeps the input size (H, W >= 2); ``"valid"``: no padding, as the original, an
    N×C×(H-2)×(W-2) map (H, W >= 3). 1 where the windows are identical.
    """
    if border == "reflect":
        pad = (1, 1, 1, 1)
        x = F.pad(x, pad, mode="reflect")
        y = F.pad(y, pad, mode="reflect")
    elif border != "valid":
        raise XTaskError(f"ssim border must be 'reflect' or 'valid', got {border!r}")
    if x.shape[-2] < 3 or x.shape[-1] < 3:
        raise XTaskError(f"SSIM needs images of at least 3×3 pixels (after padding), got {tuple(x.shape)}")
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


# --------------------------------------------------------------------------- depth terms
# Each fn(pred N×H×W, target N×H×W, mask N×H×W) -> 0-dim tensor (per image, then batch mean).
def _l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    return masked_mean((pred - target).abs(), mask)


def _mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    return masked_mean((pred - target) ** 2, mask)


def _log_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    return masked_mean(torch.log1p((pred - target).abs()), mask)


def _smooth_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    # beta = 1: 0.5·d² for |d| < 1, |d| - 0.5 otherwise
    return masked_mean(F.smooth_l1_loss(pred, target, reduction="none", beta=1.0), mask)


def _ssim_loss_map(pred: Tensor, target: Tensor, mask: Tensor, border: str) -> Tensor:
    """clamp((1 - SSIM)/2, 0, 1) of the two maps zeroed outside ``mask`` (as the original did, so
    windows at the mask border compare only valid values). N×H×W in, N×H'×W' out."""
    pred = _zero_outside(pred, mask).unsqueeze(1)
    target = _zero_outside(target, mask).unsqueeze(1)
    return torch.clamp((1.0 - ssim(pred, target, border=border)) / 2.0, 0.0, 1.0)[:, 0]


def _ssim_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    # masked: reflection-padded H×W loss map, averaged over the mask
    return masked_mean(_ssim_loss_map(pred, target, mask, "reflect"), mask)


def _ssim_loss_original(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    # original: (H-2)×(W-2) loss map over every valid window, summed, / Σ mask over the full image
    loss_map = _ssim_loss_map(pred, target, mask, "valid")
    return _per_image_ratio(loss_map.flatten(1).sum(1), mask.to(loss_map.dtype).flatten(1).sum(1))


DEPTH_LOSS_FNS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "L1": _l1, "MSE": _mse, "logL1": _log_l1, "smoothL1": _smooth_l1,
}
TDEP_LOSS_FNS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "L1": _l1, "ssim": _ssim_loss,
}
ORIGINAL_TDEP_LOSS_FNS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "L1": _l1, "ssim": _ssim_loss_original,
}


# --------------------------------------------------------------------------- transferred seg
# Each fn(logits N×C×H×W, labels N×H×W int64, mask N×H×W, label_smoothing) -> 0-dim tensor.
# Labels at masked-out pixels may be anything in [0, C) (they never count).
def _cross_per_pixel(logits: Tensor, labels: Tensor, label_smoothing: float) -> Tensor:
    q = smoothed_one_hot(labels, logits.shape[1], label_smoothing)
    return -(q * F.log_softmax(logits, dim=1)).sum(1)


def _kl_per_pixel(logits: Tensor, labels: Tensor, label_smoothing: float) -> Tensor:
    # KL(q ‖ softmax(logits)) over the class axis (dim 1); xlogy gives 0·log 0 = 0,
    # so with ε = 0 this equals the cross-entropy.
    q = smoothed_one_hot(labels, logits.shape[1], label_smoothing)
    return (torch.xlogy(q, q) - q * F.log_softmax(logits, dim=1)).sum(1)


def _mean_over_all_pixels(per_pixel: Tensor, mask: Tensor) -> Tensor:
    # The original multiplied logits and target by the mask: a masked-out pixel's target is 0,
    # so it adds 0 (and no gradient) but still counts in the N·H·W denominator.
    return (_zero_outside(per_pixel, mask) * mask.to(per_pixel.dtype)).sum() / per_pixel.numel()


def _tseg_cross(logits: Tensor, labels: Tensor, mask: Tensor, label_smoothing: float) -> Tensor:
    return masked_mean(_cross_per_pixel(logits, labels, label_smoothing), mask)


def _tseg_kl(logits: Tensor, labels: Tensor, mask: Tensor, label_smoothing: float) -> Tensor:
    return masked_mean(_kl_per_pixel(logits, labels, label_smoothing), mask)


def _tseg_cross_original(logits: Tensor, labels: Tensor, mask: Tensor, label_smoothing: float) -> Tensor:
    return _mean_over_all_pixels(_cross_per_pixel(logits, labels, label_smoothing), mask)


def _tseg_kl_original(logits: Tensor, labels: Tensor, mask: Tensor, label_smoothing: float) -> Tensor:
    return _mean_over_all_pixels(_kl_per_pixel(logits, labels, label_smoothing), mask)


TSEG_LOSS_FNS: dict[str, Callable[[Tensor, Tensor, Tensor, float], Tensor]] = {
    "cross": _tseg_cross, "kl": _tseg_kl,
}
ORIGINAL_TSEG_LOSS_FNS: dict[str, Callable[[Tensor, Tensor, Tensor, float], Tensor]] = {
    "cross": _tseg_cross_original, "kl": _tseg_kl_original,
}

# reduction → (transferred-depth registry, transferred-seg registry); the direct terms are the
# same in both modes.
REDUCTIONS: dict[str, tuple[Mapping[str, Callable], Mapping[str, Callable]]] = {
    "original": (ORIGINAL_TDEP_LOSS_FNS, ORIGINAL_TSEG_LOSS_FNS),
    "masked": (TDEP_LOSS_FNS, TSEG_LOSS_FNS),
}


def get_loss_fn(registry: Mapping[str, Callable], name: str, what: str) -> Callable:
    """Look ``name`` up in ``registry``; unknown names raise XTaskError listing the valid ones."""
    try:
        return registry[name]
    except KeyError:
        raise XTaskError(f"unknown {what} {name!r} (valid: {', '.join(registry)})") from None


# --------------------------------------------------------------------------- the module
class XTaskLoss(nn.Module):
    """Cross-task consistency loss. Keyword names follow the original's flags.

    Args:
        num_classes: segmentation classes C (>= 2).
        lambda_1: weight of ``tdep`` in the label group (original flag ``alpha``), in [0, 1].
        lambda_2: weight of ``tseg`` in the image group (original flag ``gamma``), in [0, 1].
        label_smoothing: ε of the transferred-seg target (true class 1-ε, others ε/(C-1)).
        lp: direct depth loss, a key of :data:`DEPTH_LOSS_FNS`.
        tdep_loss: transferred depth loss, a key of :data:`TDEP_LOSS_FNS` (``L1`` | ``ssim``).
        tseg_loss: transferred seg loss, a key of :data:`TSEG_LOSS_FNS` (``cross`` | ``kl``).
        ignore_index: label of void pixels (250 Cityscapes, -1 NYUv2).
        method: ``"xtsc"`` (transferred vs detached direct) or ``"xtc"`` (transferred vs targets).
        reduction: ``"original"`` (default, the original code's arithmetic) or ``"masked"``
            (true masked means); see the module docstring.

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

    def __init__(self, num_classes: int, lambda_1: float = TrainConfig.lambda_1, lambda_2: float = TrainConfig.lambda_2,
                 label_smoothing: float = 0.0, lp: str = "L1", tdep_loss: str = "L1",
                 tseg_loss: str = "cross", ignore_index: int = CITYSCAPES_IGNORE, method: str = "xtsc",
                 reduction: str = "original"):
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
        tdep_fns, tseg_fns = get_loss_fn(REDUCTIONS, reduction, "loss reduction")
        self.num_classes = int(num_classes)
        self.lambda_1 = float(lambda_1)
        self.lambda_2 = float(lambda_2)
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)
        self.method = method
        self.reduction = reduction
        self.lp, self.tdep_name, self.tseg_name = lp, tdep_loss, tseg_loss
        self.depth_fn = get_loss_fn(DEPTH_LOSS_FNS, lp, "depth loss (lp)")
        self.tdep_fn = get_loss_fn(tdep_fns, tdep_loss, "tdep_loss")
        self.tseg_fn = get_loss_fn(tseg_fns, tseg_loss, "tseg_loss")
        # the original's xtc: tdep = the direct-depth loss, tseg = plain CE (as ``seg``)
        self.original_xtc = reduction == "original" and method == "xtc"

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, lambda_1={self.lambda_1}, lambda_2={self.lambda_2}, "
                f"label_smoothing={self.label_smoothing}, lp={self.lp}, tdep_loss={self.tdep_name}, "
                f"tseg_loss={self.tseg_name}, ignore_index={self.ignore_index}, method={self.method}, "
                f"reduction={self.reduction}")

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
                if self.method == "xtsc":
                    loss_tdep = self.tdep_fn(depth_t, depth.detach(), depth_mask)
                elif self.original_xtc:
                    loss_tdep = self.depth_fn(depth_t, depth_target, depth_mask)
                else:
                    loss_tdep = self.tdep_fn(depth_t, depth_target, depth_mask)

            if seg_t is None:
                loss_tseg = zero
            else:
                seg_t = seg_t.float()
                if self.method == "xtsc":
                    labels = seg.detach().max(1).indices  # argmax; max() is faster on CPU
                    loss_tseg = self.tseg_fn(seg_t, labels, labelled, self.label_smoothing)
                elif self.original_xtc:
                    loss_tseg = self.seg_ce(seg_t, seg_target)
                else:
                    # void pixels are masked out; give them a valid class for the one-hot
                    labels = torch.where(labelled > 0, seg_target, torch.zeros_like(seg_target))
                    loss_tseg = self.tseg_fn(seg_t, labels, labelled, self.label_smoothing)

            label = (1.0 - self.lambda_1) * loss_seg + self.lambda_1 * loss_tdep
            image = (1.0 - self.lambda_2) * loss_depth + self.lambda_2 * loss_tseg
            return {"seg": loss_seg, "depth": loss_depth, "tseg": loss_tseg, "tdep": loss_tdep,
                    "label": label, "image": image, "total": label + image}
