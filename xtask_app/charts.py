"""Figures placed on a page: sized to the image's aspect ratio, with one chart style.

The figures themselves come from :mod:`xtask_core.viz.figures` (interactive, hover values,
colour bars in real units); the PNGs offered for download come from :mod:`xtask_core.viz.colour`
with the same colour maps and ranges. What stays here is layout glue: figure height from the
image's aspect ratio, a shared chart style, and the mapping from a ModelState to class names,
palette and depth units. Every ``*_chart`` returns the PNG-ready array it shows.
"""
from __future__ import annotations

import base64
import html

import cv2
import numpy as np
import streamlit as st

from xtask_app.selection import ModelState
from xtask_core.data.camera import metric_depth, pinhole_intrinsics
from xtask_core.viz import colour as viz
from xtask_core.viz import figures
from xtask_core.viz.display import depth_range

CMAPS = list(viz.COLORMAPS)
MAIN_WIDTH_PX = 900    # approximate main-column width in the wide layout on a laptop screen
TITLE_PX = 34          # figure title strip
COLORBAR_PX = 66       # horizontal colour bar with its title, under a heatmap
PLOTLY_CONFIG = {"displaylogo": False}
_BUILDERS = {"image": figures.image_figure, "heatmap": figures.heatmap_figure, "seg": figures.seg_overlay_figure}


def prediction_depth_range(pred, *extra) -> tuple[float, float]:
    """Shared colour range of a prediction's direct and transferred depth (+ extra maps)."""
    return depth_range([pred.depth, pred.depth_t, *extra])


def prediction_panels(state: ModelState, pred, cmap: str = "magma") -> dict[str, np.ndarray]:
    """Colourised H×W×3 uint8 panels ``seg``, ``seg_t``, ``depth``, ``depth_t`` of a Prediction
    (depth maps share one colour range); outputs the prediction lacks (None: a single-task model,
    no transfer nets) have no panel."""
    vmin, vmax = prediction_depth_range(pred)
    out = {}
    for name in ("seg", "seg_t"):
        if getattr(pred, f"{name}_logits") is not None:
            out[name] = viz.colorize_seg(getattr(pred, name), state.palette)
    for name in ("depth", "depth_t"):
        if getattr(pred, name) is not None:
            out[name] = viz.colorize_depth(getattr(pred, name), cmap, vmin, vmax)
    return out


def _size_image_figure(fig, shape: tuple[int, ...], ncols: int, extra_px: int):
    """Height ≈ column width × h / w (column width estimated from ``ncols``), so there are no
    empty bands around the image; spare height goes below it."""
    h, w = shape[:2]
    img_px = (MAIN_WIDTH_PX / max(1, ncols)) * h / max(1, w)
    fig.update_layout(height=int(min(640, max(90, img_px)) + TITLE_PX + extra_px),
                      title=dict(font=dict(size=14), y=0.99, yanchor="top"),
                      margin=dict(l=0, r=0, t=TITLE_PX, b=extra_px))
    fig.update_yaxes(constraintoward="top")
    return fig


@st.cache_resource(max_entries=128, show_spinner=False)
def _image_like_figure(kind: str, ncols: int, args: tuple, kwargs: tuple):
    # Building a figure with per-pixel hover text costs ~0.1 s (plotly validates every array);
    # display-only reruns (opacity, panels, page switches) reuse it. Keyed by content: Streamlit
    # hashes the arrays. Shared by all sessions, so the figure is never mutated after this.
    fig = _BUILDERS[kind](*args, **dict(kwargs))
    extra_px = 0
    if kind == "heatmap":
        fig.update_traces(colorbar=dict(orientation="h", thickness=10, len=1.0, y=-0.02, yanchor="top",
                                        title=dict(side="bottom"), tickfont=dict(size=10)))
        extra_px = COLORBAR_PX
    return _size_image_figure(fig, np.shape(args[0]), ncols, extra_px)


def show_figure(kind: str, *args, key: str | None = None, ncols: int = 3, **kwargs) -> None:
    """Build (cached) and draw ``xtask_core.viz.figures.<image_figure | heatmap_figure |
    seg_overlay_figure>(*args, **kwargs)`` sized to the image's aspect ratio and ``ncols``."""
    fig = _image_like_figure(kind, ncols, args, tuple(sorted(kwargs.items())))
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG)


