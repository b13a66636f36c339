"""The training step's precision and memory format, chosen by measurement (or as requested).

Rules about CPU flags chose slower paths on CPUs nobody had measured, so with
``precision="auto"`` and/or ``channels_last=None`` the trainer times a few real training steps
of every candidate valid on the device — {fp32, fp32 + channels-last, bf16 / fp16 autocast
(± channels-last) where the device has the instructions} — on *copies* of the model with
their own optimiser (the run's weights and optimiser state are never touched), checks each
candidate's first loss against fp32's, and trains on the fastest. The timing and the cache are
those of inference (:mod:`xtask_core.inference.autotune`: :func:`choose`, :func:`cache_key`,
:class:`DecisionCache`), so the next run with the same machine, torch version, thread count,
architecture, input shape and batch starts on the cached choice at once. The choice and the
measured times go into the run's ``config.json`` (``train_path``).
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import default_collate

from xtask_core.config import TrainConfig
from xtask_core.inference.autotune import DecisionCache, cache_key, choose
from xtask_core.inference.precision import cpu_has_native_bf16, grad_scaler
from xtask_core.train.balancing import make_balancer
from xtask_core.train.step import train_step

LOSS_REL_TOL = 0.05   # a mixed-precision candidate's first loss within 5 % of fp32's


@dataclass(frozen=True)
class TrainPath:
    """What the trainer runs: ``precision`` ("fp32" | "bf16" | "fp16"), ``channels_last``, and
    how it was chosen (``source``: "requested" | "measured" | "cached"; ``times_ms``: median
    ms per step of each timed candidate; ``rejected``: candidate → why not; ``reason``)."""

    precision: str
    channels_last: bool
    source: str = "requested"
    times_ms: Mapping[str, float] = field(default_factory=dict)
    rejected: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""

    @property
    def name(self) -> str:
        return candidate_name(self.precision, self.channels_last)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.name, "precision": self.precision, "channels_last": self.channels_last,
                "source": self.source, "times_ms": dict(self.times_ms), "rejected": dict(self.rejected),
                "reason": self.reason}


def candidate_name(precision: str, channels_last: bool) -> str:
    return precision + ("+channels_last" if channels_last else "")


def parse_candidate(name: str) -> tuple[str, bool]:
    precision, _, fmt = name.partition("+")
    return precision, fmt == "channels_last"


def candidate_paths(device: torch.device, precision: str = "auto",
                    channels_last: bool | None = None) -> list[str]:
    """Candidate names valid on ``device`` for the requested precision / memory format, the
    plain fp32 contiguous path first when it is one of them. Mixed precision is a candidate only
    where the device has the instructions (bf16 on CPUs with AVX512-BF16 or AMX; bf16 / fp16 on
    CUDA): emulated bf16 would only spend the measuring budget."""
    if precision != "auto":
        precisions = [precision]
    elif device.type == "cuda":
        precisions = ["fp32", "bf16" if torch.cuda.is_bf16_supported() else "fp16"]
    elif device.type == "cpu" and cpu_has_native_bf16():
        precisions = ["fp32", "bf16"]
    else:
        precisions = ["fp32"]
    formats = [False, True] if channels_last is None else [bool(channels_last)]
    return [candidate_name(p, cl) for p in precisions for cl in formats]


def _first_batch(dataset, batch_size: int) -> dict:
    n = min(int(batch_size), len(dataset))
    return default_collate([dataset[i] for i in range(n)])


def _step_builder(model: nn.Module, batch: Mapping[str, Any], cfg: TrainConfig, device: torch.device,
                  loss_fn: nn.Module, name: str) -> Callable[[], Callable[[], float]]:
    """Builder for :func:`choose`: a copy of ``model`` in ``name``'s format with its own Adam;
    the runner does one :func:`train_step` on ``batch`` and returns its loss."""
    precision, channels_last = parse_candidate(name)

    def build() -> Callable[[], float]:
        net = copy.deepcopy(model).train()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        balancer = make_balancer("none", device=device)
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        scaler = grad_scaler(device, precision)

        def run() -> float:
            out = train_step(net, batch, loss_fn=loss_fn, balancer=balancer, optimizer=optimizer,
                             scaler=scaler, precision=precision, channels_last=channels_last, device=device)
            return float(out["total"])

        return run

    return build


def loss_check(loss: float, reference: float) -> dict:
    """``ok`` when ``loss`` is finite and within :data:`LOSS_REL_TOL` of the fp32 ``reference``."""
    rel = abs(loss - reference) / max(abs(reference), 1e-12)
    return {"ok": bool(math.isfinite(loss) and rel <= LOSS_REL_TOL), "loss_rel_diff": rel}


def decide(candidates: Mapping[str, Callable[[], Callable[[], Any]]], key_parts: Mapping[str, Any], *,
           cache: DecisionCache | None = None, clock: Callable[[], float] = time.perf_counter,
           budget_s: float = 1.0) -> TrainPath:
    """The cached decision for ``key_parts`` if there is one, else measure ``candidates`` (name
    → builder, the fp32 reference first) with :func:`choose` and cache the result."""
    names = list(candidates)
    if len(names) == 1:
        p, cl = parse_candidate(names[0])
        return TrainPath(p, cl, "requested", reason="the only candidate (precision and memory format given)")
    cache = cache if cache is not None else DecisionCache()
    key = cache_key({**key_parts, "candidates": names})
    hit = cache.get(key)
    source = "cached"
    if hit is None or hit.chosen not in candidates:
        hit = choose(candidates, names[0], clock=clock, budget_s=budget_s, check=loss_check, fallback=names[0])
        cache.put(key, hit, {**key_parts, "candidates": names})
        source = "measured"
    p, cl = parse_candidate(hit.chosen)
    return TrainPath(p, cl, source, dict(hit.times_ms), dict(hit.rejected), hit.reason)


def choose_train_path(model: nn.Module, dataset, cfg: TrainConfig, device: torch.device, *,
                      loss_fn: nn.Module, cache: DecisionCache | None = None,
                      clock: Callable[[], float] = time.perf_counter, budget_s: float = 1.0) -> TrainPath:
    """The :class:`TrainPath` for this run: ``cfg.precision`` / ``cfg.channels_last`` when both
    are given, else measured on the first ``cfg.batch_size`` samples of ``dataset`` (or cached).

    ``model`` is only copied, never changed. Cost when measuring: one untimed and at least one
    timed step per candidate (further rounds while they fit in ``budget_s`` seconds).
    """
    names = candidate_paths(device, cfg.precision, cfg.channels_last)
    if len(names) == 1:
        return decide({names[0]: lambda: (lambda: 0.0)}, {})
    batch = _first_batch(dataset, cfg.batch_size)
    parts = {"what": "train_step", "device": str(device), "model": model.config.to_dict(),
             "input": list(batch["image"].shape), "loss": [cfg.method, cfg.lp, cfg.tdep_loss, cfg.tseg_loss]}
    builders = {n: _step_builder(model, batch, cfg, device, loss_fn, n) for n in names}
    return decide(builders, parts, cache=cache, clock=clock, budget_s=budget_s)

