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
    Returns the summary written to ``summary.json``.
    """
    # writable copy: torch warns on read-only arrays
    rgb = np.array(load_image(image_path) if rgb is None else rgb)
    size = size or (loaded.config.height, loaded.config.width)
    if size[0] % 32 or size[1] % 32:
        raise XTaskError(f"--height and --width must be multiples of 32, got {size[0]}x{size[1]}")
    pred = Predictor(loaded, device=device, precision=precision).predict(rgb, size=size)
    seg_logits, seg_t_logits = np.asarray(pred.seg_logits), np.asarray(pred.seg_t_logits)
    seg, seg_t = seg_logits.argmax(0), seg_t_logits.argmax(0)
    depth, depth_t = np.asarray(pred.depth, np.float32), np.asarray(pred.depth_t, np.float32)
    small = np.asarray(pred.input_rgb).astype(np.uint8)
    palette = np.asarray(loaded.meta.get("palette"), dtype=np.uint8)
    # one shared colour range, so direct and transferred depth PNGs are comparable by eye
    finite = np.concatenate([depth[np.isfinite(depth)], depth_t[np.isfinite(depth_t)]])
    vmin = float(np.percentile(finite, 1)) if finite.size else 0.0
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1e-6
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {"input.png": small,
            "seg.png": viz.colorize_seg(seg, palette),
            "seg_transferred.png": viz.colorize_seg(seg_t, palette),
            "depth.png": viz.colorize_depth(depth, cmap=cmap, vmin=vmin, vmax=vmax),
            "depth_transferred.png": viz.colorize_depth(depth_t, cmap=cmap, vmin=vmin, vmax=vmax),
            "overlay.png": viz.overlay(small, viz.colorize_seg(seg, palette), 0.5)}
    for name, img in pngs.items():
        atomic_write_bytes(out_dir / name, to_png_bytes(np.asarray(img)))
    npys = {"seg.npy": seg.astype(np.int32), "seg_transferred.npy": seg_t.astype(np.int32),
            "seg_logits.npy": seg_logits.astype(np.float32),
            "seg_transferred_logits.npy": seg_t_logits.astype(np.float32),
            "depth.npy": depth, "depth_transferred.npy": depth_t}
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
        "seg_class_fraction": _class_fractions(seg, names),
        "seg_transferred_class_fraction": _class_fractions(seg_t, names),
        "depth_stats": _stats(depth), "depth_transferred_stats": _stats(depth_t),
        "consistency": {"seg_agreement": float((seg == seg_t).mean()),
                        "depth_mean_abs_diff": float(np.abs(depth - depth_t).mean())},
        "depth_colour_range": [vmin, vmax], "cmap": cmap,
        "files": sorted(list(pngs) + list(npys)),
    }
    summary = json_safe(summary)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
