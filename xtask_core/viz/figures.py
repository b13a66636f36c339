"""Plotly figure builders (pure: arrays / DataFrames in, ``go.Figure`` out; nothing is shown).

Hover: every image-like figure tells the values under the cursor. ``image_figure`` uses a
``go.Image`` and ``heatmap_figure`` a ``go.Heatmap`` (``z`` in real units, so the colour bar is
in those units); named extra maps travel as per-pixel ``customdata`` (H×W×K strings, formatted
here with units) referenced as ``%{customdata[k]}`` in the hovertemplate. (Checked in
Chromium: plotly.js looks customdata up per pixel for both traces; ``%{text}`` does not work for
``go.Image``, ``%{hovertext}`` and ``%{customdata[k]}`` do.)

Size: images are subsampled with a stride so that the longer side is at most ``max_side``
pixels (default 256) before going into the figure: a 1024×2048 image with per-pixel hover text
would otherwise be tens of MB of JSON sent to the browser. Axis coordinates stay in the
*original* pixel units (x0/dx, y0/dy), so a hovered position is the original pixel.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image

from xtask_core.errors import XTaskError
from xtask_core.viz import colour as viz

# Qualitative colours for runs / checkpoints (colour-blind-friendly order, Okabe–Ito based).
RUN_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
               "#000000")
LINE_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


# --------------------------------------------------------------------------- helpers
def hover_stride(height: int, width: int, max_side: int) -> int:
    """Subsampling stride so that max(H, W) / stride ≤ max_side."""
    return max(1, math.ceil(max(height, width) / max(1, max_side)))


def class_name_map(labels: np.ndarray, class_names: Sequence[str], ignore_index: int | None = None,
                   ignore_name: str = "ignore") -> np.ndarray:
    """H×W array of class-name strings for hover (out-of-range / ignored → ``ignore_name``)."""
    labels = np.asarray(labels).astype(np.int64)
    names = np.asarray(list(class_names) + [ignore_name], dtype=object)
    k = len(class_names)
    idx = np.where((labels >= 0) & (labels < k), labels, k)
    if ignore_index is not None:
        idx = np.where(labels == ignore_index, k, idx)
    return names[idx]


def _format_map(arr: np.ndarray, unit: str = "", fmt: str = "%.4g") -> np.ndarray:
    """H×W values → H×W strings; numbers formatted with ``fmt`` (+ unit), NaN → 'n/a'."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "fiub":
        vals = arr.astype(np.float64)
        out = np.char.mod(fmt, vals).astype(object)
        if unit:
            out = out + (" " + unit)
        out[~np.isfinite(vals)] = "n/a"
        return out
    return arr.astype(str).astype(object)


def _hover_columns(hover: Mapping[str, np.ndarray], shape: tuple[int, int], s: int,
                   units: Mapping[str, str] | None) -> tuple[np.ndarray | None, str]:
    """Named H×W maps → (H'×W'×K object array of formatted strings for ``customdata``, the
    matching hovertemplate lines). Maps are subsampled with stride ``s``."""
    if not hover:
        return None, ""
    units = units or {}
    cols, template = [], ""
    for i, (name, arr) in enumerate(hover.items()):
        arr = np.asarray(arr)
        if arr.shape[:2] != shape:
            raise ValueError(f"hover map {name!r} has shape {arr.shape[:2]}, image is {shape}")
        cols.append(_format_map(arr[::s, ::s], units.get(name, "")))
        template += f"<br>{name}: %{{customdata[{i}]}}"
    return np.stack(cols, axis=-1), template


def _image_axes(fig: go.Figure, title: str | None, height: int | None) -> go.Figure:
    fig.update_layout(title=title, margin=dict(l=0, r=0, t=30 if title else 0, b=0),
                      height=height, dragmode="pan")
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, scaleanchor="x", autorange="reversed", constrain="domain")
    return fig


def _colorscale(name_or_scale: Any) -> Any:
    """Our colour-map names become explicit plotly scales (identical colours to viz.*)."""
    if isinstance(name_or_scale, str):
        base = name_or_scale[:-2] if name_or_scale.endswith("_r") else name_or_scale
        if base in viz.COLORMAPS:
            return viz.plotly_colorscale(name_or_scale)
    return name_or_scale


