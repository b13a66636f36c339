"""Write and read training run logs.

Writing (:class:`RunLogger`, used by the trainer): a run folder holds

- ``config.json``   - the resolved configuration, written atomically;
- ``metrics.csv``   - one row per :meth:`RunLogger.log` call. Rows are appended with a single
  ``write`` of a complete line, so a reader sees at worst one incomplete *last* line while a
  run is training. When a row brings a new column, the whole file is rewritten atomically
  (temporary file + ``os.replace``) with the union of columns; older rows get empty cells;
- ``summary.json``  - optional final numbers (:meth:`RunLogger.write_summary`);
- TensorBoard event files (``events.out.tfevents.*``) with the same numeric values as scalars,
  so ``tensorboard --logdir runs/`` works too.

Reading (:func:`read_run`, :func:`find_runs`) understands three sources:

- ``"xtask"``: our run folders (``config.json`` and/or ``metrics.csv``);
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
import io
import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_path, atomic_write_text

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
TB_PREFIX = "events.out.tfevents"
SOURCES = ("xtask", "tensorboard", "xtask_mt")

MAX_TEXT_BYTES = 64 * 1024 * 1024     # metrics.csv / results.txt bigger than this: refused
MAX_EVENT_BYTES = 512 * 1024 * 1024   # a TensorBoard file bigger than this: skipped
CRC_CHECK_BYTES = 16 * 1024 * 1024    # verify payload CRCs of the first 16 MB (pure-Python CRC)


# =========================================================================== writing
def _json_default(obj: Any) -> Any:
    """Make configs with paths, tuples, numpy/torch scalars and dataclasses JSON-able."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):       # 0-d torch tensor
        try:
            return obj.item()
        except (TypeError, ValueError, RuntimeError):
            pass
    if hasattr(obj, "to_dict") and callable(obj.to_dict):   # our config dataclasses
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def _cell(value: Any) -> Any:
    """A logged value → int / float / str / None (tensors and numpy scalars unwrapped)."""
    if value is None:
        return None
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError, RuntimeError):
            raise XTaskError(f"cannot log a non-scalar value of type {type(value).__name__}") from None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    raise XTaskError(f"cannot log value of type {type(value).__name__} in metrics.csv")


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)   # 'nan', 'inf' read back
    return str(value)


def _csv_line(values: Sequence[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_fmt(v) for v in values])
    return buf.getvalue()


