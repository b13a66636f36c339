"""``xtask predict``'s library function: one image through a loaded checkpoint → files in a folder.

Writes coloured PNGs of the input and the four outputs (plus an overlay), the raw arrays as
``.npy`` and a ``summary.json`` (class fractions, depth statistics, how far the direct and the
transferred outputs agree). Every file is written atomically.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from xtask_core.errors import XTaskError
from xtask_core.inference.predictor import Predictor
from xtask_core.io.atomic import atomic_write_bytes, atomic_write_text
from xtask_core.io.images import load_image, to_png_bytes
from xtask_core.io.json_safe import json_safe
from xtask_core.viz import colour as viz


def _class_fractions(labels: np.ndarray, names: list[str]) -> dict[str, float]:
    counts = np.bincount(labels.ravel(), minlength=len(names) or int(labels.max()) + 1)
    return {(names[i] if i < len(names) else f"class {i}"): round(float(c) / labels.size, 6)
            for i, c in enumerate(counts)}


def _stats(d: np.ndarray) -> dict[str, float]:
    return {"min": float(np.min(d)), "max": float(np.max(d)), "mean": float(np.mean(d))}


def predict_image(loaded, image_path: str, out_dir: Path, *, device, precision: str = "auto",
                  size: tuple[int, int] | None = None, cmap: str = "magma",
                  rgb=None) -> dict[str, Any]:
    """Predict one image and write PNGs, .npy arrays and summary.json into ``out_dir``.

    ``loaded``: a loaded checkpoint (:func:`xtask_core.checkpoint.load_checkpoint`). ``size``:
    model input (H, W), multiples of 32 (default: the checkpoint's); outputs are at that size.
    ``rgb``: the already decoded H×W×3 uint8 image of ``image_path`` (skips decoding it again).
    Returns the summary written to ``summary.json``. A single-task baseline (``config.task``
    ``"segmt"`` / ``"depth"``) writes only its task's files; the summary's entries of the absent
    outputs (and ``consistency``, which needs the transferred ones) are None.
    """
    # writable copy: torch warns on read-only arrays
    rgb = np.array(load_image(image_path) if rgb is None else rgb)
    size = size or (loaded.config.height, loaded.config.width)
    if size[0] % 32 or size[1] % 32:
        raise XTaskError(f"--height and --width must be multiples of 32, got {size[0]}x{size[1]}")
    pred = Predictor(loaded, device=device, precision=precision).predict(rgb, size=size)

    def arr(a, dtype=None):  # None stays None: a single-task net has one output
        return None if a is None else np.asarray(a, dtype)

    seg_logits, seg_t_logits = arr(pred.seg_logits), arr(pred.seg_t_logits)
    seg, seg_t = pred.seg, pred.seg_t
    depth, depth_t = arr(pred.depth, np.float32), arr(pred.depth_t, np.float32)
    small = np.asarray(pred.input_rgb).astype(np.uint8)
    palette = np.asarray(loaded.meta.get("palette"), dtype=np.uint8)
    # one shared colour range, so direct and transferred depth PNGs are comparable by eye
    finite = np.concatenate([np.zeros(0, np.float32)] + [d[np.isfinite(d)] for d in (depth, depth_t) if d is not None])
    vmin = float(np.percentile(finite, 1)) if finite.size else 0.0
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1e-6
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs, npys = {"input.png": small}, {}
    for suffix, labels, logits in (("", seg, seg_logits), ("_transferred", seg_t, seg_t_logits)):
        if labels is not None:
            pngs[f"seg{suffix}.png"] = viz.colorize_seg(labels, palette)
            npys[f"seg{suffix}.npy"] = labels.astype(np.int32)
            npys[f"seg{suffix}_logits.npy"] = logits.astype(np.float32)
    for suffix, d in (("", depth), ("_transferred", depth_t)):
        if d is not None:
            pngs[f"depth{suffix}.png"] = viz.colorize_depth(d, cmap=cmap, vmin=vmin, vmax=vmax)
            npys[f"depth{suffix}.npy"] = d
    if seg is not None:
        pngs["overlay.png"] = viz.overlay(small, viz.colorize_seg(seg, palette), 0.5)
    for name, img in pngs.items():
        atomic_write_bytes(out_dir / name, to_png_bytes(np.asarray(img)))
    for name, a in npys.items():
        buf = io.BytesIO()
        np.save(buf, a)
        atomic_write_bytes(out_dir / name, buf.getvalue())
    names = list(loaded.meta.get("class_names") or [])
    summary = {
        "checkpoint": str(loaded.path), "image": str(image_path), "image_size": list(rgb.shape[:2]),
        "model_input_size": list(size), "outputs_at": "model input size",
        "depth_unit": loaded.meta.get("depth_kind", "disparity"),
        "depth_unit_note": loaded.meta.get("depth_scale_note", ""),
        "class_names": names,
        "task": loaded.config.task,
        "seg_class_fraction": None if seg is None else _class_fractions(seg, names),
        "seg_transferred_class_fraction": None if seg_t is None else _class_fractions(seg_t, names),
        "depth_stats": None if depth is None else _stats(depth),
        "depth_transferred_stats": None if depth_t is None else _stats(depth_t),
        "consistency": None if any(a is None for a in (seg, seg_t, depth, depth_t)) else
        {"seg_agreement": float((seg == seg_t).mean()), "depth_mean_abs_diff": float(np.abs(depth - depth_t).mean())},
        "depth_colour_range": [vmin, vmax], "cmap": cmap,
        "files": sorted(list(pngs) + list(npys)),
    }
    summary = json_safe(summary)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
