"""Δm% against values worked by hand; the metric-direction registry."""
from __future__ import annotations

import math

import pytest

from xtask_core.errors import XTaskError
from xtask_core.evaluate.delta_m import (
    DELTA_M_METRICS,
    DEPTH_METRICS,
    HIGHER_IS_BETTER,
    SEG_METRICS,
    combine_baselines,
    delta_m,
    delta_m_terms,
    higher_is_better,
)


def test_default_set_worked_by_hand():
    mtl = {"miou": 0.66, "pixel_acc": 0.90, "abs": 0.012, "abs_rel": 0.20}
    stl = {"miou": 0.60, "pixel_acc": 0.90, "abs": 0.015, "abs_rel": 0.25}
    # miou: +(0.66-0.60)/0.60 = +10 %; pixel_acc: 0 %;
    # abs: -(0.012-0.015)/0.015 = +20 %; abs_rel: -(0.20-0.25)/0.25 = +20 %; mean = 50/4
    terms = delta_m_terms(mtl, stl)
    assert terms == pytest.approx({"miou": 10.0, "pixel_acc": 0.0, "abs": 20.0, "abs_rel": 20.0})
    assert delta_m(mtl, stl) == pytest.approx(12.5)


def test_worse_model_is_negative_and_metric_choice_is_honoured():
    mtl = {"miou": 0.5, "rmse": 6.0, "delta1": 0.9}
    stl = {"miou": 0.625, "rmse": 5.0, "delta1": 0.8}
    # miou: (0.5-0.625)/0.625 = -20 %; rmse: -(6-5)/5 = -20 %; delta1: (0.9-0.8)/0.8 = +12.5 %
    assert delta_m(mtl, stl, ("miou", "rmse", "delta1")) == pytest.approx(-27.5 / 3)
    assert delta_m(stl, stl, ("miou", "rmse", "delta1")) == 0.0


def test_unusable_metrics_are_left_out():
    mtl = {"miou": 0.7, "pixel_acc": float("nan"), "abs": 0.1, "abs_rel": 0.3}
    stl = {"miou": 0.7 / 1.1, "pixel_acc": 0.9, "abs": 0.0}  # abs 0: no relative change; abs_rel absent
    terms = delta_m_terms(mtl, stl)
    assert list(terms) == ["miou"] and terms["miou"] == pytest.approx(10.0)
    assert math.isnan(delta_m({}, stl))


def test_combine_baselines_takes_each_task_from_its_own_net():
    seg_net = {"miou": 0.6, "pixel_acc": 0.9, "miou_per_image": 0.55, "abs": float("nan")}
    depth_net = {"miou": float("nan"), "abs": 0.02, "abs_rel": 0.3, "rmse": 0.05}
    assert combine_baselines(seg_net, depth_net) == {"miou": 0.6, "pixel_acc": 0.9, "miou_per_image": 0.55,
                                                     "abs": 0.02, "abs_rel": 0.3, "rmse": 0.05}


def test_direction_registry():
    assert set(SEG_METRICS) | set(DEPTH_METRICS) | {"loss"} == set(HIGHER_IS_BETTER)
    assert set(DELTA_M_METRICS) <= set(HIGHER_IS_BETTER)
    assert [higher_is_better(k) for k in ("miou", "delta3", "abs_rel", "rmse", "loss")] == [
        True, True, False, False, False]
    with pytest.raises(XTaskError, match="no direction known for metric 'psnr'"):
        higher_is_better("psnr")
    with pytest.raises(XTaskError, match="psnr"):
        delta_m({"psnr": 1.0}, {"psnr": 2.0}, ("psnr",))
