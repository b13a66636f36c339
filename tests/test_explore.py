"""xtask_core.explore: folders, discovery, ground truth, one-image metrics, TTNet-only runs."""
from __future__ import annotations

import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from xtask_core import explore
from xtask_core.errors import XTaskError


# --------------------------------------------------------------------------- allowed folders
def test_allowed_roots_from_repo_and_env(tmp_path):
    extra1, extra2 = tmp_path / "a", tmp_path / "b"
    env = {"XTASK_ALLOWED_ROOTS": f"{extra1}{os.pathsep}{extra2}{os.pathsep}",
           "XTASK_CHECKPOINT_DIR": str(tmp_path / "ck")}
    roots = explore.allowed_roots(tmp_path / "repo", env)
    assert roots[:2] == [(tmp_path / "repo" / "checkpoints").resolve(), (tmp_path / "repo" / "runs").resolve()]
    assert extra1.resolve() in roots and extra2.resolve() in roots and (tmp_path / "ck").resolve() in roots
    assert len(roots) == len(set(roots))


def test_resolve_inside_accepts_relative_and_refuses_escapes(tmp_path):
    root = tmp_path / "runs"
    (root / "r1").mkdir(parents=True)
    (root / "r1" / "best.safetensors").write_bytes(b"x")
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    roots = [root.resolve()]
    assert explore.resolve_inside("runs/r1/best.safetensors", roots, tmp_path) == (root / "r1" / "best.safetensors").resolve()
    with pytest.raises(XTaskError, match="outside the allowed folders"):
        explore.resolve_inside("runs/../secret.txt", roots, tmp_path)
    with pytest.raises(XTaskError, match="outside the allowed folders"):
        explore.resolve_inside(str(outside), roots, tmp_path)
    (root / "link").symlink_to(outside)  # a symlink inside a root must not leak a file outside it
    with pytest.raises(XTaskError, match="outside the allowed folders"):
        explore.resolve_inside("runs/link", roots, tmp_path)
    with pytest.raises(XTaskError, match="does not exist"):
        explore.resolve_inside("runs/nope.safetensors", roots, tmp_path)
    with pytest.raises(XTaskError, match="type a path"):
        explore.resolve_inside("  ", roots, tmp_path)


# --------------------------------------------------------------------------- discovery
def test_find_checkpoints_shipped_and_runs(tmp_path):
    ck, runs = tmp_path / "ck", tmp_path / "runs"
    (ck / "demo_run").mkdir(parents=True)
    (ck / "b.safetensors").write_bytes(b"x")
    (ck / "a.pth").write_bytes(b"x")
    (ck / "notes.txt").write_text("x")
    (ck / "demo_run" / "best.safetensors").write_bytes(b"x")
    (runs / "r1").mkdir(parents=True)
    (runs / "r1" / "best.safetensors").write_bytes(b"x")
    (runs / "empty").mkdir()
    found = explore.find_checkpoints(ck, runs)
    assert [c.label for c in found] == ["shipped: a", "shipped: b", "shipped: demo_run", "run: r1"]
    assert found[2].path == ck / "demo_run" / "best.safetensors"
    assert explore.find_checkpoints(tmp_path / "missing", None) == []


def test_find_samples_pairs_ground_truth(tmp_path):
    from tests.app_helpers import write_samples
    write_samples(tmp_path, n=2)
    (tmp_path / "disparity" / "val" / "synth" / "synth_000001_000019_disparity.png").unlink()
    found = explore.find_samples(tmp_path)
    assert [s.name for s in found] == ["val/synth/synth_000000_000019", "val/synth/synth_000001_000019"]
    assert found[0].label is not None and found[0].disparity is not None
    assert found[1].disparity is None and found[1].label is not None
    assert explore.find_samples(tmp_path / "nothing") == []


