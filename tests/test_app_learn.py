"""AppTest of the Learn page."""
from __future__ import annotations

from tests.app_helpers import app_text, make_app_env, run_page


def test_learn_corruption_changes_energy_and_transfer_demo(tmp_path, monkeypatch):
    at = run_page("learn", make_app_env(tmp_path), monkeypatch)
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["input"]) == ["clean", "corrupted"]
    col = "seg energy KL (nats)"
    assert table[col][0] == table[col][1]                      # no corruption yet: same prediction
    at.slider(key="learn_noise").set_value(1.0).run()
    at.slider(key="learn_occ").set_value(0.8).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table[col][0] != table[col][1]
    assert table["direct depth Abs"][0] != table["direct depth Abs"][1]
    at.slider(key="learn_wipe").set_value(0.1).run()           # display only
    assert not at.exception
    text = app_text(at)
    assert "What did the transfer nets learn?" in text and "Depth→seg on true depth: pixel accuracy" in text
