"""precision.py: resolution of "auto", autocast contexts, grad scaler."""
from __future__ import annotations

import pytest
import torch

from xtask_core.errors import XTaskError
from xtask_core.inference.precision import (
    autocast,
    cpu_bf16_support,
    cpu_has_native_bf16,
    cpu_prefers_bf16,
    grad_scaler,
    resolve_precision,
)


def test_resolve_on_cpu():
    assert resolve_precision("cpu", "fp32") == "fp32"
    assert resolve_precision("cpu", "bf16") == "bf16"
    assert resolve_precision(torch.device("cpu"), "auto") == ("bf16" if cpu_prefers_bf16() else "fp32")


@pytest.mark.parametrize("bad", ["fp8", "float32", "", "AUTO"])
def test_unknown_precision_is_user_error(bad):
    with pytest.raises(XTaskError, match="precision must be one of"):
        resolve_precision("cpu", bad)


def test_fp16_on_cpu_is_refused():
    with pytest.raises(XTaskError, match="CUDA"):
        resolve_precision("cpu", "fp16")


def test_autocast_fp32_changes_nothing():
    a, b = torch.randn(4, 5), torch.randn(5, 3)
    with autocast("cpu", "fp32"):
        out = a @ b
    assert out.dtype == torch.float32
    assert torch.equal(out, a @ b)


def test_autocast_bf16_runs_matmul_in_bf16():
    a, b = torch.randn(4, 5), torch.randn(5, 3)
    with autocast("cpu", "bf16"):
        out = a @ b
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), a @ b, rtol=3e-2, atol=3e-2)


def test_grad_scaler_only_for_cuda_fp16():
    assert grad_scaler("cpu", "fp32") is None
    assert grad_scaler("cpu", "bf16") is None


def test_cpu_bf16_probe_is_consistent():
    kind = cpu_bf16_support()
    assert kind in ("amx", "avx512_bf16", "none")
    assert cpu_has_native_bf16() is (kind != "none")
    assert cpu_prefers_bf16() is (kind == "amx")


def test_auto_precision_is_fp32_on_avx512_bf16_without_amx(monkeypatch):
    # bf16 without AMX tiles measured slower than fp32 (conv 145 vs 206-240 GFLOP/s): auto must not pick it
    from xtask_core.inference import precision

    for kind, expected in (("amx", "bf16"), ("avx512_bf16", "fp32"), ("none", "fp32")):
        monkeypatch.setattr(precision, "cpu_bf16_support", lambda k=kind: k)
        assert precision.resolve_precision("cpu", "auto") == expected
        assert precision.resolve_channels_last("cpu", None) is (expected == "bf16")
        assert precision.resolve_precision("cpu", "bf16") == "bf16"  # an explicit choice is kept


def test_channels_last_auto_follows_the_hardware(monkeypatch):
    from xtask_core.inference import precision

    assert precision.resolve_channels_last("cpu", True) is True  # an explicit choice is kept
    assert precision.resolve_channels_last("cpu", False) is False
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_prefers_bf16", lambda n=native: n)
        assert precision.resolve_channels_last("cpu", None) is native
    assert precision.resolve_channels_last("cuda", None) is True
