"""AppTest of the Error maps page."""
from __future__ import annotations

from tests.app_helpers import app_text, make_app_env, run_page


def test_error_maps_renders_errors_energy_and_study(tmp_path, monkeypatch):
    at = run_page("error_maps", make_app_env(tmp_path), monkeypatch)
    assert not at.exception and not at.error
    text = app_text(at)
    assert "Does energy predict the true error?" in text and "This image" in text
    # depth abs, rel, energy; wrong pixels, disagreement, seg energy;
    # (sparsification, binned) × 2 tasks × (this image, subset)
    assert len(at.get("plotly_chart")) == 6 + 8
    by_class = at.dataframe[0].value
    assert list(by_class["name"])[:2] == ["flat", "construction"] and "error_rate" in by_class
    study = at.dataframe[1].value
    assert list(study["task"]) == ["depth", "seg"] and {"spearman", "ause", "aurg", "auroc"} <= set(study.columns)
    at.selectbox(key="err_cmap").set_value("gray").run()
    assert not at.exception


def test_error_maps_upload_has_energy_only(tmp_path, monkeypatch):
    at = run_page("error_maps", make_app_env(tmp_path), monkeypatch)
    at.radio(key="err_src").set_value("Upload").run()
    assert not at.exception and any("Upload an image" in i.value for i in at.info)
