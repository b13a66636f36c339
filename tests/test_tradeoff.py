"""Trade-off points, single-task baselines, Δm rows, published points (run_tables) and the
trade-off figure / wipe HTML (xtask_app), without Streamlit."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from xtask_app.charts import wipe_html
from xtask_app.ui import delta_m as dm_ui
from xtask_app.ui import tradeoff
from xtask_core.train import run_tables


def _run(rows, train, path="r", source="xtask"):
    return SimpleNamespace(metrics=pd.DataFrame(rows), config={"train": train, "val_images": 8}, source=source,
                           path=Path(path), summary={})


EPOCHS = [dict(kind="step", epoch=1, step=1, train_loss=2.0),
          dict(kind="epoch", epoch=1, step=2, val_loss=1.0, val_miou=0.3, val_abs=0.05),
          dict(kind="epoch", epoch=2, step=4, val_loss=0.8, val_miou=0.5, val_abs=0.04),
          dict(kind="epoch", epoch=3, step=6, val_loss=0.9, val_miou=0.6, val_abs=0.03)]


def test_run_point_uses_the_best_checkpoint_epoch():
    p = run_tables.run_point("a", _run(EPOCHS, dict(dataset="synthetic", lambda_1=0.01, lambda_2=0.0,
                                                    uncertainty_weights=True)))
    assert p["miou"] == 0.5 and p["abs"] == 0.04 and p["epoch"] == 2      # lowest val_loss, not the last
    assert p["lambda_1"] == 0.01 and p["lambda_2"] == 0.0 and p["balancing"] == "uncertainty"
    assert p["task"] == "both" and p["origin"] == "run"
    tuned = run_tables.run_point("b", _run(EPOCHS, dict(dataset="synthetic", init_checkpoint="x.safetensors")))
    assert tuned["origin"] == "fine-tune"
    assert run_tables.run_point("c", _run([dict(kind="step", epoch=1, step=1, train_loss=1.0)], {})) is None
    orig = SimpleNamespace(metrics=pd.DataFrame(), config={"alpha": 0.01, "gamma": 0.02}, source="xtask_mt",
                           path=Path("e/001"), summary={"miou": 0.6, "pixel_acc": 0.9, "abs": 0.012})
    o = run_tables.run_point("orig", orig)
    assert o["miou_per_image"] == 0.6 and o["miou"] is None                # the original's mIoU is per image
    assert o["lambda_1"] == 0.01 and o["lambda_2"] == 0.02


def test_checkpoint_point_reads_the_card_only(tmp_path):
    from tests.app_helpers import tiny_model
    from xtask_core.checkpoint import default_meta, save_checkpoint
    meta = default_meta(7, "synthetic")
    meta["training"] = {"metrics": {"miou": 0.7, "abs": 0.02, "pixel_acc": 0.9},
                        "train_config": {"dataset": "synthetic", "lambda_1": 1e-3, "lambda_2": 1e-3}, "best_epoch": 4}
    path = save_checkpoint(tmp_path / "c.safetensors", tiny_model(0), meta)
    p = run_tables.checkpoint_point("shipped: c", path)
    assert p["miou"] == 0.7 and p["abs"] == 0.02 and p["lambda_1"] == 1e-3 and p["origin"] == "shipped"
    bare = save_checkpoint(tmp_path / "bare.safetensors", tiny_model(0), default_meta(7, "synthetic"))
    assert run_tables.checkpoint_point("bare", bare) is None
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    assert run_tables.read_checkpoint_meta(tmp_path / "junk.safetensors") == {}
    pts, missing = run_tables.tradeoff_points({}, {}, [("c", path), ("bare", bare)])
    assert list(pts["label"]) == ["c"] and missing == ["bare"]


def _points():
    rows = [dict(label="mtl", task="both", dataset="synthetic", miou=0.66, pixel_acc=0.90, abs=0.030, abs_rel=0.20),
            dict(label="seg-a", task="segmt", dataset="synthetic", miou=0.60, pixel_acc=0.88),
            dict(label="seg-b", task="segmt", dataset="synthetic", miou=0.55, pixel_acc=0.95),
            dict(label="dep", task="depth", dataset="synthetic", abs=0.025, abs_rel=0.25),
            dict(label="nyu", task="both", dataset="nyuv2", miou=0.3, abs=0.6)]
    return pd.DataFrame(rows)


def test_baselines_and_delta_m_by_hand():
    base = run_tables.stl_baselines(_points())
    assert base["synthetic"]["segmt"]["label"] == "seg-a"           # the best mIoU of the two
    assert base["synthetic"]["depth"]["label"] == "dep" and "nyuv2" not in base
    table = run_tables.delta_m_rows(_points(), base)
    assert list(table["label"]) == ["mtl"]                          # nyuv2 has no baselines
    row = table.iloc[0]
    # by hand: miou +10 %, pixel_acc (0.90-0.88)/0.88 = +2.2727 %, abs -(0.030-0.025)/0.025 = -20 %,
    # abs_rel -(0.20-0.25)/0.25 = +20 %  →  mean 3.0682 %
    assert row["Δ miou %"] == pytest.approx(10.0) and row["Δ abs %"] == pytest.approx(-20.0)
    assert row["Δm %"] == pytest.approx((10.0 + 2.0 / 0.88 - 20.0 + 20.0) / 4)
    assert run_tables.delta_m_rows(pd.DataFrame(), {}).empty


def test_published_points_match_the_dataset_and_units():
    assert run_tables.published_points(["synthetic"]).empty
    city = run_tables.published_points(["cityscapes"])
    paper = city[city["label"].str.startswith("xtask_mt")].iloc[0]
    assert paper["miou_per_image"] == pytest.approx(0.6651) and paper["abs"] == 0.0122
    assert paper["abs_rel"] == pytest.approx(0.194) and "miou" not in city        # per-image mIoU only
    assert set(run_tables.published_points(["nyuv2"])["dataset"]) == {"nyuv2"}


def test_loss_ratios_are_derived_when_not_logged():
    df = pd.DataFrame({"step": [1, 2, 3], "train_label": [2.0, 1.0, 0.5], "train_image": [4.0, 4.0, 2.0]})
    out = run_tables.with_loss_ratios(df)
    assert list(out["ratio_label"]) == [1.0, 0.5, 0.25] and list(out["ratio_image"]) == [1.0, 1.0, 0.5]
    logged = df.assign(ratio_label=[9.0, 9.0, 9.0])
    assert list(run_tables.with_loss_ratios(logged)["ratio_label"]) == [9.0, 9.0, 9.0]


def test_tradeoff_figure_points_lines_and_colours():
    pts = _points()
    pts["origin"] = ["shipped", "run", "run", "run", "run"]
    pts["lambda_1"] = [0.01, None, None, None, 0.0]
    base = run_tables.stl_baselines(pts)["synthetic"]
    syn = pts[pts["dataset"] == "synthetic"]
    fig = tradeoff.tradeoff_figure(syn, "abs", "miou", "lambda_1", base, run_tables.published_points(["synthetic"]))
    assert tradeoff.point_count(fig) == 1                                  # single-task runs are lines
    assert len(fig.layout.shapes) == 2                                     # one horizontal, one vertical
    assert {s.type for s in fig.layout.shapes} == {"line"}
    assert fig.data[0].marker.color[0] == pytest.approx(-2.0)             # log10(0.01)
    assert "λ1 0.01" in fig.data[0].hovertext[0] and fig.data[0].text[0] == "mtl"
    named = tradeoff.tradeoff_figure(syn.assign(name=["λ 0.01", None, None, None]), "abs", "miou")
    assert named.data[0].text[0] == "λ 0.01"
    assert tradeoff.short_label("sweep-20261207-113435-0e6a-1-l1_1e-3-l2_1e-3 (runs/)") == "…-0e6a-1-l1_1e-3-l2_1e-3"
    assert tradeoff.short_label("shipped: demo (checkpoints/)") == "demo" == tradeoff.short_label("demo (runs/)")
    assert fig.layout.coloraxis.colorbar.ticktext[0] == "0"
    col = tradeoff.lambda_colour([0.0, 1e-5, 1.0, None, float("nan")])
    assert col[0] == -6 and col[1] == pytest.approx(-5) and col[2] == 0 and np.isnan(col[3]) and np.isnan(col[4])
    city = pd.DataFrame([dict(label="x", task="both", dataset="cityscapes", origin="run", lambda_1=0.01,
                              miou_per_image=0.5, abs=0.02)])
    pub = run_tables.published_points(["cityscapes"])
    fig2 = tradeoff.tradeoff_figure(city, "abs", "miou_per_image", "lambda_1", {}, pub)
    assert tradeoff.point_count(fig2) == 1 and len(fig2.data[-1].x) == len(pub)
    assert "per image" in fig2.data[-1].name


def test_origin_of(tmp_path):
    roots = {"shipped": tmp_path / "ck", "run": tmp_path / "runs"}
    assert tradeoff.origin_of(tmp_path / "ck" / "a", roots) == "shipped"
    assert tradeoff.origin_of(tmp_path / "runs" / "b", roots) == "run"
    assert tradeoff.origin_of(tmp_path / "else", roots) == "folder"


def test_entries_to_points_for_compare():
    entries = [{"label": "x", "task": "both", "dataset": "synthetic", "metrics": {"miou": 0.6, "abs": 0.03}},
               {"label": "s", "task": "segmt", "dataset": "synthetic", "metrics": {"miou": 0.5}},
               {"label": "d", "task": "depth", "dataset": "synthetic", "metrics": {"abs": 0.04}}]
    pts = dm_ui.entries_to_points(entries)
    table = run_tables.delta_m_rows(pts, run_tables.stl_baselines(pts), metrics=("miou", "abs"))
    assert table.iloc[0]["Δm %"] == pytest.approx((20.0 + 25.0) / 2)


def test_wipe_html():
    a = np.zeros((4, 6, 3), np.uint8)
    b = np.full((4, 6, 3), 255, np.uint8)
    text = wipe_html(a, b, "base", "tuned <b>", uid="w 1")
    assert text.count("data:image/png;base64,") == 2 and 'type="range"' in text
    assert "aspect-ratio:6/4" in text and "tuned &lt;b&gt;" in text and 'id="w-1"' in text
    with pytest.raises(ValueError):
        wipe_html(a, b[:2], "x", "y")


def _compare_dm_script():
    from types import SimpleNamespace

    from xtask_app.ui import delta_m

    def m(label, task):
        return SimpleNamespace(label=label, config=SimpleNamespace(task=task), meta={"dataset": "synthetic"})

    results = {"mtl": {"miou": 0.66, "pixel_acc": 0.9, "abs": 0.03, "abs_rel": 0.2},
               "seg": {"miou": 0.6, "pixel_acc": 0.9, "abs": float("nan")},
               "dep": {"abs": 0.025, "abs_rel": 0.25}}
    delta_m.show_for_checkpoints([m("mtl", "both"), m("seg", "segmt"), m("dep", "depth"), m("gone", "both")],
                                 results, images="the first 4 samples")


def test_compare_delta_m_section():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_function(_compare_dm_script).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["label"]) == ["mtl"]
    # by hand: miou +10 %, pixel acc 0 %, abs −20 %, abs rel +20 %  →  +2.5 %
    assert table.iloc[0]["Δm %"] == pytest.approx(2.5)
    assert any("the first 4 samples" in c.value for c in at.caption)


def test_dataset_of_tells_synthetic_renders_in_a_real_layout(tmp_path):
    (tmp_path / "README.txt").write_text("SYNTHETIC indoor rooms generated by xtask. NOT real photographs.\n")
    assert run_tables.dataset_of({"dataset": "nyuv2", "input_path": str(tmp_path)}) == "nyuv2 (synthetic data)"
    assert run_tables.dataset_of({"dataset": "nyuv2", "input_path": str(tmp_path / "real")}) == "nyuv2"
    note = "trained on synthetic streets"
    assert run_tables.dataset_of({"dataset": "cityscapes"}, note) == "cityscapes (synthetic data)"
    assert run_tables.dataset_of({"dataset": "synthetic"}) == "synthetic" and run_tables.dataset_of({}) == "?"
    # published numbers (real data) are never set beside synthetic renders in a real layout
    assert run_tables.published_points([run_tables.dataset_of({"dataset": "nyuv2", "input_path": str(tmp_path)})]).empty
