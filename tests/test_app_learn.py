"""AppTest of the Learn page."""
from __future__ import annotations

from tests.app_helpers import app_text, make_app_env, run_page


def _energy(at):
    """The clean / corrupted table (rows = quantities, columns = inputs)."""
    return at.dataframe[0].value


def test_learn_corruption_changes_energy_and_transfer_demo(tmp_path, monkeypatch):
    at = run_page("learn", make_app_env(tmp_path), monkeypatch)
    assert not at.exception and not at.error
    text = app_text(at)
    for step in ("Step 1", "Step 2", "Step 3", "Step 4", "What to take away"):
        assert step in text
    table = _energy(at)
    assert list(table.columns) == ["clean", "corrupted"]
    row = "seg energy KL (nats)"
    assert table.loc[row, "clean"] == table.loc[row, "corrupted"]       # no corruption yet: same prediction
    assert any("sliders are at 0" in i.value for i in at.info)
    at.slider(key="learn_noise").set_value(1.0).run()
    at.slider(key="learn_occ").set_value(0.8).run()
    assert not at.exception
    table = _energy(at)
    assert table.loc[row, "clean"] != table.loc[row, "corrupted"]
    abs_row = "direct depth Abs (disparity/256)"                        # the unit follows the checkpoint
    assert table.loc[abs_row, "clean"] != table.loc[abs_row, "corrupted"]
    at.slider(key="learn_wipe").set_value(0.1).run()                   # display only
    assert not at.exception
    text = app_text(at)
    assert "AUROC" in text and "Spearman" in text                        # step 3 with ground truth
    assert "What did the transfer nets learn?" in text and "Depth→seg on true depth: pixel accuracy" in text


def test_learn_upload_explains_what_needs_ground_truth(tmp_path, monkeypatch):
    at = run_page("learn", make_app_env(tmp_path), monkeypatch)
    at.radio(key="learn_src").set_value("Upload").run()
    assert not at.exception and any("Upload an image" in i.value for i in at.info)