def class_legend(state: ModelState, labels: np.ndarray | None = None) -> None:
    """One line of colour chips naming the classes (only those in ``labels`` when given)."""
    present = set(np.unique(labels).tolist()) if labels is not None else None
    chips = []
    for i, (name, (r, g, b)) in enumerate(zip(state.class_names, state.palette.tolist())):
        if present is not None and i not in present:
            continue
        chips.append(f"<span style='white-space:nowrap;margin-right:0.9em'><span style='display:inline-block;"
                     f"width:0.9em;height:0.9em;border-radius:2px;vertical-align:-0.1em;margin-right:0.3em;"
                     f"background:rgb({r},{g},{b})'></span>{html.escape(name)}</span>")
    if chips:
        st.markdown("<div style='font-size:0.85em;line-height:1.9'>" + "".join(chips) + "</div>",
                    unsafe_allow_html=True)


def seg_chart(state: ModelState, labels: np.ndarray, title: str, rgb: np.ndarray | None = None,
              alpha: float = 1.0, key: str | None = None, ncols: int = 3) -> np.ndarray:
    """Plot an h×w label map (class name on hover), optionally blended over ``rgb`` (any size,
    resized to the labels) with opacity ``alpha``; void pixels show the plain image (black
    without one). Returns the h×w×3 uint8 image shown (for downloads)."""
    labels = np.asarray(labels)
    seg_rgb = viz.colorize_seg(labels, state.palette, ignore_index=state.ignore_index)
    if rgb is None:
        base, alpha = seg_rgb, 1.0
    else:
        base = rgb if rgb.shape[:2] == labels.shape else viz.resize_bilinear(rgb, *labels.shape)
    show_figure("seg", base, labels, state.palette, tuple(state.class_names), alpha, state.ignore_index,
                title=title, key=key, ncols=ncols)
    valid = (labels >= 0) & (labels < state.num_classes) & (labels != state.ignore_index)
    return viz.overlay(base, seg_rgb, alpha, mask=valid)


def value_chart(values: np.ndarray, title: str, units: str, cmap: str = "inferno",
                vmin: float | None = None, vmax: float | None = None, key: str | None = None,
                hover: dict | None = None, valid: np.ndarray | None = None, ncols: int = 3,
                colorbar_title: str | None = None) -> np.ndarray:
    """Heatmap of an h×w float map in ``units`` (NaN / ``valid`` False = no data, drawn as a
    gap) with a horizontal colour bar in those units; ``hover`` adds named h×w maps under the
    cursor. ``None`` range ends are the robust 1–99 % range. Returns the PNG-ready h×w×3 uint8
    colouring of the same map and range (no-data pixels black)."""
    v = np.asarray(values, np.float32)
    if vmin is None or vmax is None:
        lo, hi = viz.auto_range(v, valid)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    show_figure("heatmap", v, cmap, units=units, colorbar_title=colorbar_title, zmin=float(vmin), zmax=float(vmax),
                valid=valid, hover=hover, title=title, key=key, ncols=ncols)
    return viz.colorize_values(v, cmap, vmin, vmax, valid)


def depth_chart(state: ModelState, depth: np.ndarray, title: str, cmap: str, vmin: float,
                vmax: float, key: str | None = None, ncols: int = 3) -> np.ndarray:
    """Depth/disparity heatmap in model units; for disparity models the hover also gives metres
    (Cityscapes camera). Values ≤ 0 (no depth: sky in the ground truth) are gaps. Returns the
    coloured h×w×3 uint8 image."""
    d = np.asarray(depth, np.float32)
    if not (d > 0).any():   # e.g. an untrained model: say so instead of drawing an empty box
        st.markdown(f"**{title}**")
        st.info("No pixel has a positive depth value, so there is nothing to draw.")
        return viz.colorize_values(d, cmap, vmin, vmax, d > 0)
    hover = None
    if state.depth_kind == "disparity":
        hover = {"≈ metres": metric_depth(d, "disparity", max_metres=np.inf)}
    return value_chart(d, title, state.depth_unit_short, cmap, vmin, vmax, key=key, hover=hover,
                       valid=d > 0, ncols=ncols, colorbar_title="depth" if state.depth_kind == "depth" else None)


def rgb_chart(rgb: np.ndarray, title: str, hover: dict | None = None, key: str | None = None,
              ncols: int = 3) -> np.ndarray:
    """Plot an h×w×3 uint8 image like the other panels, with named h×w maps (e.g. class names
    from :func:`seg_pair_hover`) under the cursor; returns ``rgb`` (for downloads)."""
    show_figure("image", rgb, hover, title=title, key=key, ncols=ncols)
    return rgb


def seg_pair_hover(state: ModelState, pred_labels: np.ndarray, target: np.ndarray,
                   what: str = "true") -> dict[str, np.ndarray]:
    """Hover maps for an error / difference map: ``{what: class of target, "predicted": class
    of pred}`` (h×w strings)."""
    def names(labels):
        return figures.class_name_map(labels, state.class_names, state.ignore_index, ignore_name="void")
    return {what: names(target), "predicted": names(pred_labels)}


