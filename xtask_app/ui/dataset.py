"""The Dataset page's inputs: which checkpoints on which source, the background evaluation job,
and the records it shows.

A source is the shipped samples, a dataset split, a folder of images (all evaluated by a
background job, :mod:`xtask_core.tools.record_job`), or an existing records file (read, nothing
recomputed). The job lives in a folder under ``runs/.record_jobs/`` and survives reruns, page
switches and reloads: a new session re-attaches to the owner's running (or latest) job. Its
rows are read as they arrive. The address keeps ``?records=PATH`` of what is shown, so a copied
address opens the same records.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from xtask_app import settings
from xtask_app.messages import USER_ERRORS, one_line
from xtask_app.pickers import first_draw
from xtask_app.selection import choices
from xtask_core.data.samples import ITEM_DATASETS
from xtask_core.evaluate.record_store import load_records, records_source
from xtask_core.io.paths import CHECKPOINT_SUFFIXES
from xtask_core.tools import record_job

SOURCES = ("Shipped samples", "Dataset split", "Folder of images", "Records file")
JOB_KEY, ERROR_KEY, FILE_KEY, MODELS_KEY = "ds_job", "ds_error", "ds_file", "ds_models"
URL_RECORDS = "records"
POLL_S = 1.0
REFRESH_S = 4.0   # while a job runs, the page redraws with the new rows at most this often


def jobs_root() -> Path:
    return settings.runs_dir() / ".record_jobs"


def owner() -> str:
    """One evaluation at a time per app server (as fine-tunes): a reloaded tab re-attaches."""
    return os.environ.get("XTASK_JOB_OWNER", "app")


def label_of(path: str) -> str | None:
    """The sidebar label of a checkpoint path (None when the picker does not list it)."""
    try:
        target = Path(path).resolve()
    except OSError:
        return None
    for label, p in choices().items():
        if Path(p).resolve() == target:
            return label
    return None


# --------------------------------------------------------------------------- choosing
def pick_source(size: tuple[int, int], num_classes: int) -> dict | None:
    """Source radio + its inputs → a job spec's ``source``, ``{"kind": "file", "path"}`` for a
    records file, or None while waiting for input (errors: one line, returns None)."""
    if st.query_params.get(URL_RECORDS) and "ds_src" not in st.session_state:
        st.session_state["ds_src"] = SOURCES[-1]          # a shared address names a records file
    kind = st.radio("Source", SOURCES, horizontal=True, key="ds_src")
    try:
        if kind == "Shipped samples":
            found = settings.samples()
            if not found:
                st.info(f"No samples in {settings.samples_dir()}.")
                return None
            split = found[0].name.split("/")[0]
            if num_classes not in (7, 19):   # street labels read as 7 or 19 classes only: evaluate unlabelled
                st.caption(f"The samples' street-scene labels do not fit a {num_classes}-class model: evaluated "
                           "without ground truth (energy and confidence only).")
                return {"kind": "folder", "root": str(settings.samples_dir() / "leftImg8bit"), "size": list(size)}
            return {"kind": "dataset", "dataset": "synthetic", "root": str(settings.samples_dir()), "split": split,
                    "size": list(size), "num_classes": num_classes}
        if kind == "Dataset split":
            c1, c2, c3, c4 = st.columns([1, 3, 1, 1])
            ds = c1.selectbox("Dataset", list(ITEM_DATASETS), key="ds_dataset")
            root = c2.text_input("Root folder", key="ds_root", placeholder="data/synthetic")
            split = c3.selectbox("Split", ["val", "train", "test"], key="ds_split")
            limit = int(c4.number_input("First N (0 = all)", 0, 100000, 0, key="ds_limit"))
            if not root.strip():
                st.info("Type the dataset's root folder (inside the allowed folders).")
                return None
            src = {"kind": "dataset", "dataset": ds, "root": str(settings.resolve_user_path(root)), "split": split,
                   "size": list(size), "limit": limit}
            return src | ({"num_classes": num_classes} if ds != "nyuv2" else {})
        if kind == "Folder of images":
            c1, c2 = st.columns([4, 1])
            root = c1.text_input("Folder (searched recursively; any common image format; no labels)", key="ds_folder")
            limit = int(c2.number_input("First N (0 = all)", 0, 100000, 0, key="ds_flimit"))
            if not root.strip():
                st.info("Type a folder of images (inside the allowed folders).")
                return None
            path = settings.resolve_user_path(root)
            if not path.is_dir():
                raise ValueError(f"{root} is not a folder")
            return {"kind": "folder", "root": str(path), "size": list(size), "limit": limit}
        text = st.text_input("Records file (.parquet from `xtask eval --per-image` or an earlier session)",
                             key="ds_records_path", value=st.query_params.get(URL_RECORDS, ""))
        if not text.strip():
            st.info("Type the path of a records file (inside the allowed folders).")
            return None
        return {"kind": "file", "path": str(settings.resolve_user_path(text))}
    except USER_ERRORS as err:
        st.error(one_line(err))
        return None


def pick_checkpoints() -> list[str]:
    """Multi-select of the sidebar's checkpoints (default: the current one) → their paths."""
    found = {lb: p for lb, p in choices().items() if Path(p).suffix.lower() in CHECKPOINT_SUFFIXES}
    current = st.session_state.get("xtask_ckpt")
    default = [current] if current in found else list(found)[:1]
    ss = st.session_state
    if MODELS_KEY in ss:    # set by the user, or by another page's link: no default beside it
        ss[MODELS_KEY] = [lb for lb in ss[MODELS_KEY] if lb in found]
    picked = st.multiselect("Checkpoints to evaluate", list(found), key=MODELS_KEY,
                            **first_draw(MODELS_KEY, default=default),
                            help="Each picked checkpoint runs over every image; add files with 'Load another "
                                 "checkpoint' in the sidebar")
    return [str(found[lb]) for lb in picked]


