"""Record summaries behind the Dataset page (worsening, class IoU, score curves) and the records
file's footer, on values worked by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xtask_core.errors import XTaskError
from xtask_core.evaluate import record_summary as rs
from xtask_core.evaluate.record_store import COLUMNS, RecordStore, records_source, rows_frame


def _rows(rows: list[dict]) -> pd.DataFrame:
    base = {n: (0 if t == pa.int64() else np.nan) for n, t in COLUMNS if n != "confusion"}
    return rows_frame([base | {"checkpoint_sha256": "0" * 64, "num_classes": 2, "confusion": np.zeros(4, np.int64)}
                       | r for r in rows])


def _two() -> pd.DataFrame:
    return _rows([
        {"checkpoint": "A", "image": "x", "index": 0, "miou": 0.5, "abs": 1.0, "confusion": np.array([3, 1, 0, 2])},
        {"checkpoint": "A", "image": "y", "index": 1, "miou": 0.8, "abs": 2.0, "confusion": np.array([1, 0, 0, 0])},
        {"checkpoint": "B", "image": "x", "index": 0, "miou": 0.4, "abs": 3.0, "confusion": np.array([4, 0, 1, 1])},
        {"checkpoint": "B", "image": "y", "index": 1, "miou": 0.9, "abs": 1.0, "confusion": np.array([1, 0, 0, 0])},
    ])


def test_worsening_knows_each_metric_direction():
    w = rs.worsening(_two(), "miou", "A", "B")            # higher is better: worse = A − B
    assert list(w["image"]) == ["x", "y"] and w["worse"].tolist() == pytest.approx([0.1, -0.1])
    w = rs.worsening(_two(), "abs", "A", "B")             # lower is better: worse = B − A
    assert list(w["image"]) == ["x", "y"] and w["worse"].tolist() == pytest.approx([2.0, -1.0])
    assert rs.worsening(_two(), "t_miou", "A", "B")["worse"].isna().all()   # NaN: no transferred values here
    with pytest.raises(XTaskError, match="no known direction"):
        rs.worsening(_two(), "seg_energy", "A", "B")


def test_class_iou_table_by_hand():
    t = rs.class_iou_table(_two(), ["road", "car"])
    # A: summed confusion [[4, 1], [0, 2]] → IoU 4/5, 2/3; B: [[5, 0], [1, 1]] → 5/6, 1/2
    assert list(t.columns) == ["class", "A", "B", "Δ B"] and list(t["class"]) == ["road", "car"]
    assert t["A"].tolist() == pytest.approx([0.8, 2 / 3]) and t["B"].tolist() == pytest.approx([5 / 6, 0.5])
    assert t["Δ B"].tolist() == pytest.approx([5 / 6 - 0.8, 0.5 - 2 / 3])
    assert list(rs.class_iou_table(_two(), ["too", "many", "names"])["class"]) == ["class 0", "class 1"]
    with pytest.raises(XTaskError, match="no confusion counts"):
        rs.class_iou_table(_two().assign(confusion=[np.zeros(0, np.int64)] * 4))


def test_score_curves_by_hand():
    df = _rows([{"checkpoint": "A", "image": str(i), "index": i, "pixel_acc": acc, "seg_energy": float(i + 1),
                 "seg_entropy": float(4 - i)} for i, acc in enumerate([0.9, 0.8, 0.7, 0.6])])
    c = rs.score_curves(df, error="pixel_error", n_steps=2)
    # errors 0.1..0.4; energy ranks them exactly (drop 0.4, 0.3 → 0.15 left), entropy backwards (→ 0.35)
    assert c["seg_energy"]["energy_curve"].tolist() == pytest.approx([0.25, 0.15])
    assert c["seg_energy"]["ause"] == pytest.approx(0.0)
    assert c["seg_entropy"]["energy_curve"].tolist() == pytest.approx([0.25, 0.35])
    assert c["seg_entropy"]["ause"] == pytest.approx(0.5 * 0.2 / 2)     # trapezoid over [0, ½]


def test_records_source_reads_the_footer(tmp_path):
    src = {"kind": "folder", "dataset": None, "split": None, "root": "/p", "input_size": [64, 64]}
    store = RecordStore(tmp_path / "r.parquet", src)
    store.append(_two())
    store.finalize(["A", "B"])
    assert records_source(tmp_path / "r.parquet") == src
    pq.write_table(pa.table({"a": [1]}), tmp_path / "other.parquet")
    with pytest.raises(XTaskError, match="another schema"):
        records_source(tmp_path / "other.parquet")
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "r.parquet").read_bytes()[:100])
    with pytest.raises(XTaskError, match="not a readable records file"):
        records_source(tmp_path / "cut.parquet")
    with pytest.raises(XTaskError, match="does not exist"):
        records_source(tmp_path / "none.parquet")
