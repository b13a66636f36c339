"""Predictor.autotune_in_background: the measurement runs in a thread, forwards never wait for it.

The measurement is a fake ``autotune.choose`` (no timings) that the test holds or lets go."""
from __future__ import annotations

import threading
import weakref

import pytest
import torch

from tests.tiny import tiny_model_config
from xtask_core.inference import autotune as tuning
from xtask_core.inference.autotune import Decision, DecisionCache
from xtask_core.inference.predictor import Predictor

X = torch.zeros(1, 3, 64, 64)


@pytest.fixture
def tiny():
    from xtask_core.model import XTaskNet

    torch.manual_seed(0)
    return XTaskNet(tiny_model_config()).eval()


class HeldChoose:
    """A fake measurement: signals ``started``, waits for ``release``, then picks "folded"
    (or raises ``error``). ``calls`` counts the measurements."""

    def __init__(self, error: Exception | None = None):
        self.started, self.release, self.calls, self.error = threading.Event(), threading.Event(), 0, error

    def __call__(self, candidates, reference, **kw):
        self.calls += 1
        self.started.set()
        assert self.release.wait(60), "the test never released the measurement"
        if self.error is not None:
            raise self.error
        return Decision("folded", {"eager": 2.0, "folded": 1.0}, {}, 1, "fake")


@pytest.fixture
def held(monkeypatch):
    monkeypatch.delenv("XTASK_INFER_PATH", raising=False)
    DecisionCache.clear_memory()
    fake = HeldChoose()
    monkeypatch.setattr(tuning, "choose", fake)
    yield fake
    fake.release.set()  # never leave a thread waiting
    DecisionCache.clear_memory()


def _plain(model, x):
    with torch.no_grad():
        return model(x)


def test_a_forward_during_the_measurement_runs_the_reference_at_once(tiny, held, tmp_path):
    p = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    first = p.autotune_in_background()  # the config's 64x64, batch 1
    assert first.source == "pending" and first.name == "eager"
    assert held.started.wait(30)  # the thread is inside the (held) measurement
    out = p.forward(X)  # returns although the measurement has not finished
    assert all(torch.equal(a, b) for a, b in zip(out, _plain(tiny, X), strict=True))  # exact, plain eager
    assert p.route.source == "pending" and p.route.name == "eager" and p.bn_folded == 0
    assert p.wait_for_route(timeout=0.01) is None  # still measuring
    assert p.autotune_in_background() is first  # no second thread for the same shape
    held.release.set()
    route = p.wait_for_route(timeout=60)
    assert route is not None and route.name == "folded" and route.source == "measured"
    assert "1 reference forward(s) ran alongside" in route.reason
    p.forward(X)
    assert p.route.name == "folded" and p.bn_folded > 0 and held.calls == 1
    assert not p._threads[(1, 3, 64, 64)].is_alive()


def test_a_cached_decision_is_used_at_once_without_a_thread(tiny, held, tmp_path):
    held.release.set()
    Predictor(tiny, device="cpu", cache_dir=tmp_path).autotune()  # measured in the foreground, saved
    assert held.calls == 1
    DecisionCache.clear_memory()  # as in a new process: the decision comes from the file
    q = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    route = q.autotune_in_background((64, 64))
    assert route.source == "cached" and route.name == "folded" and q._threads == {}
    q.forward(X)
    assert q.route.name == "folded" and held.calls == 1
    # forced paths and fast=False start nothing either
    forced = Predictor(tiny, device="cpu", path="channels_last", cache_dir=tmp_path)
    assert forced.autotune_in_background().source == "forced" and forced._threads == {}
    ref = Predictor(tiny, device="cpu", fast=False, cache_dir=tmp_path)
    assert ref.autotune_in_background().source == "reference" and ref._threads == {}
    assert held.calls == 1
    # deferred with a cached decision: the reference runs until the thread has built the choice
    DecisionCache.clear_memory()
    d = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    pending = d.autotune_in_background((64, 64), start=False)
    assert pending.source == "pending" and "cached choice (folded)" in pending.reason and d.bn_folded == 0
    d.forward(X)
    assert d.route.name == "eager" and d.bn_folded == 0
    d.autotune_in_background((64, 64))
    route = d.wait_for_route(timeout=60)
    assert route.source == "cached" and route.name == "folded" and "folded" in d._runners and held.calls == 1


def test_a_failing_background_measurement_stays_on_the_reference(tiny, held, tmp_path):
    held.error = RuntimeError("boom")
    p = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    p.autotune_in_background()
    held.release.set()
    route = p.wait_for_route(timeout=60)
    assert route.name == "eager" and route.source == "reference"
    assert route.fallback == "measurement raised RuntimeError: boom"
    out = p.forward(X)  # a later forward neither crashes nor measures again
    assert all(torch.equal(a, b) for a, b in zip(out, _plain(tiny, X), strict=True))
    assert p.route.fallback == route.fallback and held.calls == 1
    assert not (tmp_path / tuning.CACHE_FILE).exists()  # a failed measurement is not cached


def test_a_foreground_autotune_waits_for_the_background_one(tiny, held, tmp_path):
    p = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    p.autotune_in_background()
    assert held.started.wait(30)
    threading.Timer(0.2, held.release.set).start()
    assert p.autotune().name == "folded" and held.calls == 1  # its result, not a second measurement


def test_deferred_measurement_starts_when_asked_or_waited_for(tiny, held, tmp_path):
    p = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    first = p.autotune_in_background(start=False)
    assert first.source == "pending" and not held.started.wait(0.3)   # marked, not measuring
    out = p.forward(X)                                                 # the reference, at once
    assert all(torch.equal(a, b) for a, b in zip(out, _plain(tiny, X), strict=True))
    assert p.autotune_in_background() is first and held.started.wait(30)   # now it measures
    held.release.set()
    assert p.wait_for_route(timeout=60).name == "folded" and held.calls == 1
    q = Predictor(tiny, device="cpu", cache_dir=tmp_path / "other")
    q.autotune_in_background(start=False)
    assert q.autotune().name == "folded" and held.calls == 2          # waiting starts it: no hang


def test_the_app_measures_after_the_first_prediction(held, tmp_path, monkeypatch):
    import types

    import streamlit as st

    from tests.app_helpers import write_checkpoint
    from xtask_app import cache

    monkeypatch.setenv("XTASK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "BACKGROUND_DELAY_S", 0.05)
    monkeypatch.setattr(cache, "_scheduled_predictors", weakref.WeakSet())
    path = write_checkpoint(tmp_path / "tiny.safetensors", seed=0, name="tiny")
    st.cache_resource.clear()
    try:
        loaded, predictor = cache.get_model(path)  # the load itself starts no measurement
        shape = (1, 3, loaded.config.height, loaded.config.width)
        assert predictor.route.source == "pending" and not held.started.wait(0.3)
        rgb = torch.randint(0, 255, (loaded.config.height, loaded.config.width, 3), dtype=torch.uint8).numpy()
        pred = cache.predict(types.SimpleNamespace(path=path, predictor=predictor), rgb, "img")
        assert pred.seg.shape == (loaded.config.height, loaded.config.width)   # the reference's answer
        assert held.started.wait(30)            # then, shortly after, the measurement
        held.release.set()
        route = predictor.wait_for_route(timeout=60)
        assert route.name == "folded" and route.source == "measured" and predictor.routes[shape] is route
    finally:
        st.cache_resource.clear()
