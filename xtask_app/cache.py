"""Cached work shared by every page: loading a checkpoint, running the model on an image, reading
samples, uploads and dataset items. Display-only widgets therefore never re-run the model."""
from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st

from xtask_core.checkpoint import load_checkpoint
from xtask_core.data.samples import load_dataset_item, load_sample
from xtask_core.evaluate import kernels
from xtask_core.inference.predictor import Predictor
from xtask_core.io.images import load_image

# Background work (loading the metric kernels, measuring the inference paths) starts this long
# after it is asked for, so that the first page's model load and first predictions, which the
# user is waiting for, do not share the CPU with it (2 cores: the first predictions came out
# seconds later while both ran).
# The work also runs at a lower CPU priority (Linux: per thread, inherited by the threads it
# starts, torch's worker threads included), so that later pages are not slowed by it either.
BACKGROUND_DELAY_S = 3.0
BACKGROUND_NICE = 10
_scheduled: set = set()                       # keys of work already scheduled in this process
_scheduled_predictors = weakref.WeakSet()     # predictors whose measurement is scheduled (an evicted
_scheduled_lock = threading.Lock()            # one's id may be reused by a new one: not a key)


def _low_priority(fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(AttributeError, OSError):    # not Linux, or not allowed: normal priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        fn()
    return run


def _later(key, fn: Callable[[], object], seen: set | weakref.WeakSet | None = None) -> None:
    """Run ``fn`` once per ``key`` (kept in ``seen``) and process, :data:`BACKGROUND_DELAY_S` from
    now, in a daemon thread of low priority."""
    seen = _scheduled if seen is None else seen
    with _scheduled_lock:
        if key in seen:
            return
        seen.add(key)
    timer = threading.Timer(BACKGROUND_DELAY_S, _low_priority(fn))
    timer.daemon = True
    timer.start()


def warm_kernels() -> None:
    """Let the metric kernels load (or compile, once per machine) in the background, shortly
    after the first page is drawn. Idempotent; called by the sidebar, never at import."""
    _later("kernels", kernels.warm_in_background)


def file_key(path: str | os.PathLike) -> tuple[str, float, int]:
    """(resolved path, mtime, size): a cache key that changes when the file is rewritten."""
    info = Path(path).stat()
    return str(Path(path).resolve()), info.st_mtime, info.st_size


@st.cache_resource(max_entries=6, show_spinner="Loading checkpoint…")
def _load_cached(path: str, mtime: float, size: int):
    # mtime and size are part of the cache key: a retrained file at the same path reloads.
    loaded = load_checkpoint(path)
    predictor = Predictor(loaded)
    # Forwards run the exact reference until :func:`predict`, after its first prediction, starts the
    # background thread: it measures the paths, or builds the choice cached on disk by an earlier session.
    predictor.autotune_in_background(start=False)
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
    pred = _predict_cached(file_key(state.path), image_key, corr, state.predictor, rgb)
    # Decide the inference path for the configured input size in a daemon thread, shortly after the
    # first prediction: pages never wait for the measurement, they run the exact reference path
    # until it is done.
    _later(state.predictor, state.predictor.autotune_in_background, _scheduled_predictors)
    return pred


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
