"""AppTest of the Error maps page."""
from __future__ import annotations

from tests.app_helpers import app_text, make_app_env, run_page


def test_error_maps_renders_errors_energy_and_study(tmp_path, monkeypatch):
    at = run_page("error_maps", make_app_env(tmp_path), monkeypatch)
    assert not at.exception and not at.error
    assert "Does energy predict the true error?" in app_text(at)
    assert [t.label for t in at.tabs] == ["This image", "Many images (samples or a split)"]
    assert at.radio(key="err_evsrc").value == "Shipped samples"
    # depth abs, rel, energy; wrong pixels, disagreement, seg energy;
    # (sparsification, binned) × 2 tasks × (this image, subset); the per-image sparsification of the subset
    assert len(at.get("plotly_chart")) == 6 + 8 + 1
    per_image = next(d.value for d in at.dataframe if "precision_at_k" in d.value.columns)
    assert len(per_image) == 2 and per_image["n"].tolist() == [2, 2]      # energy and entropy, 2 samples
    by_class = at.dataframe[0].value
    assert list(by_class["name"])[:2] == ["flat", "construction"] and "error_rate" in by_class
    study = at.dataframe[1].value
    assert list(study["task"]) == ["depth", "seg"] and {"spearman", "ause", "aurg", "auroc"} <= set(study.columns)
    assert 0.0 <= study["auroc"][1] <= 1.0 and -1.0 <= study["spearman"][0] <= 1.0
    labels = [b.label for b in at.get("download_button")]
    assert sum(lb.endswith("(PNG)") for lb in labels) == 6          # in the collapsed expander
    at.selectbox(key="err_cmap").set_value("gray").run()
    assert not at.exception


def test_error_maps_upload_has_energy_only(tmp_path, monkeypatch):
    at = run_page("error_maps", make_app_env(tmp_path), monkeypatch)
    at.radio(key="err_src").set_value("Upload").run()
    assert not at.exception and any("Upload an image" in i.value for i in at.info)
