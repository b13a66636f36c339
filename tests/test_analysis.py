"""Error analysis on hand-made maps with hand-computed answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xtask_core.errors import XTaskError
from xtask_core.evaluate import analysis as A


def test_depth_error_maps_hand_values():
    pred = torch.tensor([[[[2.0, 1.0], [4.0, 9.0]]]])       # N×1×H×W tensor
    target = np.array([[[[1.0, 2.0], [0.0, np.nan]]]])       # 0 and NaN = no measurement
    m = A.depth_error_maps(pred, target)
    assert m["abs"].shape == (1, 2, 2)
    np.testing.assert_array_equal(m["valid"][0], [[True, True], [False, False]])
    np.testing.assert_allclose(m["abs"][0, 0], [1.0, 1.0])
    np.testing.assert_allclose(m["rel"][0, 0], [1.0, 0.5])   # 1/1, 1/2
    np.testing.assert_allclose(m["signed"][0, 0], [1.0, -1.0])
    assert np.isnan(m["abs"][0, 1]).all() and np.isnan(m["rel"][0, 1]).all()
    extra = A.depth_error_maps(pred, target, valid=np.array([[[[True, False], [True, True]]]]))
    assert extra["valid"][0].sum() == 1


def test_seg_error_logits_and_by_class():
    target = np.array([[0, 0, 1, 1], [2, 2, 250, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 2, 2]])
    logits = np.eye(3, dtype=np.float32)[pred].transpose(2, 0, 1)    # 3×H×W
    m = A.seg_error_map(logits, target, 250)
    np.testing.assert_array_equal(m["pred"], pred)
    np.testing.assert_array_equal(m["wrong"], [[0, 1, 0, 0], [1, 1, 0, 1]])
    assert not m["valid"][1, 2]
    df = A.error_by_class(pred, target, 3, 250, ["road", "car", "sky"])
    assert list(df["pixels"]) == [2, 3, 2]
    assert list(df["wrong"]) == [1, 1, 2]
    np.testing.assert_allclose(df["error_rate"], [0.5, 1 / 3, 1.0])
    assert list(df["confused_with"]) == ["car", "sky", "road"]
    assert df.loc[2, "confused_share"] == 1.0


def test_disagreement_and_energy_maps():
    seg = torch.zeros(2, 3, 4, 4)
    seg[:, 0] = 5.0                      # direct: class 0 everywhere
    seg_t = seg.clone()
    seg_t[0, :, 1, 2] = torch.tensor([0.0, 5.0, 0.0])   # transferred disagrees at one pixel
    depth = torch.ones(2, 1, 4, 4)
    depth_t = depth.clone()
    depth_t[1, 0, 3, 3] = 3.0
    e = A.energy_maps(seg, seg_t, depth, depth_t)
    assert e["seg_kl"].shape == (2, 4, 4) and e["disagree"].dtype == bool
    assert e["disagree"].sum() == 1 and e["disagree"][0, 1, 2]
    assert e["seg_kl"][0, 1, 2] > 1.0 and e["seg_kl"][0, 0, 0] == pytest.approx(0.0, abs=1e-6)
    assert e["depth_abs"][1, 3, 3] == pytest.approx(2.0)
    assert e["depth_abs_mean"] == pytest.approx(2.0 / 32)
    single = A.energy_maps(seg[0].numpy(), seg_t[0].numpy(), depth[0].numpy(), depth_t[0].numpy())
    assert single["seg_kl"].shape == (4, 4)
    np.testing.assert_allclose(single["seg_kl"], e["seg_kl"][0], atol=1e-6)


def test_sparsification_oracle_and_random():
    rng = np.random.default_rng(0)
    error = rng.gamma(2.0, 1.0, (64, 64))
    perfect = A.sparsification(error, error)
    assert perfect["ause"] == pytest.approx(0.0, abs=1e-12)
    assert perfect["aurg"] > 0
    rand = A.sparsification(error, rng.random((64, 64)))
    assert rand["ause"] > 0.3 and abs(rand["aurg"]) < 0.1
    # the oracle curve starts at the mean error and only decreases
    assert perfect["oracle_curve"][0] == pytest.approx(error.mean())
    assert np.all(np.diff(perfect["oracle_curve"]) <= 1e-12)
    # reversed energy is worse than random
    assert A.sparsification(error, -error)["aurg"] < 0


def test_sparsification_hand_example():
    # errors 4,3,2,1 ; energy ranks them 1,2,3,4 (exactly backwards); 2 steps: f = 0, 0.5
    err = np.array([4.0, 3.0, 2.0, 1.0])
    sp = A.sparsification(err, np.array([1.0, 2.0, 3.0, 4.0]), n_steps=2)
    np.testing.assert_allclose(sp["oracle_curve"], [2.5, 1.5])    # drop 4,3 → mean(2,1)
    np.testing.assert_allclose(sp["energy_curve"], [2.5, 3.5])    # drop 1,2 → mean(4,3)
    assert sp["ause"] == pytest.approx(0.5 * (0 + 2.0) / 2)       # trapezoid over [0, 0.5]
    empty = A.sparsification(err, err, valid=np.zeros(4, bool))
    assert empty["n_pixels"] == 0 and np.isnan(empty["ause"])


def test_rank_statistics():
    np.testing.assert_array_equal(A.rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
    assert A.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert A.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(A.spearman([1, 1, 1], [1, 2, 3]))
    assert A.auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert A.auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    # one tie between a positive and a negative counts one half: (1 + 0.5 + 1 + 1) / 4
    assert A.auroc([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(0.875)
    assert np.isnan(A.auroc([1, 2], [1, 1]))


def test_binned_error_and_report():
    energy = np.arange(100, dtype=float)
    error = energy * 2
    df = A.binned_error(error, energy, n_bins=4)
    assert list(df["count"]) == [25] * 4
    np.testing.assert_allclose(df["error_mean"], [24, 74, 124, 174])
    assert df.loc[0, "energy_lo"] == 0 and df.loc[3, "energy_hi"] == 99
    rep = A.energy_error_report(energy, error, wrong=error > 150)
    assert rep["spearman"] == pytest.approx(1.0) and rep["auroc"] == 1.0
    assert rep["ause"] == pytest.approx(0.0) and rep["n_pixels"] == 100
    assert A.binned_error(error, energy, valid=np.zeros(100, bool)).empty


@pytest.mark.parametrize("kind", list(A.CORRUPTIONS))
def test_corruptions(kind):
    rgb = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    same = A.corrupt(rgb, kind, 0.0)
    np.testing.assert_array_equal(same, rgb)
    out = A.corrupt(rgb, kind, 0.8, seed=3)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() > 5
    np.testing.assert_array_equal(out, A.corrupt(rgb, kind, 0.8, seed=3))   # reproducible


def test_corruption_details_and_errors():
    rgb = np.full((10, 10, 3), 200, np.uint8)
    np.testing.assert_array_equal(A.corrupt(rgb, "brightness", 1.0), np.full((10, 10, 3), 20))
    occ = A.corrupt(rgb, "occlusion", 1.0, seed=0)
    assert (occ == 128).all(axis=2).sum() == 7 * 7       # round(10·√0.5)² pixels
    flat = A.corrupt(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8),
                     "contrast", 1.0)
    assert np.ptp(flat[..., 0]) == 0
    with pytest.raises(XTaskError, match="unknown corruption 'fog'.*noise"):
        A.corrupt(rgb, "fog", 0.5)
    with pytest.raises(XTaskError, match=r"strength must be in \[0, 1\]"):
        A.corrupt(rgb, "noise", 1.5)
