"""Read training runs for the dashboard, tolerantly: ours, TensorBoard's and the original code's.

Three sources:

- ``"xtask"``: our run folders (``config.json`` and/or ``metrics.csv``, written by
  :class:`~xtask_core.train.runlog.RunLogger`);
- ``"tensorboard"``: any folder with event files (ours, or other tools');
- ``"xtask_mt"``: the original code's ``exps/NNN`` folders (``model/model.pth``,
  ``model/tr_losses.npy`` / ``model/va_losses.npy`` one value per epoch, epochs counted from 1,
  ``indv_results.txt`` and the shared ``../results.txt`` with one "Experiment #NNN" block per run).

Every reader survives empty, half-written and malformed files: the broken part becomes a
one-line string in ``Run.errors`` and everything else still loads. ``.npy`` files are read
with ``allow_pickle=False`` (a pickled array is refused, never executed). A metrics.csv whose
last line has no newline yet (a run still writing) is read without that line, silently: that
is the normal state of a live run, not an error.
"""
from __future__ import annotations

import csv
import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xtask_core.errors import XTaskError
from xtask_core.train.run_dir import RunDir, parse_csv_text
from xtask_core.train.xtask_mt_format import parse_results_text

__all__ = ["Run", "RunRef", "SOURCES", "read_run", "find_runs", "detect_source", "read_metrics_csv",
           "read_tensorboard", "read_event_file"]

SOURCES = ("xtask", "tensorboard", "xtask_mt")
MAX_TEXT_BYTES = 64 * 1024 * 1024     # metrics.csv / results.txt bigger than this: refused
MAX_EVENT_BYTES = 512 * 1024 * 1024   # a TensorBoard file bigger than this: skipped
CRC_CHECK_BYTES = 16 * 1024 * 1024    # verify payload CRCs of the first 16 MB (pure-Python CRC)


@dataclass
class Run:
    """One training run as the dashboard sees it.

    ``metrics``: DataFrame indexed by ``epoch`` (or ``step``, or a plain row number when neither
    is unique), one numeric column per logged quantity. ``summary``: final numbers.
    ``errors``: one-line messages about parts that could not be read.
    """
    name: str
    path: Path
    source: str
    config: dict = field(default_factory=dict)
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)


@dataclass(frozen=True)
class RunRef:
    """A run found on disk by :func:`find_runs` (not yet read)."""
    name: str
    path: Path
    source: str


# --------------------------------------------------------------------------- CSV
def _numeric_frame(header: list[str], rows: list[dict], index: bool = True) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=header)
    for c in df.columns:
        # A column is numeric when every non-empty cell parses ('nan'/'inf' included);
        # otherwise it keeps its text (e.g. a "phase" column).
        try:
            df[c] = np.array([float(v) if v.strip() else np.nan for v in df[c].astype(str)],
                             dtype=np.float64)
        except ValueError:
            pass
    return _set_index(df) if index else df


def _set_index(df: pd.DataFrame) -> pd.DataFrame:
    """Index by epoch if unique, else step if unique, else a plain row number."""
    for key in ("epoch", "step"):
        if key in df.columns:
            col = pd.to_numeric(df[key], errors="coerce")
            if col.notna().all() and col.is_unique and len(col):
                out = df.drop(columns=[key])
                idx = col.astype(np.int64) if (col == col.round()).all() else col
                out.index = pd.Index(idx.to_numpy(), name=key)
                return out
    df = df.reset_index(drop=True)
    df.index.name = "row"
    return df


def _read_capped(path: Path, limit: int, too_large: str = "too large ({size} bytes), not read"
                 ) -> tuple[bytes | None, list[str]]:
    """Read ``path`` whole unless it is over ``limit`` bytes → (bytes or None, one-line errors).

    Every log reader goes through here, so an oversized or unreadable file becomes that
    source's error instead of an exception (or a multi-GB read).
    """
    try:
        size = path.stat().st_size
        if size > limit:
            return None, [f"{path.name}: {too_large.format(size=size)}"]
        return path.read_bytes(), []
    except OSError as err:
        return None, [f"{path.name}: cannot read ({err.strerror or err})"]


