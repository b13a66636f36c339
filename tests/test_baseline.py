"""The confidence baseline beside the energy (xtask_core.evaluate.baseline): values worked by hand."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from xtask_core.evaluate import baseline


def _logits(*pixels):
    """C×1×N logits from per-pixel class-logit lists."""
    return np.asarray(pixels, np.float64).T[:, None, :]


def test_pixel_scores_by_hand():
    # pixel 1: direct p = (½, ½), transferred the same; pixel 2: p = (¾, ¼), q = (¼, ¾)
    s = _logits([0.0, 0.0], [math.log(3), 0.0])
    t = _logits([0.0, 0.0], [0.0, math.log(3)])
    sc = baseline.pixel_scores(s, t)
    assert sc["seg_energy"][0] == pytest.approx([0.0, 0.5 * math.log(3)], abs=1e-12)   # ¾ln3 + ¼ln⅓
    assert sc["entropy"][0] == pytest.approx([math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))])
    assert sc["one_minus_maxprob"][0] == pytest.approx([0.5, 0.25])


def test_pixel_scores_matches_the_metrics_energy():
    import torch

    from xtask_core.evaluate.metrics import consistency_energy
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 4, 6)), rng.normal(size=(5, 4, 6))
    e = consistency_energy(torch.tensor(s[None]), torch.tensor(t[None]), torch.zeros(1, 4, 6), torch.zeros(1, 4, 6))
    assert baseline.pixel_scores(s, t)["seg_energy"] == pytest.approx(e["seg_kl"][0].numpy(), abs=1e-5)
    with pytest.raises(ValueError):
        baseline.pixel_scores(s, t[:, :2])


def test_pixel_study_energy_finds_errors_entropy_does_not():
    # Two wrong pixels: confident (p = .9 for class 0, truth 1) but the transferred route says class 1.
    # Two right pixels: unsure (p = .6), both routes agree. Void pixel (250) left out.
    wrong, right = [math.log(9), 0.0], [math.log(1.5), 0.0]
    s = _logits(wrong, wrong, right, right, right)
    t = _logits([0.0, math.log(9)], [0.0, math.log(9)], right, right, right)
    gt = np.array([[1, 1, 0, 0, 250]])
    study = baseline.pixel_study([SimpleNamespace(seg_logits=s, seg_t_logits=t)], [gt], 250).set_index("score")
    assert list(study.index) == list(baseline.PIXEL_SCORES)
    assert study.loc["seg_energy", "auroc"] == 1.0 and study.loc["entropy", "auroc"] == 0.0
    assert study.loc["one_minus_maxprob", "auroc"] == 0.0
    assert study.loc["seg_energy", "spearman"] == pytest.approx(1.0)
    assert study.loc["entropy", "spearman"] == pytest.approx(-1.0)
    assert (study["n_pixels"] == 4).all() and (study["error_rate"] == 0.5).all()
    assert study.loc["seg_energy", "ause"] == pytest.approx(0.0, abs=1e-12)
    assert baseline.pixel_study([SimpleNamespace(seg_logits=s, seg_t_logits=t)], [None], 250).empty
    table = baseline.study_table(study.reset_index())
    assert list(table.columns) == ["score", "AUROC (wrong pixels)", "Spearman ρ", "AUSE ↓", "AURG ↑"]


def test_corruption_sweep_rows():
    rgb = np.full((1, 4, 3), 200, np.uint8)
    gt = np.array([[0, 0, 1, 250]])

    def predict(img):  # darker input → the model moves towards class 1 everywhere
        m = float(img.mean()) / 200.0
        s = _logits(*[[2.0 * m, 0.0]] * 4)
        return SimpleNamespace(seg_logits=s, seg_t_logits=np.zeros_like(s))

    df = baseline.corruption_sweep(predict, rgb, gt, 250, "brightness", [0.0, 1.0])
    assert list(df["strength"]) == [0.0, 1.0]
    clean = baseline.pixel_scores(*[predict(rgb).seg_logits, np.zeros((2, 1, 4))])
    assert df["seg_energy"][0] == pytest.approx(clean["seg_energy"].mean())
    assert df["entropy"][0] == pytest.approx(clean["entropy"].mean())
    assert df["error_rate"][0] == pytest.approx(1 / 3)      # class 0 everywhere; one labelled pixel is class 1
    assert df["entropy"][1] > df["entropy"][0]                # darker: less confident
    assert math.isnan(df["auroc_energy"][0]) is False
    no_gt = baseline.corruption_sweep(predict, rgb, None, 250, "noise", [0.5])
    assert math.isnan(no_gt["error_rate"][0]) and math.isnan(no_gt["auroc_entropy"][0])
