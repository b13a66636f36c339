"""Pure visualisation helpers: shapes, dtypes and known colours."""
from __future__ import annotations

import numpy as np
import pytest

from xtask_core.errors import XTaskError
from xtask_core.viz import colour as viz

PAL = np.array([[128, 64, 128], [70, 70, 70], [0, 0, 142]], np.uint8)


def test_colorize_seg_known_colours_and_ignore():
    labels = np.array([[0, 1, 2], [250, 2, 7], [-1, 0, 1]])
    out = viz.colorize_seg(labels, PAL, ignore_index=250)
    assert out.shape == (3, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], PAL)
    np.testing.assert_array_equal(out[1, 0], [0, 0, 0])   # ignore
    np.testing.assert_array_equal(out[1, 2], [0, 0, 0])   # out of range (7 ≥ K)
    np.testing.assert_array_equal(out[2, 0], [0, 0, 0])   # negative (NYUv2 -1)
    # float labels (NYUv2 stores them as float) behave the same
    np.testing.assert_array_equal(viz.colorize_seg(labels.astype(np.float32), PAL, 250), out)


@pytest.mark.parametrize("name,first,last", [
    ("magma", (0, 0, 4), (252, 253, 191)),
    ("viridis", (68, 1, 84), (253, 231, 37)),
    ("gray", (0, 0, 0), (255, 255, 255)),
])
def test_colormap_ends(name, first, last):
    lut = viz.colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    np.testing.assert_array_equal(lut[0], first)
    np.testing.assert_array_equal(lut[-1], last)
    np.testing.assert_array_equal(viz.colormap_lut(name + "_r")[0], last)


@pytest.mark.parametrize("name", list(viz.COLORMAPS))
def test_every_colormap_builds(name):
    lut = viz.colormap_lut(name)
    assert lut.shape == (256, 3) and len(np.unique(lut, axis=0)) > 100
    scale = viz.plotly_colorscale(name, 8)
    assert scale[0][0] == 0.0 and scale[-1][0] == 1.0 and scale[0][1].startswith("rgb(")


def test_unknown_colormap():
    with pytest.raises(XTaskError, match="unknown colour map 'jetx'.*magma"):
        viz.colormap_lut("jetx")


def test_colorize_depth_range_and_invalid():
    depth = np.array([[0.0, 1.0], [2.0, np.nan]])
    out = viz.colorize_depth(depth, "gray", vmin=0.0, vmax=2.0, valid=depth > 0)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])          # invalid (depth 0)
    np.testing.assert_array_equal(out[0, 1], [128, 128, 128])    # 0.5 · 255 = 127.5 → 128
    np.testing.assert_array_equal(out[1, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[1, 1], [0, 0, 0])          # NaN
    # clipping outside [vmin, vmax] and automatic range
    assert viz.colorize_depth(np.array([[5.0]]), "gray", 0, 1)[0, 0, 0] == 255
    auto = viz.colorize_depth(np.arange(100, dtype=float).reshape(10, 10), "gray")
    assert auto[0, 0, 0] == 0 and auto[-1, -1, 0] == 255


def test_auto_range_robust():
    v = np.concatenate([np.linspace(0, 1, 1000), [1e6]])
    lo, hi = viz.auto_range(v)
    assert lo == pytest.approx(0.0, abs=0.02) and hi < 2.0
    assert viz.auto_range(np.full(4, np.nan)) == (0.0, 1.0)


def test_seg_error_and_overlay():
    pred = np.array([[0, 1], [2, 2]])
    tgt = np.array([[0, 2], [250, 2]])
    err = viz.seg_error_rgb(pred, tgt, 250)
    np.testing.assert_array_equal(err[0, 0], viz.SEG_CORRECT)
    np.testing.assert_array_equal(err[0, 1], viz.SEG_WRONG)
    np.testing.assert_array_equal(err[1, 0], [0, 0, 0])
    rgb = np.full((2, 2, 3), 100, np.uint8)
    layer = np.full((2, 2, 3), 200, np.uint8)
    np.testing.assert_array_equal(viz.overlay(rgb, layer, 0.25), np.full((2, 2, 3), 125))
    kept = viz.overlay(rgb, layer, 1.0, mask=np.array([[True, False], [True, True]]))
    assert kept[0, 1, 0] == 100 and kept[0, 0, 0] == 200
    with pytest.raises(ValueError, match="resize"):
        viz.overlay(rgb, np.zeros((3, 3, 3), np.uint8))


def test_resize_nearest_keeps_labels_and_bilinear_values():
    labels = np.array([[0, 1], [2, 3]], np.int64)
    up = viz.resize_nearest(labels, 4, 4)
    np.testing.assert_array_equal(up, [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    np.testing.assert_array_equal(viz.resize_nearest(up, 2, 2), labels)
    ramp = np.array([[0.0, 10.0]], np.float32)
    out = viz.resize_bilinear(ramp, 1, 4)
    # half-pixel centres: x = -0.25, 0.25, 0.75, 1.25 → clipped 0, 0.25, 0.75, 1 → 0, 2.5, 7.5, 10
    np.testing.assert_allclose(out[0], [0.0, 2.5, 7.5, 10.0])
    rgb = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    small = viz.resize_bilinear(rgb, 4, 3)
    assert small.shape == (4, 3, 3) and small.dtype == np.uint8


def test_side_by_side_and_grid_shapes():
    a = np.zeros((20, 30, 3), np.uint8)
    b = np.zeros((10, 10), np.uint8)              # grey, half height → scaled to 20×20
    out = viz.side_by_side([a, b], pad=4)
    assert out.shape == (20, 30 + 4 + 20, 3) and out.dtype == np.uint8
    assert (out[:, 30:34] == 255).all()           # white separator
    titled = viz.side_by_side([a, b], labels=["input", "depth"])
    assert titled.shape[0] == 20 + 18 and titled.shape[1] == 54
    assert (titled[:18] < 255).any()              # some text was drawn
    g = viz.grid([a, a, a], ncols=2, pad=2)
    assert g.shape == (20 * 2 + 2, 30 * 2 + 2, 3)
    bar = viz.colorbar_image("magma", 0.0, 80.0, units="m")
    assert bar.shape == (30, 256, 3)


def test_resize_nearest_takes_the_dataset_loaders_pixels():
    """The pages' ground truth (samples.load_sample) and the loaders' (cv2.INTER_NEAREST, what
    xtask eval and the per-image records score) must be the same pixels."""
    import cv2

    rng = np.random.default_rng(0)
    for h, w, oh, ow in [(256, 512, 128, 256), (1024, 2048, 128, 256), (288, 384, 192, 256), (192, 256, 288, 384),
                         (100, 37, 64, 96), (375, 1242, 128, 416)]:
        a = rng.integers(0, 255, (h, w)).astype(np.uint8)
        np.testing.assert_array_equal(viz.resize_nearest(a, oh, ow),
                                      cv2.resize(a, (ow, oh), interpolation=cv2.INTER_NEAREST))
