"""Plotly builders: figures build, hold the expected traces and per-pixel hover data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from xtask_core.errors import XTaskError
from xtask_core.evaluate import analysis
from xtask_core.viz import figures as F

PAL = np.array([[128, 64, 128], [70, 70, 70], [0, 0, 142]], np.uint8)
NAMES = ["road", "building", "car"]


def test_image_figure_hover_per_pixel():
    rgb = np.zeros((4, 6, 3), np.uint8)
    depth = np.arange(24, dtype=float).reshape(4, 6)
    depth[0, 0] = np.nan
    labels = np.array([[0, 1, 2, 250, 0, 1]] * 4)
    fig = F.image_figure(rgb, hover={"class": F.class_name_map(labels, NAMES, 250), "depth": depth},
                         units={"depth": "m"}, title="t")
    assert isinstance(fig.data[0], go.Image)
    custom = np.asarray(fig.data[0].customdata)
    assert custom.shape == (4, 6, 2)
    assert list(custom[1, 2]) == ["car", "8 m"]
    assert custom[0, 3, 0] == "ignore" and custom[0, 0, 1] == "n/a"
    assert fig.data[0].hovertemplate == ("x %{x:.0f}, y %{y:.0f}<br>class: %{customdata[0]}"
                                         "<br>depth: %{customdata[1]}<extra></extra>")
    assert fig.layout.title.text == "t"


def test_image_figure_downsamples_with_original_coordinates():
    rgb = np.random.default_rng(0).integers(0, 256, (300, 600, 3), dtype=np.uint8)
    fig = F.image_figure(rgb, hover={"v": np.zeros((300, 600))}, max_side=200)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (100, 200, 3)                      # stride 3
    np.testing.assert_array_equal(z[1, 2], rgb[3, 6])
    assert fig.data[0].dx == 3 and fig.data[0].x0 == -1.5
    assert np.asarray(fig.data[0].customdata).shape == (100, 200, 1)
    with pytest.raises(ValueError, match="hover map 'bad'"):
        F.image_figure(rgb, hover={"bad": np.zeros((2, 2))})


def test_heatmap_units_colourbar_customdata_and_invalid():
    vals = np.array([[1.0, 2.0], [3.0, 4.0]])
    fig = F.heatmap_figure(vals, "magma", units="m", colorbar_title="depth",
                           valid=np.array([[True, False], [True, True]]),
                           hover={"class": np.array([["road", "car"], ["car", "sky"]])}, zmin=0, zmax=5)
    hm = fig.data[0]
    assert isinstance(hm, go.Heatmap)
    assert hm.colorbar.title.text == "depth (m)"
    assert hm.zmin == 0 and hm.zmax == 5
    z = np.asarray(hm.z, dtype=float)
    assert np.isnan(z[0, 1]) and z[1, 1] == 4.0
    assert np.asarray(hm.customdata)[1, 1, 0] == "sky"
    assert "%{customdata[0]}" in hm.hovertemplate and " m" in hm.hovertemplate
    assert hm.colorscale[0][1] == "rgb(0,0,4)"            # magma from our LUT, not plotly's


def test_seg_overlay_figure_class_hover_and_resize():
    rgb = np.full((8, 8, 3), 255, np.uint8)
    labels = np.array([[0, 2], [250, 1]])                # 2×2 → resized to 8×8
    fig = F.seg_overlay_figure(rgb, labels, PAL, NAMES, alpha=1.0, ignore_index=250)
    z = np.asarray(fig.data[0].z)
    np.testing.assert_array_equal(z[0, 0], PAL[0])
    np.testing.assert_array_equal(z[0, 7], PAL[2])
    np.testing.assert_array_equal(z[7, 0], [255, 255, 255])   # ignored: image shows through
    custom = np.asarray(fig.data[0].customdata)
    assert custom[7, 7, 0] == "building" and custom[7, 0, 0] == "ignore"


def test_point_cloud_backprojection_and_cap():
    depth = np.full((4, 4), 2.0)
    depth[0, 0] = 0.0                                    # invalid
    colours = np.zeros((4, 4, 3), np.uint8)
    colours[3, 3] = (255, 0, 0)
    fig = F.point_cloud_figure(depth, colours, intrinsics=(2.0, 2.0, 1.5, 1.5), stride=1)
    tr = fig.data[0]
    assert isinstance(tr, go.Scatter3d) and len(tr.x) == 15
    # pixel (u=3, v=3): x = (3-1.5)·2/2 = 1.5, forward 2, up = -(3-1.5)·2/2 = -1.5
    # colours travel as indices into the colour scale: look the red point up through it
    stops = [c for _, c in tr.marker.colorscale]
    i = [stops[int(k)] for k in tr.marker.color].index("rgb(255,0,0)")
    assert (tr.x[i], tr.y[i], tr.z[i]) == (1.5, 2.0, -1.5)
    assert tr.marker.cmin == 0 and tr.marker.cmax == len(stops) - 1
    big = F.point_cloud_figure(np.ones((300, 400)), np.zeros((300, 400, 3), np.uint8), max_points=5000)
    assert 0 < len(big.data[0].x) <= 5000
    photo = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    many = F.point_cloud_figure(np.ones((100, 100)), photo).data[0]
    assert len(many.marker.colorscale) == 256 and max(many.marker.color) <= 255


def test_curves_figure_several_runs():
    a = pd.DataFrame({"loss": [3.0, 2.0, 1.0], "miou": [0.1, np.nan, 0.3]},
                     index=pd.Index([1, 2, 3], name="epoch"))
    b = pd.DataFrame({"loss": [2.5, 1.5]}, index=pd.Index([1, 2], name="epoch"))
    fig = F.curves_figure({"run A": a, "run B": b}, ys=["loss", "miou"])
    names = [t.name for t in fig.data]
    assert names == ["run A · loss", "run A · miou", "run B · loss"]
    assert list(fig.data[1].x) == [1, 3]                 # NaN skipped
    assert fig.layout.xaxis.title.text == "epoch"
    assert fig.data[0].line.color != fig.data[2].line.color
    empty = F.curves_figure(a, ys=["nothing"])
    assert not empty.data and "no data" in empty.layout.annotations[0].text


def test_sparsification_and_binned_figures():
    rng = np.random.default_rng(0)
    err = rng.random(1000)
    res = analysis.sparsification(err, err + rng.random(1000))
    fig = F.sparsification_figure({"depth": res})
    assert len(fig.data) == 3 and "AUSE" in fig.data[0].name
    bfig = F.binned_error_figure(analysis.binned_error(err, err, n_bins=5))
    assert len(bfig.data[0].x) == 5


def test_confusion_and_iou_bars():
    m = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    fig = F.confusion_figure(m, NAMES, normalise="true")
    z = np.asarray(fig.data[0].z, dtype=float)
    np.testing.assert_allclose(z[0], [0.8, 0.2, 0.0])
    assert np.isnan(z[2]).all()                          # absent class: blank, not 0/0
    counts = F.confusion_figure(m, NAMES, normalise=None)
    assert np.asarray(counts.data[0].z)[1, 1] == 9
    with pytest.raises(XTaskError, match="unknown normalise"):
        F.confusion_figure(m, NAMES, normalise="rows")
    bars = F.per_class_iou_bar({"A": [0.5, 0.25, np.nan], "B": [0.1, 0.2, 0.3]}, NAMES)
    assert len(bars.data) == 2 and bars.data[0].y[0] == 50.0 and bars.layout.barmode == "group"
    with pytest.raises(ValueError, match="IoU values"):
        F.per_class_iou_bar([0.1, 0.2], NAMES)
