"""AppTest of the Dataset page (app_pages/dataset.py) on records made by tiny models, and its links."""
from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs

import cv2
import numpy as np
import pytest

from tests.app_helpers import PAGE_DIR, app_text, make_app_env, set_env
from xtask_core.evaluate.records import records_for
from xtask_core.evaluate.sources import dataset_source, folder_source
from xtask_core.tools import record_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dspage")
    e = make_app_env(tmp) | {"XTASK_CACHE_DIR": str(tmp / "cache"), "XTASK_JOB_OWNER": f"dspage-{id(tmp)}"}
    ck = Path(e["XTASK_CHECKPOINT_DIR"])
    cks = [str(ck / "tiny_a.safetensors"), str(ck / "tiny_b.safetensors")]
    src = dataset_source("synthetic", e["XTASK_SAMPLES_DIR"], "val", (64, 64), num_classes=7)
    records_for(cks, src, out=tmp / "runs" / "samples.parquet", cache=False, device="cpu")
    photos = tmp / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        cv2.imwrite(str(photos / f"p{i}.png"), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    records_for(cks[:1], folder_source(photos, (64, 64)), out=tmp / "runs" / "photos.parquet", cache=False,
                device="cpu")
    one = dataset_source("synthetic", e["XTASK_SAMPLES_DIR"], "val", (64, 64), num_classes=7, limit=1)
    records_for(cks[:1], one, out=tmp / "runs" / "one.parquet", cache=False, device="cpu")
    (tmp / "runs" / "cut.parquet").write_bytes((tmp / "runs" / "samples.parquet").read_bytes()[:300])
    return e


def _page(env, monkeypatch, records: str | None = None):
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    set_env(monkeypatch, env)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(PAGE_DIR / "dataset.py"), default_timeout=180)
    if records:
        at.query_params["records"] = records
    return at


def _runs(env) -> Path:
    return Path(env["XTASK_RUNS_DIR"])


def test_records_file_of_two_checkpoints(env, monkeypatch):
    at = _page(env, monkeypatch, str(_runs(env) / "samples.parquet"))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    text = app_text(at)
    assert "2 images × 2 checkpoint(s)" in text and "synthetic val split" in text
    assert "What energy can and cannot tell" in text and "How well it matched here" in text
    assert "Measured on this machine" in text           # the live model's figures, energy beside entropy
    assert at.radio(key="ds_src").value == "Records file"
    # the drop from A to B in mIoU ranks the images; its first tile links to Compare with both checkpoints
    at.radio(key="ds_rank").set_value("Largest drop from checkpoint A to B").run()
    assert not at.exception
    at.button(key="ds_grid_0_Compare").click().run()
    info = " ".join(e.value for e in at.info)
    assert "compare.py" in info and "src=sample" in info and "ckpts=shipped" in info, info
    # a confusion button ranks the images by that cell
    cell = next(b for b in at.button if b.key.startswith("ds_cell_"))
    cell.click().run()
    assert not at.exception and at.radio(key="ds_rank").value == "Most pixels of one confusion"
    t, p = (int(v) for v in cell.key.split("_")[-2:])
    assert at.selectbox(key="ds_true").value == t and at.selectbox(key="ds_pred").value == p
    # energy vs error with the other error measure
    at.radio(key="ds_err").set_value("miou_error").run()
    assert not at.exception


def test_ranking_controls_come_from_and_go_to_the_address(env, monkeypatch):
    at = _page(env, monkeypatch, str(_runs(env) / "samples.parquet"))
    at.query_params.update({"rank": "drop", "metric": "abs"})
    at.run()
    assert not at.exception and at.radio(key="ds_rank").value == "Largest drop from checkpoint A to B"
    assert at.selectbox(key="ds_drop_metric").value == "abs"
    at.radio(key="ds_rank").set_value("Worst first by a column").run()
    q = {k: v if isinstance(v, str) else v[0] for k, v in at.query_params.items()}
    assert q["rank"] == "worst" and q["col"] == "pixel_error"


