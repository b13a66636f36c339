"""xtask_core.data.camera: pinhole intrinsics and metric depth by depth kind."""
from __future__ import annotations

import numpy as np
import pytest

from xtask_core.data import camera
from xtask_core.data.cityscapes import CITYSCAPES_BASELINE, CITYSCAPES_FX
from xtask_core.errors import XTaskError
from xtask_core.viz import figures


def test_pinhole_intrinsics_by_depth_kind():
    # metres: 60° field of view → f = (w/2)/tan(30°); principal point at the pixel centre
    fx, fy, cx, cy = camera.pinhole_intrinsics("depth", 4, 8)
    assert fx == fy == pytest.approx(4.0 / np.tan(np.radians(30))) and (cx, cy) == (3.5, 1.5)
    # disparity: Cityscapes focal length scaled from 2048 px to this width
    assert camera.pinhole_intrinsics("disparity", 128, 256)[0] == pytest.approx(CITYSCAPES_FX / 8)
    with pytest.raises(XTaskError):
        camera.pinhole_intrinsics("normals", 4, 8)


def test_metric_depth_converts_disparity_and_drops_unusable():
    disp = np.array([[0.05, 0.0], [-1.0, 1e-4]], np.float32)
    z = camera.metric_depth(disp, "disparity", max_metres=80.0)
    # 0.05 model units = 12.8 px of disparity → baseline·fx / 12.8 ≈ 37 m
    assert z[0, 0] == pytest.approx(CITYSCAPES_BASELINE * CITYSCAPES_FX / (0.05 * 256), rel=1e-5)
    assert np.isnan(z[0, 1]) and np.isnan(z[1, 0])            # invalid (0) and negative
    assert np.isnan(z[1, 1])                                   # 1e-4 → ~18 km, beyond 80 m
    m = camera.metric_depth(np.array([[2.0, 0.0, np.inf]]), "depth")
    assert m[0, 0] == 2.0 and np.isnan(m[0, 1:]).all()
    with pytest.raises(XTaskError):
        camera.metric_depth(disp, "normals")


def test_metric_depth_feeds_the_core_point_cloud():
    # 2×4 metres map, one invalid pixel: the core builder back-projects with our intrinsics
    depth = np.full((2, 4), 2.0, np.float32)
    depth[0, 1] = 0.0
    fx, fy, cx, cy = camera.pinhole_intrinsics("depth", 2, 4)
    fig = figures.point_cloud_figure(camera.metric_depth(depth, "depth"), np.zeros((2, 4, 3), np.uint8),
                                     intrinsics=(fx, fy, cx, cy), stride=1)
    tr = fig.data[0]
    assert len(tr.x) == 7 and set(tr.y) == {2.0}                 # y axis = forward distance
    assert tr.x[0] == pytest.approx((0 - 1.5) * 2.0 / fx)        # pixel (v=0, u=0)
