"""Inference paths chosen by measurement, not by rules about CPU flags.

A rule ("bf16 where the CPU has AMX", "fused convolutions everywhere") picked a slower path
twice on CPUs nobody had measured: on a 2-core AMD EPYC with AVX2 the fused oneDNN convolutions
made the demo checkpoint 4× slower than plain eager. So the :class:`~xtask_core.inference.predictor.Predictor`
times every candidate path valid on the machine, checks each against the plain fp32 outputs
with the accuracy gates below, and runs the fastest one that passes (:func:`choose`).

The decision is cached on disk (:class:`DecisionCache`, one JSON file under ``XTASK_CACHE_DIR`` or
``~/.cache/xtask``), keyed by everything that can change the answer (:func:`cache_key`): CPU
model and flags, torch version, thread count, model architecture, input shape and batch,
requested precision, device and the candidate set. The next process starts on the cached path
at once; a change of any part measures again.

:func:`start_warm_up` runs :meth:`Predictor.autotune` in a background thread, so that a caller that
starts it early finds the decision made at its first request; forwards wait for it meanwhile. The
app uses ``Predictor.autotune_in_background`` instead, whose forwards run the exact reference path
while the measurement runs, so no page waits for it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_write_text

__all__ = ["SEG_AGREEMENT_MIN", "DEPTH_REL_DIFF_MAX", "output_checks", "Decision", "choose", "cache_dir",
           "cache_key", "machine_fingerprint", "DecisionCache", "warm_up", "start_warm_up", "CACHE_FILE"]

# Accuracy gates for a path against the plain fp32 outputs (the one place they are defined).
SEG_AGREEMENT_MIN = 0.995      # fraction of pixels whose argmax class agrees with fp32
DEPTH_REL_DIFF_MAX = 0.01      # mean |path − fp32| / mean |fp32| of the direct depth

NOT_MEASURED = "not measured"  # reason prefix of candidates the set-up budget left out
CACHE_FILE = "autotune.json"
CACHE_SCHEMA = 1               # bump when the candidate paths change meaning
MAX_CACHE_ENTRIES = 64         # oldest entries dropped beyond this


# --------------------------------------------------------------------------- accuracy gates
def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of pixels where the argmax over dim 1 (classes) of N×C×H×W a and b agree."""
    return (a.argmax(1) == b.argmax(1)).float().mean().item()


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """mean |a − b| / mean |b| (b the fp32 reference); nan when b is all zero."""
    den = b.float().abs().mean().item()
    return (a.float() - b.float()).abs().mean().item() / den if den > 0 else float("nan")


def output_checks(out: Sequence, ref: Sequence) -> dict:
    """Compare ``(seg, seg_t, depth, depth_t)`` of a path with the fp32 reference ``ref``.

    Returns ``seg_agreement``/``seg_t_agreement`` (fractions), ``depth_rel_diff``/
    ``depth_t_rel_diff`` (mean relative differences; nan for an absent output: transferred
    ones without the transfer nets, a direct one of a single-task net) and ``ok``: direct seg
    agreement ≥ :data:`SEG_AGREEMENT_MIN`, direct depth difference ≤ :data:`DEPTH_REL_DIFF_MAX`
    (each where the model has it) and every output finite.
    """
    seg, seg_t, depth, depth_t = out
    rseg, rseg_t, rdepth, rdepth_t = ref
    nan = float("nan")
    both = seg_t is not None and rseg_t is not None
    has_seg, has_depth = seg is not None and rseg is not None, depth is not None and rdepth is not None
    checks = {"seg_agreement": _agreement(seg, rseg) if has_seg else nan,
              "seg_t_agreement": _agreement(seg_t, rseg_t) if both else nan,
              "depth_rel_diff": _rel_diff(depth, rdepth) if has_depth else nan,
              "depth_t_rel_diff": _rel_diff(depth_t, rdepth_t) if both and depth_t is not None else nan}
    finite = all(bool(torch.isfinite(o.float()).all()) for o in out if o is not None)
    checks["ok"] = bool(finite and (not has_seg or checks["seg_agreement"] >= SEG_AGREEMENT_MIN)
                        and (not has_depth or checks["depth_rel_diff"] <= DEPTH_REL_DIFF_MAX))
    return checks


