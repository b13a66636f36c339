"""Choosing the image a page runs on: a shipped sample, one item of a dataset split, an upload, or
an image file named by its path (inside the allowed folders); and shipped samples through a model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from xtask_app import cache, settings
from xtask_app.messages import USER_ERRORS, show_error
from xtask_app.selection import ModelState
from xtask_core.data.samples import ITEM_DATASETS, SampleFiles
from xtask_core.errors import XTaskError
from xtask_core.io.images import load_image
from xtask_core.io.keys import array_key, sha1_hex

SOURCES = ("Sample", "Dataset split", "Upload", "Image file")
NYUV2_SAMPLES = "nyuv2"   # sub-folder of the samples folder with indoor rooms in the NYUv2 layout
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"]


@dataclass
class Picked:
    """The image chosen by :func:`image_picker`."""

    rgb: np.ndarray                  # H×W×3 uint8 at its own size
    name: str
    key: str                         # content hash, for caches
    gt_seg: np.ndarray | None = None    # h×w int64 train ids at the model size (ignore = state.ignore_index)
    gt_depth: np.ndarray | None = None  # h×w float32 model units at the model size, 0 = invalid
    note: str = ""                   # one line: why (some) ground truth is absent ("" when it is all there)


def sample_source(s: SampleFiles) -> str:
    """Label set of a shipped sample's ground truth: the sample's own field when it has one
    (indoor samples: "nyuv2"), else "cityscapes" (the Cityscapes file layout, raw ids)."""
    for field in ("label_set", "dataset", "kind"):
        value = getattr(s, field, None)
        if isinstance(value, str) and value:
            return value
    return "cityscapes"


def fitting_samples(state: ModelState) -> list[SampleFiles]:
    """The shipped samples whose segmentation ground truth fits ``state``'s model."""
    return [s for s in settings.samples() if state.fit(sample_source(s)).seg]


def sample_arrays(state: ModelState, s: SampleFiles) -> tuple:
    """(rgb, gt_seg, gt_depth) of a sample at ``state``'s model size (cached); ground truth the
    model cannot be scored against (another label set or depth reading) is None. See
    :func:`xtask_core.data.samples.load_sample`."""
    cfg = state.config
    fit = state.fit(sample_source(s))
    label = str(s.label) if fit.seg and s.label else None
    disparity = str(s.disparity) if fit.depth and s.disparity else None
    return cache.cached_sample(str(s.image), label, disparity, cfg.num_classes, cfg.height, cfg.width)


def first_draw(widget_key: str, **default) -> dict:
    """A widget's default (``index=``, ``value=``, ``default=``) for its first draw only: once its
    key holds a value (the user's choice, or one a link or another page set), passing a default as
    well only makes Streamlit warn. Use as ``st.selectbox(..., key=k, **first_draw(k, index=i))``."""
    return {} if widget_key in st.session_state else default


def _pick_sample(state: ModelState, key: str, box) -> Picked | None:
    found = settings.samples()
    if not found:
        box.info(f"No samples found in {settings.samples_dir()}.")
        return None
    names = [s.name for s in found]
    fitting = [s.name for s in fitting_samples(state)]
    name = box.selectbox("Sample image", names, key=f"{key}_sample",
                         **first_draw(f"{key}_sample", index=names.index(fitting[0]) if fitting else 0))
    s = found[names.index(name)]
    rgb, gt_seg, gt_depth = sample_arrays(state, s)
    return Picked(rgb, name, array_key(rgb), gt_seg, gt_depth, state.fit(sample_source(s)).reason)


def _pick_dataset_item(state: ModelState, key: str, box) -> Picked | None:
    cfg = state.config
    c1, c2, c3, c4 = box.columns([1, 3, 1, 1])
    datasets = list(ITEM_DATASETS)
    ds = c1.selectbox("Dataset", datasets, key=f"{key}_ds",
                      **first_draw(f"{key}_ds", index=datasets.index("nyuv2") if state.label_set == "nyuv2" else 0))
    indoor = settings.samples_dir() / NYUV2_SAMPLES      # the shipped indoor samples form an NYUv2 root
    default_root = str(settings.samples_dir()) if ds != "nyuv2" else str(indoor) if indoor.is_dir() else ""
    root = c2.text_input("Root folder", key=f"{key}_root",
                         **first_draw(f"{key}_root", value=default_root))
    split = c3.selectbox("Split", ["val", "train", "test"], key=f"{key}_split")
    index = int(c4.number_input("Index", min_value=0, step=1, key=f"{key}_idx",
                                **first_draw(f"{key}_idx", value=0)))
    if not root.strip():
        box.info("Type the dataset root folder.")
        return None
    path = settings.resolve_user_path(root)
    fit = state.fit(ds)
    # Cityscapes-layout labels are read as 7 or 19 train ids: any valid count when they are dropped anyway.
    n_cls = cfg.num_classes if fit.seg or ds == "nyuv2" else 7
    rgb, gt_seg, gt_depth = cache.cached_dataset_item(ds, str(path), split, index, n_cls, cfg.height, cfg.width)
    return Picked(rgb, f"{ds}:{split}[{index}]", array_key(rgb), gt_seg if fit.seg else None,
                  gt_depth if fit.depth else None, fit.reason)


