"""Benchmark helpers and a quick-mode smoke run (no timing assertions: the CPU is shared)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from xtask_core.tools import bench, bench_report


def test_count_flops_hand_computed():
    # conv 3→4, 3×3, padding 1, on 1×3×8×8: 2 FLOPs × (4·8·8 outputs) × (3·3·3 MACs each) = 13 824
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert bench.count_flops(lambda: conv(x)) == 2 * 4 * 8 * 8 * 27
    # matmul 5×6 @ 6×7: 2·5·6·7 = 420
    a, b = torch.randn(5, 6), torch.randn(6, 7)
    assert bench.count_flops(lambda: a @ b) == 420


def test_time_pair_alternates_and_returns_medians():
    calls = []
    r, f = bench.time_pair(lambda: calls.append("r"), lambda: calls.append("f"), repeats=3, warmup=1)
    assert calls == ["r", "f"] * 4
    assert r >= 0 and f >= 0


def test_peak_matmul_positive():
    assert bench.peak_matmul_gflops(torch.float32, n=64, repeats=2) > 0
    assert bench.peak_conv1x1_gflops(torch.float32, channels=16, hw=8, repeats=2) > 0


def _route(chosen="channels_last"):
    from xtask_core.inference.paths import SPECS
    from xtask_core.inference.predictor import Route

    return Route(chosen, SPECS[chosen].precision, SPECS[chosen].description, "measured", "fastest measured",
                 times_ms={"eager": 40.0, "channels_last": 20.0, "bf16_fused": 10.0},
                 rejected={"bf16_fused": "inaccurate: seg agreement 0.9 < 0.995",
                           "traced": "raised RuntimeError: no graph"})


def test_candidate_rows_from_a_route():
    # 2 GFLOP per call; peaks: fp32 200, bf16 400 GFLOP/s
    rows = bench._candidate_rows(_route(), 2e9, {"fp32": 200.0, "bf16": 400.0})
    by = {r["path"]: r for r in rows}
    assert list(by) == ["eager", "channels_last", "bf16_fused", "traced"]  # timed first, then the rest
    assert [r["path"] for r in rows if r["chosen"]] == ["channels_last"]
    assert by["eager"]["gflops"] == pytest.approx(50.0) and by["eager"]["peak_share"] == pytest.approx(0.25)
    assert by["channels_last"]["peak_share"] == pytest.approx(0.5)
    assert by["bf16_fused"]["peak_share"] == pytest.approx(200.0 / 400.0)  # against the bf16 peak
    assert by["traced"]["ms"] is None and by["traced"]["peak_share"] is None
    assert by["traced"]["note"].startswith("raised") and by["bf16_fused"]["note"].startswith("inaccurate")


def test_candidate_table_ticks_the_chosen_path():
    rows = bench._candidate_rows(_route("eager"), 2e9, {"fp32": 200.0, "bf16": 400.0})
    lines = bench_report.format_candidates("demo_model", {"candidates": rows, "model": "m", "batch": 1,
                                                          "input_hw": [64, 128], "autotune_s": 1.25})
    assert "demo_model (m, batch 1, 64x128; measured by the Predictor in 1.2 s)" in lines[0]
    ticked = [ln for ln in lines if "✓" in ln]
    assert len(ticked) == 1 and ticked[0].split()[0] == "eager"
    traced = next(ln for ln in lines if ln.split() and ln.split()[0] == "traced")
    assert "raised RuntimeError" in traced and " - " in traced
    assert bench_report.format_candidates("metrics", {"reference_ms": 1.0}) == []


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    with pytest.MonkeyPatch.context() as mp:  # the bench refreshes decisions: keep them out of the user's cache
        mp.setenv("XTASK_CACHE_DIR", str(tmp_path_factory.mktemp("xtask-cache")))
        assert bench.main(json_path=str(path), quick=True) == 0
    return json.loads(path.read_text())


@pytest.mark.slow
def test_quick_bench_json_keys(quick_results):
    res = quick_results
    assert res["quick"] is True
    assert set(res["peak_gflops"]) == {"fp32", "bf16"} and res["peak_gflops"]["fp32"] > 0
    detail = res["peak_gflops_detail"]
    assert res["peak_gflops"]["fp32"] == max(detail["matmul_fp32"], detail["conv1x1_fp32"])
    assert {"cpu", "cores", "torch_threads", "native_bf16", "bf16_support"} <= set(res["machine"])
    figs = res["figures"]
    assert set(figs) == {"inference", "demo_model", "train_step", "metrics", "eval_split"}
    for name, f in figs.items():
        assert f["reference_ms"] > 0 and f["fast_ms"] > 0 and f["speedup"] > 0, name
    inf = figs["inference"]
    assert {"seg_agreement", "seg_t_agreement", "depth_rel_diff", "depth_t_rel_diff"} <= set(inf["checks"])
    assert 0.0 <= inf["checks"]["seg_agreement"] <= 1.0
    assert {"gflop", "reference_gflops", "fast_gflops", "reference_peak_share", "fast_peak_share"} <= set(inf)
    assert figs["metrics"]["checks"]["identical"] is True  # vectorised == loops, exactly
    tr = figs["train_step"]["checks"]
    assert len(tr["reference_losses"]) == len(tr["fast_losses"]) == figs["train_step"]["steps"]
    assert tr["max_rel_loss_diff"] < 0.05  # same data, same init: the trajectories must track
    assert figs["demo_model"]["predict_ms"] > 0
    for name in ("demo_model", "inference"):  # the Predictor's candidate table, one path chosen
        rows = figs[name]["candidates"]
        assert rows[0]["path"] == "eager" and rows[0]["ms"] > 0  # the plain reference is always timed
        chosen = [r for r in rows if r["chosen"]]
        assert len(chosen) == 1 and chosen[0]["ms"] > 0, name
        assert chosen[0]["ms"] == min(r["ms"] for r in rows if r["ms"] is not None)  # the fastest timed
        assert figs[name]["fast"].startswith(f"Predictor: {chosen[0]['path']} ")
    for f in figs.values():
        if "target" in f:
            assert isinstance(f["meets_target"], bool)


@pytest.mark.slow
def test_table_mentions_every_figure(quick_results):
    table = bench.format_table(quick_results)
    for name in quick_results["figures"]:
        assert name in table
    assert "peak matmul" in table
    assert table.count("✓") == 2 and "candidate paths, inference" in table


def test_bench_script_help(repo_root):
    out = subprocess.run([sys.executable, str(repo_root / "bench" / "run.py"), "--help"],
                         capture_output=True, text=True, timeout=300)  # imports torch: slow on a busy machine
    assert out.returncode == 0 and "--json" in out.stdout


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_bad_json_path_refused_before_the_run(tmp_path, monkeypatch, where):
    from xtask_core.errors import XTaskError

    target = tmp_path if where == "a directory" else tmp_path / "notes.txt" / "bench.json"
    (tmp_path / "notes.txt").write_text("keep me")
    ran = []
    monkeypatch.setattr(bench, "run_benchmarks", lambda **kw: ran.append(kw))
    with pytest.raises(XTaskError, match="directory"):
        bench.main(json_path=str(target), quick=True)
    assert ran == []  # refused before minutes of benchmarking, not after
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no temporary file left