def _why_inaccurate(checks: dict) -> str:
    if checks["seg_agreement"] < SEG_AGREEMENT_MIN:
        return f"inaccurate: seg agreement {checks['seg_agreement']:.4f} < {SEG_AGREEMENT_MIN}"
    if not checks["depth_rel_diff"] <= DEPTH_REL_DIFF_MAX:
        return f"inaccurate: depth rel diff {checks['depth_rel_diff']:.4f} > {DEPTH_REL_DIFF_MAX}"
    return "inaccurate: non-finite outputs"


# --------------------------------------------------------------------------- choice
@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`choose`.

    ``chosen``: the candidate to run; ``times_ms``: median wall ms per call of each timed
    candidate; ``rejected``: candidate → why it is not used (raised, inaccurate, or pruned as
    clearly slower after its first timings); ``rounds``: timing rounds run; ``reason``: one line.
    """

    chosen: str
    times_ms: Mapping[str, float] = field(default_factory=dict)
    rejected: Mapping[str, str] = field(default_factory=dict)
    rounds: int = 0
    reason: str = ""

    @property
    def complete(self) -> bool:
        """False when the set-up budget ran out before every candidate was tried."""
        return not any(why.startswith(NOT_MEASURED) for why in self.rejected.values())

    @property
    def conclusive(self) -> bool:
        """Complete, or at least two candidates timed against each other. An inconclusive
        decision (only one candidate timed while others were left out: the choice compared
        nothing) is kept by :class:`DecisionCache` for this process only, never on disk."""
        return self.complete or len(self.times_ms) >= 2

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "times_ms": dict(self.times_ms), "rejected": dict(self.rejected),
                "rounds": self.rounds, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping) -> Decision:
        return cls(chosen=str(d["chosen"]), times_ms={str(k): float(v) for k, v in d.get("times_ms", {}).items()},
                   rejected={str(k): str(v) for k, v in d.get("rejected", {}).items()},
                   rounds=int(d.get("rounds", 0)), reason=str(d.get("reason", "")))


def short_error(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"raised {type(err).__name__}" + (f": {msg[:120]}" if msg else "")


def choose(candidates: Mapping[str, Callable[[], Callable[[], Any]]], reference: Sequence | str, *,
           clock: Callable[[], float] = time.perf_counter, budget_s: float = 1.5, max_rounds: int = 7,
           prune_factor: float = 1.5, setup_s: float | None = None, fallback: str | None = None,
           check: Callable[[Any, Any], dict] = output_checks, min_built: int = 2,
           setup_calls: float = 8.0) -> Decision:
    """Time the candidates and return the fastest whose outputs pass ``check`` against ``reference``.

    Args:
        candidates: name → *builder*: a zero-argument callable returning the zero-argument
            *runner* that computes the outputs once. Builders run lazily, here, in order; a
            builder or runner that raises is skipped with the reason recorded.
        reference: the fp32 reference outputs, or the name of a candidate whose first outputs
            are the reference (it is then checked first and trivially passes).
        clock: seconds, monotonic (tests inject a fake one).
        budget_s: seconds of timed calls after the first (untimed, checked) call of each
            candidate; at least one timing round always runs, further rounds (up to
            ``max_rounds``) only while the next one fits in the budget: slow models get fewer.
        prune_factor: after each round, a candidate whose median is over this factor times the
            leader's stops being timed.
        setup_s: seconds building and checking candidates may take (default ``3 × budget_s``):
            once spent, the remaining candidates are not built (recorded as such), so list the
            likely winners first and expensive builds (tracing) last. The budget grows to
            ``setup_calls`` times the first candidate's first call when that is more: on a busy
            (or slow) machine every call takes longer, and a budget in seconds would cut the
            candidates tried to the first one or two (the fp32 ones, where bf16 wins by 4×).
            Candidates are still built
            until ``min_built`` of them (the reference included) run correctly, so a reference
            that alone takes longer than the budget (a slow or busy machine) does not leave it
            the only choice.
        fallback: chosen when no candidate passes (default: raise :class:`XTaskError`).
        check: ``check(outputs, reference) -> dict`` with a boolean ``"ok"``.

    Rounds alternate the order (forward, then backward) so that drift in the machine's load
    hits every candidate alike. The winner is the lowest median.
    """
    order = list(candidates)
    if isinstance(reference, str):
        if reference not in candidates:
            raise XTaskError(f"reference candidate {reference!r} is not among {', '.join(order)}")
        order.remove(reference)
        order.insert(0, reference)
    rejected: dict[str, str] = {}
    runners: dict[str, Callable[[], Any]] = {}
    ref_out = None if isinstance(reference, str) else reference
    first_s: dict[str, float] = {}
    setup_s = 3.0 * budget_s if setup_s is None else setup_s
    start = clock()
    for name in order:
        if first_s and len(first_s) == 1:  # the budget in units of the first call, once it is known
            setup_s = max(setup_s, setup_calls * next(iter(first_s.values())))
        if len(runners) >= min_built and ref_out is not None and clock() - start > setup_s:
            rejected[name] = f"{NOT_MEASURED}: the {setup_s:.1f} s set-up budget was spent"
            continue
        try:
            run = candidates[name]()
            t = clock()
            out = run()
            first_s[name] = clock() - t
        except XTaskError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of a candidate path: skip it, say why
            rejected[name] = short_error(err)
            if name == reference:
                raise XTaskError(f"the reference path {name!r} failed: {short_error(err)}") from err
            continue
        if ref_out is None:  # this is the reference candidate
            ref_out = out
        else:
            checks = check(out, ref_out)
            if not checks.get("ok", False):
                rejected[name] = _why_inaccurate(checks) if "seg_agreement" in checks else "inaccurate"
                continue
        runners[name] = run
    if not runners:
        if fallback is None:
            raise XTaskError("no inference path ran correctly: " + "; ".join(f"{k}: {v}" for k, v in rejected.items()))
        return Decision(fallback, {}, rejected, 0, f"{fallback}: no candidate passed")
    times: dict[str, list[float]] = {name: [] for name in runners}
    live = list(runners)
    spent, rounds = 0.0, 0
    while live and rounds < max_rounds:
        if rounds:
            est = sum(statistics.median(times[n]) for n in live)
            if spent + est > budget_s:
                break
        for name in (live if rounds % 2 == 0 else live[::-1]):
            t = clock()
            runners[name]()
            dt = clock() - t
            times[name].append(dt)
            spent += dt
        rounds += 1
        best = min(statistics.median(times[n]) for n in live)
        for name in list(live):
            med = statistics.median(times[name])
            if len(live) > 1 and med > prune_factor * best:
                live.remove(name)
                rejected[name] = f"slower: {1e3 * med:.1f} ms against {1e3 * best:.1f} ms"
    medians = {name: 1e3 * statistics.median(ts) for name, ts in times.items() if ts}
    chosen = min(medians, key=medians.get)
    others = sorted(medians.values())
    runner_up = f", next {others[1]:.1f} ms" if len(others) > 1 else ""
    return Decision(chosen, medians, rejected, rounds,
                    f"fastest measured: {medians[chosen]:.1f} ms{runner_up} ({rounds} round(s))")


# --------------------------------------------------------------------------- cache key
# Environment variables that cap the instruction set torch's kernels use (oneDNN, ATen's vectorised
# kernels); they change which path is fastest as much as another CPU would (``ONEDNN_MAX_CPU_ISA=AVX2``
# on an AMX Xeon runs the AVX2 kernels an AMD EPYC runs), so they are part of the machine's key.
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def machine_fingerprint() -> dict:
    """CPU model name, a hash of its flags (Linux /proc/cpuinfo; platform strings elsewhere) and
    the instruction-set caps set in the environment (:data:`ISA_CAPS`), if any."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.processor() or platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:
                flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    caps = {k: os.environ[k] for k in ISA_CAPS if os.environ.get(k)}
    return {"cpu": model, "cpu_flags": hashlib.sha1(flags.encode()).hexdigest()[:12], "arch": platform.machine(),
            **({"isa_caps": caps} if caps else {})}