def test_load_sample_maps_ids_and_decodes_disparity(tmp_path):
    # 2×4 image: raw ids road(7)→flat 0, sky(23)→4, car(26)→vehicle 6, 0 → ignore 250
    for sub in ("leftImg8bit", "gtFine", "disparity"):
        (tmp_path / sub).mkdir()
    img, lab, disp = (tmp_path / "leftImg8bit/x.png", tmp_path / "gtFine/x.png", tmp_path / "disparity/x.png")
    def big(a):  # each cell → a 4×4 block (images must be at least 8 px a side)
        return np.repeat(np.repeat(np.asarray(a), 4, 0), 4, 1)
    cv2.imwrite(str(img), np.full((8, 16, 3), 100, np.uint8))
    cv2.imwrite(str(lab), big(np.array([[7, 7, 23, 23], [26, 26, 0, 0]], np.uint8)))
    cv2.imwrite(str(disp), big(np.array([[0, 0, 257, 257], [65537 // 2, 65537 // 2, 1, 1]], np.uint16)))
    rgb, seg, dep = explore.load_sample(img, lab, disp, num_classes=7, height=2, width=2)
    assert rgb.shape == (8, 16, 3) and rgb.dtype == np.uint8         # image keeps its own size
    np.testing.assert_array_equal(seg, [[0, 4], [6, 250]])           # cells (0,1),(0,3),(1,1),(1,3)
    # p=0 → 0 (invalid); p=257 → 256/65536 = 1/256; p=32768 → 32767/65536 clipped at 0.4922; p=1 → 0
    np.testing.assert_allclose(dep, [[0.0, 1 / 256], [0.4922, 0.0]], rtol=1e-6)
    rgb2, seg2, dep2 = explore.load_sample(img, None, None, 7, 2, 2)
    assert seg2 is None and dep2 is None


def test_load_dataset_item_index_range(tmp_path):
    from tests.app_helpers import write_samples
    write_samples(tmp_path, n=2)
    rgb, seg, dep = explore.load_dataset_item("synthetic", tmp_path, "val", 1, 7, 32, 64)
    assert rgb.shape == (32, 64, 3) and rgb.dtype == np.uint8
    assert seg.shape == dep.shape == (32, 64) and seg.dtype == np.int64
    with pytest.raises(XTaskError, match="out of range"):
        explore.load_dataset_item("synthetic", tmp_path, "val", 2, 7, 32, 64)
    with pytest.raises(XTaskError, match="unknown dataset"):
        explore.load_dataset_item("kitti", tmp_path, "val", 0, 7, 32, 64)


# --------------------------------------------------------------------------- metrics and maps
def test_image_metrics_hand_computed():
    logits = np.zeros((2, 1, 4), np.float32)
    logits[1, 0, 2:] = 1.0                      # predicts [0, 0, 1, 1]
    gt = np.array([[0, 1, 1, 250]])
    depth = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    gt_depth = np.array([[1.0, 1.0, 0.0, 2.0]], np.float32)
    m = explore.image_metrics(logits, depth, gt, gt_depth, 2, 250)
    assert m["pixel_acc"] == pytest.approx(2 / 3)          # 3 labelled pixels, 2 right
    assert m["miou"] == pytest.approx((1 / 2 + 1 / 2) / 2)  # class 0: 1/(1+1); class 1: 1/(1+1)
    assert m["abs"] == pytest.approx((0 + 1 + 2) / 3)       # the 0-depth pixel is invalid
    m2 = explore.image_metrics(logits, None, gt, None, 2, 250)
    assert np.isnan(m2["abs"]) and m2["pixel_acc"] == pytest.approx(2 / 3)
    row = explore.metrics_row("direct", m)
    assert row["model"] == "direct" and row["pixel acc"] == pytest.approx(66.67) and row["Abs"] == 1.0


def test_depth_range_ignores_invalid_and_is_shared():
    a = np.array([[0.0, 1.0], [2.0, np.inf]])
    b = np.array([[3.0, np.nan]])
    lo, hi = explore.depth_range([a, b, None])
    assert 1.0 <= lo < 1.1 and 2.9 < hi <= 3.0
    assert explore.depth_range([np.zeros((2, 2))]) == (0.0, 1.0)


def test_pinhole_intrinsics_by_depth_kind():
    from xtask_core.data.cityscapes import CITYSCAPES_FX
    # metres: 60° field of view → f = (w/2)/tan(30°); principal point at the pixel centre
    fx, fy, cx, cy = explore.pinhole_intrinsics("depth", 4, 8)
    assert fx == fy == pytest.approx(4.0 / np.tan(np.radians(30))) and (cx, cy) == (3.5, 1.5)
    # disparity: Cityscapes focal length scaled from 2048 px to this width
    assert explore.pinhole_intrinsics("disparity", 128, 256)[0] == pytest.approx(CITYSCAPES_FX / 8)
    with pytest.raises(XTaskError):
        explore.pinhole_intrinsics("normals", 4, 8)


def test_metric_depth_converts_disparity_and_drops_unusable():
    from xtask_core.data.cityscapes import CITYSCAPES_BASELINE, CITYSCAPES_FX
    disp = np.array([[0.05, 0.0], [-1.0, 1e-4]], np.float32)
    z = explore.metric_depth(disp, "disparity", max_metres=80.0)
    # 0.05 model units = 12.8 px of disparity → baseline·fx / 12.8 ≈ 37 m
    assert z[0, 0] == pytest.approx(CITYSCAPES_BASELINE * CITYSCAPES_FX / (0.05 * 256), rel=1e-5)
    assert np.isnan(z[0, 1]) and np.isnan(z[1, 0])            # invalid (0) and negative
    assert np.isnan(z[1, 1])                                   # 1e-4 → ~18 km, beyond 80 m
    m = explore.metric_depth(np.array([[2.0, 0.0, np.inf]]), "depth")
    assert m[0, 0] == 2.0 and np.isnan(m[0, 1:]).all()
    with pytest.raises(XTaskError):
        explore.metric_depth(disp, "normals")


def test_metric_depth_feeds_the_core_point_cloud():
    # 2×4 metres map, one invalid pixel: the core builder back-projects with our intrinsics
    from xtask_core.viz import figures
    depth = np.full((2, 4), 2.0, np.float32)
    depth[0, 1] = 0.0
    fx, fy, cx, cy = explore.pinhole_intrinsics("depth", 2, 4)
    fig = figures.point_cloud_figure(explore.metric_depth(depth, "depth"), np.zeros((2, 4, 3), np.uint8),
                                     intrinsics=(fx, fy, cx, cy), stride=1)
    tr = fig.data[0]
    assert len(tr.x) == 7 and set(tr.y) == {2.0}                 # y axis = forward distance
    assert tr.x[0] == pytest.approx((0 - 1.5) * 2.0 / fx)        # pixel (v=0, u=0)


def test_energy_scale_is_fixed_on_the_clean_map():
    clean = np.arange(101, dtype=np.float64)                     # 99th percentile = 99
    assert explore.energy_scale(clean) == pytest.approx(297.0)
    assert explore.energy_scale(clean, factor=1.0, q=50) == pytest.approx(50.0)
    assert explore.energy_scale(np.zeros((3, 3))) == 1e-6 and explore.energy_scale(np.array([np.nan])) == 1e-6


def test_wipe_and_corruptions():
    a = np.zeros((2, 10, 3), np.uint8)
    b = np.full((2, 10, 3), 9, np.uint8)
    w = explore.wipe(a, b, 0.5)
    assert (w[:, :4] == 9).all() and (w[:, 4:6] == 255).all() and (w[:, 6:] == 0).all()
    assert (explore.wipe(a, b, 0.0) == a).all() and (explore.wipe(a, b, 1.0) == b).all()
    with pytest.raises(XTaskError):
        explore.wipe(a, b[:1], 0.5)
    img = np.full((16, 16, 3), 200, np.uint8)
    same = explore.apply_corruptions(img, {"noise": 0.0, "brightness": 0.0})
    assert (same == img).all() and same is not img
    dark = explore.apply_corruptions(img, {"brightness": 1.0})
    assert dark.max() == 20                                       # ×0.1 at full strength


# --------------------------------------------------------------------------- transfer nets alone
def test_transfer_from_ground_truth_feeds_scaled_one_hot(tiny_model):
    seen = {}
    orig_s2d, orig_d2s = tiny_model.trans_s2d.forward, tiny_model.trans_d2s.forward

    def s2d(x):
        seen["s2d"] = x.clone()
        return orig_s2d(x)

    def d2s(x):
        seen["d2s"] = x.clone()
        return orig_d2s(x)

    tiny_model.trans_s2d.forward, tiny_model.trans_d2s.forward = s2d, d2s
    gt = np.zeros((64, 64), np.int64)
    gt[:, 32:] = 3
    gt[0, 0] = 250                                               # void → all-zero logits
    gt_depth = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    out = explore.transfer_from_ground_truth(tiny_model, gt, gt_depth, 7, 250)
    x = seen["s2d"][0]
    assert x.shape == (7, 64, 64)
    assert x[3, 5, 40] == explore.GT_LOGIT_SCALE and x[0, 5, 40] == 0 and x[0, 5, 5] == explore.GT_LOGIT_SCALE
    assert (x[:, 0, 0] == 0).all()
    torch.testing.assert_close(seen["d2s"][0, 0], torch.from_numpy(gt_depth))
    assert out["depth_from_gt_seg"].shape == (64, 64) and out["seg_from_gt_depth"].shape == (7, 64, 64)
    none = explore.transfer_from_ground_truth(tiny_model, None, None, 7, 250)
    assert none == {"depth_from_gt_seg": None, "seg_from_gt_depth": None}


# --------------------------------------------------------------------------- pooled studies
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
    study = explore.energy_error_study([p, p], [None, None], [gt_d, gt_d], 250)
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
    m = explore.evaluate_predictions([p, p], [gt, gt], [gt_d, gt_d], 2, 250)
    assert m["miou"] == 1.0 and m["abs"] == 0.0 and m["n_images"] == 2
    mt = explore.evaluate_predictions([p], [gt], [gt_d], 2, 250, transferred=True)
    assert mt["pixel_acc"] == 0.0 and mt["abs"] == pytest.approx(1.0)
