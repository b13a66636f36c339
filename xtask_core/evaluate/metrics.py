"""Segmentation and depth metrics, vectorised, plus consistency energy.

:class:`SegDepthMetrics` follows reset / update / compute. Segmentation uses ONE confusion
matrix built with ``torch.bincount`` (rows = target class, columns = predicted class, non-ignored
pixels only); the same bincount, offset by the image index, gives each image's matrix for the
original's per-image mIoU. All sums are accumulated in float64 / int64, so results do not depend on
how the data is split into batches. CPU tensors go through compiled kernels
(:mod:`xtask_core.evaluate.kernels`: one fused arg-max + count pass over the logits, one pass over the
depth maps, on every core), or numpy kernels when numba is missing (a blocked arg-max, no
boolean-mask indexing, reused scratch buffers); other devices through torch kernels that stay on
the device. All three reproduce :func:`reference_metrics_loop` to rounding (≤ 1e-12 relative,
confusion matrices and δ counts exactly).

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
import threading
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from xtask_core.data.labels import CITYSCAPES_IGNORE
from xtask_core.errors import XTaskError
from xtask_core.evaluate import kernels

__all__ = ["SegDepthMetrics", "consistency_energy", "reference_metrics_loop"]

DEPTH_EPS = 1e-6  # predictions are clamped to this before the δ ratios (no division by 0)
_DEPTH_KEYS = ("n", "abs", "abs_rel", "sq", "delta1", "delta2", "delta3")
_DELTA_THRESHOLDS = (1.25, 1.25 ** 2, 1.25 ** 3)  # exactly representable in float32 and float64
# float32 δ ratios closer than this many float32 steps to a threshold are re-decided in float64
# (their float32 rounding could put them on the wrong side); the others are decided in float32.
_AMBIGUOUS_STEPS = 4
_BLOCK_BYTES = 1 << 19  # logits per arg-max block: with its scratch it fits a core's L2 cache


def _nhw(t: Tensor, name: str) -> Tensor:
    """N×1×H×W or N×H×W → N×H×W."""
    if t.dim() == 4 and t.shape[1] == 1:
        return t[:, 0]
    if t.dim() == 3:
        return t
    raise XTaskError(f"{name} must be N×1×H×W or N×H×W, got shape {tuple(t.shape)}")


def _is_logits(seg: Tensor, num_classes: int) -> bool:
    if seg.dim() == 4 and seg.shape[1] == num_classes:
        return True
    if seg.dim() == 4 and seg.shape[1] != 1:
        raise XTaskError(f"segmentation logits have {seg.shape[1]} classes, metrics expect {num_classes}")
    return False


def _seg_labels(seg: Tensor, num_classes: int) -> Tensor:
    """Logits N×C×H×W → argmax labels; labels N×H×W (or N×1×H×W) pass through. int64 out."""
    if _is_logits(seg, num_classes):
        return seg.max(1).indices  # same first-max tie rule as argmax, several times faster on CPU
    labels = _nhw(seg, "segmentation prediction").long()
    if labels.numel():
        lo, hi = torch.aminmax(labels)
        if int(lo) < 0 or int(hi) >= num_classes:
            raise XTaskError(f"predicted labels must be in [0, {num_classes}), got range [{int(lo)}, {int(hi)}]")
    return labels


# --------------------------------------------------------------------------- CPU kernels (numpy)
# On CPU the hot path runs in numpy: its comparisons and reductions over a middle axis are
# vectorised, whereas PyTorch's CPU arg-max over dim 1 and its boolean-mask indexing are not
# (≈10× slower on the benchmark's 8×19×128×256 logits). Other devices use the torch kernels below.
#
# Scratch arrays are reused between calls (one pool per thread): a fresh multi-megabyte array is
# a fresh mmap whose first touch costs a page fault per 4 KiB, which on a busy machine took as
# long as the arithmetic itself. The pool holds about 20 bytes per pixel of the largest batch seen.
_POOL = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array of ``shape``/``dtype`` backed by this thread's reusable buffer ``name``."""
    pool = _POOL.__dict__.setdefault("buffers", {})
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = pool.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = pool[name] = np.empty(max(nbytes, 1), dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def _argmax_np(logits: np.ndarray) -> np.ndarray | None:
    """First-max class over axis 1 of float32 logits N×C×P (C ≤ 255) → uint8 N×P (scratch), None if NaN.

    m = max over C (a vectorised reduction); the planes equal to m are weighted C, C-1, …, 1 and
    their max is C − (first index equal to m): the same first-max tie rule as ``argmax``, so the
    labels are identical. A pixel with a NaN logit matches no plane (weight 0): the caller then
    falls back to torch, which has its own NaN rule. Blocks of ≈ ``_BLOCK_BYTES`` of logits are
    done one at a time so that the second read and the scratch stay in the core's cache (about
    2× faster than whole-batch passes on a busy machine).
    """
    n, c, p = logits.shape
    step = max(256, _BLOCK_BYTES // (4 * c))      # pixels per block
    per_img = min(p, step)                        # pixels of one image per block
    imgs = max(1, step // p) if p <= step else 1  # whole small images per block
    out = _scratch("labels", (n, p), np.uint8)
    peak = _scratch("peak", (imgs, 1, per_img), np.float32)
    hits = _scratch("hits", (imgs, c, per_img), np.uint8)
    weights = np.arange(c, 0, -1, dtype=np.uint8).reshape(1, c, 1)
    for i0 in range(0, n, imgs):
        i1 = min(n, i0 + imgs)
        for s0 in range(0, p, per_img):
            block = logits[i0:i1, :, s0:s0 + per_img]
            k, length = block.shape[0], block.shape[2]
            m, h = peak[:k, :, :length], hits[:k, :, :length]
            np.max(block, axis=1, keepdims=True, out=m)
            np.equal(block, m, out=h.view(np.bool_))
            np.multiply(h, weights, out=h)
            np.max(h, axis=1, out=out[i0:i1, s0:s0 + length])
    if out.min() == 0:
        return None
    return np.subtract(np.uint8(c), out, out=out)


def _seg_counts_np(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """Per-image confusion matrices by one bincount. pred N×P ints in [0, C), target N×P int64 → N×C×C int64."""
    C = num_classes
    n = target.shape[0]
    bins = n * (C + 1) * C
    itype = np.int32 if bins < 2 ** 31 else np.int64
    index = _scratch("index", target.shape, itype)
    # Every unlabelled pixel goes to an extra target row C that is dropped afterwards, so no mask
    # indexing is needed. Viewed as uint64, negative labels are huge: one minimum sends every
    # label outside [0, C) to row C.
    np.minimum(target.view(np.uint64), np.uint64(C), out=index, casting="unsafe")
    if 0 <= ignore_index < C:
        index[target == ignore_index] = C
    index *= C
    np.add(index, pred, out=index, casting="unsafe")
    index += (np.arange(n, dtype=itype) * ((C + 1) * C))[:, None]  # image offset
    # torch's bincount takes int32 as is (numpy's would first copy it to int64)
    counts = torch.bincount(torch.from_numpy(index).view(-1), minlength=bins).numpy()
    return counts.reshape(n, C + 1, C)[:, :C]


def _image_miou_np(per_image: np.ndarray) -> tuple[float, int]:
    """Σ over images of the original's per-image mIoU (classes in pred ∪ target), and #images counted."""
    inter = per_image.diagonal(axis1=1, axis2=2).astype(np.float64)  # N×C
    union = per_image.sum(2) + per_image.sum(1) - inter
    present = union > 0
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=present)
    n_present = present.sum(1)
    counted = n_present > 0  # images without a labelled pixel are skipped, as in the original
    return float((iou.sum(1)[counted] / n_present[counted]).sum()), int(counted.sum())


def _exact_ratio(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The reference's δ ratio max(pc/t, t/pc), pc = max(p, 1e-6), in float64."""
    p64, t64 = p.astype(np.float64), t.astype(np.float64)
    pc = np.maximum(p64, DEPTH_EPS)
    return np.maximum(pc / t64, t64 / pc)


def _delta_counts_np(p: np.ndarray, t: np.ndarray, invalid: np.ndarray | None) -> list[int]:
    """#valid pixels with max(pc/t, t/pc) < 1.25^k, k = 1..3, pc = max(p, 1e-6). p, t, invalid: 1-D.

    p, t float32 and finite, t ≥ 1 where ``invalid`` (see :func:`_depth_sums_np`). Identical to
    the reference's float64 computation: the ratios are computed in float32, and a float32 ratio
    is within 1 float32 step of the float64 one (correct rounding; clamping at float32(1e-6)
    instead of 1e-6 moves it by 2.5e-9 relative), so only ratios within ``_AMBIGUOUS_STEPS``
    steps of a threshold could be decided differently: those few are recomputed in float64.
    """
    pc = np.maximum(p, np.float32(DEPTH_EPS), out=_scratch("pc", p.shape, np.float32))
    ratio = np.divide(pc, t, out=_scratch("ratio", p.shape, np.float32))
    np.maximum(ratio, np.divide(t, pc, out=pc), out=ratio)
    if invalid is not None:  # push invalid pixels above every threshold (FLT_MAX·0 = 0 elsewhere)
        np.maximum(ratio, np.multiply(invalid, np.finfo(np.float32).max, out=pc), out=ratio)
    below = _scratch("below", p.shape, np.bool_)
    counts = []
    for thr in _DELTA_THRESHOLDS:
        lo = hi = np.float32(thr)
        for _ in range(_AMBIGUOUS_STEPS):
            lo, hi = np.nextafter(lo, np.float32(0)), np.nextafter(hi, np.float32(np.inf))
        sure = int(np.count_nonzero(np.less(ratio, lo, out=below)))
        maybe = int(np.count_nonzero(np.less_equal(ratio, hi, out=below)))
        if maybe != sure:  # rare: decide the ratios near the threshold in float64
            near = np.flatnonzero((ratio >= lo) & (ratio <= hi))
            sure += int(np.count_nonzero(_exact_ratio(p[near], t[near]) < thr))
        counts.append(sure)
    return counts


def _depth_sums_exact_np(p: np.ndarray, t: np.ndarray, valid: np.ndarray) -> list[float]:
    """Plain float64 depth sums over the valid pixels (any dtype, NaN/Inf allowed): the slow path."""
    p64, t64 = p[valid].astype(np.float64), t[valid].astype(np.float64)
    d = np.abs(p64 - t64)
    ratio = _exact_ratio(p64, t64)
    return [float(p64.size), float(d.sum()), float((d / t64).sum()), float(np.einsum("i,i->", d, d)),
            *(float(np.count_nonzero(ratio < thr)) for thr in _DELTA_THRESHOLDS)]


def _depth_sums_np(p: np.ndarray, t: np.ndarray, mask: np.ndarray | None) -> list[float]:
    """Depth sums in ``_DEPTH_KEYS`` order over pixels with t > 0 (and mask > 0). p, t: 1-D float arrays.

    Fast path (float32, all values finite): whole-array arithmetic, invalid pixels neutralised by
    multiplying with the mask rather than selected by boolean indexing (3-4× slower with its
    allocations). Anything else takes :func:`_depth_sums_exact_np`.
    """
    valid = np.greater(t, 0, out=_scratch("valid", t.shape, np.bool_))
    if mask is not None:
        valid &= np.greater(mask, 0, out=_scratch("below", t.shape, np.bool_))
    n_valid = int(np.count_nonzero(valid))
    if not (p.dtype == t.dtype == np.float32 and np.isfinite(p.sum()) and np.isfinite(t.sum())):
        return _depth_sums_exact_np(p, t, valid)
    invalid = None
    if n_valid < valid.size:
        invalid = np.logical_not(valid, out=_scratch("invalid", t.shape, np.bool_))
        # t → 1 where t ≤ 0 (0·… / 1 = 0 below); unchanged where valid (t > 0) or t ≥ 1
        t = np.maximum(t, invalid, out=_scratch("t_safe", t.shape, np.float32))
    # the reference's float64 difference, element for element
    d = np.subtract(p, t, out=_scratch("diff", p.shape, np.float64), dtype=np.float64)
    if invalid is not None:
        np.multiply(d, valid, out=d)  # 0 on invalid pixels: they add nothing to the sums
    sq = float(np.einsum("i,i->", d, d))  # not np.dot: a BLAS call may spin up threads for 1 dot
    np.abs(d, out=d)
    s_abs = float(d.sum())
    s_rel = float(np.divide(d, t, out=d, dtype=np.float64).sum())
    return [float(n_valid), s_abs, s_rel, sq, *map(float, _delta_counts_np(p, t, invalid))]


# --------------------------------------------------------------------------- torch kernels (GPU)
def _seg_counts_torch(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """Torch version of :func:`_seg_counts_np` (stays on the device, no host sync). → N×C×C int64."""
    C = num_classes
    n = target.shape[0]
    valid = (target != ignore_index) & (target >= 0) & (target < C)
    rows = torch.where(valid, target, torch.full_like(target, C))
    offset = torch.arange(n, device=target.device).view(n, 1, 1) * ((C + 1) * C)
    index = (rows * C + pred) + offset
    counts = torch.bincount(index.reshape(-1), minlength=n * (C + 1) * C)
    return counts.view(n, C + 1, C)[:, :C]


def _image_miou_torch(per_image: Tensor) -> tuple[Tensor, Tensor]:
    inter = per_image.diagonal(dim1=1, dim2=2).double()
    union = per_image.sum(2).double() + per_image.sum(1).double() - inter
    present = union > 0
    iou = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(inter))
    n_present = present.sum(1)
    counted = n_present > 0
    image_miou = iou.sum(1) / n_present.clamp_min(1)
    return (image_miou * counted).sum(), counted.sum()


def _depth_sums_torch(p: Tensor, t: Tensor, mask: Tensor | None) -> Tensor:
    """Torch version of :func:`_depth_sums_np` in float64 on the device → 7 sums (``_DEPTH_KEYS``)."""
    valid = t > 0
    if mask is not None:
        valid = valid & (mask > 0)
    p64, t64 = p.double(), t.double()
    one = torch.ones((), dtype=torch.float64, device=p.device)
    p64, t64 = torch.where(valid, p64, one), torch.where(valid, t64, one)  # as in the numpy kernel
    n_invalid = (~valid).sum()
    d = p64 - t64
    ad = d.abs()
    pc = p64.clamp_min(DEPTH_EPS)
    ratio = torch.maximum(pc / t64, t64 / pc)
    return torch.stack([
        valid.sum().double(), ad.sum(), (ad / t64).sum(), (d * d).sum(),
        *[((ratio < thr).sum() - n_invalid).double() for thr in _DELTA_THRESHOLDS]])


def _cpu_numpy(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


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

    CPU tensors go through the compiled kernels (numpy ones without numba), other devices
    through torch kernels that stay on the device (no host sync per batch); all give the
    reference's results (``cpu_backend`` pins one).

    ``compute()`` → dict of Python numbers (NaN where nothing was seen):
        ``pixel_acc, miou, miou_per_image`` (fractions in [0, 1]), ``iou_per_class`` (list of C
        floats, NaN for classes absent from target and prediction), ``abs`` (mean |p - t|),
        ``abs_rel`` (mean |p - t| / t), ``rmse`` (sqrt of mean (p - t)²) in the depth map's unit,
        ``delta1/2/3`` (fraction with max(p/t, t/p) < 1.25^k, p clamped to 1e-6),
        ``confusion`` (C×C nested list of ints, rows = target, columns = prediction),
        ``n_pixels`` (labelled pixels counted), ``n_depth_pixels``, ``n_images``.
    """

    #: kernels for CPU tensors: "auto" (compiled when numba is there, else numpy), "compiled",
    #: "numpy" or "torch" (tests pin each one to check it against the reference)
    cpu_backend = "auto"

    def __init__(self, num_classes: int, ignore_index: int = CITYSCAPES_IGNORE):
        if num_classes < 2:
            raise XTaskError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        self._conf: Tensor | None = None        # C×C int64, on the device of the first update
        self._img_iou: list = [0.0, 0]          # Σ per-image mIoU, #images (floats or device tensors)
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

    def _cpu_backend(self, t: Tensor) -> str:
        """"compiled", "numpy" or "torch": which kernels handle this tensor."""
        if t.device.type != "cpu" or self.cpu_backend == "torch":
            return "torch"
        if self.cpu_backend in ("auto", "compiled"):
            if kernels.available():
                return "compiled"
            if self.cpu_backend == "compiled":
                raise XTaskError(f"compiled metric kernels unavailable: {kernels.unavailable_reason()}")
        return "numpy"

    def _update_seg(self, seg: Tensor, seg_target: Tensor) -> None:
        C = self.num_classes
        target = _nhw(seg_target, "seg target")
        backend = self._cpu_backend(seg)
        if backend != "torch":
            if tuple(seg.shape[-2:]) != tuple(target.shape[-2:]) or seg.shape[0] != target.shape[0]:
                raise XTaskError(f"prediction {(seg.shape[0], *seg.shape[-2:])} and target "
                                 f"{tuple(target.shape)} differ in shape")
            t = _cpu_numpy(target.cpu().long()).reshape(target.shape[0], -1)
            compiled = backend == "compiled"
            # float16/bfloat16 → float32 is exact, so the arg-max is unchanged
            logits = (_cpu_numpy(seg.float()).reshape(seg.shape[0], C, -1)
                      if _is_logits(seg, C) and seg.dtype in (torch.float32, torch.float16, torch.bfloat16) else None)
            per_image = pred = None
            if logits is not None and compiled:
                per_image = kernels.seg_counts(logits, t, C, self.ignore_index)
            elif logits is not None and C <= 255:
                pred = _argmax_np(logits)
            if per_image is None:
                if pred is None:  # labels, float64 / NaN logits, > 255 classes: torch's arg-max
                    pred = _cpu_numpy(_seg_labels(seg, C)).reshape(seg.shape[0], -1)
                count = kernels.seg_counts_labels if compiled else _seg_counts_np
                per_image = count(pred, t, C, self.ignore_index)
            conf = torch.from_numpy(per_image.sum(0))
            miou_sum, counted = _image_miou_np(per_image)
        else:
            pred = _seg_labels(seg, C)
            target = target.long().to(pred.device)
            if pred.shape != target.shape:
                raise XTaskError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
            per_image = _seg_counts_torch(pred, target, C, self.ignore_index)
            conf = per_image.sum(0)
            miou_sum, counted = _image_miou_torch(per_image)
        self._conf = conf if self._conf is None else self._conf + conf.to(self._conf.device)
        self._img_iou[0] = self._img_iou[0] + miou_sum
        self._img_iou[1] = self._img_iou[1] + counted

    def _update_depth(self, depth_pred: Tensor, depth_target: Tensor, depth_mask: Tensor | None) -> None:
        p = _nhw(depth_pred, "depth prediction")
        t = _nhw(depth_target, "depth target").to(p.device)
        if p.shape != t.shape:
            raise XTaskError(f"depth prediction {tuple(p.shape)} and target {tuple(t.shape)} differ in shape")
        m = None if depth_mask is None else _nhw(depth_mask, "depth_mask").to(p.device)
        if m is not None and m.shape != p.shape:
            raise XTaskError(f"depth_mask {tuple(m.shape)} and depth prediction {tuple(p.shape)} differ in shape")
        backend = self._cpu_backend(p)
        if backend == "compiled":
            # one float dtype for the kernel: float32 (exact for half/bf16/bool), float64 if either map is
            dtype = torch.float64 if torch.float64 in (p.dtype, t.dtype) else torch.float32
            p_, t_, m_ = (None if x is None else _cpu_numpy(x.to(dtype)).reshape(-1) for x in (p, t, m))
            sums = torch.tensor(kernels.depth_sums(p_, t_, m_), dtype=torch.float64)
        elif backend == "numpy":
            def flat(x: Tensor) -> np.ndarray:
                if x.dtype in (torch.float16, torch.bfloat16, torch.bool):
                    x = x.float()  # exact; numpy has no bfloat16
                return _cpu_numpy(x).reshape(-1)
            with np.errstate(all="ignore"):  # NaN/Inf predictions give NaN sums, as in the reference
                sums = torch.tensor(_depth_sums_np(flat(p), flat(t), None if m is None else flat(m)),
                                    dtype=torch.float64)
        else:
            sums = _depth_sums_torch(p, t, m)
        self._depth = sums if self._depth is None else self._depth + sums.to(self._depth.device)

    def compute(self) -> dict[str, Any]:
        nan = float("nan")
        C = self.num_classes
        out: dict[str, Any] = {}
        # numpy on the host: a C×C matrix is far too small for torch's per-op overhead
        conf = np.zeros((C, C), np.int64) if self._conf is None else self._conf.cpu().numpy()
        c = conf.astype(np.float64)
        total = float(c.sum())
        tp = c.diagonal()
        union = c.sum(0) + c.sum(1) - tp
        seen = union > 0
        iou = np.full(C, nan)
        np.divide(tp, union, out=iou, where=seen)
        out["pixel_acc"] = float(tp.sum() / total) if total > 0 else nan
        out["miou"] = float(iou[seen].mean()) if seen.any() else nan
        n_img = int(self._img_iou[1])
        out["miou_per_image"] = float(self._img_iou[0]) / n_img if n_img else nan
        out["iou_per_class"] = iou.tolist()
        if self._depth is None:
            d = dict.fromkeys(_DEPTH_KEYS, 0.0)
        else:
            d = dict(zip(_DEPTH_KEYS, self._depth.cpu().tolist()))
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
    """Per-pixel disagreement between direct and transferred predictions.

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
                           num_classes: int, ignore_index: int = CITYSCAPES_IGNORE,
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
