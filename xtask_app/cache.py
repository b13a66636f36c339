"""Cached work shared by every page: loading a checkpoint, running the model on an image, reading
samples, uploads and dataset items. Display-only widgets therefore never re-run the model."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from xtask_core.checkpoint import load_checkpoint
from xtask_core.data.samples import load_dataset_item, load_sample
from xtask_core.evaluate import kernels
from xtask_core.inference.predictor import Predictor
from xtask_core.io.images import load_image


def warm_kernels() -> None:
    """Let the metric kernels load (or compile, once per machine) in the background while the
    model loads. Idempotent; called by the sidebar, never at import."""
    kernels.warm_in_background()


def file_key(path: str | os.PathLike) -> tuple[str, float, int]:
    """(resolved path, mtime, size): a cache key that changes when the file is rewritten."""
    info = Path(path).stat()
    return str(Path(path).resolve()), info.st_mtime, info.st_size


@st.cache_resource(max_entries=6, show_spinner="Loading checkpoint…")
def _load_cached(path: str, mtime: float, size: int):
    # mtime and size are part of the cache key: a retrained file at the same path reloads.
    loaded = load_checkpoint(path)
    predictor = Predictor(loaded)
    # Decide the inference path for the configured input size now, in a daemon thread (a cached
    # decision is taken at once): pages never wait for the measurement, they run the exact
    # reference path until it is done.
    predictor.autotune_in_background()
    return loaded, predictor


def get_model(path: str | os.PathLike):
    """(checkpoint.Loaded, Predictor) for ``path``, shared across sessions (st.cache_resource).
    Never mutate the model: every session uses the same object."""
    return _load_cached(*file_key(path))


@st.cache_data(max_entries=64, show_spinner=False)
def _predict_cached(model_key: tuple, image_key: str, corruption: tuple, _predictor, _rgb):
    # Only the three hashable keys identify the result; the model and image travel unhashed.
    return _predictor.predict(_rgb)


def predict(state, rgb: np.ndarray, image_key: str, corruption: dict | None = None):
    """Prediction of ``state``'s model (a selection.ModelState) on ``rgb`` (H×W×3 uint8, already
    corrupted if ``corruption`` is given: the dict only keys the cache). Returns an
    inference.Prediction at the model input size."""
    corr = tuple(sorted((corruption or {}).items()))
    return _predict_cached(file_key(state.path), image_key, corr, state.predictor, rgb)


@st.cache_data(max_entries=128, show_spinner=False)
def cached_sample(image: str, label: str | None, disparity: str | None, num_classes: int,
                  height: int, width: int):
    """:func:`xtask_core.data.samples.load_sample`, cached by its arguments."""
    return load_sample(image, label, disparity, num_classes, height, width)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_upload(data: bytes) -> np.ndarray:
    """An uploaded image's bytes decoded to H×W×3 uint8 (one-line XTaskError when unreadable)."""
    return load_image(data)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_dataset_item(dataset: str, root: str, split: str, index: int, num_classes: int,
                        height: int, width: int):
    """:func:`xtask_core.data.samples.load_dataset_item`, cached by its arguments."""
    return load_dataset_item(dataset, root, split, index, num_classes, height, width)