# --------------------------------------------------------------------------- image figures
def image_figure(rgb: np.ndarray, hover: Mapping[str, np.ndarray] | None = None,
                 title: str | None = None, units: Mapping[str, str] | None = None,
                 max_side: int = 256, height: int | None = None) -> go.Figure:
    """An RGB image whose hover tells the pixel position and the named values under it.

    Args:
        rgb: H×W×3 uint8.
        hover: name → H×W array (numbers, formatted with 4 significant digits, or strings such
            as class names from :func:`class_name_map`).
        units: name → unit string appended to numeric values (e.g. ``{"depth": "m"}``).
        max_side: longer side of the image inside the figure (subsampled with a stride).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image_figure needs H×W×3 uint8, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    s = hover_stride(h, w, max_side)
    custom, lines = _hover_columns(hover or {}, (h, w), s, units)
    # x0 = -s/2 makes plotly's pixel-centre hover coordinate equal the original pixel index.
    trace = go.Image(z=rgb[::s, ::s], x0=-0.5 * s, y0=-0.5 * s, dx=s, dy=s,
                     hovertemplate="x %{x:.0f}, y %{y:.0f}" + lines + "<extra></extra>")
    if custom is not None:
        trace.customdata = custom
    return _image_axes(go.Figure(trace), title, height)


def heatmap_figure(values: np.ndarray, colorscale: Any = "magma", units: str = "",
                   colorbar_title: str | None = None, zmin: float | None = None,
                   zmax: float | None = None, valid: np.ndarray | None = None,
                   hover: Mapping[str, np.ndarray] | None = None, title: str | None = None,
                   max_side: int = 256, height: int | None = None) -> go.Figure:
    """A value map (depth, error, energy) with a colour bar in real units.

    Args:
        values: H×W float in ``units`` (e.g. "m", "1/px", "nats").
        colorscale: a :data:`viz.COLORMAPS` name (same colours as the PNGs) or any plotly scale.
        zmin, zmax: colour range; ``None`` → robust range of valid pixels (:func:`viz.auto_range`).
        valid: optional H×W bool; invalid (and NaN) pixels are left transparent.
        hover: extra name → H×W maps shown on hover (through ``customdata``).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"heatmap_figure needs an H×W map, got {values.shape}")
    h, w = values.shape
    ok = viz.valid_mask(values, valid)
    if zmin is None or zmax is None:
        lo, hi = viz.auto_range(values, ok)
        zmin = lo if zmin is None else zmin
        zmax = hi if zmax is None else zmax
    s = hover_stride(h, w, max_side)
    z = np.where(ok, values, np.nan)[::s, ::s]
    unit_txt = f" {units}" if units else ""
    template = "x %{x:.0f}, y %{y:.0f}<br>value: %{z:.4~g}" + unit_txt
    custom, lines = _hover_columns(hover or {}, (h, w), s, None)
    template += lines
    kw: dict[str, Any] = {} if custom is None else {"customdata": custom}
    bar_title = colorbar_title if colorbar_title is not None else ""
    if units:
        bar_title = f"{bar_title} ({units})" if bar_title else units
    trace = go.Heatmap(z=z, x0=0, dx=s, y0=0, dy=s, colorscale=_colorscale(colorscale),
                       zmin=float(zmin), zmax=float(zmax), hoverongaps=False,
                       colorbar=dict(title=dict(text=bar_title)),
                       hovertemplate=template + "<extra></extra>", **kw)
    return _image_axes(go.Figure(trace), title, height)


def seg_overlay_figure(rgb: np.ndarray, labels: np.ndarray, palette: Any,
                       class_names: Sequence[str], alpha: float = 0.5,
                       ignore_index: int | None = None, hover: Mapping[str, np.ndarray] | None = None,
                       units: Mapping[str, str] | None = None, title: str | None = None,
                       max_side: int = 256, height: int | None = None) -> go.Figure:
    """Segmentation colours blended over the image; hover gives the class name (and ``hover``).

    ``labels`` (H×W int) is resized with nearest neighbour to the image size if they differ;
    ignored / out-of-range pixels show the plain image.
    """
    rgb = np.asarray(rgb)
    labels = np.asarray(labels)
    if labels.shape != rgb.shape[:2]:
        labels = viz.resize_nearest(labels, *rgb.shape[:2])
    seg_rgb = viz.colorize_seg(labels, palette, ignore_index)
    k = len(np.asarray(palette).reshape(-1, 3))
    mask = (labels >= 0) & (labels < k)
    if ignore_index is not None:
        mask &= labels != ignore_index
    blended = viz.overlay(rgb, seg_rgb, alpha, mask=mask)
    info = {"class": class_name_map(labels, class_names, ignore_index)}
    info.update(hover or {})
    return image_figure(blended, info, title=title, units=units, max_side=max_side, height=height)


