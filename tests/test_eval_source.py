"""xtask_app.ui.eval_source: matching records to checkpoints by content, restricting rows, the
totals → metrics converter, picking images for the per-pixel study, and the proof that the
records-based Compare table equals the live evaluate_predictions one on the shipped samples."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.app_helpers import write_checkpoint, write_samples
from xtask_app.ui import eval_source as es
from xtask_core.data.labels import CITYSCAPES_IGNORE
from xtask_core.data.samples import find_samples, load_sample
from xtask_core.errors import XTaskError
from xtask_core.evaluate import record_summary as rs
from xtask_core.evaluate.report import evaluate_predictions, metrics_row, per_class_iou_rows
from xtask_core.evaluate.sources import dataset_source

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(checkpoint: str, sha: str, accs, energies, c: int = 2) -> pd.DataFrame:
    """Hand-made records of one checkpoint: one row per image with a C×C confusion."""
    out = []
    for i, (acc, en) in enumerate(zip(accs, energies)):
        conf = np.zeros((c, c), np.int64)
        conf[0, 0], conf[1, 1], conf[0, 1] = 10 * acc, 5, 10 - 10 * acc
        out.append({"checkpoint": checkpoint, "checkpoint_sha256": sha, "image": f"im{i}.png", "index": i,
                    "pixel_acc": acc, "miou": acc / 2, "seg_energy": en, "seg_entropy": en / 2,
                    "seg_disagree": 0.0, "depth_energy": 0.0, "n_depth_pixels": 4,
                    **{p + k: 0.5 for p in ("", "t_") for k in ("abs", "abs_rel", "rmse", "delta1", "delta2",
                                                                "delta3")},
                    "confusion": conf.reshape(-1)})
    return pd.DataFrame(out)


def test_match_by_content_hash_and_restrict():
    recs = pd.concat([_rows("/srv/b.safetensors", "bbb", [0.5, 0.8], [1, 2]),
                      _rows("/srv/a.safetensors", "aaa", [0.9, 0.6], [3, 1]),
                      _rows("copy-of-a", "aaa", [0.1, 0.1], [0, 0])], ignore_index=True)
    got = es.match_checkpoints({"A": "aaa", "B": "bbb", "C": "ccc"}, recs)
    assert got == {"A": "/srv/a.safetensors", "B": "/srv/b.safetensors"}      # C lacking; first name of aaa
    part = es.restrict(recs.iloc[::-1], got)
    assert list(part["checkpoint"]) == ["/srv/a.safetensors"] * 2 + ["/srv/b.safetensors"] * 2
    assert list(part["index"]) == [0, 1, 0, 1]
    assert es.match_checkpoints({"A": "aaa"}, pd.DataFrame()) == {}


def test_converter_feeds_the_table_functions():
    recs = _rows("a", "aaa", [0.5, 1.0], [1, 2])
    res = es.records_results(recs, {"model A": "a"})["model A"]
    tot = rs.totals(recs)["a"]
    assert res["pixel_acc"] == tot["pixel_acc"] and res["miou"] == tot["miou"]
    assert np.array_equal(res["confusion"], rs.confusion_matrix(recs))
    assert res["n_images"] == 2 and res["n_pixels"] == int(rs.confusion_matrix(recs).sum())
    row = metrics_row("model A", res)
    assert row["pixel acc"] == round(100 * tot["pixel_acc"], 2) and row["Abs"] == 0.5
    ious = per_class_iou_rows({"model A": res}, {"model A": ["x", "y"]})
    assert ious["model A"]["y"] == round(100 * tot["iou_per_class"][1], 2)
    unlabelled = es.to_metrics({"n_images": 3, "pixel_acc": math.nan, "iou_per_class": []}, None)
    assert unlabelled["confusion"] == [] and math.isnan(unlabelled["miou"]) and unlabelled["n_pixels"] == 0
    assert not es.labelled(recs.assign(pixel_acc=math.nan)) and es.labelled(recs)
    blank = es.without_depth(recs)
    assert blank["abs"].isna().all() and blank["t_rmse"].isna().all() and (blank["n_depth_pixels"] == 0).all()


def test_pick_rows():
    rows = _rows("a", "aaa", [0.9, 0.2, 0.6, 0.2], [0.1, 0.5, 0.9, 0.3]).iloc[[2, 0, 3, 1]]
    assert list(es.pick_rows(rows, "first", 2)["index"]) == [0, 1]
    assert list(es.pick_rows(rows, "worst", 3)["index"]) == [1, 3, 2]     # ties keep index order
    assert list(es.pick_rows(rows, "energy", 2)["index"]) == [2, 1]
    assert "_v" not in es.pick_rows(rows, "worst", 1).columns
    with pytest.raises(XTaskError):
        es.pick_rows(rows, "best", 1)


def test_sample_place(tmp_path):
    write_samples(tmp_path, n=2)
    found = find_samples(tmp_path)
    where, name = es.sample_place(found[0], tmp_path)
    assert where == ("synthetic", str(tmp_path), "val")
    assert name == "leftImg8bit/val/synth/synth_000000_000019_leftImg8bit.png"
    assert es.sample_groups(found, tmp_path) == {where: [name, name.replace("000000", "000001")]}


def _live_table(loaded, images_and_gt) -> dict:
    """The old Compare path: Predictor.predict on each image, evaluate_predictions over them."""
    from xtask_core.inference.predictor import Predictor

    pred = Predictor(loaded, fast=False, precision="fp32")
    preds, segs, deps = [], [], []
    for rgb, gs, gd in images_and_gt:
        preds.append(pred.predict(rgb))
        segs.append(gs)
        deps.append(gd)
    return evaluate_predictions(preds, segs, deps, loaded.config.num_classes, CITYSCAPES_IGNORE)


def _records_table(ckpt: str, root, size) -> dict:
    from xtask_core.evaluate.records import records_for

    src = dataset_source("synthetic", root, "val", size, num_classes=7)
    recs = records_for([ckpt], src, cache=True, fast=False, precision="fp32", device="cpu")
    return es.records_results(recs, {"a": ckpt})["a"]


def _assert_same_table(new: dict, old: dict, class_names) -> None:
    assert np.array_equal(np.asarray(new["confusion"]), np.asarray(old["confusion"]))
    for key in es.METRIC_KEYS:
        assert new[key] == pytest.approx(old[key], rel=1e-6, abs=1e-9), key
    assert np.allclose(new["iou_per_class"], old["iou_per_class"], equal_nan=True)
    assert metrics_row("a", new) == metrics_row("a", old)
    names = {"a": list(class_names)}
    assert per_class_iou_rows({"a": new}, names) == per_class_iou_rows({"a": old}, names)


def test_records_table_equals_the_old_live_table_on_the_samples(tmp_path, monkeypatch):
    """The switch loses nothing: the same model on the same shipped-layout samples (at the model's
    input size, so neither path resizes) gives the same Compare table from the records as the
    old live path (pickers' predictions + evaluate_predictions) (load_sample's arrays)."""
    from xtask_core.checkpoint import load_checkpoint

    monkeypatch.setenv("XTASK_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = str(write_checkpoint(tmp_path / "a.safetensors", seed=3, name="a"))
    loaded = load_checkpoint(ckpt)
    size = (loaded.config.height, loaded.config.width)
    write_samples(tmp_path / "samples", n=3, size=size)
    old = _live_table(loaded, [load_sample(s.image, s.label, s.disparity, 7, *size)
                               for s in find_samples(tmp_path / "samples")])
    _assert_same_table(_records_table(ckpt, tmp_path / "samples", size), old, [f"c{i}" for i in range(7)])


def test_records_table_equals_evaluate_predictions_when_resized(tmp_path, monkeypatch):
    """Samples of another size than the model's: the records score the images as the dataset loader
    (and `xtask eval`) resizes them; evaluate_predictions over those very arrays gives the same table.
    (The single-image pages resize labels by pixel-centre sampling instead, which differs from the
    loader's nearest-neighbour on boundary pixels: that is a difference of inputs, not of metric code.)"""
    from xtask_core.checkpoint import load_checkpoint

    monkeypatch.setenv("XTASK_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = str(write_checkpoint(tmp_path / "a.safetensors", seed=4, name="a"))
    loaded = load_checkpoint(ckpt)
    size = (loaded.config.height, loaded.config.width)
    write_samples(tmp_path / "samples", n=3, size=(48, 96))
    src = dataset_source("synthetic", tmp_path / "samples", "val", size, num_classes=7)
    items = []
    for i in range(len(src)):
        s = src._dataset.load_numpy(i)
        rgb = np.rint(s["image"] * 255.0).astype(np.uint8)       # the loader's resized uint8 image
        items.append((rgb, s["seg"].astype(np.int64), s["depth"].astype(np.float32)))
    old = _live_table(loaded, items)
    _assert_same_table(_records_table(ckpt, tmp_path / "samples", size), old, [f"c{i}" for i in range(7)])


def test_study_where():
    shipped = es.EvalSource(pd.DataFrame(), {}, "the first 2 shipped samples", {"kind": "dataset"},
                            samples={"x.png": None})
    split = es.EvalSource(pd.DataFrame(), {}, "…", {"kind": "dataset", "dataset": "synthetic", "split": "val"})
    assert es.study_where(shipped, "first", 3) == "the first 3 images"
    assert es.study_where(shipped, "first", 1) == "the first image"
    assert es.study_where(split, "energy", 8) == "the 8 images with the highest energy of the synthetic val split"
    assert es.study_where(split, "worst", 1) == "the 1 image with the most wrong pixels of the synthetic val split"
