"""Per-image records on disk: the Parquet schema, crash-safe appends, resume and the final merge.

A records file ``FILE.parquet`` is written in two stages, so that a kill at any moment leaves
only readable files:

1. while a run goes, every finished chunk of rows becomes its own small Parquet file in the
   hidden sibling folder ``.FILE.parquet.parts/`` (each written to a temporary name and renamed,
   so a part is either complete or absent);
2. at the end the rows of ``FILE.parquet`` (if it exists) and of every part are merged, de-duplicated
   on (checkpoint, image), put in a fixed order and written to ``FILE.parquet`` by one atomic
   rename; then the parts are deleted.

A re-run into the same file first reads both stages (:meth:`RecordStore.read`) and computes only
the (checkpoint, image) rows that are missing. :func:`load_records` reads a finished file, and the
parts of an unfinished run as well.

Columns (:data:`COLUMNS`; floats are NaN where a value needs a label the image does not have):

- ``checkpoint`` (str: the path or name the user gave), ``checkpoint_sha256`` (str, hex),
  ``image`` (str: path relative to the source, ``/``-separated), ``index`` (int: position in the
  source's sorted list), ``height``, ``width`` (int: the image's own size in pixels; the metrics
  are computed at the model input size), ``num_classes`` (int C);
- with ground truth, for the direct outputs: ``pixel_acc``, ``miou`` (the image's own mIoU: mean
  IoU over the classes present in its prediction ∪ target, the original's per-image definition),
  ``abs``, ``abs_rel``, ``rmse`` (depth map unit), ``delta1..3`` (fractions), ``n_pixels``,
  ``n_depth_pixels`` (labelled seg / valid depth pixels); the same with a ``t_`` prefix for the
  transferred outputs;
- always: ``seg_energy`` (mean KL(direct ‖ transferred) in nats), ``depth_energy`` (mean
  |transferred − direct|, depth unit), ``seg_disagree`` (fraction of pixels whose direct and
  transferred classes differ), ``seg_entropy`` (mean softmax entropy of the direct segmentation,
  nats);
- ``confusion``: the image's direct confusion counts as a dense list of C·C int64, row-major
  (index ``true·C + predicted``; rows = ground-truth class, columns = predicted class, labelled
  pixels only); an empty list without ground truth. Dense, not sparse: C ≤ 40 keeps it ≤ 1,600
  numbers per row, Parquet compresses the zeros, and a cell is read by plain indexing.

The file's key-value metadata ``xtask_records`` holds ``{"format": RECORD_FORMAT, "source": {...}}``
(the source's kind, dataset, split, root and input size). A re-run into a file made for another
source is refused with one line.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_path, check_output_file

__all__ = ["RECORD_FORMAT", "COLUMNS", "SCHEMA", "METRIC_KEYS", "RecordStore", "load_records",
           "read_records_file", "records_source", "parts_dir"]

RECORD_FORMAT = 1  # bump when a column's meaning changes: cached records of older formats are not reused
META_KEY = b"xtask_records"
#: per-output metric columns (direct; the transferred ones carry a ``t_`` prefix)
METRIC_KEYS = ("pixel_acc", "miou", "abs", "abs_rel", "rmse", "delta1", "delta2", "delta3")
_F, _I = pa.float64(), pa.int64()
COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("checkpoint", pa.string()), ("checkpoint_sha256", pa.string()), ("image", pa.string()),
    ("index", _I), ("height", _I), ("width", _I), ("num_classes", _I),
    *((k, _F) for k in METRIC_KEYS), ("n_pixels", _I), ("n_depth_pixels", _I),
    *((f"t_{k}", _F) for k in METRIC_KEYS),
    ("seg_energy", _F), ("depth_energy", _F), ("seg_disagree", _F), ("seg_entropy", _F),
    ("confusion", pa.list_(_I)),
)
SCHEMA = pa.schema([pa.field(n, t) for n, t in COLUMNS])
KEY = ["checkpoint", "image"]


def parts_dir(path: str | os.PathLike) -> Path:
    """The hidden folder holding the finished chunks of an unfinished run into ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.parts")


