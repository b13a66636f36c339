"""Augmentations and image normalisation shared by the datasets.

Augmentations act on a *sample*: a dict of numpy arrays in image layout, all with the same
height and width: ``image`` H×W×3 float32 in [0, 1] (interpolated linearly), and any other
array key (``seg`` H×W int, ``depth`` H×W float, masks ...) resampled with nearest neighbour so
labels and invalid-depth zeros are never blended. Non-array values (e.g. ``name``) pass through.
Every array key receives the same geometric transform, so label/depth alignment is preserved.

Depth under scale-crop. Cropping a 1/s window and resizing it back is a zoom by s: exactly a
focal length f → s·f. Then
- disparity (f·B/Z) becomes s times larger: ``depth_scaling="multiply"`` — physically right
  for Cityscapes / synthetic disparity (and it also agrees with the "things look s× nearer"
  reading, since disparity = 1/depth up to a constant);
- metric depth is unchanged by a focal change, but a monocular network that assumes a fixed
  focal length reads a zoomed object as s× nearer, so MTAN and the original code divide depth by
  s for NYUv2: ``depth_scaling="divide"``;
- the original divides for NYUv2 only and leaves Cityscapes disparity
  unscaled: ``depth_scaling="none"`` reproduces that.

Randomness comes from an explicit ``np.random.Generator`` (no global state), so a seeded
generator gives reproducible augmentations.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from xtask_core.config import IMAGENET_MEAN, IMAGENET_STD
from xtask_core.errors import XTaskError

DEPTH_SCALINGS = ("none", "divide", "multiply")
_LINEAR_KEYS = ("image",)


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


def _arrays(sample: dict[str, Any]) -> dict[str, np.ndarray]:
    arrays = {k: v for k, v in sample.items() if isinstance(v, np.ndarray)}
    shapes = {v.shape[:2] for v in arrays.values()}
    if len(shapes) > 1:
        raise XTaskError(f"sample arrays differ in height×width: { {k: v.shape for k, v in arrays.items()} }")
    return arrays


def hflip(sample: dict[str, Any]) -> dict[str, Any]:
    """Mirror every array of ``sample`` left-right (returns a new dict, contiguous copies)."""
    out = dict(sample)
    for k, v in _arrays(sample).items():
        out[k] = np.ascontiguousarray(v[:, ::-1])
    return out


def random_flip(sample: dict[str, Any], rng: np.random.Generator | None = None, p: float = 0.5) -> dict[str, Any]:
    """Horizontal flip of the whole sample with probability ``p``."""
    return hflip(sample) if _rng(rng).random() < p else dict(sample)


def scale_crop(sample: dict[str, Any], scale: float, top: int, left: int,
               depth_scaling: str = "none") -> dict[str, Any]:
    """Crop an (H/scale)×(W/scale) window at (top, left) and resize it back to H×W.

    ``image`` is resized linearly, every other array key nearest-neighbour. ``depth`` is then
    multiplied or divided by ``scale`` per ``depth_scaling`` (see module docstring); zeros
    (invalid) stay zero either way.
    """
    if depth_scaling not in DEPTH_SCALINGS:
        raise XTaskError(f"depth_scaling must be one of {', '.join(DEPTH_SCALINGS)}, got {depth_scaling!r}")
    if scale < 1.0:
        raise XTaskError(f"scale-crop scale must be >= 1, got {scale}")
    arrays = _arrays(sample)
    if not arrays:
        return dict(sample)
    h, w = next(iter(arrays.values())).shape[:2]
    ch, cw = max(1, int(round(h / scale))), max(1, int(round(w / scale)))
    if not (0 <= top <= h - ch and 0 <= left <= w - cw):
        raise XTaskError(f"crop window {ch}x{cw} at ({top}, {left}) does not fit in {h}x{w}")
    out = dict(sample)
    for k, v in arrays.items():
        crop = v[top:top + ch, left:left + cw]
        interp = cv2.INTER_LINEAR if k in _LINEAR_KEYS else cv2.INTER_NEAREST
        if crop.dtype == np.int64 or crop.dtype == np.bool_:   # cv2 cannot resize these dtypes
            res = cv2.resize(crop.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST).astype(crop.dtype)
        else:
            res = cv2.resize(crop, (w, h), interpolation=interp)
        if v.ndim == 3 and res.ndim == 2:  # cv2 drops a trailing singleton channel
            res = res[:, :, None]
        out[k] = res
    if "depth" in out and depth_scaling != "none":
        factor = scale if depth_scaling == "multiply" else 1.0 / scale
        out["depth"] = (out["depth"] * factor).astype(out["depth"].dtype)
    return out


def random_scale_crop(sample: dict[str, Any], rng: np.random.Generator | None = None,
                      scales: Sequence[float] = (1.0, 1.2, 1.5), depth_divide: bool = False,
                      depth_scaling: str | None = None) -> dict[str, Any]:
    """Pick a scale from ``scales`` and a random window, then :func:`scale_crop`.

    ``depth_divide=True`` is shorthand for ``depth_scaling="divide"`` (the NYUv2 convention);
    give ``depth_scaling`` explicitly for disparity ("multiply") or to keep depth ("none").
    """
    if depth_scaling is None:
        depth_scaling = "divide" if depth_divide else "none"
    elif depth_divide and depth_scaling != "divide":
        raise XTaskError("depth_divide=True contradicts depth_scaling=" + repr(depth_scaling))
    rng = _rng(rng)
    arrays = _arrays(sample)
    if not arrays:
        return dict(sample)
    h, w = next(iter(arrays.values())).shape[:2]
    scale = float(scales[int(rng.integers(len(scales)))])
    ch, cw = max(1, int(round(h / scale))), max(1, int(round(w / scale)))
    top = int(rng.integers(h - ch + 1))
    left = int(rng.integers(w - cw + 1))
    return scale_crop(sample, scale, top, left, depth_scaling=depth_scaling)


def normalize_image(rgb: np.ndarray) -> torch.Tensor:
    """H×W×3 RGB (uint8 0..255 or float in [0, 1]) → 3×H×W float32 tensor, ImageNet-normalised."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise XTaskError(f"expected an H×W×3 RGB image, got shape {arr.shape}")
    x = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    x = (x - mean) / std
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def denormalize(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize_image` for display.

    ``x``: 3×H×W or N×3×H×W (tensor or array, ImageNet-normalised) → uint8 RGB H×W×3 or N×H×W×3.
    """
    t = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if t.ndim not in (3, 4) or t.shape[-3] != 3:
        raise XTaskError(f"expected 3×H×W or N×3×H×W, got shape {t.shape}")
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)
    rgb = np.clip((t * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.moveaxis(rgb, -3, -1)


def to_item(sample: dict[str, Any], ignore: int) -> dict[str, Any]:
    """Numpy sample (``image`` H×W×3 float [0,1], ``seg`` H×W, ``depth`` H×W, ``name``) → batch item.

    Returns the batch item every dataset yields: ``image`` 3×H×W float32 (ImageNet-normalised), ``seg`` H×W int64,
    ``depth`` 1×H×W float32 (0 = invalid), ``seg_mask`` = (seg != ignore) and ``depth_mask`` =
    (depth > 0), both 1×H×W float32 in {0, 1}, ``name`` str. Masks are derived after augmentation
    so they always match the targets exactly.
    """
    seg = torch.from_numpy(np.ascontiguousarray(sample["seg"]).astype(np.int64))
    depth = np.ascontiguousarray(sample["depth"], dtype=np.float32)
    if depth.ndim == 3:
        depth = depth[:, :, 0]
    depth_t = torch.from_numpy(depth)[None]
    return {
        "image": normalize_image(sample["image"]),
        "seg": seg,
        "depth": depth_t,
        "seg_mask": (seg != ignore).float()[None],
        "depth_mask": (depth_t > 0).float(),
        "name": str(sample.get("name", "")),
    }


def augment_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG.

    Inside DataLoader workers torch's RNG is seeded per worker and per epoch (and from
    ``torch.manual_seed`` in the main process), whereas a numpy generator created in the
    dataset's ``__init__`` would be copied identically into every forked worker.
    """
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
