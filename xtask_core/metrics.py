"""Segmentation and depth metrics, vectorised, plus consistency energy (FACTS §5).

:class:`SegDepthMetrics` follows reset / update / compute. Segmentation uses ONE confusion
matrix built with ``torch.bincount`` (rows = target class, columns = predicted class, non-ignored
pixels only); the same bincount, offset by the image index, gives each image's matrix for the
original's per-image mIoU. All sums are accumulated in float64 / int64, so results do not depend on
how the data is split into batches.

Two mIoU values, labelled:

* ``miou``           dataset-level: one confusion matrix over everything seen, IoU per class,
                     mean over classes with a non-empty union (the standard definition).
* ``miou_per_image`` the original's definition: for each image, the mean IoU over the classes
                     present in its prediction ∪ target (non-ignored pixels), then the mean over
                     images. Images with no labelled pixel are skipped.

Depth metrics are computed on the quantity the model predicts (inverse depth / disparity for
Cityscapes, metres for NYUv2), over pixels with ``target > 0`` (and ``depth_mask`` when given).

:func:`reference_metrics_loop` is a deliberately plain re-implementation in the original's style
(per-image and per-class Python loops, numpy); it exists only for the benchmark and equality tests.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import XTaskError

__all__ = ["SegDepthMetrics", "consistency_energy", "reference_metrics_loop"]

DEPTH_EPS = 1e-6  # predictions are clamped to this before the δ ratios (no division by 0)
_DEPTH_KEYS = ("n", "abs", "abs_rel", "sq", "delta1", "delta2", "delta3")


def _nhw(t: Tensor, name: str) -> Tensor:
    """N×1×H×W or N×H×W → N×H×W."""
    if t.dim() == 4 and t.shape[1] == 1:
        return t[:, 0]
    if t.dim() == 3:
        return t
    raise XTaskError(f"{name} must be N×1×H×W or N×H×W, got shape {tuple(t.shape)}")


def _seg_labels(seg: Tensor, num_classes: int) -> Tensor:
    """Logits N×C×H×W → argmax labels; labels N×H×W (or N×1×H×W) pass through. int64 out."""
    if seg.dim() == 4 and seg.shape[1] == num_classes:
        return seg.max(1).indices  # same first-max tie rule as argmax, several times faster on CPU
    if seg.dim() == 4 and seg.shape[1] != 1:
        raise XTaskError(f"segmentation logits have {seg.shape[1]} classes, metrics expect {num_classes}")
    labels = _nhw(seg, "segmentation prediction").long()
    if labels.numel():
        lo, hi = torch.aminmax(labels)
        if int(lo) < 0 or int(hi) >= num_classes:
            raise XTaskError(f"predicted labels must be in [0, {num_classes}), got range [{int(lo)}, {int(hi)}]")
    return labels


class SegDepthMetrics:
    """Accumulates segmentation + depth metrics over a split.

    Args:
        num_classes: C.
        ignore_index: label of void pixels in the target (250 Cityscapes, -1 NYUv2); any target
            outside [0, C) is ignored as well.

    ``update(seg, depth_pred, seg_target, depth_target, depth_mask=None)``:
        seg: logits N×C×H×W (any float dtype) or labels N×H×W int; None skips segmentation.
        depth_pred: N×1×H×W or N×H×W; None skips depth.
        seg_target: N×H×W int64 labels. depth_target: N×1×H×W or N×H×W (0 = invalid).
        depth_mask: optional N×1×H×W / N×H×W, nonzero = valid.

    ``compute()`` → dict of Python numbers (NaN where nothing was seen):
        ``pixel_acc, miou, miou_per_image`` (fractions in [0, 1]), ``iou_per_class`` (list of C
        floats, NaN for classes absent from target and prediction), ``abs`` (mean |p - t|),
        ``abs_rel`` (mean |p - t| / t), ``rmse`` (sqrt of mean (p - t)²) in the depth map's unit,
        ``delta1/2/3`` (fraction with max(p/t, t/p) < 1.25^k, p clamped to 1e-6),
        ``confusion`` (C×C nested list of ints, rows = target, columns = prediction),
        ``n_pixels`` (labelled pixels counted), ``n_depth_pixels``, ``n_images``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 250):
        if num_classes < 2:
            raise XTaskError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        self._conf: Tensor | None = None        # C×C int64, on the device of the first update
        self._img_iou = [0.0, 0]                # Σ per-image mIoU (float64 on device), #images
        self._depth: Tensor | None = None       # float64 sums, order _DEPTH_KEYS

    @torch.no_grad()
    def update(self, seg: Tensor | None, depth_pred: Tensor | None, seg_target: Tensor | None,
               depth_target: Tensor | None, depth_mask: Tensor | None = None) -> None:
        if seg is not None:
            if seg_target is None:
                raise XTaskError("seg_target is required when a segmentation prediction is given")
            self._update_seg(seg, seg_target)
        if depth_pred is not None:
            if depth_target is None:
                raise XTaskError("depth_target is required when a depth prediction is given")
            self._update_depth(depth_pred, depth_target, depth_mask)

    def _update_seg(self, seg: Tensor, seg_target: Tensor) -> None:
        C = self.num_classes
        pred = _seg_labels(seg, C)
        target = _nhw(seg_target, "seg target").long().to(pred.device)
        if pred.shape != target.shape:
            raise XTaskError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        n = target.shape[0]
        valid = (target != self.ignore_index) & (target >= 0) & (target < C)
        image = torch.arange(n, device=target.device).view(n, 1, 1).expand_as(target)
        # one bincount for every image's C×C matrix: index = (image·C + target)·C + prediction
        index = ((image * C + target) * C + pred)[valid]
        per_image = torch.bincount(index, minlength=n * C * C).view(n, C, C)
        conf = per_image.sum(0)
        self._conf = conf if self._conf is None else self._conf + conf.to(self._conf.device)

        inter = per_image.diagonal(dim1=1, dim2=2).double()             # N×C
        union = per_image.sum(2).double() + per_image.sum(1).double() - inter
        present = union > 0                                               # class in pred ∪ target
        iou = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(inter))
        n_present = present.sum(1)
        counted = n_present > 0                                           # skip unlabelled images
        image_miou = iou.sum(1) / n_present.clamp_min(1)
        self._img_iou[0] = self._img_iou[0] + image_miou[counted].sum()
        self._img_iou[1] = self._img_iou[1] + counted.sum()

    def _update_depth(self, depth_pred: Tensor, depth_target: Tensor, depth_mask: Tensor | None) -> None:
        p = _nhw(depth_pred, "depth prediction")
        t = _nhw(depth_target, "depth target").to(p.device)
        if p.shape != t.shape:
            raise XTaskError(f"depth prediction {tuple(p.shape)} and target {tuple(t.shape)} differ in shape")
        valid = t > 0
        if depth_mask is not None:
            valid = valid & (_nhw(depth_mask, "depth_mask").to(p.device) > 0)
        pv = p[valid].double()
        tv = t[valid].double()
        diff = (pv - tv).abs()
        pc = pv.clamp_min(DEPTH_EPS)
        ratio = torch.maximum(pc / tv, tv / pc)
        sums = torch.stack([
            torch.tensor(float(pv.numel()), dtype=torch.float64, device=pv.device),
            diff.sum(), (diff / tv).sum(), (diff * diff).sum(),
            (ratio < 1.25).sum().double(), (ratio < 1.25 ** 2).sum().double(),
            (ratio < 1.25 ** 3).sum().double(),
        ])
        self._depth = sums if self._depth is None else self._depth + sums.to(self._depth.device)

    def compute(self) -> dict[str, Any]:
        nan = float("nan")
        C = self.num_classes
        out: dict[str, Any] = {}
        if self._conf is None:
            conf = torch.zeros(C, C, dtype=torch.int64)
        else:
            conf = self._conf.cpu()
        c = conf.double()
        total = c.sum()
        tp = c.diagonal()
        union = c.sum(0) + c.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, nan))
        out["pixel_acc"] = float(tp.sum() / total) if total > 0 else nan
        out["miou"] = float(iou[union > 0].mean()) if bool((union > 0).any()) else nan
        n_img = int(self._img_iou[1])
        out["miou_per_image"] = float(self._img_iou[0]) / n_img if n_img else nan
        out["iou_per_class"] = [float(v) for v in iou]
        if self._depth is None:
            d = dict.fromkeys(_DEPTH_KEYS, 0.0)
        else:
            d = dict(zip(_DEPTH_KEYS, (float(v) for v in self._depth.cpu())))
        n = d["n"]
        out["abs"] = d["abs"] / n if n else nan
        out["abs_rel"] = d["abs_rel"] / n if n else nan
        out["rmse"] = math.sqrt(d["sq"] / n) if n else nan
        for k in ("delta1", "delta2", "delta3"):
            out[k] = d[k] / n if n else nan
        out["confusion"] = conf.tolist()
        out["n_pixels"] = int(total)
        out["n_depth_pixels"] = int(n)
        out["n_images"] = n_img
        return out