@pytest.mark.parametrize("name, message", [("cut.parquet", "not a readable records file"),
                                           ("nowhere.parquet", "does not exist")])
def test_bad_records_file_is_one_line(env, monkeypatch, name, message):
    at = _page(env, monkeypatch, str(_runs(env) / name))
    at.run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]


def test_records_file_outside_the_allowed_folders(env, monkeypatch, tmp_path):
    at = _page(env, monkeypatch, "/etc/passwd")
    at.run()
    assert not at.exception and any("outside the allowed folders" in e.value for e in at.error)


def test_a_single_image_with_every_overlay(env, monkeypatch):
    from xtask_app.ui.dataset_images import OVERLAYS
    at = _page(env, monkeypatch, str(_runs(env) / "one.parquet"))
    at.run()
    assert not at.exception and not at.error and "1 images × 1 checkpoint(s)" in app_text(at)
    for overlay in OVERLAYS:
        at.selectbox(key="ds_grid_overlay").set_value(overlay).run()
        assert not at.exception and not at.error, overlay
        assert f"overlay: {overlay}" in app_text(at)


def test_unlabelled_folder_records(env, monkeypatch):
    at = _page(env, monkeypatch, str(_runs(env) / "photos.parquet"))
    at.run()
    assert not at.exception and not at.error
    text = app_text(at)
    assert "3 images × 1 checkpoint(s)" in text and "no labels" in text
    assert "the confusion matrix needs labels" in text
    assert at.radio(key="ds_rank").options == ["Worst first by a column"]
    assert at.selectbox(key="ds_rank_col").value == "seg_energy"


