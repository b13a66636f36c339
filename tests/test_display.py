"""xtask_core.viz.display: shared depth ranges, fixed energy scales, wipe, stacked corruptions."""
from __future__ import annotations

import numpy as np
import pytest

from xtask_core.errors import XTaskError
from xtask_core.viz import display


def test_depth_range_ignores_invalid_and_is_shared():
    a = np.array([[0.0, 1.0], [2.0, np.inf]])
    b = np.array([[3.0, np.nan]])
    lo, hi = display.depth_range([a, b, None])
    assert 1.0 <= lo < 1.1 and 2.9 < hi <= 3.0
    assert display.depth_range([np.zeros((2, 2))]) == (0.0, 1.0)


def test_energy_scale_is_fixed_on_the_clean_map():
    clean = np.arange(101, dtype=np.float64)                     # 99th percentile = 99
    assert display.energy_scale(clean) == pytest.approx(297.0)
    assert display.energy_scale(clean, factor=1.0, q=50) == pytest.approx(50.0)
    assert display.energy_scale(np.zeros((3, 3))) == 1e-6 and display.energy_scale(np.array([np.nan])) == 1e-6


def test_wipe_and_corruptions():
    a = np.zeros((2, 10, 3), np.uint8)
    b = np.full((2, 10, 3), 9, np.uint8)
    w = display.wipe(a, b, 0.5)
    assert (w[:, :4] == 9).all() and (w[:, 4:6] == 255).all() and (w[:, 6:] == 0).all()
    assert (display.wipe(a, b, 0.0) == a).all() and (display.wipe(a, b, 1.0) == b).all()
    with pytest.raises(XTaskError):
        display.wipe(a, b[:1], 0.5)
    img = np.full((16, 16, 3), 200, np.uint8)
    same = display.apply_corruptions(img, {"noise": 0.0, "brightness": 0.0})
    assert (same == img).all() and same is not img
    dark = display.apply_corruptions(img, {"brightness": 1.0})
    assert dark.max() == 20                                       # ×0.1 at full strength


def test_absent_outputs_note_names_the_missing_task():
    from types import SimpleNamespace
    a = np.zeros((2, 3, 3), np.float32)
    d = np.ones((3, 3), np.float32)
    full = SimpleNamespace(seg_logits=a, seg_t_logits=a, depth=d, depth_t=d)
    assert display.absent_outputs_note(full) == ""
    depth_only = SimpleNamespace(seg_logits=None, seg_t_logits=None, depth=d, depth_t=None)
    assert "depth only" in display.absent_outputs_note(depth_only)
    assert "no segmentation" in display.absent_outputs_note(depth_only)
    seg_only = SimpleNamespace(seg_logits=a, seg_t_logits=None, depth=None, depth_t=None)
    assert "segmentation only" in display.absent_outputs_note(seg_only)
    direct = SimpleNamespace(seg_logits=a, seg_t_logits=None, depth=d, depth_t=None)
    assert "no consistency energy" in display.absent_outputs_note(direct)
