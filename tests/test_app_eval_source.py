"""AppTest: Compare's evaluation subset and Error maps' subset tab on the per-image records of a
synthetic split (a records file made here by records_for), matched to the checkpoints by content."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from tests.app_helpers import PAGE_DIR, app_text, make_app_env, set_env
from xtask_core.evaluate import record_summary as rs
from xtask_core.evaluate.records import records_for
from xtask_core.evaluate.sources import dataset_source, folder_source

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]   # page sessions, ~40 s in all


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from xtask_core.data.synthetic import write_dataset

    tmp = tmp_path_factory.mktemp("evsrc")
    e = make_app_env(tmp) | {"XTASK_CACHE_DIR": str(tmp / "cache"), "XTASK_JOB_OWNER": f"evsrc-{id(tmp)}"}
    ck = Path(e["XTASK_CHECKPOINT_DIR"])
    a, b = str(ck / "tiny_a.safetensors"), str(ck / "tiny_b.safetensors")
    write_dataset(tmp / "synth", n_train=0, n_val=6, seed=5511, height=64, width=128)
    src = dataset_source("synthetic", tmp / "synth", "val", (64, 64), num_classes=7)
    runs = Path(e["XTASK_RUNS_DIR"])
    records_for([a, b], src, out=runs / "ab.parquet", cache=False, device="cpu")
    records_for([a], src, out=runs / "a.parquet", cache=False, device="cpu")
    photos = tmp / "photos"
    photos.mkdir()
    for i in range(2):
        cv2.imwrite(str(photos / f"p{i}.png"), np.random.default_rng(i).integers(0, 256, (40, 60, 3), np.uint8))
    records_for([a], folder_source(photos, (64, 64)), out=runs / "photos.parquet", cache=False, device="cpu")
    return e


def _page(env, monkeypatch, page: str):
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    set_env(monkeypatch, env)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(PAGE_DIR / f"{page}.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _records(at, key: str, path: Path | None):
    """Switch the page's source to records: the file ``path``, or (None) the Dataset page's latest job."""
    at.radio(key=f"{key}_evsrc").set_value("Records (any split)").run()
    if path is not None:
        at.text_input(key=f"{key}_records").input(str(path)).run()
    assert not at.exception, at.exception
    return at


def _file(env, name: str) -> Path:
    return Path(env["XTASK_RUNS_DIR"]) / name


def _ckpt(env, name: str) -> str:
    return str(Path(env["XTASK_CHECKPOINT_DIR"]) / f"{name}.safetensors")


def test_compare_table_from_a_records_file(env, monkeypatch):
    at = _records(_page(env, monkeypatch, "compare"), "cmp", _file(env, "ab.parquet"))
    assert not at.error, [e.value for e in at.error]
    df = pd.read_parquet(_file(env, "ab.parquet"))
    tot = rs.totals(df)
    table = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert list(table["model"]) == ["shipped: tiny_a", "shipped: tiny_b"]
    for row, name in zip(table.itertuples(), ("tiny_a", "tiny_b")):
        t = tot[_ckpt(env, name)]
        assert row[2] == round(100 * t["pixel_acc"], 2) and row[3] == round(100 * t["miou"], 2)
    text = app_text(at)
    assert "synthetic val split" in text and "6 images" in text and "Not in these records" not in text
    assert len([c for c in at.get("plotly_chart") if "confusion" not in str(c)]) >= 2


def test_compare_names_a_checkpoint_the_records_lack(env, monkeypatch):
    at = _records(_page(env, monkeypatch, "compare"), "cmp", _file(env, "a.parquet"))
    captions = [c.value for c in at.caption if "Not in these records" in c.value]
    assert captions == ["ℹ️ Not in these records: shipped: tiny_b (matched by the file's content)."]
    at.button(key="cmp_to_ds").click().run()
    assert not at.exception and any("dataset.py" in i.value for i in at.info)
    # the Dataset page is prefilled: the missing checkpoint and the records' split
    assert at.session_state["ds_models"] == ["shipped: tiny_b"]
    assert at.session_state["ds_src"] == "Dataset split" and at.session_state["ds_dataset"] == "synthetic"
    assert Path(at.session_state["ds_root"]) == (Path(env["XTASK_RUNS_DIR"]).parent / "synth").resolve()
    assert at.session_state["ds_split"] == "val"
    from streamlit.testing.v1 import AppTest

    ds_page = AppTest.from_file(str(PAGE_DIR / "dataset.py"), default_timeout=120)
    for k in ("ds_models", "ds_src", "ds_dataset", "ds_root", "ds_split"):
        ds_page.session_state[k] = at.session_state[k]
    ds_page.run()
    assert not ds_page.exception and not ds_page.warning, [w.value for w in ds_page.warning]
    assert ds_page.multiselect(key="ds_models").value == ["shipped: tiny_b"]
    assert ds_page.text_input(key="ds_root").value == at.session_state["ds_root"]
    table = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert list(table["model"]) == ["shipped: tiny_a"]
    # a folder of plain images: one line, no table
    at.text_input(key="cmp_records").input(str(_file(env, "photos.parquet"))).run()
    assert not at.exception and any("no ground truth" in i.value for i in at.info)
    assert not any("model" in d.value.columns for d in at.dataframe)
    # outside the allowed folders: one error line
    at.text_input(key="cmp_records").input("/etc/passwd").run()
    assert not at.exception and len(at.error) == 1


def test_error_maps_per_image_spearman_from_a_records_file(env, monkeypatch):
    at = _records(_page(env, monkeypatch, "error_maps"), "err", _file(env, "ab.parquet"))
    assert not at.error, [e.value for e in at.error]
    df = pd.read_parquet(_file(env, "ab.parquet"))
    mine = df[df["checkpoint"] == _ckpt(env, "tiny_a")]
    want = rs.score_vs_error(mine, scores=("seg_energy", "seg_entropy"), errors=("pixel_error",)).set_index("score")
    per_image = next(d.value for d in at.dataframe if "precision_at_k" in d.value.columns)
    assert per_image["n"].tolist() == [6, 6]
    assert per_image["spearman"].tolist() == pytest.approx([want.loc["seg_energy", "spearman"],
                                                           want.loc["seg_entropy", "spearman"]], nan_ok=True)
    # the per-pixel study runs live on the images picked from the records: the 2 worst
    at.selectbox(key="err_pick").set_value("worst").run()
    at.slider(key="err_pix_n").set_value(2).run()
    assert not at.exception and not at.error
    studies = [d.value for d in at.dataframe if "auroc" in d.value.columns]
    assert len(studies) == 2                      # this image, and the 2 worst of the split
    assert studies[1]["n_pixels"].iloc[-1] <= 2 * 64 * 64
    assert "(the 2 images with the most wrong pixels of the synthetic val split," in app_text(at)


def test_the_dataset_pages_latest_evaluation(env, monkeypatch):
    """An empty records path uses the Dataset page's latest job (its split said in the description)."""
    import time

    from xtask_core.tools import record_job

    env = env | {"XTASK_JOB_OWNER": f"{env['XTASK_JOB_OWNER']}-latest"}
    at = _records(_page(env, monkeypatch, "error_maps"), "err", None)
    assert any("No evaluation on the Dataset page yet" in i.value for i in at.info)
    root = Path(env["XTASK_SAMPLES_DIR"]).parent / "synth"
    spec = {"checkpoints": [_ckpt(env, "tiny_a")], "batch_size": 4,
            "source": {"kind": "dataset", "dataset": "synthetic", "root": str(root), "split": "val",
                       "size": [64, 64], "num_classes": 7}}
    run_dir = record_job.start(spec, Path(env["XTASK_RUNS_DIR"]) / ".record_jobs", owner=env["XTASK_JOB_OWNER"])
    end = time.time() + 180
    while not record_job.poll(run_dir).finished and time.time() < end:
        time.sleep(0.5)
    assert record_job.poll(run_dir).state == "done"
    at = _records(_page(env, monkeypatch, "error_maps"), "err", None)
    assert not at.error, [e.value for e in at.error]
    per_image = next(d.value for d in at.dataframe if "precision_at_k" in d.value.columns)
    assert per_image["n"].tolist() == [6, 6]
    assert "synthetic val split" in app_text(at) and "6 images" in app_text(at)
