"""Write a training run's log (:class:`RunLogger`, used by the trainer and the importer).

A run folder (file names: :class:`~xtask_core.train.run_dir.RunDir`) gets

- ``config.json``   - the resolved configuration, written atomically;
- ``metrics.csv``   - one row per :meth:`RunLogger.log` call. Rows are appended with a single
  ``write`` of a complete line, so a reader sees at worst one incomplete *last* line while a
  run is training. When a row brings a new column, the whole file is rewritten atomically
  (temporary file + ``os.replace``) with the union of columns; older rows get empty cells;
- ``summary.json``  - optional final numbers (:meth:`RunLogger.write_summary`);
- TensorBoard event files (``events.out.tfevents.*``) with the same numeric values as scalars,
  so ``tensorboard --logdir runs/`` works too.

Reading these (and TensorBoard folders, and the original code's ``exps/NNN``) is
:mod:`xtask_core.train.run_readers`' job; :func:`~xtask_core.train.run_dir.parse_csv_text` is the
one CSV parser both use.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_path, atomic_write_text
from xtask_core.train.run_dir import RunDir, parse_csv_text

__all__ = ["RunLogger", "parse_csv_text", "preload_tensorboard"]


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


_PRELOAD: list[threading.Thread] = []


def _import_summary_writer() -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (the import is the point)
    except Exception:  # noqa: BLE001 - the first log() imports it again and reports the error there
        pass


def preload_tensorboard() -> None:
    """Import TensorBoard's writer in a background thread, once per process: the import takes
    ~2.4 s on a 2-core EPYC and would otherwise stall the first logged step of a run (the main
    thread spends its time in torch kernels, which release the GIL)."""
    if not _PRELOAD:
        th = threading.Thread(target=_import_summary_writer, name="xtask-tb-import", daemon=True)
        _PRELOAD.append(th)
        th.start()


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
        self.metrics_path = RunDir(self.run_dir).metrics
        self._tensorboard = tensorboard
        if tensorboard:
            preload_tensorboard()
        self._writer = None
        self._columns: list[str] = []
        self._rows_logged = 0
        if self.metrics_path.exists():
            self._recover_existing()

    # -- config / summary -------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any]) -> Path:
        """Write ``config.json`` atomically (sorted keys, 2-space indent)."""
        path = RunDir(self.run_dir).config
        atomic_write_text(path, json.dumps(dict(config), indent=2, sort_keys=True,
                                           default=_json_default) + "\n")
        return path

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        """Write ``summary.json`` atomically (final metrics, best epoch, checkpoint paths …)."""
        path = RunDir(self.run_dir).summary
        atomic_write_text(path, json.dumps(dict(summary), indent=2, sort_keys=True,
                                           default=_json_default) + "\n")
        return path

    # -- metrics ------------------------------------------------------------------------
    def _recover_existing(self) -> None:
        header, rows, _errors, partial = parse_csv_text(self.metrics_path.read_text("utf-8", "replace"))
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
        header, rows, _errors, _partial = parse_csv_text(
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
                _h, old_rows, _e, _p = parse_csv_text(self.metrics_path.read_text("utf-8", "replace"))
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

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Reader names that callers used to import from here (``runlog.read_run`` …) now live in
# run_readers: resolved on first use (run_readers needs pandas, which the trainer does not).
_MOVED = frozenset({"Run", "RunRef", "SOURCES", "read_run", "find_runs", "detect_source", "read_metrics_csv",
                    "read_tensorboard", "read_event_file"})
_MOVED_FORMAT = frozenset({"parse_results_text", "split_top_level", "PUBLISHED_RESULTS", "PUBLISHED_SOURCE",
                           "published_results"})


def __getattr__(name: str):
    if name in _MOVED:
        from xtask_core.train import run_readers

        return getattr(run_readers, name)
    if name in _MOVED_FORMAT:
        from xtask_core.train import xtask_mt_format

        return getattr(xtask_mt_format, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
