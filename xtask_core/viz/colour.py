"""Pure visualisation helpers: arrays in, ``uint8`` RGB arrays out. No GUI, no plotting library.

Conventions: images are H×W×3 ``uint8`` RGB; label maps are H×W integer arrays; value maps
(depth, disparity, errors, energy) are H×W float arrays in their own units. "Invalid" pixels
(masked out, NaN or ±Inf) are drawn **black** everywhere so that "no data" always looks the same.

Colour maps come from :data:`COLORMAPS`, a registry of 256-entry lookup tables. The perceptual
maps (magma, viridis, plasma, inferno, cividis, turbo) are read once from OpenCV's built-in
tables (``cv2.applyColorMap`` on the ramp 0..255: the same sampled data matplotlib ships), so
no plotting library is needed; gray is a plain ramp. The same tables are turned into plotly
colour scales by :func:`plotly_colorscale`, so a PNG download and an interactive figure agree.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xtask_core.errors import XTaskError
from xtask_core.io.images import resize_nearest  # noqa: F401  (re-exported: lives in io so data/ can use it)


# --------------------------------------------------------------------------- colour maps
def _cv2_lut(flag_name: str) -> Callable[[], np.ndarray]:
    def build() -> np.ndarray:
        import cv2  # imported lazily: only needed once per process per map
        ramp = np.arange(256, dtype=np.uint8).reshape(1, 256)
        bgr = cv2.applyColorMap(ramp, getattr(cv2, flag_name))[0]
        return np.ascontiguousarray(bgr[:, ::-1])  # OpenCV is BGR
    return build


def _gray_lut() -> np.ndarray:
    return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


COLORMAPS: dict[str, Callable[[], np.ndarray]] = {
    "magma": _cv2_lut("COLORMAP_MAGMA"),
    "viridis": _cv2_lut("COLORMAP_VIRIDIS"),
    "plasma": _cv2_lut("COLORMAP_PLASMA"),
    "inferno": _cv2_lut("COLORMAP_INFERNO"),
    "cividis": _cv2_lut("COLORMAP_CIVIDIS"),
    "turbo": _cv2_lut("COLORMAP_TURBO"),
    "gray": _gray_lut,
}


@functools.cache
def _lut_cached(name: str) -> np.ndarray:
    lut = COLORMAPS[name]()
    lut.setflags(write=False)   # shared between callers: make accidental edits fail loudly
    return lut


def colormap_lut(name: str) -> np.ndarray:
    """256×3 uint8 RGB lookup table of colour map ``name`` (read-only, cached).

    A trailing ``_r`` reverses the map (e.g. ``"magma_r"``).
    """
    base, rev = (name[:-2], True) if name.endswith("_r") else (name, False)
    if base not in COLORMAPS:
        raise XTaskError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)} "
                         "(add _r to reverse)")
    lut = _lut_cached(base)
    return lut[::-1] if rev else lut


def plotly_colorscale(name: str, n: int = 32) -> list[list]:
    """The same colour map as a plotly colour scale: ``[[t, "rgb(r,g,b)"], ...]`` with n stops."""
    lut = colormap_lut(name)
    idx = np.linspace(0, 255, max(2, n)).round().astype(int)
    return [[float(i / 255.0), f"rgb({lut[i, 0]},{lut[i, 1]},{lut[i, 2]})"] for i in idx]


# --------------------------------------------------------------------------- value maps
def valid_mask(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Boolean H×W: finite and (if given) ``valid`` true."""
    values = np.asarray(values)
    ok = np.isfinite(values)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != values.shape:
            raise ValueError(f"valid mask shape {valid.shape} != values shape {values.shape}")
        ok &= valid.astype(bool)
    return ok


def auto_range(values: np.ndarray, valid: np.ndarray | None = None,
               percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """Robust (vmin, vmax) of the valid pixels: the given percentiles, so a few outliers do not
    wash the map out. Returns (0, 1) when no pixel is valid; widens a zero-width range."""
    ok = valid_mask(values, valid)
    if not ok.any():
        return 0.0, 1.0
    lo, hi = np.percentile(np.asarray(values, dtype=np.float64)[ok], percentiles)
    lo, hi = float(lo), float(hi)
    if hi <= lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-6)
    return lo, hi