# --------------------------------------------------------------------------- 3-D
def _palette_colours(colours: np.ndarray, max_colours: int = 256) -> tuple[np.ndarray, list]:
    """N×3 uint8 colours → (N palette indices, plotly colour scale whose stop k is colour k).

    Why: plotly validates a list of N 'rgb(…)' strings one by one (~50 µs each: ~1 s for 20k
    points); a numeric index array plus a ≤256-stop colour scale is validated in milliseconds.
    Up to 256 distinct colours (class colours) are kept exactly; photos are reduced to 256
    colours by median cut, which is invisible at point-cloud marker sizes.
    """
    colours = np.ascontiguousarray(colours, dtype=np.uint8).reshape(-1, 3)
    if len(colours) == 0:
        return np.zeros(0, np.int64), [[0.0, "rgb(0,0,0)"], [1.0, "rgb(0,0,0)"]]
    uniq, inverse = np.unique(colours, axis=0, return_inverse=True)
    if len(uniq) <= max_colours:
        pal, index = uniq, inverse.reshape(-1)
    else:
        q = Image.fromarray(colours[None]).quantize(max_colours, method=Image.Quantize.MEDIANCUT)
        index = np.asarray(q)[0].astype(np.int64)
        pal = np.asarray(q.getpalette()[: 3 * max_colours], np.uint8).reshape(-1, 3)
    k = max(2, len(pal))
    scale = [[i / (k - 1), f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(pal.tolist())]
    if len(scale) == 1:   # a colour scale needs two stops
        scale.append([1.0, scale[0][1]])
    return index, scale


def point_cloud_figure(depth: np.ndarray, colours: np.ndarray, intrinsics: Any = None,
                       stride: int | None = None, max_points: int = 20_000,
                       valid: np.ndarray | None = None, units: str = "m",
                       title: str | None = None, marker_size: float = 2.0) -> go.Figure:
    """Back-project a depth map to a coloured 3-D point cloud (``go.Scatter3d``).

    Args:
        depth: H×W float, distance along the optical axis in ``units`` (convert disparity first).
        colours: H×W×3 uint8 per-pixel colours (the image, or class colours).
        intrinsics: ``(fx, fy, cx, cy)`` or a dict with those keys, in pixels at this H×W.
            ``None`` → an assumed pinhole with fx = fy = W (≈ 53° horizontal field of view) and
            the principal point at the centre: the shape is then only indicative.
        stride: pixel step; ``None`` picks the smallest step that keeps ≤ max_points points.
        max_points: hard cap; points beyond it are thinned evenly.
        valid: optional H×W bool; pixels with depth ≤ 0 or non-finite are always dropped.

    Returns:
        A figure with one Scatter3d trace; axes are x (right), y (forward = depth), z (up).
    """
    depth = np.asarray(depth, dtype=np.float64)
    colours = np.asarray(colours)
    if depth.ndim != 2 or colours.shape != depth.shape + (3,):
        raise ValueError(f"depth must be H×W and colours H×W×3, got {depth.shape} and {colours.shape}")
    h, w = depth.shape
    if intrinsics is None:
        fx = fy = float(w)
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    elif isinstance(intrinsics, Mapping):
        fx, fy, cx, cy = (float(intrinsics[k]) for k in ("fx", "fy", "cx", "cy"))
    else:
        fx, fy, cx, cy = (float(v) for v in intrinsics)
    if fx <= 0 or fy <= 0:
        raise XTaskError("focal lengths must be positive")
    ok = viz.valid_mask(depth, valid) & (depth > 0)
    if stride is None:
        stride = max(1, math.ceil(math.sqrt(max(1, int(ok.sum())) / max(1, max_points))))
    vv, uu = np.mgrid[0:h:stride, 0:w:stride]
    sel = ok[vv, uu]
    u, v = uu[sel].astype(np.float64), vv[sel].astype(np.float64)
    z = depth[vv, uu][sel]
    col = colours[vv, uu][sel]
    if z.size > max_points:   # even thinning keeps the spatial spread
        keep = np.linspace(0, z.size - 1, max_points).round().astype(np.intp)
        u, v, z, col = u[keep], v[keep], z[keep], col[keep]
    x = (u - cx) * z / fx
    y = (v - cy) * z / fy
    index, scale = _palette_colours(col)
    trace = go.Scatter3d(x=x, y=z, z=-y, mode="markers",
                         marker=dict(size=marker_size, color=index, colorscale=scale,
                                     cmin=0, cmax=max(1, len(scale) - 1), showscale=False),
                         hovertemplate=f"depth %{{y:.3g}} {units}<extra></extra>")
    fig = go.Figure(trace)
    fig.update_layout(title=title, margin=dict(l=0, r=0, t=30 if title else 0, b=0),
                      scene=dict(aspectmode="data", xaxis_title=f"x ({units})",
                                 yaxis_title=f"depth ({units})", zaxis_title=f"up ({units})",
                                 camera=dict(eye=dict(x=0.0, y=-1.6, z=0.6))))
    return fig


# --------------------------------------------------------------------------- curves & tables
def _runs_dict(runs: Any) -> dict[str, pd.DataFrame]:
    if isinstance(runs, pd.DataFrame):
        return {"": runs}
    if isinstance(runs, Mapping):
        out = {}
        for name, val in runs.items():
            df = getattr(val, "metrics", val)   # accept runlog.Run objects too
            if not isinstance(df, pd.DataFrame):
                df = pd.DataFrame(df)
            out[str(name)] = df
        return out
    raise ValueError("runs must be a DataFrame or a mapping name → DataFrame/Run")


def _x_values(df: pd.DataFrame, x: str | None) -> tuple[np.ndarray, str]:
    """x values: the named column if there is one, else the index (epoch/step for run logs)."""
    if x is not None and x in df.columns:
        return df[x].to_numpy(), x
    return df.index.to_numpy(), df.index.name or "index"


def curves_figure(runs: Any, ys: Sequence[str], x: str | None = None, title: str | None = None,
                  log_y: bool = False, yaxis_title: str | None = None) -> go.Figure:
    """Overlay metric curves of one or several runs.

    Args:
        runs: a DataFrame, or a mapping run name → DataFrame (or ``runlog.Run``).
        ys: column names to draw (a run lacking a column just skips it).
        x: column (or index name) for the x axis; ``None`` → the DataFrame index
            (epoch/step for ``runlog`` runs).
    Colour identifies the run, dash style the quantity. NaN gaps are bridged.
    """
    runs_d = _runs_dict(runs)
    fig = go.Figure()
    x_label = x or ""
    for i, (run, df) in enumerate(runs_d.items()):
        xs, x_label = _x_values(df, x)
        for j, y in enumerate(ys):
            if y not in df.columns:
                continue
            vals = pd.to_numeric(df[y], errors="coerce").to_numpy(dtype=np.float64)
            keep = np.isfinite(vals)
            if not keep.any():
                continue
            label = " · ".join(p for p in (run, y if len(ys) > 1 or not run else "") if p)
            fig.add_trace(go.Scatter(
                x=xs[keep], y=vals[keep], name=label or y, mode="lines+markers" if keep.sum() < 30 else "lines",
                line=dict(color=RUN_COLOURS[i % len(RUN_COLOURS)], dash=LINE_DASHES[j % len(LINE_DASHES)]),
                legendgroup=run or y))
    if not fig.data:
        fig.add_annotation(text="no data for " + ", ".join(ys), showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_layout(title=title, xaxis_title=x_label, yaxis_title=yaxis_title,
                      hovermode="x unified", margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      legend=dict(orientation="h", y=-0.2))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def sparsification_figure(results: Any, title: str | None = "Sparsification",
                          error_name: str = "error") -> go.Figure:
    """Plot :func:`analysis.sparsification` output(s): energy vs oracle (vs random) curves.

    ``results`` is one result dict or a mapping label → result dict (e.g. "seg KL", "depth").
    Legend entries carry the AUSE.
    """
    if isinstance(results, Mapping) and "energy_curve" in results:
        results = {"energy": results}
    fig = go.Figure()
    for i, (name, r) in enumerate(results.items()):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        f = np.asarray(r["fractions"]) * 100
        fig.add_trace(go.Scatter(x=f, y=r["energy_curve"], name=f"{name} (AUSE {r['ause']:.3g})",
                                 line=dict(color=colour)))
        fig.add_trace(go.Scatter(x=f, y=r["oracle_curve"], name=f"{name}: oracle",
                                 line=dict(color=colour, dash="dot")))
        fig.add_trace(go.Scatter(x=f, y=r["random_curve"], name=f"{name}: random order",
                                 line=dict(color=colour, dash="dash", width=1)))
    fig.update_layout(title=title, xaxis_title="pixels removed (%)",
                      yaxis_title=f"mean {error_name} of remaining pixels",
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def binned_error_figure(df: pd.DataFrame, title: str | None = None, error_name: str = "error",
                        energy_name: str = "energy") -> go.Figure:
    """Bar chart of :func:`analysis.binned_error`: mean error per energy-quantile bin."""
    labels = [f"{lo:.3g}–{hi:.3g}" for lo, hi in zip(df["energy_lo"], df["energy_hi"])]
    fig = go.Figure(go.Bar(x=labels, y=df["error_mean"], customdata=df["count"],
                           hovertemplate=f"{energy_name} %{{x}}<br>mean {error_name} %{{y:.4g}}"
                                         "<br>%{customdata} pixels<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=f"{energy_name} (quantile bins)",
                      yaxis_title=f"mean {error_name}", margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


NORMALISE = (None, "true", "pred", "all")


def confusion_figure(matrix: Any, class_names: Sequence[str], normalise: str | None = "true",
                     title: str | None = None) -> go.Figure:
    """Confusion matrix heatmap: rows = true class, columns = predicted class.

    ``normalise``: None (counts), "true" (each row sums to 1: recall), "pred" (each column sums
    to 1: precision) or "all". Empty rows/columns become blank, not 0/0.
    """
    if normalise not in NORMALISE:
        raise XTaskError(f"unknown normalise {normalise!r}; choose one of {NORMALISE}")
    m = np.asarray(matrix, dtype=np.float64)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"confusion matrix {m.shape} does not match {k} class names")
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalise == "true":
            z = m / m.sum(1, keepdims=True)
        elif normalise == "pred":
            z = m / m.sum(0, keepdims=True)
        elif normalise == "all":
            z = m / m.sum()
        else:
            z = m
    z = np.where(np.isfinite(z), z, np.nan)
    fmt = ".0f" if normalise is None else ".2f"
    names = list(class_names)
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale=_colorscale("viridis"),
                               texttemplate="%{z:" + fmt + "}", customdata=m,
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z:" + fmt
                                             + "} (%{customdata:.0f} px)<extra></extra>",
                               zmin=0, zmax=None if normalise is None else 1))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true",
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    fig.update_yaxes(autorange="reversed")
    return fig


def per_class_iou_bar(iou: Any, class_names: Sequence[str], title: str | None = None,
                      percent: bool = True) -> go.Figure:
    """Grouped bars of per-class IoU.

    ``iou``: a sequence of K values (one model) or a mapping model name → K values. Values are
    fractions in [0, 1] (shown as % when ``percent``); NaN (class absent) leaves a gap.
    """
    series = iou if isinstance(iou, Mapping) else {"IoU": iou}
    names = list(class_names)
    fig = go.Figure()
    for i, (label, vals) in enumerate(series.items()):
        v = np.asarray(vals, dtype=np.float64)
        if v.shape != (len(names),):
            raise ValueError(f"{label!r}: {v.shape[0] if v.ndim else 0} IoU values for {len(names)} classes")
        fig.add_trace(go.Bar(x=names, y=v * (100 if percent else 1), name=str(label),
                             marker_color=RUN_COLOURS[i % len(RUN_COLOURS)]))
    fig.update_layout(barmode="group", title=title, yaxis_title="IoU (%)" if percent else "IoU",
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      showlegend=len(series) > 1)
    return fig