def _meta_of(schema: pa.Schema) -> dict | None:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def read_records_file(path: str | os.PathLike) -> tuple[pa.Table, dict]:
    """One records Parquet file → (table in :data:`SCHEMA`, its ``xtask_records`` metadata).

    Raises :class:`XTaskError` (one line) for a missing, truncated or non-Parquet file, and for
    a Parquet file of another schema (missing or mistyped columns, another record format).
    """
    path = Path(path)
    if not path.is_file():
        raise XTaskError(f"records file {path} does not exist")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        first = " ".join(str(err).split())[:160]
        raise XTaskError(f"{path} is not a readable records file (truncated or not Parquet: {first})") from None
    meta = _check_schema(path, table.schema)  # before select: a foreign file lacks our columns
    return table.select([n for n, _ in COLUMNS]), meta


def records_source(path: str | os.PathLike) -> dict:
    """The source identity a records file was made for (kind, dataset, split, root, input size),
    read from its footer only; the same one-line XTaskErrors as :func:`read_records_file`."""
    path = Path(path)
    if not path.is_file():
        raise XTaskError(f"records file {path} does not exist")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        first = " ".join(str(err).split())[:160]
        raise XTaskError(f"{path} is not a readable records file (truncated or not Parquet: {first})") from None
    return dict(_check_schema(path, schema).get("source") or {})


def _check_schema(path: Path, schema: pa.Schema) -> dict:
    """The ``xtask_records`` metadata of a file with this schema, or a one-line XTaskError."""
    meta = _meta_of(schema)
    if meta is None:
        raise XTaskError(f"{path} is a Parquet file of another schema (no xtask records metadata)")
    if meta.get("format") != RECORD_FORMAT:
        raise XTaskError(f"{path} holds records of format {meta.get('format')!r}; this xtask reads "
                         f"format {RECORD_FORMAT}: recompute them")
    have = {f.name: f.type for f in schema}
    missing = [n for n, _ in COLUMNS if n not in have]
    wrong = [n for n, t in COLUMNS if n in have and have[n] != t]
    if missing or wrong:
        what = (f"missing columns {', '.join(missing[:6])}" if missing else
                f"columns of another type: {', '.join(wrong[:6])}")
        raise XTaskError(f"{path} is a records file of another schema ({what})")
    return meta


def _to_frame(table: pa.Table) -> pd.DataFrame:
    df = table.to_pandas()
    # list<int64> → numpy int64 arrays (pyarrow gives them already; an empty table gives objects)
    df["confusion"] = [np.asarray(v, dtype=np.int64) for v in df["confusion"]]
    return df


def _empty_frame() -> pd.DataFrame:
    return _to_frame(SCHEMA.empty_table())


def load_records(path: str | os.PathLike, partial: bool = True) -> pd.DataFrame:
    """Read a records file → DataFrame with the :data:`COLUMNS` (``confusion``: int64 arrays).

    With ``partial`` the finished chunks of a run still going (or killed) are included, so a
    reader sees rows as they arrive; without, only ``path`` itself. XTaskError (one line) for a
    truncated file or one of another schema.
    """
    path = Path(path)
    tables = []
    if path.exists():
        tables.append(read_records_file(path)[0])
    parts = sorted(parts_dir(path).glob("part-*.parquet")) if partial else []
    for part in parts:
        try:
            tables.append(read_records_file(part)[0])
        except XTaskError:
            if part.exists():  # a part vanishes when the writer merges; that is not an error
                raise
    if not tables:
        raise XTaskError(f"records file {path} does not exist")
    df = _to_frame(pa.concat_tables(tables))
    return df.drop_duplicates(KEY, keep="first").reset_index(drop=True)


