"""AppTest of the Compare checkpoints page."""
from __future__ import annotations

from tests.app_helpers import make_app_env, run_page


def test_compare_two_checkpoints(tmp_path, monkeypatch):
    at = run_page("compare", make_app_env(tmp_path), monkeypatch)
    assert not at.exception and not at.error
    assert at.multiselect(key="cmp_models").value == ["shipped: tiny_a", "shipped: tiny_b"]
    metrics, ious = at.dataframe[0].value, at.dataframe[1].value
    assert list(metrics["model"]) == ["shipped: tiny_a", "shipped: tiny_b"]
    assert list(ious.columns) == ["class", "shipped: tiny_a", "shipped: tiny_b"] and len(ious) == 7
    # 2 × (seg, depth) + seg and depth difference + per-class IoU bars + 2 confusion matrices
    assert len(at.get("plotly_chart")) == 9
    labels = [b.label for b in at.get("download_button")]
    assert "Download per-class IoU (CSV)" in labels and sum(lb.endswith("(PNG)") for lb in labels) == 6


def test_compare_needs_two(tmp_path, monkeypatch):
    at = run_page("compare", make_app_env(tmp_path), monkeypatch)
    at.multiselect(key="cmp_models").set_value(["shipped: tiny_b"]).run()
    assert not at.exception
    assert any("at least two" in i.value for i in at.info)