@torch.no_grad()
def consistency_energy(seg: Tensor, seg_t: Tensor, depth: Tensor, depth_t: Tensor) -> dict[str, Any]:
    """Per-pixel disagreement between direct and transferred predictions (FACTS §5).

    seg, seg_t: N×C×H×W logits; depth, depth_t: N×1×H×W or N×H×W.
    Returns ``seg_kl`` N×H×W float32 map of KL(softmax(seg) ‖ softmax(seg_t)) in nats,
    ``depth_abs`` N×H×W float32 map of |depth_t - depth| (depth map unit), and their means
    ``seg_kl_mean``, ``depth_abs_mean`` as Python floats. Both maps are 0 where the two agree.
    """
    if seg.shape != seg_t.shape:
        raise XTaskError(f"seg {tuple(seg.shape)} and transferred seg {tuple(seg_t.shape)} differ in shape")
    log_p = F.log_softmax(seg.detach().float(), dim=1)
    log_q = F.log_softmax(seg_t.detach().float(), dim=1)
    seg_kl = (log_p.exp() * (log_p - log_q)).sum(1).clamp_min(0)  # rounding can go below 0
    d = _nhw(depth.detach().float(), "depth")
    dt = _nhw(depth_t.detach().float(), "transferred depth")
    depth_abs = (dt - d).abs()
    return {"seg_kl": seg_kl, "depth_abs": depth_abs,
            "seg_kl_mean": float(seg_kl.mean()), "depth_abs_mean": float(depth_abs.mean())}


