"""Inference paths chosen by measurement: an injected clock and fake candidates, no real timings."""
from __future__ import annotations

import pytest
import torch

from tests.tiny import tiny_model_config
from xtask_core.errors import XTaskError
from xtask_core.inference import autotune as tuning
from xtask_core.inference.autotune import Decision, DecisionCache, choose, output_checks
from xtask_core.inference.predictor import Predictor, probe_input


class FakeClock:
    """A clock that only moves when a fake candidate 'runs'."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _outputs(seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    seg = torch.randn(1, 7, 8, 8, generator=g)
    depth = torch.rand(1, 1, 8, 8, generator=g) + 0.5
    return seg * scale, seg.clone(), depth * scale, depth.clone()


REF = _outputs()


def _fake(clock: FakeClock, cost_s: float, out=REF, calls: list | None = None, name: str = ""):
    """A builder whose runner advances ``clock`` by ``cost_s`` and returns ``out``."""
    def build():
        def run():
            clock.t += cost_s
            if calls is not None:
                calls.append(name)
            return out
        return run
    return build


def test_the_fastest_is_chosen_and_the_slowest_never():
    clock = FakeClock()
    cands = {"eager": _fake(clock, 0.30), "slow": _fake(clock, 0.90), "quick": _fake(clock, 0.10),
             "middle": _fake(clock, 0.20)}
    d = choose(cands, "eager", clock=clock, budget_s=5.0)
    assert d.chosen == "quick" and d.chosen != "slow"
    assert d.times_ms["quick"] == pytest.approx(100.0) and d.times_ms["eager"] == pytest.approx(300.0)
    assert d.rejected["slow"].startswith("slower")  # pruned after its first timings
    assert d.rounds >= 2


def test_rounds_alternate_and_slow_models_get_fewer():
    clock, calls = FakeClock(), []
    cands = {n: _fake(clock, c, calls=calls, name=n) for n, c in (("eager", 0.01), ("a", 0.011), ("b", 0.012))}
    d = choose(cands, "eager", clock=clock, budget_s=10.0, max_rounds=3)
    assert calls[3:] == ["eager", "a", "b", "b", "a", "eager", "eager", "a", "b"]  # after the 3 checks
    assert d.rounds == 3
    clock = FakeClock()
    slow = {n: _fake(clock, 0.8) for n in ("eager", "a", "b")}
    assert choose(slow, "eager", clock=clock, budget_s=1.5).rounds == 1  # a second round would not fit


def test_an_inaccurate_candidate_is_rejected():
    clock = FakeClock()
    wrong = _outputs(seed=5)  # other classes everywhere
    off_depth = (REF[0], REF[1], REF[2] * 1.5, REF[3])
    cands = {"eager": _fake(clock, 0.3), "wrong": _fake(clock, 0.01, out=wrong),
             "off": _fake(clock, 0.01, out=off_depth), "ok": _fake(clock, 0.2)}
    d = choose(cands, "eager", clock=clock)
    assert d.chosen == "ok"
    assert d.rejected["wrong"].startswith("inaccurate: seg agreement")
    assert d.rejected["off"].startswith("inaccurate: depth rel diff")
    assert "wrong" not in d.times_ms


def test_a_candidate_that_raises_is_skipped_and_all_failing_falls_back():
    clock = FakeClock()

    def broken_build():
        raise RuntimeError("no such op")

    def broken_run():
        def run():
            raise ValueError("bad shape")
        return run

    cands = {"eager": _fake(clock, 0.3), "b1": broken_build, "b2": broken_run}
    d = choose(cands, "eager", clock=clock)
    assert d.chosen == "eager"
    assert d.rejected == {"b1": "raised RuntimeError: no such op", "b2": "raised ValueError: bad shape"}
    # reference given as outputs: no candidate passes → the fallback, or an XTaskError without one
    only_broken = {"b1": broken_build, "b2": broken_run}
    assert choose(only_broken, REF, clock=clock, fallback="eager").chosen == "eager"
    with pytest.raises(XTaskError, match="no inference path ran correctly"):
        choose(only_broken, REF, clock=clock)


def test_the_set_up_budget_stops_building_more_candidates():
    clock, built = FakeClock(), []

    def slow_build(name):
        def build():
            built.append(name)
            clock.t += 2.0  # e.g. tracing a large model
            return lambda: REF
        return build

    cands = {"eager": _fake(clock, 0.1), "t1": slow_build("t1"), "t2": slow_build("t2")}
    d = choose(cands, "eager", clock=clock, budget_s=0.5, setup_s=1.0)
    assert built == ["t1"] and d.rejected["t2"].startswith("not measured")


def test_a_reference_slower_than_the_budget_still_meets_one_alternative():
    # a busy machine: the plain reference alone takes longer than the whole set-up budget
    clock, calls = FakeClock(), []
    cands = {n: _fake(clock, c, calls=calls, name=n) for n, c in (("eager", 3.0), ("fast", 1.0), ("other", 0.5))}
    d = choose(cands, "eager", clock=clock, budget_s=0.5, setup_s=1.0, setup_calls=0)  # a budget in seconds only
    assert d.chosen == "fast" and "fast" in d.times_ms  # not left with the reference only
    assert d.rejected["other"].startswith("not measured") and not d.complete
    broken = {"eager": _fake(clock, 3.0), "bad": _fake(clock, 0.1, out=_outputs(seed=5)), "ok": _fake(clock, 1.0)}
    d = choose(broken, "eager", clock=clock, budget_s=0.5, setup_s=1.0, setup_calls=0)
    assert d.chosen == "ok" and d.rejected["bad"].startswith("inaccurate")  # the next one is tried instead
    assert d.complete


def test_the_set_up_budget_scales_with_a_busy_machine():
    def cands(clock, k):  # k: how many times slower every call is (other processes on the cores)
        return {"eager": _fake(clock, 0.1 * k), "a": _fake(clock, 0.12 * k), "b": _fake(clock, 0.11 * k),
                "bf16": _fake(clock, 0.03 * k)}

    quiet, busy, seconds_only = FakeClock(), FakeClock(), FakeClock()
    q = choose(cands(quiet, 1), "eager", clock=quiet, budget_s=0.5, setup_s=1.0)
    b = choose(cands(busy, 20), "eager", clock=busy, budget_s=0.5, setup_s=1.0)
    assert q.chosen == b.chosen == "bf16" and q.complete and b.complete  # the same candidates tried
    old = choose(cands(seconds_only, 20), "eager", clock=seconds_only, budget_s=0.5, setup_s=1.0, setup_calls=0)
    assert old.chosen != "bf16" and not old.complete  # a budget in seconds never reaches the winner


def test_a_decision_that_compared_nothing_is_not_written_to_disk(tmp_path):
    left_out = {"other": "not measured: the 4.5 s set-up budget was spent"}
    alone = Decision("eager", {"eager": 3.0}, left_out, 1, "")
    partial = Decision("fast", {"eager": 3.0, "fast": 1.0}, left_out, 1, "")
    full = Decision("fast", {"eager": 3.0, "fast": 1.0}, {}, 2, "")
    assert not alone.conclusive and partial.conclusive and not partial.complete and full.complete
    cache = DecisionCache(tmp_path)
    for key, d in (("alone", alone), ("partial", partial), ("full", full)):
        cache.put(key, d)
    assert cache.get("alone") == alone  # this process keeps it
    DecisionCache.clear_memory()  # a new process measures again where nothing was compared
    assert DecisionCache(tmp_path).get("alone") is None
    assert DecisionCache(tmp_path).get("partial") == partial and DecisionCache(tmp_path).get("full") == full
    DecisionCache.clear_memory()


def test_output_checks_gates():
    assert output_checks(REF, REF)["ok"]
    nan = (REF[0], None, REF[2] * float("nan"), None)
    assert not output_checks(nan, REF)["ok"]
    assert output_checks((REF[0], None, REF[2], None), REF)["ok"]  # direct_only outputs


def test_cache_round_trip_and_key(tmp_path, monkeypatch):
    for var in tuning.ISA_CAPS:
        monkeypatch.delenv(var, raising=False)
    cache = DecisionCache(tmp_path)
    parts = {"model": {"enc_layers": 18}, "shape": [1, 3, 64, 64], "batch": 1, "precision": "auto", "device": "cpu"}
    key = tuning.cache_key(parts)
    assert cache.get(key) is None
    d = Decision("folded", {"eager": 3.0, "folded": 2.0}, {"fused": "slower"}, 2, "fastest")
    cache.put(key, d, parts)
    DecisionCache.clear_memory()
    assert DecisionCache(tmp_path).get(key) == d  # from the file, in a "new process"
    for change in ({"shape": [1, 3, 64, 128]}, {"batch": 2}, {"precision": "fp32"}, {"model": {"enc_layers": 34}}):
        assert tuning.cache_key({**parts, **change}) != key
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert tuning.cache_key(parts) != key
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # an ISA cap runs other kernels: another machine
    assert tuning.cache_key(parts) != key
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert tuning.cache_key(parts) == key
    (tmp_path / tuning.CACHE_FILE).write_text("{not json")
    DecisionCache.clear_memory()
    assert DecisionCache(tmp_path).get(key) is None  # a corrupt file is an empty cache


# --------------------------------------------------------------------------- Predictor level
@pytest.fixture
def tiny():
    from xtask_core.model import XTaskNet

    torch.manual_seed(0)
    return XTaskNet(tiny_model_config()).eval()


@pytest.fixture
def counting_choose(monkeypatch):
    """Replace the measurement with a fake that picks "folded" and counts its calls."""
    calls = []

    def fake_choose(candidates, reference, **kw):
        calls.append(sorted(candidates))
        return Decision("folded", {"eager": 2.0, "folded": 1.0}, {}, 1, "fake")

    monkeypatch.setattr(tuning, "choose", fake_choose)
    monkeypatch.delenv("XTASK_INFER_PATH", raising=False)
    DecisionCache.clear_memory()
    yield calls
    DecisionCache.clear_memory()


def test_predictor_uses_the_cache_and_remeasures_a_changed_key(tiny, counting_choose, tmp_path):
    x = torch.zeros(1, 3, 64, 64)
    p = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    assert p.route.name == "pending"  # construction measured nothing
    p.forward(x)
    assert len(counting_choose) == 1 and p.route.name == "folded" and p.route.source == "measured"
    # the plain fp32 candidates are always offered (bf16 ones too, on a CPU with bf16 units)
    assert {"eager", "folded", "channels_last"} <= set(counting_choose[0])
    p.forward(x)
    DecisionCache.clear_memory()  # as in a new process: the decision comes from the file
    q = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    q.forward(x)
    assert len(counting_choose) == 1 and q.route.source == "cached" and q.route.times_ms["folded"] == 1.0
    q.forward(torch.zeros(2, 3, 64, 64))  # another batch: another key
    assert len(counting_choose) == 2
    Predictor(tiny, device="cpu", precision="fp32", cache_dir=tmp_path).forward(x)  # another precision
    assert len(counting_choose) == 3
    q.autotune((64, 64), remeasure=True)
    assert len(counting_choose) == 4


def test_forced_path_by_argument_and_environment(tiny, counting_choose, monkeypatch, tmp_path):
    x = torch.zeros(1, 3, 64, 64)
    p = Predictor(tiny, device="cpu", path="traced", cache_dir=tmp_path)
    p.forward(x)
    assert p.route.name == "traced" and p.route.source == "forced" and "argument" in p.route.reason
    monkeypatch.setenv("XTASK_INFER_PATH", "eager")
    e = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    e.forward(x)
    assert e.route.name == "eager" and "XTASK_INFER_PATH" in e.route.reason
    assert e._runners["eager"].net is tiny  # the exact plain path: the model itself
    assert Predictor(tiny, device="cpu", path="channels_last").route.name == "channels_last"  # argument wins
    assert counting_choose == []  # nothing was measured
    monkeypatch.setenv("XTASK_INFER_PATH", "warp_drive")
    with pytest.raises(XTaskError, match="unknown inference path 'warp_drive'"):
        Predictor(tiny, device="cpu")
    with pytest.raises(XTaskError, match="needs fast=True"):
        Predictor(tiny, device="cpu", fast=False, path="fused")


def test_measured_choice_matches_the_reference_on_a_real_model(tiny, tmp_path):
    DecisionCache.clear_memory()
    p = Predictor(tiny, device="cpu", precision="fp32", cache_dir=tmp_path, budget_s=0.05)
    route = p.autotune((64, 64))
    assert route.source == "measured" and route.name in route.times_ms
    assert set(route.times_ms) | set(route.rejected) >= {"eager", "channels_last", "folded", "traced"}
    x = probe_input((1, 3, 64, 64), seed=4)
    with torch.no_grad():
        ref = tiny(x)
    checks = output_checks(p.forward(x), ref)
    assert checks["ok"] and checks["depth_rel_diff"] < 1e-4


def test_background_warm_up_decides_before_the_first_request(tiny, counting_choose, tmp_path):
    p = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    tuning.start_warm_up(p, (64, 64)).join(timeout=60)
    assert len(counting_choose) == 1 and p.routes[(1, 3, 64, 64)].name == "folded"
    p.forward(torch.zeros(1, 3, 64, 64))
    assert len(counting_choose) == 1


def test_a_path_failing_at_run_time_falls_back_to_eager(tiny, counting_choose, monkeypatch, tmp_path):
    from xtask_core.inference import paths

    p = Predictor(tiny, device="cpu", cache_dir=tmp_path)
    x = torch.zeros(1, 3, 64, 64)
    p.forward(x)
    assert p.route.name == "folded"

    def broken(self, x, direct_only=False):
        if self.spec.name != "eager":
            raise RuntimeError("lost the op")
        return original(self, x, direct_only)

    original = paths.PathRunner.__call__
    monkeypatch.setattr(paths.PathRunner, "__call__", broken)
    out = p.forward(x)
    with torch.no_grad():
        ref = tiny(x)
    assert all(torch.equal(a, b) for a, b in zip(out, ref, strict=True))
    assert p.route.name == "eager" and p.route.fallback == "folded raised RuntimeError: lost the op"