def _pick_upload(state: ModelState, key: str, box) -> Picked | None:
    up = box.file_uploader("Image (PNG, JPEG, WebP, BMP, TIFF…)", key=f"{key}_upload", type=UPLOAD_TYPES)
    if up is None:
        box.info("Upload an image to run the model on it.")
        return None
    data = up.getvalue()
    return Picked(cache.cached_upload(data), up.name, sha1_hex(data), note=state.fit(None).reason)


@st.cache_data(max_entries=32, show_spinner=False)
def _decoded_file(path: str, mtime: float, size: int) -> np.ndarray:
    # mtime and size are part of the cache key: a file rewritten at the same path is decoded again.
    return load_image(path)


def file_image(text: str) -> tuple[np.ndarray, str]:
    """(H×W×3 uint8, file name) of the image file at the user-typed path ``text``: resolved inside
    the allowed folders (:func:`settings.resolve_user_path`), decoded by the same safe loader as
    uploads (allowed formats only, pixel cap before decoding), cached by (path, mtime, size).
    A path outside the allowed folders, a missing file, a folder or a non-image: one-line XTaskError."""
    path = settings.resolve_user_path(text)
    if not path.is_file():
        raise XTaskError(f"{text.strip()} is not a file")
    return _decoded_file(*cache.file_key(path)), path.name


def _pick_file(state: ModelState, key: str, box) -> Picked | None:
    text = box.text_input("Image file", key=f"{key}_path",
                          placeholder="path of a PNG, JPEG, WebP, BMP, TIFF… inside the allowed folders")
    if not text.strip():
        box.info("Type the path of an image file (it must lie inside the folders the server allows).")
        return None
    rgb, name = file_image(text)
    fit = state.fit(None)      # like an upload: no label set, so no ground truth
    return Picked(rgb, name, array_key(rgb), note=fit.reason.replace("An uploaded image", "An image file"))


LINK_FIELDS = ("src", "image", "ds", "root", "split", "idx", "path")


def _follow_link(key: str, options: list[str]) -> None:
    """Open the image the address names, once per address: ``?src=sample&image=NAME``,
    ``?src=dataset&ds=…&root=…&split=…&idx=…`` or ``?src=file&path=ABS_PATH`` (the Dataset page's
    click-through links). A link to a source the page does not offer is ignored."""
    q, ss = st.query_params, st.session_state
    link = tuple(q.get(k) for k in LINK_FIELDS)
    if link[0] not in ("sample", "dataset", "file") or ss.get(f"_{key}_link") == link:
        return
    ss[f"_{key}_link"] = link
    if link[0] == "sample" and "Sample" in options and link[1] in [s.name for s in settings.samples()]:
        ss[f"{key}_src"], ss[f"{key}_sample"] = "Sample", link[1]
    elif link[0] == "dataset" and "Dataset split" in options and link[2] in ITEM_DATASETS and str(link[5]).isdigit():
        ss.update({f"{key}_src": "Dataset split", f"{key}_ds": link[2], f"{key}_root": link[3] or "",
                   f"{key}_split": link[4] or "val", f"{key}_idx": int(link[5])})
    elif link[0] == "file" and "Image file" in options and link[6]:
        ss[f"{key}_src"], ss[f"{key}_path"] = "Image file", link[6]


def image_picker(state: ModelState, key: str, sources=SOURCES, container=None,
                 explain_gt: bool = True) -> Picked | None:
    """Image source radio (``{key}_src``) + the matching picker. Errors show one st.error line
    and return None, as does a source still waiting for input. When the image's ground truth
    does not fit the model (another label set, an upload or image file) the Picked has None for it and, with
    ``explain_gt``, one caption line says why."""
    box = container or st
    options = list(sources)
    if not settings.samples() and "Sample" in options and len(options) > 1:
        options.remove("Sample")
    _follow_link(key, options)
    src = box.radio("Image source", options, horizontal=True, key=f"{key}_src")
    try:
        if src == "Sample":
            picked = _pick_sample(state, key, box)
        elif src == "Dataset split":
            picked = _pick_dataset_item(state, key, box)
        elif src == "Image file":
            picked = _pick_file(state, key, box)
        else:
            picked = _pick_upload(state, key, box)
    except USER_ERRORS as err:
        show_error(err, box.container())
        return None
    if picked is not None and picked.note and explain_gt:
        box.caption(f"ℹ️ {picked.note}")
    return picked


def predict_samples(state: ModelState, samples) -> tuple[list, list, list]:
    """Shipped ``samples`` through ``state``'s model: (predictions, gt_segs, gt_depths), ground
    truth as :func:`sample_arrays` gives it. Every prediction is cached, so re-drawing never
    re-runs the model."""
    preds, segs, deps = [], [], []
    for s in samples:
        rgb, gs, gd = sample_arrays(state, s)
        preds.append(cache.predict(state, rgb, array_key(rgb)))
        segs.append(gs)
        deps.append(gd)
    return preds, segs, deps