# --------------------------------------------------------------------------- the job
def current_job() -> str | None:
    """This session's job folder, re-attaching after a reload to the owner's running or latest job."""
    ss = st.session_state
    if not ss.get(JOB_KEY):
        found = record_job.find_active(owner(), jobs_root()) or record_job.latest(owner(), jobs_root())
        if found is not None:
            ss[JOB_KEY] = str(found)
    return ss.get(JOB_KEY)


def start(checkpoints: list[str], source: dict, batch_size: int) -> None:
    """Button callback: start the evaluation (one line in the page when it cannot)."""
    ss = st.session_state
    ss.pop(ERROR_KEY, None)
    try:
        run_dir = record_job.start({"checkpoints": checkpoints, "source": source, "batch_size": batch_size},
                                   jobs_root(), owner=owner())
    except USER_ERRORS as err:
        ss[ERROR_KEY] = one_line(err)
        return
    ss[JOB_KEY] = str(run_dir)
    ss.pop(FILE_KEY, None)
    st.query_params.pop(URL_RECORDS, None)


def cancel(run_dir: str) -> None:
    try:
        record_job.cancel(run_dir, grace_s=10.0)
    except USER_ERRORS as err:
        st.session_state[ERROR_KEY] = one_line(err)


def status(run_dir: str):
    try:
        return record_job.poll(run_dir)
    except USER_ERRORS:
        return None


def progress_line(st_) -> str:
    """``running: 12 of 60 rows, 2.1 rows/s, about 23 s left`` / the final message."""
    return f"{st_.state}: {st_.message}" + (f", about {st_.eta_s:.0f} s left" if st_.state == "running"
                                             and st_.eta_s else "")


@st.fragment(run_every=POLL_S)
def live(run_dir: str) -> None:
    """Progress of the running job, polled; the whole page redraws with new rows every few seconds
    and once more when the job ends."""
    s = status(run_dir)
    if s is None:
        return
    st.progress(s.fraction, text=progress_line(s))
    if any("warning" in ln for ln in s.log_tail):
        st.caption("Skipped: " + "; ".join(ln.removeprefix("warning: ") for ln in s.log_tail[-3:] if "warning" in ln))
    seen = st.session_state.get("_ds_rows_seen", -1)
    last = st.session_state.get("_ds_redraw", 0.0)
    if s.finished or (s.step != seen and time.monotonic() - last > REFRESH_S):
        st.session_state["_ds_rows_seen"] = s.step
        st.session_state["_ds_redraw"] = time.monotonic()
        st.rerun(scope="app")


# --------------------------------------------------------------------------- reading
@st.cache_data(max_entries=8, show_spinner="Reading the records…")
def _read_file(path: str, mtime: float, size: int) -> tuple[pd.DataFrame, dict]:
    return load_records(path, partial=False), records_source(path)


def read_file(path: str) -> tuple[pd.DataFrame, dict]:
    """A finished records file (cached by path, mtime, size) and its source identity."""
    info = Path(path).stat()
    return _read_file(path, info.st_mtime, info.st_size)


def share_address(run_dir: str) -> None:
    """Put a finished job's records file in the address (``?records=``), so copying the address
    shares what is shown: a new session opens it as a records file."""
    path = Path(run_dir) / record_job.RECORDS
    if path.is_file() and st.query_params.get(URL_RECORDS) != str(path):
        st.query_params[URL_RECORDS] = str(path)


def job_records(run_dir: str) -> tuple[pd.DataFrame, dict]:
    """The rows a job has written so far and its source identity (from the job's spec)."""
    spec = record_job.spec_of(run_dir)
    src = dict(spec.get("source") or {})
    ident = {"kind": src.get("kind"), "dataset": src.get("dataset"), "split": src.get("split"),
             "root": str(Path(src["root"]).resolve()) if src.get("root") else None, "input_size": src.get("size")}
    return record_job.records(run_dir), ident