class RunLogger:
    """Writes one run folder (see module doc). Safe to reopen on an existing folder (resume):
    the existing columns are kept and an incomplete last line left by a crash is dropped first.

    Args:
        run_dir: folder to write (created).
        tensorboard: also write TensorBoard scalars (writer created lazily on the first row).
    """

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_FILE
        self._tensorboard = tensorboard
        self._writer = None
        self._columns: list[str] = []
        self._rows_logged = 0
        if self.metrics_path.exists():
            self._recover_existing()

    # -- config / summary -------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any]) -> Path:
        """Write ``config.json`` atomically (sorted keys, 2-space indent)."""
        path = self.run_dir / CONFIG_FILE
        atomic_write_text(path, json.dumps(dict(config), indent=2, sort_keys=True,
                                           default=_json_default) + "\n")
        return path

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        """Write ``summary.json`` atomically (final metrics, best epoch, checkpoint paths …)."""
        path = self.run_dir / SUMMARY_FILE
        atomic_write_text(path, json.dumps(dict(summary), indent=2, sort_keys=True,
                                           default=_json_default) + "\n")
        return path

    # -- metrics ------------------------------------------------------------------------
    def _recover_existing(self) -> None:
        header, rows, _errors, partial = _parse_csv_text(self.metrics_path.read_text("utf-8", "replace"))
        self._columns = list(header)
        if partial:   # a crash mid-append: rewrite without the broken tail before appending
            self._rewrite(self._columns, rows)

    def _rewrite(self, columns: list[str], rows: list[dict]) -> None:
        with atomic_path(self.metrics_path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(_csv_line(columns))
                for r in rows:
                    f.write(_csv_line([r.get(c) for c in columns]))

    def drop_rows_after(self, step: int, epoch: int | None = None) -> int:
        """Remove rows with ``step`` > ``step`` (or ``epoch`` > ``epoch``) from ``metrics.csv``.

        Used when resuming: rows that an interrupted attempt logged after its last saved state
        are about to be logged again. Rows without a numeric step/epoch are kept. The file is
        rewritten atomically; returns how many rows were removed.
        """
        if not self.metrics_path.exists():
            return 0
        header, rows, _errors, _partial = _parse_csv_text(
            self.metrics_path.read_text("utf-8", "replace"))

        def later(row: Mapping[str, str]) -> bool:
            for key, limit in (("step", step), ("epoch", epoch)):
                try:
                    if limit is not None and float(row.get(key, "")) > limit:
                        return True
                except ValueError:
                    pass
            return False

        keep = [r for r in rows if not later(r)]
        if len(keep) != len(rows):
            self._rewrite(self._columns or header, keep)
        return len(rows) - len(keep)

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row to ``metrics.csv`` (and its numeric values to TensorBoard).

        Keys are column names; values are numbers, strings, None, or scalar tensors/arrays.
        The TensorBoard step is ``row["step"]``, else ``row["epoch"]``, else the row count.
        """
        if not row:
            return
        clean = {str(k): _cell(v) for k, v in row.items()}
        for k in clean:
            if not k or any(ch in k for ch in "\r\n"):
                raise XTaskError(f"invalid metrics column name {k!r}")
        new = [k for k in clean if k not in self._columns]
        if new:
            # The header must change: rewrite the file with the union of columns, atomically,
            # so a reader never sees a header that does not match the rows under it.
            old_rows: list[dict] = []
            if self.metrics_path.exists():
                _h, old_rows, _e, _p = _parse_csv_text(self.metrics_path.read_text("utf-8", "replace"))
            self._columns = self._columns + new
            self._rewrite(self._columns, old_rows + [clean])
        else:
            with open(self.metrics_path, "a", encoding="utf-8", newline="") as f:
                f.write(_csv_line([clean.get(c) for c in self._columns]))   # one write: one line
                f.flush()
        self._rows_logged += 1
        if self._tensorboard:
            self._log_tensorboard(clean)

    def _log_tensorboard(self, row: Mapping[str, Any]) -> None:
        step = row.get("step", row.get("epoch", self._rows_logged))
        try:
            step = int(step)
        except (TypeError, ValueError):
            step = self._rows_logged
        if self._writer is None:
            from torch.utils.tensorboard import (
                SummaryWriter,  # slow import: only when used
            )
            self._writer = SummaryWriter(log_dir=str(self.run_dir))
        for k, v in row.items():
            if k in ("step", "epoch") or isinstance(v, str) or v is None:
                continue
            self._writer.add_scalar(k, float(v), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# =========================================================================== reading
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
def _parse_csv_text(text: str) -> tuple[list[str], list[dict], list[str], bool]:
    """metrics.csv text → (header, rows as dicts of str, error strings, had_partial_line)."""
    partial = bool(text) and not text.endswith("\n")
    if partial:
        cut = text.rfind("\n")
        text = text[:cut + 1] if cut >= 0 else ""
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        return [], [], [], partial
    header = [h.strip() for h in lines[0]]
    errors = []
    if any(not h for h in header) or len(set(header)) != len(header):
        return [], [], ["metrics.csv: malformed header (empty or duplicate column names)"], partial
    rows, bad, first_bad = [], 0, None
    for lineno, rec in enumerate(lines[1:], start=2):
        if not rec:
            continue
        if len(rec) != len(header):
            bad += 1
            first_bad = first_bad or lineno
            continue
        rows.append(dict(zip(header, rec)))
    if bad:
        errors.append(f"metrics.csv: skipped {bad} malformed row(s) (first at line {first_bad})")
    return header, rows, errors, partial


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
        header, rows, errors, _partial = _parse_csv_text(raw.decode("utf-8", "replace"))
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
    try:
        return sorted(p for p in folder.iterdir() if p.name.startswith(TB_PREFIX) and p.is_file())
    except OSError:
        return []


def _scalar_value(value: Any) -> float | None:
    """A Summary.Value → float, for simple_value and 0-d tensor scalars; else None."""
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):
        try:
            from tensorboard.util import tensor_util
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
_EXPERIMENT_RE = re.compile(r"^\s*Experiment\s*#\s*(\S+)\s*$", re.IGNORECASE)
_SCORE_NAMES = {"pix acc": "pixel_acc", "pixel acc": "pixel_acc", "miou": "miou", "rmse": "rmse",
                "irmse": "irmse", "irmse log": "irmse_log", "abs": "abs", "abs rel": "abs_rel",
                "sqrt rel": "sqrt_rel", "delta1": "delta1", "delta2": "delta2", "delta3": "delta3"}


def split_top_level(s: str) -> list[str]:
    """Split on commas that are not inside parentheses/brackets: 'beta=(0.9, 0.99), lp=L1'."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _top_level_sep(part: str) -> int | None:
    """Index of the first ':' or '=' outside parentheses, or None."""
    depth = 0
    for i, ch in enumerate(part):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch in ":=" and depth == 0:
            return i
    return None


def _value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def _param_key(key: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", key.strip().lower()).strip("_")


def parse_results_text(text: str) -> dict[str | None, dict[str, dict]]:
    """Parse the original code's results.txt / indv_results.txt tolerantly.

    Returns ``{experiment id (str) or None for text before any "Experiment #" header:
    {"params": {...}, "scores": {...}}}``. Score lines are those holding "Pix Acc", "mIoU" or
    "Scores"; their ``name: value`` pairs become ``pixel_acc, miou, rmse, irmse, irmse_log, abs,
    abs_rel, sqrt_rel, delta1..3`` (unknown names are kept, snake_cased). Other ``key=value`` /
    ``key: value`` pairs become params. Lines that match nothing are ignored. If the same
    experiment appears twice, later values win.
    """
    blocks: dict[str | None, dict[str, dict]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or set(line) <= set("=-*#"):
            continue
        m = _EXPERIMENT_RE.match(line)
        if m:
            current = m.group(1)
            blocks[current] = {"params": {}, "scores": {}}   # a re-run replaces the old block
            continue
        block = blocks.setdefault(current, {"params": {}, "scores": {}})
        is_score = bool(re.search(r"pix(el)?\s*acc|miou|^scores\b", line, re.IGNORECASE))
        body = re.sub(r"^scores\s*-\s*", "", line, flags=re.IGNORECASE)
        for part in split_top_level(body):
            sep = _top_level_sep(part)
            if sep is None:
                continue
            key, val = part[:sep].strip(), part[sep + 1:].strip()
            inner = _top_level_sep(val)
            if part[sep] == ":" and inner is not None and val[inner] == "=":
                # "Parameters: enc=34": the text before ':' only labels the line.
                key, val = val[:inner].strip(), val[inner + 1:].strip()
            if not key or not val:
                continue
            if is_score:
                name = _SCORE_NAMES.get(key.lower(), _param_key(key))
                num = _value(val)
                if isinstance(num, (int, float)) and not isinstance(num, bool):
                    block["scores"][name] = float(num)
            else:
                block["params"][_param_key(key)] = _value(val)
    return blocks


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
        return None, [f"{path.name}: unreadable .npy file ({str(err).splitlines()[0] if str(err) else type(err).__name__})"]
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
    return (folder / CONFIG_FILE).is_file() or (folder / METRICS_FILE).is_file()


def _read_xtask(folder: Path) -> Run:
    run = Run(name=folder.name, path=folder, source="xtask")
    if (folder / CONFIG_FILE).is_file():
        run.config, errs = _read_json(folder / CONFIG_FILE)
        run.errors.extend(errs)
        if isinstance(run.config.get("name"), str) and run.config["name"].strip():
            run.name = run.config["name"].strip()
    if (folder / METRICS_FILE).is_file():
        run.metrics, errs = read_metrics_csv(folder / METRICS_FILE)
        run.errors.extend(errs)
    elif _event_files(folder):
        run.metrics, errs = read_tensorboard(folder)
        run.errors.extend(errs)
    if (folder / SUMMARY_FILE).is_file():
        run.summary, errs = _read_json(folder / SUMMARY_FILE)
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


# =========================================================================== published numbers
PUBLISHED_SOURCE = "published in the xtask_mt README (paper's numbers, not measured here)"

# FACTS §6 / the seed README tables. Cityscapes: 7 classes, 128×256, ResNet34; Abs / Abs Rel
# are on inverse depth (disparity) as the original computes them. NYUv2: 13 classes, 288×384,
# depth in metres; "tasks" says how many tasks the model was trained on.
PUBLISHED_RESULTS: list[dict[str, Any]] = [
    {"dataset": "cityscapes", "model": "MTAN", "tasks": 2, "miou": 53.04, "pixel_acc": 91.11, "abs": 0.0144, "abs_rel": 33.63},
    {"dataset": "cityscapes", "model": "KD4MTL", "tasks": 2, "miou": 52.71, "pixel_acc": 91.54, "abs": 0.0139, "abs_rel": 27.33},
    {"dataset": "cityscapes", "model": "PCGrad", "tasks": 2, "miou": 53.59, "pixel_acc": 91.45, "abs": 0.0171, "abs_rel": 31.34},
    {"dataset": "cityscapes", "model": "AdaMT-Net", "tasks": 2, "miou": 62.53, "pixel_acc": 94.16, "abs": 0.0125, "abs_rel": 22.23},
    {"dataset": "cityscapes", "model": "xtask_mt (ours in the paper)", "tasks": 2, "miou": 66.51, "pixel_acc": 93.56, "abs": 0.0122, "abs_rel": 19.40},
    {"dataset": "nyuv2", "model": "MTAN", "tasks": 2, "miou": 20.10, "pixel_acc": 53.73, "abs": 0.6417, "abs_rel": 0.2758},
    {"dataset": "nyuv2", "model": "KD4MTL", "tasks": 2, "miou": 22.44, "pixel_acc": 57.32, "abs": 0.6003, "abs_rel": 0.2601},
    {"dataset": "nyuv2", "model": "PCGrad", "tasks": 2, "miou": 21.29, "pixel_acc": 54.07, "abs": 0.6705, "abs_rel": 0.3000},
    {"dataset": "nyuv2", "model": "AdaMT-Net", "tasks": 2, "miou": 20.61, "pixel_acc": 58.91, "abs": 0.6136, "abs_rel": 0.2547},
    {"dataset": "nyuv2", "model": "xtask_mt (ours in the paper)", "tasks": 2, "miou": 30.31, "pixel_acc": 63.02, "abs": 0.5954, "abs_rel": 0.2235},
]
for _row in PUBLISHED_RESULTS:
    _row["source"] = PUBLISHED_SOURCE
del _row


def published_results(dataset: str | None = None) -> pd.DataFrame:
    """:data:`PUBLISHED_RESULTS` as a DataFrame (optionally one dataset). Units: mIoU and pixel
    accuracy in %, Abs in the predicted quantity's unit, Abs Rel as printed in the README."""
    df = pd.DataFrame(PUBLISHED_RESULTS)
    if dataset is not None:
        if dataset not in set(df["dataset"]):
            raise XTaskError(f"no published numbers for {dataset!r}; "
                             f"choose one of {', '.join(sorted(set(df['dataset'])))}")
        df = df[df["dataset"] == dataset].reset_index(drop=True)
    return df