def point_cloud_chart(state: ModelState, pred, colour_by: str = "segmentation", key: str | None = None,
                      max_points: int = 15000) -> None:
    """The direct depth lifted to 3-D (metres; the Cityscapes camera for disparity models, an
    assumed 60° field of view for metric ones), coloured by the direct segmentation or the image."""
    h, w = pred.depth.shape
    colours = viz.colorize_seg(pred.seg, state.palette) if colour_by == "segmentation" else pred.input_rgb
    fig = figures.point_cloud_figure(metric_depth(pred.depth, state.depth_kind), colours,
                                     intrinsics=pinhole_intrinsics(state.depth_kind, h, w),
                                     max_points=max_points, units="m")
    fig.update_layout(height=460, margin=dict(l=0, r=0, t=0, b=0))
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG)


def chart(fig, key: str, height: int = 340) -> None:
    """A non-image plotly figure (curves, bars, matrices) at a fixed height."""
    fig.update_layout(height=height, title=dict(font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG)


def metrics_columns(state: ModelState, unit: str | None = None) -> dict:
    """``st.dataframe`` column labels with units for :func:`xtask_core.evaluate.report.metrics_row`
    tables (``unit`` overrides the depth unit, e.g. "each model's unit" for mixed checkpoints)."""
    unit = unit or state.depth_unit_short
    return {"pixel acc": "pixel acc (%)", "mIoU": "mIoU (%)", "δ<1.25": "δ<1.25 (%)",
            "Abs": f"Abs ({unit})", "RMSE": f"RMSE ({unit})",
            "Abs Rel": st.column_config.NumberColumn("Abs Rel", help="mean |p − t| / t (a ratio)"),
            "mIoU per image (original)": st.column_config.NumberColumn(
                "mIoU per image (%)", help="The original code's mean of per-image mIoUs")}


def _png_data_uri(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(np.asarray(rgb, np.uint8)[:, :, ::-1]))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def wipe_html(before: np.ndarray, after: np.ndarray, left: str = "before", right: str = "after",
              uid: str = "wipe", max_width_px: int = 900) -> str:
    """HTML of a before/after wipe: ``after`` (H×W×3 uint8) under ``before`` (same size), the
    ``before`` image clipped at a vertical line that follows the pointer over the image or the
    range slider under it (a few lines of JavaScript; without it the line stays in the middle)."""
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape or before.ndim != 3:
        raise ValueError(f"wipe needs two H×W×3 images of one size, got {before.shape} and {after.shape}")
    h, w = before.shape[:2]
    uid = "".join(ch if ch.isalnum() else "-" for ch in uid)
    img = "position:absolute;inset:0;width:100%;height:100%;image-rendering:pixelated"
    tag = ("position:absolute;top:4px;padding:1px 6px;border-radius:3px;background:rgba(0,0,0,.55);"
           "color:#fff;font:12px sans-serif")
    return f"""
<div id="{uid}" data-testid="xtask-wipe" style="position:relative;width:100%;max-width:{max_width_px}px;
 aspect-ratio:{w}/{h};user-select:none;touch-action:none;cursor:ew-resize">
 <img alt="{html.escape(right)}" src="{_png_data_uri(after)}" style="{img}">
 <img alt="{html.escape(left)}" class="xt-top" src="{_png_data_uri(before)}" style="{img};clip-path:inset(0 50% 0 0)">
 <div class="xt-line" style="position:absolute;top:0;bottom:0;left:50%;width:2px;background:#fff;
  box-shadow:0 0 3px #000"></div>
 <span style="{tag};left:4px">{html.escape(left)}</span><span style="{tag};right:4px">{html.escape(right)}</span>
</div>
<input id="{uid}-r" type="range" min="0" max="100" value="50" aria-label="wipe position"
 style="width:100%;max-width:{max_width_px}px">
<script>
(function () {{
  const box = document.getElementById("{uid}"), range = document.getElementById("{uid}-r");
  if (!box || !range) return;
  function set(v) {{
    box.querySelector(".xt-top").style.clipPath = "inset(0 " + (100 - v) + "% 0 0)";
    box.querySelector(".xt-line").style.left = v + "%";
  }}
  range.addEventListener("input", function (e) {{ set(e.target.value); }});
  box.addEventListener("pointermove", function (e) {{
    const r = box.getBoundingClientRect();
    const v = Math.max(0, Math.min(100, (e.clientX - r.left) / r.width * 100));
    range.value = v; set(v);
  }});
}})();
</script>"""


def wipe(before: np.ndarray, after: np.ndarray, left: str = "before", right: str = "after",
         uid: str = "wipe") -> None:
    """Draw :func:`wipe_html` (move the pointer over the image, or the slider, to wipe)."""
    st.html(wipe_html(before, after, left, right, uid), unsafe_allow_javascript=True)