def cache_key(parts: Mapping[str, Any]) -> str:
    """A stable hash (hex) of ``parts`` (JSON-serialisable) plus the machine, torch version and
    thread count; ``parts`` should hold the architecture, shape, batch, precision and device."""
    full = {"schema": CACHE_SCHEMA, **machine_fingerprint(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), **parts}
    return hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cache_dir() -> Path:
    """``XTASK_CACHE_DIR`` if set, else ``~/.cache/xtask``."""
    env = os.environ.get("XTASK_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xtask"


class DecisionCache:
    """Decisions by key, in memory for this process and in ``<cache_dir>/autotune.json``.

    Reading a missing or corrupt file gives an empty cache; a write that fails (read-only home,
    full disk) only loses the on-disk copy. Writes are atomic (write + rename), so another
    process never reads half a file; two processes writing at once can lose one entry, which
    only costs a measurement.
    """

    _lock = threading.Lock()
    _memory: dict[str, dict] = {}

    def __init__(self, folder: str | os.PathLike | None = None):
        self.path = Path(folder).expanduser() / CACHE_FILE if folder is not None else cache_dir() / CACHE_FILE

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data.get("entries", {}) if isinstance(data, dict) and data.get("schema") == CACHE_SCHEMA else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> Decision | None:
        """The cached decision for ``key``, or None."""
        mem_key = f"{self.path}:{key}"
        with self._lock:
            entry = self._memory.get(mem_key) or self._read().get(key)
            if entry is None:
                return None
            self._memory[mem_key] = entry
        try:
            return Decision.from_dict(entry)
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, decision: Decision, parts: Mapping[str, Any] | None = None) -> None:
        """Store ``decision`` under ``key`` (``parts``: the readable key, kept for people). An
        inconclusive decision (:attr:`Decision.conclusive`) is kept in memory only: the next process
        measures again instead of inheriting a choice that compared nothing."""
        entry = {**decision.to_dict(), "key": dict(parts or {}), "saved": time.time()}
        with self._lock:
            self._memory[f"{self.path}:{key}"] = entry
            if not decision.conclusive:
                return
            entries = self._read()
            entries[key] = entry
            if len(entries) > MAX_CACHE_ENTRIES:
                keep = sorted(entries, key=lambda k: entries[k].get("saved", 0))[-MAX_CACHE_ENTRIES:]
                entries = {k: entries[k] for k in keep}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.path, json.dumps({"schema": CACHE_SCHEMA, "entries": entries},
                                                        indent=1, default=str))
            except OSError:
                pass  # the cache is an optimisation: the decision still holds for this process

    @classmethod
    def clear_memory(cls) -> None:
        """Forget the in-process copies (tests; the file stays)."""
        with cls._lock:
            cls._memory.clear()


# --------------------------------------------------------------------------- background warm-up
def warm_up(predictor, size: tuple[int, int] | None = None, batch: int = 1):
    """Measure (or load the cached decision for) ``predictor``'s path at ``batch``×3×size and
    build it, so the first real request runs at once. Thread-safe (the Predictor serialises
    measurements and forwards with its lock). Returns the route, or None if measuring failed
    (the Predictor then measures on first use and reports the error there)."""
    try:
        return predictor.autotune(size, batch=batch)
    except Exception:  # noqa: BLE001 - background work must never take the app down
        return None


def start_warm_up(predictor, size: tuple[int, int] | None = None, batch: int = 1) -> threading.Thread:
    """:func:`warm_up` in a daemon thread, started now; returns the thread (``join()`` to wait)."""
    th = threading.Thread(target=warm_up, args=(predictor, size, batch), name="xtask-autotune", daemon=True)
    th.start()
    return th
