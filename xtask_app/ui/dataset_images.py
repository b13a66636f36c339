"""The Dataset page's pictures: a records row's image, its overlays (run on demand, cached) and
thumbnails. A row whose image is not on this machine (records computed elsewhere) gets none."""
from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import streamlit as st

from xtask_app import cache
from xtask_app.messages import USER_ERRORS
from xtask_app.selection import model_state
from xtask_app.ui.dataset import label_of
from xtask_core.evaluate.analysis import seg_error_map
from xtask_core.evaluate.baseline import pixel_scores
from xtask_core.io.images import load_image
from xtask_core.io.keys import array_key
from xtask_core.viz import colour as viz

OVERLAYS = ("input", "segmentation", "error map (wrong pixels)", "energy map (KL)", "entropy map (baseline)")
THUMB_W = 128


@st.cache_data(max_entries=512, show_spinner=False)
def _folder_image(path: str, mtime: float) -> np.ndarray:
    return load_image(path, min_side=1)


def image_of(source: dict, image: str, index: int, num_classes: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(rgb at the records' input size, ground-truth train ids or None) of one row; None when the
    image is not here or cannot be read."""
    root = source.get("root")
    size = source.get("input_size") or ()
    if not root or len(size) != 2 or not Path(root).is_dir():
        return None
    h, w = int(size[0]), int(size[1])
    try:
        if source.get("kind") == "dataset":
            rgb, gt, _ = cache.cached_dataset_item(str(source["dataset"]), str(root), str(source.get("split")),
                                                   int(index), int(num_classes), h, w)
            return rgb, gt
        path = Path(root) / image
        rgb = _folder_image(str(path), path.stat().st_mtime)
        return np.ascontiguousarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)), None
    except USER_ERRORS:
        return None


def _state_for(checkpoint: str):
    label = label_of(checkpoint)
    if label is None and not Path(checkpoint).is_file():
        return None
    try:
        return model_state(label or Path(checkpoint).name, checkpoint)
    except USER_ERRORS:
        return None


def overlay_image(source: dict, row, overlay: str) -> tuple[np.ndarray | None, str]:
    """The tile picture of a records row with ``overlay`` (one of :data:`OVERLAYS`) and a note
    ("" or why the overlay could not be drawn: no ground truth, checkpoint not here)."""
    got = image_of(source, str(row["image"]), int(row["index"]), int(row["num_classes"]))
    if got is None:
        return None, "image not on this machine"
    rgb, gt = got
    if overlay == "input":
        return rgb, ""
    state = _state_for(str(row["checkpoint"]))
    if state is None:
        return rgb, "checkpoint not on this machine: input only"
    pred = cache.predict(state, rgb, array_key(rgb))
    if pred.seg_logits is None:
        return rgb, "no segmentation output: input only"
    if overlay == "segmentation":
        return viz.overlay(pred.input_rgb, viz.colorize_seg(pred.seg, state.palette), 0.55), ""
    if overlay.startswith("error"):
        if gt is None:
            return rgb, "no ground truth: input only"
        err = seg_error_map(pred.seg, gt, state.ignore_index)   # only the wrong pixels are tinted (red)
        return viz.overlay(pred.input_rgb, viz.seg_error_rgb(pred.seg, gt, state.ignore_index), 0.75,
                           mask=np.asarray(err["wrong"], bool) & np.asarray(err["valid"], bool)), ""
    if pred.seg_t_logits is None:
        return rgb, "no transferred output: input only"
    scores = pixel_scores(pred.seg_logits, pred.seg_t_logits)
    values = scores["seg_energy"] if overlay.startswith("energy") else scores["entropy"]
    return viz.overlay(pred.input_rgb, viz.colorize_error(values), 0.7), ""


def thumbnail(rgb: np.ndarray, width: int = THUMB_W) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def data_uri(rgb: np.ndarray) -> str:
    """PNG data URI of an RGB image (for st.column_config.ImageColumn)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


@st.cache_data(max_entries=2048, show_spinner=False)
def thumb_uri(source_key: tuple, image: str, index: int, num_classes: int) -> str:
    """Thumbnail data URI of a row's input ("" when the image is not here); cached per image."""
    source = dict(source_key)
    source["input_size"] = list(source.get("input_size") or ())
    got = image_of(source, image, index, num_classes)
    return data_uri(thumbnail(got[0])) if got is not None else ""


def source_key(source: dict) -> tuple:
    """A hashable form of a source identity (cache key)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in source.items()))
