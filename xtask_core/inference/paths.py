"""The execution paths a :class:`~xtask_core.inference.predictor.Predictor` can run, by name.

==================== ====== =========================================================================
name                 device what runs
==================== ====== =========================================================================
eager                both   the caller's model itself, eager fp32: the exact reference, always valid
folded               CPU    a private copy with every BatchNorm folded into its conv, eager fp32
channels_last        both   the folded copy, channels-last, eager fp32
fused                CPU    the folded channels-last copy with its convs fused with their ReLU /
                            residual add on pre-packed oneDNN weights (:func:`~.fastpath.fuse_for_cpu`)
traced               CPU    the folded channels-last copy traced + frozen + oneDNN-optimised, one
                            graph per input shape (:func:`~.fastpath.freeze_for_inference`)
bf16_channels_last   CPU    as channels_last / fused / traced with bf16 weights: candidates only
bf16_fused                  where the CPU has native bf16 (AVX512-BF16 or AMX) and precision
bf16_traced                 "auto", or when precision "bf16" is asked for
autocast_bf16        CUDA   the folded channels-last copy under autocast bf16 / fp16 (fp32 weights,
autocast_fp16               so reductions stay fp32)
==================== ====== =========================================================================

Which one is fastest depends on the machine: on a 2-core AMD EPYC (AVX2) the fused convolutions
ran the demo checkpoint 4× slower than eager, while on a Xeon with AMX bf16 weights were the
single biggest win. So none is assumed: :mod:`~xtask_core.inference.autotune` measures them.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from xtask_core.errors import XTaskError
from xtask_core.inference.fastpath import (
    DirectOutputs,
    FourOutputs,
    freeze_for_inference,
    fuse_for_cpu,
    fusion_available,
    prepare_copy,
)
from xtask_core.inference.precision import autocast, cpu_has_native_bf16

__all__ = ["PathSpec", "SPECS", "candidate_paths", "valid_paths", "PathRunner", "MAX_CACHED_GRAPHS"]

MAX_CACHED_GRAPHS = 4  # traced graphs kept per runner (one per input shape), least recent dropped
_F32, _BF16 = torch.float32, torch.bfloat16


@dataclass(frozen=True)
class PathSpec:
    """One path: weight dtype, the precision it computes in, and which tricks it applies."""

    name: str
    precision: str            # "fp32" | "bf16" | "fp16"
    weights: torch.dtype      # dtype of the copy's weights (CUDA autocast keeps fp32)
    fold: bool = True
    channels_last: bool = True
    fuse: bool = False
    trace: bool = False
    autocast: bool = False    # CUDA autocast in ``precision``
    description: str = ""


SPECS: dict[str, PathSpec] = {s.name: s for s in (
    PathSpec("eager", "fp32", _F32, fold=False, channels_last=False,
             description="the model itself, eager fp32 (exact reference)"),
    PathSpec("folded", "fp32", _F32, channels_last=False, description="BN folded copy, eager fp32"),
    PathSpec("channels_last", "fp32", _F32, description="BN folded copy, channels-last, eager fp32"),
    PathSpec("fused", "fp32", _F32, fuse=True,
             description="BN folded, convs fused with ReLU/residual on pre-packed oneDNN weights, channels-last fp32"),
    PathSpec("traced", "fp32", _F32, trace=True,
             description="BN folded, traced + frozen oneDNN graph per shape, channels-last fp32"),
    PathSpec("bf16_channels_last", "bf16", _BF16, description="BN folded copy, bf16 weights, channels-last, eager"),
    PathSpec("bf16_fused", "bf16", _BF16, fuse=True,
             description="BN folded, bf16 weights, fused pre-packed oneDNN convs, channels-last"),
    PathSpec("bf16_traced", "bf16", _BF16, trace=True,
             description="BN folded, bf16 weights, traced + frozen oneDNN graph per shape, channels-last"),
    PathSpec("autocast_bf16", "bf16", _F32, autocast=True, description="BN folded, channels-last, autocast bf16"),
    PathSpec("autocast_fp16", "fp16", _F32, autocast=True, description="BN folded, channels-last, autocast fp16"),
)}
_CPU = ("eager", "folded", "channels_last", "fused", "traced", "bf16_channels_last", "bf16_fused", "bf16_traced")
_CUDA = ("eager", "channels_last", "autocast_bf16", "autocast_fp16")


def valid_paths(device: torch.device | str) -> tuple[str, ...]:
    """Every path name that can be forced on ``device`` (CPU bf16 ones run, emulated, even
    without native bf16)."""
    return _CUDA if torch.device(device).type == "cuda" else _CPU


def candidate_paths(device: torch.device | str, precision: str = "auto") -> list[str]:
    """The paths worth measuring on ``device`` for a requested ``precision`` ("auto" | "fp32" |
    "bf16" | "fp16"). "eager" always comes first: it is the reference the others are checked
    against. fp32 asks for fp32 paths only; bf16/fp16 for those (eager stays the reference and
    the fallback); auto for fp32 plus the reduced-precision paths this hardware runs natively."""
    dev = torch.device(device)
    if dev.type == "cuda":
        half = []
        if precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            half.append("autocast_bf16")
        if precision == "fp16" or (precision == "auto" and not half):
            half.append("autocast_fp16")
        fp32 = ["channels_last"] if precision in ("auto", "fp32") else []
        return ["eager", *fp32, *half]
    # Order matters only when the set-up budget runs out (autotune.choose): cheap builds and
    # the usual winners first, tracing (seconds to build for a large model) last.
    fused = fusion_available()
    native_bf16 = cpu_has_native_bf16()  # oneDNN packs bf16 conv weights only there
    fp32 = ["channels_last", "folded", *(["fused"] if fused else [])]
    bf16 = [*(["bf16_fused"] if fused and native_bf16 else []), "bf16_channels_last"]
    if precision == "fp32":
        return ["eager", *fp32, "traced"]
    if precision == "bf16":
        return ["eager", *bf16, "bf16_traced"]
    if native_bf16:
        return ["eager", *bf16, *fp32, "bf16_traced", "traced"]
    return ["eager", *fp32, "traced"]


class PathRunner:
    """A built path: ``runner(x, direct_only=False)`` → ``(seg, seg_t, depth, depth_t)`` float32,
    contiguous, on ``device`` (seg_t/depth_t None with ``direct_only``), like ``model(x)``.

    ``eager`` runs the caller's model itself (a private eval copy when it is in training mode or
    on another device: both would otherwise mutate it), under ``autocast(eager_precision)``;
    every other path runs a private deep copy, so the shared model is never modified.
    Attributes: ``spec``, ``bn_folded`` (BatchNorms folded), ``fused`` (convs fused; 0 when not).
    """

    def __init__(self, name: str, model: nn.Module, device: torch.device, eager_precision: str = "fp32"):
        if name not in SPECS:
            raise XTaskError(f"unknown inference path {name!r}; one of {', '.join(SPECS)}")
        self.spec = spec = SPECS[name]
        self.device = torch.device(device)
        self.bn_folded = self.fused = 0
        self._precision = eager_precision if name == "eager" else spec.precision
        self._graphs: OrderedDict = OrderedDict()
        if name == "eager":
            on = next(iter(model.parameters()), torch.empty(0)).device
            self.net = copy.deepcopy(model).eval().to(self.device) if model.training or on != self.device else model
            return
        cpu_dtype = spec.weights if self.device.type == "cpu" else _F32
        self.net, self.bn_folded = prepare_copy(model, dtype=cpu_dtype, device=self.device,
                                                channels_last=spec.channels_last)
        if spec.fuse:
            self.fused = fuse_for_cpu(self.net)
            if not self.fused:
                raise RuntimeError("fused oneDNN convolutions are unavailable in this torch build")
            with torch.no_grad():  # the private ops fail here, not in a user's request, if they fail
                self.net(torch.zeros(1, 3, 32, 32, dtype=cpu_dtype).contiguous(memory_format=torch.channels_last))

    @property
    def precision(self) -> str:
        return self._precision

    def _graph(self, x: torch.Tensor, direct_only: bool):
        key = (tuple(x.shape), direct_only)
        g = self._graphs.get(key)
        if g is None:
            g = freeze_for_inference(DirectOutputs(self.net) if direct_only else FourOutputs(self.net), x)
            self._graphs[key] = g
            while len(self._graphs) > MAX_CACHED_GRAPHS:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        return g

    def __call__(self, x: torch.Tensor, direct_only: bool = False) -> tuple:
        spec = self.spec
        with torch.no_grad():
            if spec.name == "eager":
                with autocast(self.device, self._precision):
                    out = self.net(x.to(self.device), direct_only=direct_only)
            else:
                dtype = spec.weights if self.device.type == "cpu" else _F32
                x = x.to(self.device, dtype=dtype)
                if spec.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                if spec.trace:
                    out = self._graph(x, direct_only)(x)
                    out = (out[0], None, out[1], None) if direct_only else out
                else:
                    with autocast(self.device, spec.precision if spec.autocast else "fp32"):
                        out = self.net(x, direct_only=direct_only)
        return tuple(None if o is None else o.float().contiguous() for o in out)
