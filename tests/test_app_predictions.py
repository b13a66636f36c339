"""AppTest of the Predictions page."""
from __future__ import annotations

from tests.app_helpers import count_predict_calls, make_app_env, run_page


def _metrics(at):
    return at.dataframe[0].value


def test_predictions_sample_panels_metrics_downloads(tmp_path, monkeypatch):
    calls = count_predict_calls(monkeypatch)
    at = run_page("predictions", make_app_env(tmp_path), monkeypatch)
    assert not at.exception and not at.error
    assert at.title[0].value == "Predictions"
    # 3 segmentation + 3 depth panels (GT, direct, transferred) + the point cloud
    assert len(at.get("plotly_chart")) == 7
    df = _metrics(at)
    assert list(df["model"]) == ["direct", "transferred"]
    assert {"pixel acc", "mIoU", "Abs", "Abs Rel"} <= set(df.columns)
    labels = [b.label for b in at.get("download_button")]
    assert "Download metrics (CSV)" in labels and sum(lb.endswith("(PNG)") for lb in labels) == 6
    assert len(calls) == 1

    # display-only controls never re-run the model
    at.slider(key="pred_alpha").set_value(0.2).run()
    at.selectbox(key="pred_cmap").set_value("viridis").run()
    at.multiselect(key="pred_panels").set_value(["direct"]).run()
    assert not at.exception and len(calls) == 1
    assert len(at.get("plotly_chart")) == 3                     # direct seg, direct depth, cloud

    # another sample: a new prediction, new metrics
    before = _metrics(at)["pixel acc"].tolist()
    at.selectbox(key="pred_sample").set_value(at.selectbox(key="pred_sample").options[1]).run()
    assert not at.exception and len(calls) == 2
    assert _metrics(at)["pixel acc"].tolist() != before


def test_predictions_dataset_split_and_refused_root(tmp_path, monkeypatch):
    env = make_app_env(tmp_path)
    at = run_page("predictions", env, monkeypatch)
    at.radio(key="pred_src").set_value("Dataset split").run()
    at.text_input(key="pred_root").input(env["XTASK_SAMPLES_DIR"]).run()
    at.number_input(key="pred_idx").set_value(1).run()
    assert not at.exception and not at.error
    assert "synthetic:val[1]" in str(at.get("image")[0].proto)   # the input's caption names the item
    at.text_input(key="pred_root").input("/etc").run()
    assert not at.exception
    assert len(at.error) == 1 and "outside the allowed folders" in at.error[0].value
    at.text_input(key="pred_root").input(env["XTASK_SAMPLES_DIR"]).run()
    at.number_input(key="pred_idx").set_value(5).run()
    assert "out of range" in at.error[0].value


def test_predictions_upload_source_waits_for_a_file(tmp_path, monkeypatch):
    at = run_page("predictions", make_app_env(tmp_path), monkeypatch)
    at.radio(key="pred_src").set_value("Upload").run()
    assert not at.exception
    assert any("Upload an image" in i.value for i in at.info)
