"""xtask_app.ui.baseline: the sentences, the sweep figure and both renderings (AppTest.from_function)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from xtask_app.ui import baseline as ui


def _study(e, h):
    return pd.DataFrame({"score": ["seg_energy", "entropy", "one_minus_maxprob"], "auroc": [e, h, h]})


def test_verdict_says_which_way_it_falls():
    assert "energy finds the wrong pixels better" in ui.verdict(_study(0.95, 0.80))
    assert "own confidence (entropy) finds the wrong pixels better" in ui.verdict(_study(0.86, 0.95))
    assert "about equally" in ui.verdict(_study(0.90, 0.905))
    assert "nothing to rank" in ui.verdict(_study(math.nan, math.nan))
    assert "ground truth" in ui.verdict(pd.DataFrame())


def _sweep(e0, e1, h0, h1):
    return pd.DataFrame({"strength": [0.0, 1.0], "error_rate": [0.05, 0.30], "seg_energy": [0.1, 0.5],
                         "entropy": [0.1, 0.4], "auroc_energy": [e0, e1], "auroc_entropy": [h0, h1]})


def test_sweep_sentence_and_figure():
    s = ui.sweep_sentence(_sweep(0.85, 0.80, 0.95, 0.70), "noise")
    assert "5.0% → 30.0%" in s and "0.850 → 0.800" in s and "the energy holds up better" in s
    assert "does not hold up better" in ui.sweep_sentence(_sweep(0.85, 0.60, 0.95, 0.90), "blur")
    assert "ground truth" in ui.sweep_sentence(_sweep(math.nan, 0.6, 0.9, 0.9), "blur")
    fig = ui.sweep_figure(_sweep(0.85, 0.80, 0.95, 0.70), "noise")
    assert [t.name for t in fig.data] == ["AUROC: energy", "AUROC: entropy (baseline)", "wrong pixels (share)"]


def _app():
    from types import SimpleNamespace

    import numpy as np
    import streamlit as st

    from xtask_app.ui import baseline as ui

    def predict(img):   # logits from the image: darker → less sure; transferred route disagrees on the right
        m = float(img.mean()) / 255.0
        s = np.zeros((2, 4, 6))
        s[0] = np.linspace(-1, 3, 6)[None] * m
        t = s.copy()
        t[:, :, 3:] = t[::-1, :, 3:]
        return SimpleNamespace(seg_logits=s, seg_t_logits=t)

    rgb = np.full((4, 6, 3), 220, np.uint8)
    gt = np.zeros((4, 6), np.int64)
    gt[:, :3] = 1          # column 2 is predicted class 0: wrong pixels to find
    ui.pixel_baseline([predict(rgb)], [gt], 250, "toy", "t")
    sweep = ui.corruption_baseline(predict, rgb, gt, 250, "sw")
    st.session_state["rows"] = len(sweep)


def test_renderings_in_an_app():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_function(_app, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.session_state["rows"] == len(ui.STRENGTHS)
    assert any("AUROC" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert list(table["score"]) == list(ui.pixel_study.__globals__["PIXEL_SCORES"].values())
    assert np.isfinite(table["AUROC (wrong pixels)"]).all()
