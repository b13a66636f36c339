"""xtask_core.evaluate.report: one-image metrics, table rows, metric directions, the energy-error study."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from xtask_core.evaluate import report


def test_image_metrics_hand_computed():
    logits = np.zeros((2, 1, 4), np.float32)
    logits[1, 0, 2:] = 1.0                      # predicts [0, 0, 1, 1]
    gt = np.array([[0, 1, 1, 250]])
    depth = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    gt_depth = np.array([[1.0, 1.0, 0.0, 2.0]], np.float32)
    m = report.image_metrics(logits, depth, gt, gt_depth, 2, 250)
    assert m["pixel_acc"] == pytest.approx(2 / 3)          # 3 labelled pixels, 2 right
    assert m["miou"] == pytest.approx((1 / 2 + 1 / 2) / 2)  # class 0: 1/(1+1); class 1: 1/(1+1)
    assert m["abs"] == pytest.approx((0 + 1 + 2) / 3)       # the 0-depth pixel is invalid
    m2 = report.image_metrics(logits, None, gt, None, 2, 250)
    assert np.isnan(m2["abs"]) and m2["pixel_acc"] == pytest.approx(2 / 3)
    row = report.metrics_row("direct", m)
    assert row["model"] == "direct" and row["pixel acc"] == pytest.approx(66.67) and row["Abs"] == 1.0


def _pred(seg_logits, seg_t_logits, depth, depth_t):
    return SimpleNamespace(seg_logits=seg_logits, seg_t_logits=seg_t_logits, depth=depth, depth_t=depth_t,
                           seg=seg_logits.argmax(0), seg_t=seg_t_logits.argmax(0))


def test_energy_error_study_perfect_energy_matches_oracle():
    rng = np.random.default_rng(0)
    gt_d = rng.random((8, 8)).astype(np.float32) + 0.5
    err = rng.random((8, 8)).astype(np.float32)
    depth = gt_d + err                       # |direct − gt| = err
    depth_t = depth + 2 * err                # energy = 2·err: ranks pixels exactly like the error
    logits = np.zeros((2, 8, 8), np.float32)
    p = _pred(logits, logits, depth, depth_t)
    study = report.energy_error_study([p, p], [None, None], [gt_d, gt_d], 250)
    assert study["seg"] == {}
    res = study["depth"]
    assert res["report"]["n_pixels"] == 128
    assert res["report"]["spearman"] == pytest.approx(1.0)
    assert res["sparsification"]["ause"] == pytest.approx(0.0, abs=1e-9)
    assert res["report"]["aurg"] > 0


def test_evaluate_predictions_direct_and_transferred():
    gt = np.array([[0, 1], [1, 0]])
    right = np.stack([gt == 0, gt == 1]).astype(np.float32)
    wrong = right[::-1].copy()
    gt_d = np.ones((2, 2), np.float32)
    p = _pred(right, wrong, gt_d.copy(), gt_d * 2)
    m = report.evaluate_predictions([p, p], [gt, gt], [gt_d, gt_d], 2, 250)
    assert m["miou"] == 1.0 and m["abs"] == 0.0 and m["n_images"] == 2
    mt = report.evaluate_predictions([p], [gt], [gt_d], 2, 250, transferred=True)
    assert mt["pixel_acc"] == 0.0 and mt["abs"] == pytest.approx(1.0)


def test_before_after_rows_know_which_direction_is_better():
    before = {"pixel_acc": 0.5, "miou": 0.3, "abs": 0.2, "rmse": 0.1, "loss": 2.0, "n_images": 8}
    after = {"pixel_acc": 0.6, "miou": 0.3, "abs": 0.25, "rmse": 0.05, "loss": 1.5, "n_images": 8}
    rows = {r["metric"]: r for r in report.before_after_rows(before, after)}
    assert list(rows) == ["pixel accuracy", "mIoU (dataset)", "depth Abs", "depth RMSE", "val loss"]
    assert rows["pixel accuracy"]["better?"] == "yes" and rows["pixel accuracy"]["change"] == pytest.approx(0.1)
    assert rows["mIoU (dataset)"]["better?"] == "—"                     # unchanged
    assert rows["depth Abs"]["better?"] == "no"                          # an error that grew
    assert rows["depth RMSE"]["better?"] == "yes" and rows["val loss"]["better?"] == "yes"
    assert report.before_after_rows({}, after) == []


def test_per_class_iou_rows_and_metrics_row_percent():
    res = {"A": {"iou_per_class": [0.5, 0.25]}, "B": {"iou_per_class": [1.0, 0.0]}}
    rows = report.per_class_iou_rows(res, {"A": ["road", "car"], "B": ["road", "car"]})
    assert rows == {"A": {"road": 50.0, "car": 25.0}, "B": {"road": 100.0, "car": 0.0}}
    row = report.metrics_row("m", {"pixel_acc": 0.5, "miou": 0.25, "abs": 0.123456789, "delta1": 1.0})
    assert row["pixel acc"] == 50.0 and row["mIoU"] == 25.0 and row["δ<1.25"] == 100.0
    assert row["Abs"] == 0.12346 and np.isnan(row["RMSE"])              # missing → NaN


def test_energy_row_clean_prediction_and_study_sentences():
    gt = np.array([[0, 1], [1, 0]])
    right = np.stack([gt == 0, gt == 1]).astype(np.float32) * 5
    gt_d = np.ones((2, 2), np.float32)
    consistent = _pred(right, right, gt_d.copy(), gt_d.copy())           # both routes agree exactly
    row, maps = report.energy_row("clean", consistent, gt, gt_d, 2, 250, "m")
    assert row["input"] == "clean" and row["seg energy KL (nats)"] == 0.0 and row["depth energy (m)"] == 0.0
    assert row["direct vs transferred disagree (%)"] == 0.0 and row["direct pixel acc (%)"] == 100.0
    assert maps["seg_kl"].shape == (2, 2)
    unlabeled, _ = report.energy_row("x", consistent, None, None, 2, 250, "m")
    assert "direct pixel acc (%)" not in unlabeled
    study = {"seg": {"report": {"auroc": 0.75}}, "depth": {"report": {"spearman": -0.5}}}
    lines = report.study_sentences(study)
    assert "AUROC **0.75**" in lines[0] and "ρ = **-0.50**" in lines[1]
    assert report.study_sentences({"seg": {}, "depth": {}}) == []
    rows = report.study_rows({"seg": {"report": {"auroc": 0.75, "n_pixels": 4}}, "depth": {}})
    assert rows == [{"task": "seg", "auroc": 0.75, "n_pixels": 4.0}]


@pytest.mark.parametrize("source, dataset, k, kind, seg, depth", [
    ("synthetic", "synthetic", 7, "disparity", True, True),        # street samples, demo model
    ("cityscapes", "cityscapes", 19, "disparity", True, True),     # raw ids → 19 train ids
    ("street", "unknown", 7, "disparity", True, True),             # the original's model.pth: read off 7 classes
    ("nyuv2", "nyuv2", 13, "depth", True, True),
    ("indoor", "nyuv2", 13, "depth", True, True),                  # synthetic rooms in the NYUv2 layout
    ("synthetic", "nyuv2", 13, "depth", False, False),             # the case: street sample, NYUv2 model
    ("nyuv2", "cityscapes", 19, "disparity", False, False),
    ("nyuv2", "unknown", 13, "depth", True, True),                 # model.pth with 13 classes
    ("cityscapes", "cityscapes", 5, "disparity", False, False),    # no known label set
    ("cityscapes", "cityscapes", 7, "depth", True, False),         # same classes, another depth reading
    ("mars", "cityscapes", 7, "disparity", False, False),
    (None, "cityscapes", 7, "disparity", False, False),            # an upload
])
def test_labels_fit(source, dataset, k, kind, seg, depth):
    fit = report.labels_fit(source, dataset, k, kind)
    assert (fit.seg, fit.depth) == (seg, depth)
    assert bool(fit) == (seg or depth)
    assert (fit.reason == "") == (seg and depth)        # a reason exactly when something is left out
    assert "\n" not in fit.reason


def test_labels_fit_reason_names_both_label_sets():
    r = report.labels_fit("synthetic", "nyuv2", 13, "depth").reason
    assert "Cityscapes" in r and "13 NYUv2" in r and "metres" in r
    assert report.labels_fit("nyuv2", "synthetic", 7).depth is False     # depth kind follows the dataset
    assert report.model_label_set("synthetic", 19) == "cityscapes" and report.model_label_set("nyuv2", 7) is None


def test_single_task_predictions_have_no_energy_and_score_their_task():
    rng = np.random.default_rng(1)
    depth = rng.random((4, 4)).astype(np.float32) + 0.5
    stl = SimpleNamespace(seg_logits=None, seg_t_logits=None, depth=depth, depth_t=None)
    assert not report.has_energy(stl)
    gt_seg, gt_depth = np.zeros((4, 4), np.int64), depth + 1.0
    m = report.evaluate_predictions([stl], [gt_seg], [gt_depth], 2, 250)
    assert m["abs"] == pytest.approx(1.0) and np.isnan(m["pixel_acc"])
    study = report.energy_error_study([stl], [gt_seg], [gt_depth], 250)
    assert study == {"depth": {}, "seg": {}}
    row, maps = report.energy_row("clean", stl, gt_seg, gt_depth, 2, 250, "m")
    assert maps == {} and row == {"input": "clean", "direct depth Abs (m)": 1.0}