@pytest.mark.slow
def test_evaluate_button_runs_the_background_job(env, monkeypatch):
    at = _page(env, monkeypatch)
    at.run()
    assert not at.exception and at.radio(key="ds_src").value == "Shipped samples"
    at.button(key="ds_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_dir = at.session_state["ds_job"]
    end = time.time() + 180
    while not record_job.poll(run_dir).finished and time.time() < end:
        time.sleep(0.5)
    assert record_job.poll(run_dir).state == "done"
    at.run()
    assert not at.exception and "2 images × 1 checkpoint(s)" in app_text(at)
    # a new session (a reload) re-attaches to the latest job
    again = _page(env, monkeypatch)
    again.run()
    assert not again.exception and "2 images × 1 checkpoint(s)" in app_text(again)


def _other_page(env, monkeypatch, page: str, params: dict):
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    set_env(monkeypatch, env)
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(PAGE_DIR / f"{page}.py"), default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    return at


def test_links_open_the_image_in_the_other_pages(env, monkeypatch):
    """What the Dataset page's buttons put in the address opens that image (pickers._follow_link)
    and those checkpoints (selection.choose_checkpoints reads ?ckpts=)."""
    at = _other_page(env, monkeypatch, "predictions", {"src": "sample", "image": "val/synth/synth_000001_000019"})
    at.run()
    assert not at.exception and at.selectbox(key="pred_sample").value == "val/synth/synth_000001_000019"
    at = _other_page(env, monkeypatch, "error_maps", {"src": "dataset", "ds": "synthetic", "split": "val", "idx": "1",
                                                      "root": env["XTASK_SAMPLES_DIR"]})
    at.run()
    assert not at.exception and at.radio(key="err_src").value == "Dataset split"
    assert at.number_input(key="err_idx").value == 1
    at = _other_page(env, monkeypatch, "compare", {"ckpt": "shipped: tiny_b", "ckpts": ["shipped: tiny_b",
                                                                                       "shipped: tiny_a"],
                                                   "src": "sample", "image": "val/synth/synth_000001_000019"})
    at.run()
    assert not at.exception
    assert at.multiselect(key="cmp_models").value == ["shipped: tiny_b", "shipped: tiny_a"]
    assert at.selectbox(key="cmp_sample").value == "val/synth/synth_000001_000019"


def _tmp_root(env) -> Path:
    """The module's folder: inside the allowed folders (XTASK_ALLOWED_ROOTS)."""
    return Path(env["XTASK_RUNS_DIR"]).parent


def test_file_link_opens_the_image_in_predictions(env, monkeypatch):
    path = str(_tmp_root(env) / "photos" / "p1.png")
    at = _other_page(env, monkeypatch, "predictions", {"src": "file", "path": path, "ckpt": "shipped: tiny_b"})
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.radio(key="pred_src").value == "Image file"
    assert at.radio(key="pred_src").options == ["Sample", "Dataset split", "Upload", "Image file"]
    assert at.text_input(key="pred_path").value == path
    text = app_text(at)
    assert "Input p1.png: 60×40 px" in str(at.get("image")[0].proto)     # the input's caption: file and size
    assert "Segmentation" in text and "Depth" in text
    assert "image file has no ground truth" in text and "This image's metrics" not in text
    assert at.multiselect(key="pred_panels").value == ["ground truth", "direct", "transferred"]


@pytest.mark.parametrize("where, message", [
    ("outside", "outside the allowed folders"), ("missing", "does not exist"), ("text", "not an image"),
    ("bomb", "too large"), ("folder", "is not a file")])
def test_bad_image_file_is_one_error_line(env, monkeypatch, tmp_path, where, message):
    from tests.bad_files import png_claiming
    misc = _tmp_root(env) / "misc"
    misc.mkdir(exist_ok=True)
    (misc / "notes.png").write_text("not a picture\n")
    (misc / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    outside = tmp_path / "fine.png"          # a real image, but not in an allowed folder
    cv2.imwrite(str(outside), np.zeros((20, 20, 3), np.uint8))
    path = {"outside": outside, "missing": misc / "none.png", "text": misc / "notes.png",
            "bomb": misc / "bomb.png", "folder": misc}[where]
    at = _other_page(env, monkeypatch, "predictions", {"src": "file", "path": str(path)})
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value and "\n" not in at.error[0].value, \
        [e.value for e in at.error]
    assert "Segmentation" not in app_text(at)


def test_file_image_is_cached_by_path_mtime_and_size(env, monkeypatch):
    from xtask_app.pickers import file_image
    set_env(monkeypatch, env)
    path = _tmp_root(env) / "misc2" / "photo.jpg"
    path.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(path), np.full((20, 30, 3), 200, np.uint8))
    rgb, name = file_image(str(path))
    assert name == "photo.jpg" and rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert abs(int(rgb.astype(int).mean()) - 200) <= 2
    cv2.imwrite(str(path), np.full((24, 30, 3), 10, np.uint8))       # rewritten at the same path
    rgb, _ = file_image(str(path))
    assert rgb.shape == (24, 30, 3) and int(rgb.max()) < 20


def test_folder_rows_link_to_the_other_pages(env, monkeypatch):
    at = _page(env, monkeypatch, str(_runs(env) / "photos.parquet"))
    at.run()
    assert not at.exception and not at.error
    assert "by upload only" not in app_text(at)
    at.button(key="ds_grid_0_Predictions").click().run()
    info = " ".join(e.value for e in at.info)
    photos = str((_tmp_root(env) / "photos").resolve())
    assert "predictions.py" in info and "src=file" in info and "ckpt=shipped" in info, info
    query = parse_qs(re.search(r"predictions\.py with (\S+) \(", info).group(1))
    assert query["src"] == ["file"] and Path(query["path"][0]).parent == Path(photos), query
    assert Path(query["path"][0]).name in {"p0.png", "p1.png", "p2.png"}
    # that address opens the same image in Predictions
    pred = _other_page(env, monkeypatch, "predictions", {k: v[0] for k, v in query.items()})
    pred.run()
    assert not pred.exception and not pred.error and pred.text_input(key="pred_path").value == query["path"][0]
    assert f"Input {Path(query['path'][0]).name}" in str(pred.get("image")[0].proto)