def frame_to_table(df: pd.DataFrame, meta: dict) -> pa.Table:
    """Rows (a DataFrame with every column of :data:`COLUMNS`) → Arrow table with the metadata."""
    data = {}
    for name, typ in COLUMNS:
        col = df[name]
        if name == "confusion":
            data[name] = pa.array([np.asarray(v, dtype=np.int64) for v in col], type=typ)
        else:
            data[name] = pa.array(col.to_numpy(), type=typ, from_pandas=True)
    table = pa.table(data, schema=SCHEMA)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})


class RecordStore:
    """Records of one file: read what exists, append chunks safely, merge at the end.

    Args:
        path: the ``.parquet`` file.
        source: the source's identity (a JSON-able dict) written into the metadata; rows already
            in the file must have been made for the same source, else :class:`XTaskError`.
        rank: the process's rank under ``torchrun`` (part names carry it, so ranks never clash).
    """

    def __init__(self, path: str | os.PathLike, source: dict, rank: int = 0):
        self.path = check_output_file(path)
        self.parts = parts_dir(self.path)
        self.meta = {"format": RECORD_FORMAT, "source": source}
        self.rank = int(rank)
        self._seq = 0
        self._stamp = time.time_ns()

    def _check_meta(self, meta: dict, where: Path) -> None:
        theirs, ours = meta.get("source") or {}, self.meta["source"]
        differ = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
        if differ:
            k = differ[0]
            raise XTaskError(f"{where} holds records of another source ({k} {theirs.get(k)!r}, not "
                             f"{ours.get(k)!r}); write to another file")

    def read(self) -> pd.DataFrame:
        """Rows already done: the file's, then the parts' (first copy of a key wins)."""
        tables = []
        files = ([self.path] if self.path.exists() else []) + sorted(self.parts.glob("part-*.parquet"))
        for f in files:
            table, meta = read_records_file(f)
            self._check_meta(meta, f)
            tables.append(table)
        if not tables:
            return _empty_frame()
        df = _to_frame(pa.concat_tables(tables))
        return df.drop_duplicates(KEY, keep="first").reset_index(drop=True)

    def append(self, rows: pd.DataFrame) -> None:
        """Write ``rows`` as one new part (complete or absent, never half-written)."""
        if rows.empty:
            return
        self.parts.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = f"part-{self._stamp}-r{self.rank:03d}-{self._seq:06d}.parquet"
        table = frame_to_table(rows, self.meta)
        with atomic_path(self.parts / name) as tmp:
            pq.write_table(table, tmp)

    def finalize(self, checkpoint_order: Sequence[str] = ()) -> pd.DataFrame:
        """Merge the file and its parts into the file (atomic rename), delete the parts → the rows.

        Row order: checkpoints in ``checkpoint_order`` first (in that order), any others after
        in order of first appearance; within a checkpoint by ``index`` then ``image``. The order
        depends only on the rows, not on which process or chunk made them.
        """
        df = self.read()
        rank = {c: i for i, c in enumerate(checkpoint_order)}
        for c in df["checkpoint"]:
            rank.setdefault(c, len(rank))
        if not df.empty:
            df = (df.assign(_c=df["checkpoint"].map(rank)).sort_values(["_c", "index", "image"], kind="stable")
                  .drop(columns="_c").reset_index(drop=True))
        with atomic_path(self.path) as tmp:
            pq.write_table(frame_to_table(df, self.meta), tmp)
        shutil.rmtree(self.parts, ignore_errors=True)
        return df


def empty_frame() -> pd.DataFrame:
    """A records DataFrame with no rows (every column, right dtypes)."""
    return _empty_frame()


def rows_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Row dicts (keys = :data:`COLUMNS`) → a records DataFrame in column order."""
    if not rows:
        return _empty_frame()
    return pd.DataFrame(rows, columns=[n for n, _ in COLUMNS])
