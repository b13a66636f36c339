"""Timing helpers of ``xtask bench``: alternated pairs, medians, this machine's peak GFLOP/s and
FLOP counts (the figures themselves are in :mod:`xtask_core.tools.bench`)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["time_pair", "peak_matmul_gflops", "peak_conv1x1_gflops", "count_flops"]


# --------------------------------------------------------------------------- timing helpers
def _median_ms(ts) -> float:
    return 1e3 * statistics.median(ts)


def time_pair(ref: Callable[[], Any], fast: Callable[[], Any], repeats: int, warmup: int) -> tuple[float, float]:
    """Median wall ms of ``ref()`` and ``fast()``, alternated call by call after ``warmup`` calls each.

    Alternating (rather than all of one, then all of the other) spreads load from other
    processes over both paths, so the ratio stays meaningful on a busy machine.
    """
    for _ in range(warmup):
        ref()
        fast()
    tr, tf = [], []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        ref()
        tr.append(time.perf_counter() - t)
        t = time.perf_counter()
        fast()
        tf.append(time.perf_counter() - t)
    return _median_ms(tr), _median_ms(tf)


def _median_s(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls, after one untimed call."""
    with torch.no_grad():
        fn()
        ts = []
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def peak_matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Measured GFLOP/s of an n×n @ n×n matmul in ``dtype`` on CPU (2n³ FLOPs), median of ``repeats``."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    return 2.0 * n ** 3 / _median_s(lambda: torch.mm(a, b), repeats) / 1e9


def peak_conv1x1_gflops(dtype: torch.dtype, channels: int = 1024, hw: int = 64, repeats: int = 5) -> float:
    """Measured GFLOP/s of a 1×1 convolution (a GEMM through oneDNN, the library the models' convs
    use), ``channels`` → ``channels`` on 1×channels×hw×hw, median of ``repeats``. On some CPUs
    (MKL on AMD) this beats ``torch.mm``, so the peak taken is the larger of the two."""
    x = torch.randn(1, channels, hw, hw).to(dtype)
    w = torch.randn(channels, channels, 1, 1).to(dtype)
    return 2.0 * channels * channels * hw * hw / _median_s(lambda: F.conv2d(x, w), repeats) / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (2 per multiply-add) of the matmul/conv ops ``fn()`` runs, by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _gflops(flops: float, ms: float) -> float:
    return flops / (ms / 1e3) / 1e9 if ms > 0 else float("nan")