def read_metrics_csv(path: str | os.PathLike, index: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Read a metrics.csv tolerantly → (DataFrame, errors). Never raises on bad content.

    A torn last line (a run still writing) is dropped, malformed rows are skipped and reported.
    ``index=True`` indexes by epoch/step (see ``_set_index``); ``index=False`` keeps them as columns.
    """
    path = Path(path)
    raw, errors = _read_capped(path, MAX_TEXT_BYTES)
    if raw is None:
        return pd.DataFrame(), errors
    if not raw.strip():
        return pd.DataFrame(), [f"{path.name}: empty file"]
    if b"\x00" in raw:
        return pd.DataFrame(), [f"{path.name}: binary data, not a CSV file"]
    try:
        header, rows, errors, _partial = parse_csv_text(raw.decode("utf-8", "replace"))
    except csv.Error as err:
        return pd.DataFrame(), [f"{path.name}: malformed CSV ({err})"]
    if not header:
        return pd.DataFrame(), errors or [f"{path.name}: no header line"]
    return _numeric_frame(header, rows, index=index), errors


def _read_json(path: Path) -> tuple[dict, list[str]]:
    raw, errors = _read_capped(path, MAX_TEXT_BYTES)
    if raw is None:
        return {}, errors
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {}, [f"{path.name}: not UTF-8 text"]
    if not text.strip():
        return {}, [f"{path.name}: empty file"]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return {}, [f"{path.name}: invalid JSON (line {err.lineno}, column {err.colno}: {err.msg})"]
    except RecursionError:
        return {}, [f"{path.name}: invalid JSON (nested too deeply)"]
    if not isinstance(data, dict):
        return {}, [f"{path.name}: expected a JSON object, found {type(data).__name__}"]
    return data, []


# --------------------------------------------------------------------------- TensorBoard
def _event_files(folder: Path) -> list[Path]:
    return RunDir(folder).event_files()


def _scalar_value(value: Any) -> float | None:
    """A Summary.Value → float, for simple_value and 0-d tensor scalars; else None."""
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):
        try:
            from tensorboard.util import tensor_util  # lazy: TensorBoard imports take seconds
            arr = tensor_util.make_ndarray(value.tensor)
        except Exception:   # unknown dtype / not a numeric tensor: not a scalar we can plot
            return None
        if arr.size == 1 and arr.dtype.kind in "fiub":
            return float(arr.reshape(()))
    return None


def read_event_file(path: str | os.PathLike) -> tuple[list[tuple[str, int, float, float]], list[str]]:
    """Scalars of one TensorBoard event file → ([(tag, step, wall_time, value)], errors).

    The TFRecord framing is walked here (length + masked CRC-32C, payload CRC for the first
    ``CRC_CHECK_BYTES``) so that corruption is *reported* with its byte offset. (TensorBoard's own
    loader silently stops at the first bad record.) A record cut short at the very end of the file
    is a file still being written, not an error.
    """
    # lazy: TensorBoard imports take seconds, and only event files need them
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import masked_crc32c

    path = Path(path)
    out: list[tuple[str, int, float, float]] = []
    data, errors = _read_capped(path, MAX_EVENT_BYTES, "event file too large ({size} bytes), skipped")
    if data is None:
        return out, errors
    if not data:
        return out, []   # a writer that has just been created: nothing yet
    pos, n_records = 0, 0
    while pos < len(data):
        if len(data) - pos < 12:
            break  # incomplete header at the end: still being written
        header = data[pos:pos + 8]
        length = struct.unpack("<Q", header)[0]
        if struct.unpack("<I", data[pos + 8:pos + 12])[0] != masked_crc32c(header):
            return out, [f"{path.name}: corrupt TensorBoard event file (bad record header at byte "
                         f"{pos}; {n_records} record(s) read before it)"]
        end = pos + 12 + length + 4
        if end > len(data):
            break  # incomplete last record: still being written
        payload = data[pos + 12:pos + 12 + length]
        if pos < CRC_CHECK_BYTES and \
                struct.unpack("<I", data[end - 4:end])[0] != masked_crc32c(payload):
            return out, [f"{path.name}: corrupt TensorBoard event file (bad record data at byte "
                         f"{pos}; {n_records} record(s) read before it)"]
        try:
            event = Event.FromString(payload)
        except Exception as err:   # protobuf DecodeError and friends
            return out, [f"{path.name}: undecodable event at byte {pos} ({type(err).__name__})"]
        n_records += 1
        pos = end
        if event.HasField("summary"):
            for v in event.summary.value:
                val = _scalar_value(v)
                if val is not None:
                    out.append((v.tag, int(event.step), float(event.wall_time), val))
    return out, []


def read_tensorboard(folder: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """All scalars of the event files directly inside ``folder`` → (DataFrame indexed by
    ``step`` with one column per tag, errors). Later writes of the same (tag, step) win."""
    folder = Path(folder)
    records, errors = [], []
    for f in _event_files(folder):
        recs, errs = read_event_file(f)
        records.extend(recs)
        errors.extend(errs)
    if not records:
        return pd.DataFrame(), errors
    df = pd.DataFrame(records, columns=["tag", "step", "wall_time", "value"])
    df = df.sort_values(["wall_time"], kind="stable").drop_duplicates(["tag", "step"], keep="last")
    wide = df.pivot(index="step", columns="tag", values="value").sort_index()
    wide.columns.name = None
    wide.index.name = "step"
    return wide.astype(np.float64), errors


# --------------------------------------------------------------------------- original exps/NNN
def _read_text(path: Path) -> tuple[str | None, list[str]]:
    raw, errors = _read_capped(path, MAX_TEXT_BYTES)
    if raw is None:
        return None, errors
    if b"\x00" in raw:
        return None, [f"{path.name}: binary data, not a text file"]
    return raw.decode("utf-8", "replace"), []


def _read_loss_npy(path: Path) -> tuple[np.ndarray | None, list[str]]:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower():
            return None, [f"{path.name}: refused (pickled object array; only plain numeric .npy is read)"]
        return None, [f"{path.name}: not a valid .npy file ({str(err).splitlines()[0] if str(err) else 'ValueError'})"]
    except (OSError, EOFError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, [f"{path.name}: unreadable .npy file ({first})"]
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
        return None, [f"{path.name}: expected numeric losses, found {getattr(arr, 'dtype', type(arr))}"]
    if arr.ndim > 1 and arr.size != max(arr.shape):
        return None, [f"{path.name}: expected one value per epoch, found shape {arr.shape}"]
    return arr.reshape(-1).astype(np.float64), []


def _is_xtask_mt(folder: Path) -> bool:
    return any((folder / rel).is_file() for rel in (
        "model/model.pth", "model/tr_losses.npy", "model/va_losses.npy", "tr_losses.npy",
        "va_losses.npy", "indv_results.txt"))


def _read_xtask_mt(folder: Path) -> Run:
    run = Run(name=f"{folder.parent.name}/{folder.name}" if folder.parent.name else folder.name,
              path=folder, source="xtask_mt")
    series = {}
    for fname, col in (("tr_losses.npy", "train_loss"), ("va_losses.npy", "val_loss")):
        # The original saves them in NNN/model/; copies moved next to NNN/ are accepted too.
        p = next((c for c in (folder / "model" / fname, folder / fname) if c.is_file()), None)
        if p is not None:
            arr, errs = _read_loss_npy(p)
            run.errors.extend(errs)
            if arr is not None:
                series[col] = pd.Series(arr, index=pd.RangeIndex(1, len(arr) + 1))
    if series:
        df = pd.DataFrame(series)   # aligned on epoch; a shorter file leaves NaN
        df.index.name = "epoch"     # 1-based: row k = the k-th finished epoch
        run.metrics = df
    # Parameters and scores: the run's own file first, then its block in ../results.txt.
    for src in (folder / "indv_results.txt", folder.parent / "results.txt"):
        if not src.is_file():
            continue
        text, errs = _read_text(src)
        run.errors.extend(errs)
        if text is None:
            continue
        blocks = parse_results_text(text)
        if src.name == "results.txt":
            # "Experiment #3" and folder "003" are the same run: compare numerically if possible.
            def same(a, b):
                return a == b or (a.isdigit() and b.isdigit() and int(a) == int(b))
            picked = [b for k, b in blocks.items() if k is not None and same(k, folder.name)]
        else:
            picked = list(blocks.values())
        for b in picked:
            run.config.update(b["params"])
            run.summary.update(b["scores"])
    if (folder / "model" / "model.pth").is_file():
        run.summary["checkpoint"] = str(folder / "model" / "model.pth")
    if not series and not run.summary and not run.config:
        run.errors.append("no readable logs found in this experiment folder")
    return run


# --------------------------------------------------------------------------- our runs
def _is_xtask_run(folder: Path) -> bool:
    return RunDir(folder).config.is_file() or RunDir(folder).metrics.is_file()


def _read_xtask(folder: Path) -> Run:
    run = Run(name=folder.name, path=folder, source="xtask")
    if RunDir(folder).config.is_file():
        run.config, errs = _read_json(RunDir(folder).config)
        run.errors.extend(errs)
        if isinstance(run.config.get("name"), str) and run.config["name"].strip():
            run.name = run.config["name"].strip()
    if RunDir(folder).metrics.is_file():
        run.metrics, errs = read_metrics_csv(RunDir(folder).metrics)
        run.errors.extend(errs)
    elif _event_files(folder):
        run.metrics, errs = read_tensorboard(folder)
        run.errors.extend(errs)
    if RunDir(folder).summary.is_file():
        run.summary, errs = _read_json(RunDir(folder).summary)
        run.errors.extend(errs)
    if not run.summary and not run.metrics.empty:
        # No summary written (run still training or killed): show the latest row.
        last = run.metrics.iloc[-1]
        run.summary = {"last_" + str(run.metrics.index.name or "row"): _py(run.metrics.index[-1])}
        run.summary.update({k: _py(v) for k, v in last.items() if pd.notna(v)})
    return run


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _read_tb_run(folder: Path) -> Run:
    run = Run(name=folder.name, path=folder, source="tensorboard")
    run.metrics, run.errors = read_tensorboard(folder)
    if run.metrics.empty and not run.errors:
        run.errors.append("no scalar values in the event files")
    if not run.metrics.empty:
        last = run.metrics.ffill().iloc[-1]
        run.summary = {"last_step": _py(run.metrics.index[-1])}
        run.summary.update({k: _py(v) for k, v in last.items() if pd.notna(v)})
    return run


def detect_source(path: str | os.PathLike) -> str | None:
    """Which kind of run folder ``path`` is ("xtask", "xtask_mt", "tensorboard") or None."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    if _is_xtask_run(folder):
        return "xtask"
    if _is_xtask_mt(folder):
        return "xtask_mt"
    if _event_files(folder):
        return "tensorboard"
    return None


_READERS = {"xtask": _read_xtask, "xtask_mt": _read_xtask_mt, "tensorboard": _read_tb_run}


def read_run(path: str | os.PathLike, source: str | None = None) -> Run:
    """Read one run folder. ``source`` None → detected (:func:`detect_source`).

    Raises XTaskError only when ``path`` is not a folder or holds no recognisable run; problems
    *inside* the run's files are reported in ``Run.errors``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise XTaskError(f"run folder not found: {folder}")
    if source is None:
        source = detect_source(folder)
        if source is None:
            raise XTaskError(f"{folder} is not a run folder (no config.json, metrics.csv, "
                             "TensorBoard events or exps/NNN files)")
    if source not in _READERS:
        raise XTaskError(f"unknown run source {source!r}; choose one of {', '.join(_READERS)}")
    try:
        return _READERS[source](folder)
    except XTaskError:
        raise
    except Exception as err:   # a reader bug must not take the dashboard down: report it
        return Run(name=folder.name, path=folder, source=source,
                   errors=[f"unexpected error reading run: {type(err).__name__}: {err}"])


def find_runs(roots: str | os.PathLike | Iterable[str | os.PathLike], max_depth: int = 6,
              max_dirs: int = 20_000) -> list[RunRef]:
    """Scan folders for runs (cheap: looks at file names only, reads nothing).

    A folder with ``config.json``/``metrics.csv`` is an ``xtask`` run and one with
    ``model/model.pth``, ``[model/]tr_losses.npy`` or ``indv_results.txt`` an ``xtask_mt`` run; neither
    is searched further (their TensorBoard files belong to them). A folder with event files is a
    ``tensorboard`` run, and its sub-folders are still searched (TensorBoard nests runs).
    Missing roots are skipped; symlinks are not followed; hidden folders are skipped.
    At most ``max_depth`` levels below each root and ``max_dirs`` folders in all are visited.
    Returns RunRefs sorted by path, without duplicates.
    """
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    found: dict[Path, RunRef] = {}
    visited = 0
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        stack = [(root, 0)]
        while stack and visited < max_dirs:
            folder, depth = stack.pop()
            visited += 1
            source = detect_source(folder)
            if source is not None:
                key = folder.resolve()
                if key not in found:
                    name = folder.name if source != "xtask_mt" else f"{folder.parent.name}/{folder.name}"
                    found[key] = RunRef(name=name, path=folder, source=source)
                if source != "tensorboard":
                    continue
            if depth >= max_depth:
                continue
            try:
                children = sorted((p for p in folder.iterdir()
                                   if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")),
                                  reverse=True)
            except OSError:
                continue
            stack.extend((c, depth + 1) for c in children)
    return sorted(found.values(), key=lambda r: str(r.path))
