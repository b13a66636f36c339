"""The camera behind a depth prediction: pinhole intrinsics and metric depth.

Cityscapes-style models predict disparity in model units (disparity in pixels / 256 at the
2048-px-wide Cityscapes camera); NYUv2-style models predict metres. These two functions turn
either into metres and give the focal length needed to lift a depth map to 3-D.
"""
from __future__ import annotations

import numpy as np

from xtask_core.data.cityscapes import CITYSCAPES_FX, disparity_to_metres
from xtask_core.errors import XTaskError

NYU_FOV_DEG = 60.0   # assumed horizontal field of view when a model predicts metres (no camera file)
CITYSCAPES_WIDTH_PX = 2048.0   # the width CITYSCAPES_FX is given at


def _check_kind(depth_kind: str) -> None:
    if depth_kind not in ("disparity", "depth"):
        raise XTaskError(f"depth_kind must be 'disparity' or 'depth', got {depth_kind!r}")


def pinhole_intrinsics(depth_kind: str, height: int, width: int) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` in pixels of an h×w prediction, for back-projecting it to 3-D.

    "disparity" (Cityscapes-style models): the Cityscapes focal length (2262.52 px at 2048 px
    wide, from the dataset's camera files), scaled to ``width`` (the image is resized
    isotropically, so fy = fx). "depth" (metres, NYUv2-style): an assumed 60° horizontal field of
    view. The principal point is the image centre in both cases.
    """
    _check_kind(depth_kind)
    if depth_kind == "disparity":
        f = CITYSCAPES_FX * width / CITYSCAPES_WIDTH_PX
    else:
        f = (width / 2.0) / np.tan(np.radians(NYU_FOV_DEG / 2.0))
    return float(f), float(f), (width - 1) / 2.0, (height - 1) / 2.0


def metric_depth(depth: np.ndarray, depth_kind: str, max_metres: float = 80.0) -> np.ndarray:
    """A prediction in model units → h×w float32 metres, NaN where there is no usable depth.

    "disparity": model units (disparity_px / 256 at 2048 px) through the Cityscapes stereo
    camera; "depth": already metres. Values ≤ 0, non-finite or beyond ``max_metres`` (far
    disparities blow up: 0.001 model units is ~1.8 km) become NaN, so a point cloud or a hover
    never shows them.
    """
    _check_kind(depth_kind)
    d = np.asarray(depth, np.float64)
    if depth_kind == "disparity":
        z = np.asarray(disparity_to_metres(np.where(np.isfinite(d), d, 0.0)), np.float64)
    else:
        z = d
    ok = np.isfinite(z) & (z > 0) & (z <= max_metres)
    return np.where(ok, z, np.nan).astype(np.float32)