def reference_metrics_loop(seg: Tensor | np.ndarray, depth_pred: Tensor | np.ndarray,
                           seg_target: Tensor | np.ndarray, depth_target: Tensor | np.ndarray,
                           num_classes: int, ignore_index: int = 250,
                           depth_mask: Tensor | np.ndarray | None = None) -> dict[str, Any]:
    """Slow loop implementation in the original code's style, for ONE batch (benchmark/tests only).

    Same inputs as :meth:`SegDepthMetrics.update`. Returns the same keys (``pixel_acc, miou,
    miou_per_image, iou_per_class, abs, abs_rel, rmse, delta1..3``) computed with per-image and
    per-class Python loops, plus two of the original's own numbers:
    ``pixel_acc_per_image`` (its pixel accuracy: per image, then averaged) and
    ``original_rmse_is_mae``: what the original printed as "RMSE", Σ sqrt(|p-t|²·mask)/Σ mask,
    which is really the mean absolute error over valid pixels.
    """
    def as_np(x):
        return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)

    # Segmentation in the original's torch style: for every image and every class, boolean maps
    # compared against a constant ``j * ones`` tensor and a ``.item()`` per class (one host sync
    # each on a GPU). Kept on the input's device so a benchmark compares like with like.
    seg, seg_target = (torch.as_tensor(x) for x in (seg, seg_target))
    pred = seg.max(1).indices if seg.dim() == 4 and seg.shape[1] == num_classes else seg.reshape(seg_target.shape)
    seg_target = seg_target.to(pred.device)
    n = seg_target.shape[0]
    inter_total = [0.0] * num_classes
    union_total = [0.0] * num_classes
    correct_total = 0.0
    labelled_total = 0.0
    image_mious, image_accs = [], []
    for i in range(n):
        labelled = ((seg_target[i] != ignore_index) & (seg_target[i] >= 0)
                    & (seg_target[i] < num_classes)).float()
        n_labelled = torch.sum(labelled).item()
        if n_labelled == 0:
            continue  # the original divided by zero here
        correct = torch.sum(torch.eq(pred[i], seg_target[i]).float() * labelled).item()
        correct_total += correct
        labelled_total += n_labelled
        image_accs.append(correct / n_labelled)
        iou_sum, n_present = 0.0, 0
        for j in range(num_classes):
            const = j * torch.ones(pred[i].shape, dtype=torch.long, device=pred.device)
            both = torch.eq(pred[i], const).float() * labelled + torch.eq(seg_target[i], const).float() * labelled
            union = torch.sum((both > 0).float()).item()
            inter = torch.sum((both > 1).float()).item()
            inter_total[j] += inter
            union_total[j] += union
            if union > 0:
                iou_sum += inter / union
                n_present += 1
        image_mious.append(iou_sum / n_present)
    iou_per_class = [inter_total[j] / union_total[j] if union_total[j] > 0 else float("nan")
                     for j in range(num_classes)]
    present = [v for v in iou_per_class if not math.isnan(v)]

    # Depth in numpy, as the original's Logger did.
    depth_pred, depth_target = as_np(depth_pred), as_np(depth_target)
    p = depth_pred.reshape(depth_target.shape).astype(np.float64)
    t = depth_target.astype(np.float64)
    mask = t > 0
    if depth_mask is not None:
        mask &= as_np(depth_mask).reshape(t.shape) > 0
    pv, tv = p[mask], t[mask]
    count = float(mask.sum())
    nan = float("nan")
    out = {
        "pixel_acc": correct_total / labelled_total if labelled_total else nan,
        "pixel_acc_per_image": float(np.mean(image_accs)) if image_accs else nan,
        "miou": float(np.mean(present)) if present else nan,
        "miou_per_image": float(np.mean(image_mious)) if image_mious else nan,
        "iou_per_class": iou_per_class,
        "abs": float(np.sum(np.abs(pv - tv)) / count) if count else nan,
        "abs_rel": float(np.sum(np.abs(pv - tv) / tv) / count) if count else nan,
        "rmse": float(np.sqrt(np.sum((pv - tv) ** 2) / count)) if count else nan,
        "original_rmse_is_mae": float(np.sum(np.sqrt(np.abs(p - t) ** 2 * mask)) / count) if count else nan,
    }
    pc = np.clip(pv, DEPTH_EPS, None)
    ratio = np.maximum(pc / tv, tv / pc)
    for k in (1, 2, 3):
        out[f"delta{k}"] = float(np.sum(ratio < 1.25 ** k) / count) if count else nan
    return out