def colorize_values(values: np.ndarray, cmap: str = "magma", vmin: float | None = None,
                    vmax: float | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """Map an H×W float array to colours.

    Args:
        values: H×W float (any units).
        cmap: a name from :data:`COLORMAPS` (``_r`` suffix reverses).
        vmin, vmax: values mapped to the two ends; ``None`` → :func:`auto_range` of valid pixels.
            Values outside are clipped to the end colours.
        valid: optional H×W bool; False pixels are black (as are NaN/Inf).

    Returns:
        H×W×3 uint8 RGB.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"expected an H×W value map, got shape {values.shape}")
    lut = colormap_lut(cmap)
    ok = valid_mask(values, valid)
    if vmin is None or vmax is None:
        lo, hi = auto_range(values, ok)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    span = float(vmax) - float(vmin)
    if span == 0:
        span = 1e-12
    with np.errstate(invalid="ignore"):
        t = (np.where(ok, values, vmin).astype(np.float64) - float(vmin)) / span
    idx = np.clip(np.round(t * 255.0), 0, 255).astype(np.intp)
    out = lut[idx]
    out[~ok] = 0
    return out


def colorize_depth(depth: np.ndarray, cmap: str = "magma", vmin: float | None = None,
                   vmax: float | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """Colourise a depth or disparity map (H×W float, metres or inverse depth) → H×W×3 uint8.

    With the default ``magma``, large values are bright: near objects are bright for
    *disparity* (Cityscapes) and dark for *depth in metres* (NYUv2); pass ``"magma_r"`` to flip.
    Pixels with ``depth <= 0`` are not treated specially here: pass ``valid=depth > 0`` when 0
    means "no measurement" (ground truth).
    """
    return colorize_values(depth, cmap, vmin, vmax, valid)


def colorize_error(error: np.ndarray, vmax: float | None = None, cmap: str = "inferno",
                   valid: np.ndarray | None = None) -> np.ndarray:
    """Colourise a non-negative error/energy map with 0 at the dark end; invalid → black."""
    if vmax is None:
        vmax = auto_range(error, valid, (0.0, 99.0))[1]
    return colorize_values(error, cmap, 0.0, vmax, valid)


# --------------------------------------------------------------------------- label maps
def colorize_seg(labels: np.ndarray, palette: np.ndarray | Sequence, ignore_index: int | None = None
                 ) -> np.ndarray:
    """Colour a label map with a palette.

    Args:
        labels: H×W integer class indices (train ids).
        palette: K×3 uint8 (or list of [r, g, b]); class k gets ``palette[k]``.
        ignore_index: pixels with this value are black. Any other value outside 0..K-1 is also
            black (rather than an IndexError on a stray label).

    Returns:
        H×W×3 uint8 RGB.
    """
    labels = np.asarray(labels)
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating):   # e.g. NYUv2 labels stored as float
            labels = np.where(np.isfinite(labels), labels, -1).astype(np.int64)
        else:
            raise ValueError(f"labels must be integers, got {labels.dtype}")
    labels = labels.astype(np.int64, copy=False)
    ok = (labels >= 0) & (labels < len(pal))
    if ignore_index is not None:
        ok &= labels != ignore_index
    out = pal[np.where(ok, labels, 0)]
    out[~ok] = 0
    return out


SEG_CORRECT = (0, 170, 0)
SEG_WRONG = (230, 30, 30)


def seg_error_rgb(pred: np.ndarray, target: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """H×W×3 uint8: correct pixels green, wrong pixels red, ignored target pixels black."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    out = np.zeros(pred.shape + (3,), np.uint8)
    valid = np.ones(pred.shape, bool) if ignore_index is None else target != ignore_index
    out[valid & (pred == target)] = SEG_CORRECT
    out[valid & (pred != target)] = SEG_WRONG
    return out


def overlay(rgb: np.ndarray, seg_rgb: np.ndarray, alpha: float = 0.5,
            mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a colour layer over an image: ``(1-α)·rgb + α·seg_rgb``.

    Args:
        rgb, seg_rgb: H×W×3 uint8 of the same size.
        alpha: 0 = image only, 1 = layer only.
        mask: optional H×W bool; where False the image is kept unblended (e.g. ignored pixels).
    """
    rgb, seg_rgb = np.asarray(rgb), np.asarray(seg_rgb)
    if rgb.shape != seg_rgb.shape:
        raise ValueError(f"image {rgb.shape} and layer {seg_rgb.shape} differ in shape; "
                         "resize the labels with resize_nearest first")
    alpha = float(np.clip(alpha, 0.0, 1.0))
    out = rgb.astype(np.float32) * (1.0 - alpha) + seg_rgb.astype(np.float32) * alpha
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if mask is not None:
        out[~np.asarray(mask, bool)] = rgb[~np.asarray(mask, bool)]
    return out


# --------------------------------------------------------------------------- resizing
def resize_bilinear(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, like ``align_corners=False``) of H×W or H×W×C.

    uint8 input gives uint8 output (rounded); float input gives float32. NaNs spread to their
    neighbours, so resize *masks* with :func:`resize_nearest` instead.
    """
    arr = np.asarray(arr)
    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr.copy()
    src = arr.astype(np.float32)

    def coords(n_out, n_in):
        x = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
        x = np.clip(x, 0, n_in - 1)
        x0 = np.floor(x).astype(np.intp)
        x1 = np.minimum(x0 + 1, n_in - 1)
        return x0, x1, (x - x0).astype(np.float32)

    y0, y1, fy = coords(height, h)
    x0, x1, fx = coords(width, w)
    extra = (None,) * (arr.ndim - 2)
    fy = fy[(slice(None), None) + extra]
    fx = fx[(None, slice(None)) + extra]
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    out = top * (1 - fy) + bottom * fy
    if arr.dtype == np.uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- composition
def _as_rgb_u8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.dtype != np.uint8:
        raise ValueError(f"compose images as uint8 (colourise value maps first), got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected H×W or H×W×3, got {img.shape}")
    return img


def add_title(img: np.ndarray, text: str, strip: int = 18, bg: int = 255) -> np.ndarray:
    """Put ``text`` in a white strip of ``strip`` pixels above an H×W×3 uint8 image."""
    img = _as_rgb_u8(img)
    h, w = img.shape[:2]
    canvas = Image.new("RGB", (w, h + strip), (bg, bg, bg))
    canvas.paste(Image.fromarray(img), (0, strip))
    font = ImageFont.load_default(size=max(8, strip - 6))
    draw = ImageDraw.Draw(canvas)
    # Trim the text to the image width rather than letting it run off the edge.
    while text and draw.textlength(text, font=font) > w - 4:
        text = text[:-1]
    draw.text((2, 2), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def side_by_side(images: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                 pad: int = 4, bg: int = 255, height: int | None = None) -> np.ndarray:
    """Concatenate images left to right (for PNG downloads).

    Every image (H×W×3 or H×W uint8) is rescaled (bilinear) to a common height - the first
    image's unless ``height`` is given - keeping its aspect ratio; ``labels`` adds a title strip
    above each. Returns one uint8 H'×W'×3 array.
    """
    if not images:
        raise ValueError("side_by_side needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError("need one label per image")
    imgs = [_as_rgb_u8(i) for i in images]
    target_h = int(height or imgs[0].shape[0])
    tiles = []
    for k, img in enumerate(imgs):
        h, w = img.shape[:2]
        if h != target_h:
            img = resize_bilinear(img, target_h, max(1, round(w * target_h / h)))
        if labels is not None:
            img = add_title(img, str(labels[k]), bg=bg)
        tiles.append(img)
    th = tiles[0].shape[0]
    sep = np.full((th, pad, 3), bg, np.uint8)
    parts = []
    for k, t in enumerate(tiles):
        if k:
            parts.append(sep)
        parts.append(t)
    return np.concatenate(parts, axis=1)


def grid(images: Sequence[np.ndarray], ncols: int, labels: Sequence[str] | None = None,
         pad: int = 4, bg: int = 255) -> np.ndarray:
    """Lay images out in rows of ``ncols`` (each row via :func:`side_by_side`); shorter rows are
    padded on the right with background. Returns one uint8 array."""
    if ncols < 1:
        raise ValueError("ncols must be >= 1")
    if not images:
        raise ValueError("grid needs at least one image")
    height = _as_rgb_u8(images[0]).shape[0]
    rows = []
    for start in range(0, len(images), ncols):
        chunk = list(images[start:start + ncols])
        lab = None if labels is None else list(labels[start:start + ncols])
        rows.append(side_by_side(chunk, lab, pad=pad, bg=bg, height=height))
    width = max(r.shape[1] for r in rows)
    out = []
    for k, r in enumerate(rows):
        if r.shape[1] < width:
            r = np.concatenate([r, np.full((r.shape[0], width - r.shape[1], 3), bg, np.uint8)], 1)
        if k:
            out.append(np.full((pad, width, 3), bg, np.uint8))
        out.append(r)
    return np.concatenate(out, axis=0)


def colorbar_image(cmap: str, vmin: float, vmax: float, height: int = 16, width: int = 256,
                   units: str = "") -> np.ndarray:
    """A horizontal colour bar with its end values written under it (for PNG downloads)."""
    ramp = np.linspace(0, 255, width).round().astype(np.intp)
    bar = np.repeat(colormap_lut(cmap)[ramp][None], height, axis=0)
    canvas = Image.new("RGB", (width, height + 14), (255, 255, 255))
    canvas.paste(Image.fromarray(np.ascontiguousarray(bar)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=10)
    left, right = f"{vmin:.4g}", f"{vmax:.4g} {units}".strip()
    draw.text((1, height + 1), left, fill=(0, 0, 0), font=font)
    draw.text((max(0, width - draw.textlength(right, font=font) - 1), height + 1), right,
              fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
