"""Fast inference: :class:`Predictor` (preprocessing + the measured fastest model path) and :class:`Prediction`.

``Predictor.route`` says which path runs and why. The candidates (:mod:`~xtask_core.inference.paths`:
plain eager fp32, BN-folded, channels-last, fused oneDNN convolutions, traced + frozen graphs, bf16
variants where the CPU has native bf16, autocast on CUDA) are timed for each input shape on
first use (or by :meth:`Predictor.autotune`), each checked against the plain fp32 outputs, and the
fastest that passes runs; the decision is cached on disk, so the next process starts on it at once
(:mod:`~xtask_core.inference.autotune`). :meth:`Predictor.autotune_in_background` (what the app
uses: it marks the shape when it loads a checkpoint and starts the thread after its first
prediction) measures in a daemon thread instead: meanwhile forwards of
that shape run the exact reference (the model itself, eager fp32; route source "pending") rather
than wait, and later ones take the measured path.

Forcing a path: ``Predictor(..., path="eager")`` or the environment variable ``XTASK_INFER_PATH``
(the argument wins). ``path="eager"`` (or ``fast=False`` with ``precision="fp32"``) is the exact
reference: the caller's model itself. ``fast=False`` runs the caller's model eagerly under
``autocast(precision)``.

The shared model is never modified (the app caches one per checkpoint and shares it between
sessions): folding, casting and layout changes happen on private copies. One lock serialises
foreground measurements and forwards, so a Predictor may be shared by several threads (Streamlit
sessions); a short-held second lock guards the route table. A background measurement holds neither
while it runs: its candidates other than "eager" are private copies, and "eager" runs the shared
model in eval mode under ``no_grad``, whose forward only reads its weights, so a reference forward
may run on it at the same time (it then slows the calls it overlaps; the route's reason counts
such forwards).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xtask_core.errors import XTaskError
from xtask_core.inference import autotune as tuning
from xtask_core.inference.paths import SPECS, PathRunner, candidate_paths, valid_paths
from xtask_core.inference.precision import resolve_precision

__all__ = ["Predictor", "Prediction", "Route", "preprocess_rgb", "PATH_ENV"]

PATH_ENV = "XTASK_INFER_PATH"  # environment variable forcing a path by name (see paths.SPECS)
# --------------------------------------------------------------------------- Prediction
@dataclass(frozen=True)
class Prediction:
    """The four outputs of one image, numpy, at the model input size (H, W).

    - ``seg_logits``: C×H×W float32, direct segmentation logits (None from a depth-only net)
    - ``seg_t_logits``: C×H×W float32, logits transferred from the direct depth (None if direct_only
      or from a single-task net)
    - ``depth``: H×W float32, direct depth in model units (disparity or metres: ``meta["depth_kind"]``;
      None from a segmentation-only net)
    - ``depth_t``: H×W float32, depth transferred from the direct segmentation (None if direct_only
      or from a single-task net)
    - ``input_rgb``: H×W×3 uint8, the resized image actually fed to the model
    - ``input_size``: (h, w) of the original image before resizing

    A single-task baseline (``config.task`` ``"segmt"`` / ``"depth"``) fills only its task's
    direct output; :attr:`tasks` says which are there.
    """

    seg_logits: np.ndarray | None
    seg_t_logits: np.ndarray | None
    depth: np.ndarray | None
    depth_t: np.ndarray | None
    input_rgb: np.ndarray
    input_size: tuple[int, int]

    @property
    def seg(self) -> np.ndarray | None:
        """H×W int64 direct class labels (argmax of the logits), or None from a depth-only net."""
        return None if self.seg_logits is None else self.seg_logits.argmax(axis=0).astype(np.int64)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks this prediction has: ``("segmt", "depth")``, ``("segmt",)`` or ``("depth",)``."""
        return tuple(t for t, a in (("segmt", self.seg_logits), ("depth", self.depth)) if a is not None)

    @property
    def seg_t(self) -> np.ndarray | None:
        """H×W int64 transferred class labels, or None."""
        return None if self.seg_t_logits is None else self.seg_t_logits.argmax(axis=0).astype(np.int64)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the maps."""
        return tuple(self.input_rgb.shape[:2])

    def resized(self, h: int, w: int) -> Prediction:
        """This prediction at h×w: bilinear for the logit and depth maps and the image.

        Labels (``seg``/``seg_t``) are the argmax of the resized logits, which gives smoother
        class borders than nearest-neighbour resizing of the labels themselves.
        """
        if h < 1 or w < 1:
            raise XTaskError(f"resize target must be positive, got {h}x{w}")
        if (h, w) == self.size:
            return self

        def maps(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
            squeeze = t.dim() == 2
            t = t[None, None] if squeeze else t[None]
            out = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0]
            return (out[0] if squeeze else out).numpy()

        rgb = maps(self.input_rgb.transpose(2, 0, 1).astype(np.float32))
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        return replace(self, seg_logits=maps(self.seg_logits), seg_t_logits=maps(self.seg_t_logits),
                       depth=maps(self.depth), depth_t=maps(self.depth_t), input_rgb=np.ascontiguousarray(rgb))


# --------------------------------------------------------------------------- preprocessing
def _as_rgb_uint8(rgb) -> np.ndarray:
    """Validate an image array → H×W×3 uint8 (grey H×W and RGBA H×W×4 are accepted and converted)."""
    a = np.asarray(rgb)
    if a.dtype != np.uint8:
        raise XTaskError(f"expected a uint8 image array, got dtype {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]  # alpha is not part of what the model sees
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise XTaskError(f"expected an H×W×3 RGB image, got shape {np.asarray(rgb).shape}")
    return a


def preprocess_rgb(rgb, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
                   ) -> tuple[torch.Tensor, np.ndarray]:
    """H×W×3 uint8 → (1×3×h×w float32 normalised tensor, h×w×3 uint8 resized image), size = (h, w).

    Resizing: area averaging when shrinking (no aliasing), bilinear when enlarging.
    Normalisation: (rgb/255 − mean) / std per channel, the config's mean/std.
    """
    a = _as_rgb_uint8(rgb)
    h, w = int(size[0]), int(size[1])
    if a.shape[:2] != (h, w):
        shrink = h * w < a.shape[0] * a.shape[1]
        a = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # e.g. a cached or memory-mapped image: torch needs a writable buffer
        a = a.copy()
    x = torch.from_numpy(a).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((x - m) / s)[None], a


# --------------------------------------------------------------------------- Predictor
def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def probe_input(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A deterministic, smooth N×3×H×W float32 input (low-resolution noise upsampled bilinearly,
    about unit variance) for measuring paths: closer to a normalised photo than white noise, so
    the argmax-agreement gate is not judged on meaningless near-ties alone."""
    n, c, h, w = (int(v) for v in shape)
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, c, max(1, h // 16), max(1, w // 16), generator=g)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class Route:
    """The path a Predictor runs for one input shape, and why.

    ``name``: a key of :data:`~xtask_core.inference.paths.SPECS` ("eager", "folded", …, or
    "pending" before the first measurement); ``precision``: what it computes in; ``source``:
    "measured", "cached" (a decision measured earlier, possibly by another process), "forced"
    (argument or ``XTASK_INFER_PATH``), "reference" (``fast=False``, or a background measurement
    that failed: ``fallback`` says why) or "pending" (nothing decided yet; with ``name`` "eager":
    a background measurement is running and the exact reference runs meanwhile);
    ``times_ms``: median ms per call of each measured candidate (from the measurement, also when
    cached); ``rejected``: candidate → why not used; ``fallback``: why the chosen path was given
    up at run time ("" if it was not).
    """

    name: str
    precision: str
    description: str
    source: str
    reason: str = ""
    times_ms: Mapping[str, float] = field(default_factory=dict)
    rejected: Mapping[str, str] = field(default_factory=dict)
    fallback: str = ""
    shape: tuple = ()

    def __str__(self) -> str:
        text = f"{self.name} ({self.description}); {self.source}"
        text += f": {self.reason}" if self.reason else ""
        return text + (f"; fell back: {self.fallback}" if self.fallback else "")


class Predictor:
    """Runs an XTaskNet for display and evaluation on the fastest correct path for the machine.

    Args:
        loaded: a :class:`~xtask_core.checkpoint.Loaded` (``.model``, ``.config``, ``.meta``),
            or a bare XTaskNet (its ``.config`` is used).
        device: where to run; None = the model's own device.
        precision: "auto" | "fp32" | "bf16" | "fp16" (see :mod:`xtask_core.inference.precision`):
            which paths are candidates (:func:`~xtask_core.inference.paths.candidate_paths`).
        fast: False runs the caller's model itself, eager, under ``autocast(precision)``
            (``precision="fp32"``: the exact reference), measuring nothing.
        path: force a path by name (see :mod:`~xtask_core.inference.paths`); None = the env
            variable ``XTASK_INFER_PATH`` if set, else measure.
        budget_s: seconds of timed calls a measurement may spend (after one untimed call per
            candidate); slow models get fewer repetitions.
        cache_dir: folder of the decision cache (None: ``XTASK_CACHE_DIR`` or ``~/.cache/xtask``).

    Construction is cheap: nothing is copied, built or measured until the first forward of a
    shape (or :meth:`autotune`). Attributes: ``device``, ``fast``, ``config``, ``meta``,
    ``requested_precision``; properties ``route`` (the :class:`Route` of the last shape run),
    ``routes`` (all, by input shape), ``precision`` (of the route), ``bn_folded``, ``fused``.
    """

    def __init__(self, loaded, device: str | torch.device | None = None, precision: str = "auto",
                 fast: bool = True, path: str | None = None, budget_s: float = 1.5,
                 cache_dir: str | os.PathLike | None = None):
        model = loaded if isinstance(loaded, nn.Module) else getattr(loaded, "model", None)
        if not isinstance(model, nn.Module):
            raise XTaskError("Predictor needs a loaded checkpoint (with .model) or a model")
        self.config = getattr(loaded, "config", None) or getattr(model, "config", None)
        if self.config is None:
            raise XTaskError("Predictor needs a model config (loaded.config or model.config)")
        self.meta = dict(getattr(loaded, "meta", None) or {})
        self.device = torch.device(device) if device is not None else _model_device(model)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise XTaskError("CUDA was requested but no CUDA device is available; use device='cpu'")
        self._resolved = resolve_precision(self.device, precision)
        self.requested_precision = precision
        self.fast = bool(fast)
        forced, origin = path, "the path argument"
        if forced is None and self.fast and os.environ.get(PATH_ENV, "").strip():
            forced, origin = os.environ[PATH_ENV].strip(), PATH_ENV
        if forced is not None:
            if forced not in valid_paths(self.device):
                raise XTaskError(f"unknown inference path {forced!r} (from {origin}) on {self.device.type}; "
                                 f"one of {', '.join(valid_paths(self.device))}")
            if not self.fast and forced != "eager":
                raise XTaskError(f"fast=False runs the model itself; path {forced!r} needs fast=True")
        self._forced, self._forced_by = forced, origin
        self._model = model
        self.budget_s = float(budget_s)
        self._cache = tuning.DecisionCache(cache_dir) if cache_dir is not None else None
        self._lock = threading.RLock()        # serialises foreground measurements and forwards
        self._table = threading.RLock()       # guards _runners, _routes, _pending (held briefly)
        self._runners: dict[str, PathRunner] = {}
        self._routes: dict[tuple, Route] = {}
        self._pending: dict[tuple, Route] = {}  # shapes measured in the background right now
        self._done: dict[tuple, threading.Event] = {}
        self._threads: dict[tuple, threading.Thread] = {}
        self._overlaps: dict[tuple, int] = {}   # forwards run while that shape was measured
        self._last: tuple | None = None

    # ----------------------------------------------------------------- routes
    def _runner(self, name: str) -> PathRunner:
        with self._table:
            r = self._runners.get(name)
        if r is None:  # built outside the table lock (a deep copy can take a while); the first kept
            r = PathRunner(name, self._model, self.device, eager_precision="fp32" if self.fast else self._resolved)
            with self._table:
                r = self._runners.setdefault(name, r)
        return r

    def _make_route(self, name: str, source: str, reason: str, shape: tuple,
                    decision: tuning.Decision | None = None) -> Route:
        spec = SPECS[name]
        precision = spec.precision if self.fast else self._resolved
        desc = (spec.description if self.fast or precision == "fp32"
                else f"the model itself, eager, autocast {precision}")
        return Route(name, precision, desc, source, reason, dict(decision.times_ms) if decision else {},
                     dict(decision.rejected) if decision else {}, "", shape)

    def _keep_only(self, keep: set) -> None:
        with self._table:
            keep = keep | {r.name for r in self._routes.values()} | ({"eager"} if self._pending else set())
            for name in [n for n in self._runners if n not in keep]:
                del self._runners[name]  # frees the copy (and its traced graphs)

    def _decision_key(self, shape: tuple) -> tuple[list, dict, str, tuning.DecisionCache]:
        names = candidate_paths(self.device, self.requested_precision)
        device = str(self.device) if self.device.type == "cpu" else torch.cuda.get_device_name(self.device)
        parts = {"model": self.config.to_dict(), "shape": list(shape), "batch": shape[0],
                 "precision": self.requested_precision, "device": device, "candidates": names}
        return names, parts, tuning.cache_key(parts), self._cache or tuning.DecisionCache()

    def _cached_route(self, shape: tuple) -> Route | None:
        """The route of a decision cached for ``shape`` (this process or on disk), or None."""
        names, _, key, cache = self._decision_key(shape)
        d = cache.get(key)
        if d is None or d.chosen not in names:
            return None
        self._keep_only({d.chosen})
        return self._make_route(d.chosen, "cached", d.reason, shape, d)

    def _measure(self, shape: tuple, remeasure: bool = False) -> Route:
        if not remeasure:
            cached = self._cached_route(shape)
            if cached is not None:
                return cached
        names, parts, key, cache = self._decision_key(shape)
        x = probe_input(shape)

        def builder(name: str):
            def build():
                runner = self._runner(name)
                return lambda: runner(x)
            return build

        cands = {n: builder(n) for n in names}
        if self.requested_precision in ("bf16", "fp16"):  # eager is the reference and the fallback only
            reference, fallback = self._runner("eager")(x), "eager"
            del cands["eager"]
        else:
            reference, fallback = "eager", None
        d = tuning.choose(cands, reference, budget_s=self.budget_s, fallback=fallback)
        cache.put(key, d, parts)
        self._keep_only({d.chosen})
        return self._make_route(d.chosen, "measured", d.reason, shape, d)

    def _route_for(self, shape: tuple, remeasure: bool = False) -> Route:
        with self._table:
            r = None if remeasure else self._routes.get(shape) or self._pending.get(shape)
        if r is not None:
            return r
        if not self.fast:
            r = self._make_route("eager", "reference", "fast=False", shape)
        elif self._forced is not None:
            r = self._make_route(self._forced, "forced", f"by {self._forced_by}", shape)
        else:
            r = self._measure(shape, remeasure=remeasure)
        with self._table:
            self._routes[shape] = r
        return r

    def autotune(self, size: tuple[int, int] | None = None, batch: int = 1, remeasure: bool = False) -> Route:
        """Decide (measure, or take the cached decision) and build the path for ``batch``×3×size
        ((H, W), multiples of 32; default the config's size) now, and run it once, so the first
        real request does not wait. ``remeasure=True`` ignores earlier decisions. Returns the
        :class:`Route`. Thread-safe; blocks other forwards of this Predictor while it runs."""
        shape = self._shape(size, batch)
        self.wait_for_route(size, batch)  # a background measurement of this shape: its result
        with self._lock:
            route = self._route_for(shape, remeasure=remeasure)
            self._runner(route.name)(probe_input(shape))  # builds a traced graph for this shape, if any
            self._last = shape
            return route

    def _shape(self, size, batch: int) -> tuple:
        if batch < 1:
            raise XTaskError(f"batch must be >= 1, got {batch}")
        h, w = self._size(size)
        return (int(batch), 3, h, w)

    def autotune_in_background(self, size: tuple[int, int] | None = None, batch: int = 1,
                               start: bool = True) -> Route:
        """Decide the path for ``batch``×3×size (default the config's size) without blocking.

        A forced path, ``fast=False``, a shape already decided or a decision cached for it (this
        process or on disk) is taken at once, with no thread. Otherwise a daemon thread measures
        the candidates (as :meth:`autotune`) and, until it is done, forwards of this shape run
        the exact reference (the model itself, eager fp32) and report a route with source
        "pending"; then they run the measured path. If the measurement raises, the shape stays on
        the reference path (source "reference", ``fallback`` saying why). Returns the route now
        in effect; :meth:`wait_for_route` waits for the decision.

        ``start=False`` marks the shape pending (forwards run the reference) without starting the
        thread; a later call with ``start=True`` (or :meth:`wait_for_route`) starts it, and it
        measures, or takes the cached decision, and builds the chosen path before forwards use it.
        The app does this: the first page's predictions share the CPU neither with the
        measurement nor with building (tracing) a cached choice.
        """
        shape = self._shape(size, batch)
        with self._table:
            if start:
                self._start_deferred(shape)
            r = self._routes.get(shape) or self._pending.get(shape)
            if r is not None:
                return r
        if not self.fast or self._forced is not None:
            return self._route_for(shape)
        cached = self._cached_route(shape)
        with self._table:
            if shape in self._routes or shape in self._pending:  # another thread was quicker
                return self._routes.get(shape) or self._pending[shape]
            if cached is not None and (start or cached.name == "eager"):
                self._routes[shape] = cached
                return cached
            what = (f"building the cached choice ({cached.name})" if cached is not None
                    else "measuring")
            pending = self._make_route("eager", "pending", f"{what} in the background; the exact reference "
                                       "runs meanwhile", shape)
            self._pending[shape], self._done[shape], self._overlaps[shape] = pending, threading.Event(), 0
            th = threading.Thread(target=self._measure_in_background, args=(shape,), name="xtask-autotune",
                                  daemon=True)
            self._threads[shape] = th
            if start:
                th.start()
        return pending

    def _start_deferred(self, shape: tuple) -> None:
        """Start the background thread of ``shape`` if it was created with ``start=False`` and has
        not started yet (call with ``_table`` held)."""
        th = self._threads.get(shape)
        if th is not None and th.ident is None:
            th.start()

    def _measure_in_background(self, shape: tuple) -> None:
        try:
            route = self._measure(shape)
            with self._table:
                n = self._overlaps.get(shape, 0)
            if n and route.source == "measured":
                route = replace(route, reason=f"{route.reason}; {n} reference forward(s) ran alongside")
            # Build the chosen path for this shape here (copies, folding, tracing: seconds for a
            # traced path), not in the first forward that uses it.
            self._runner(route.name)(probe_input(shape))
        except Exception as err:  # noqa: BLE001 - background work never takes the app down: stay exact
            route = replace(self._make_route("eager", "reference", "the background measurement failed", shape),
                            fallback=f"measurement {tuning.short_error(err)}")
        with self._table:
            self._routes[shape] = route
            self._pending.pop(shape, None)
            done = self._done[shape]
        done.set()

    def wait_for_route(self, size: tuple[int, int] | None = None, batch: int = 1,
                       timeout: float | None = None) -> Route | None:
        """Wait (at most ``timeout`` s; None: no limit) for a background measurement of
        ``batch``×3×size started by :meth:`autotune_in_background`; returns the decided route, or
        None when none is decided yet (still measuring, or never started)."""
        shape = self._shape(size, batch)
        with self._table:
            done = self._done.get(shape)
            self._start_deferred(shape)   # deferred (``start=False``): waiting for it means starting it
        if done is not None:
            done.wait(timeout)
        with self._table:
            return self._routes.get(shape)

    def warmup(self, size: tuple[int, int] | None = None, batch: int = 1) -> Route:
        """Same as :meth:`autotune` (kept for callers of the older name)."""
        return self.autotune(size, batch=batch)

    @property
    def route(self) -> Route:
        """The :class:`Route` of the last input shape run (or decided); a "pending" one before."""
        with self._table:
            r = self._routes.get(self._last) or self._pending.get(self._last) if self._last is not None else None
        if r is not None:
            return r
        if not self.fast or self._forced is not None:
            name = self._forced or "eager"
            return self._make_route(name, "forced" if self._forced else "reference",
                                    f"by {self._forced_by}" if self._forced else "fast=False", ())
        return Route("pending", self._resolved, "measured on the first forward of each input shape", "pending")

    @property
    def routes(self) -> dict:
        """Every decided input shape (N, 3, H, W) → its :class:`Route`."""
        with self._table:
            return dict(self._routes)

    @property
    def precision(self) -> str:
        """What the current route computes in ("fp32", "bf16" or "fp16")."""
        return self.route.precision

    def _current_runner(self) -> PathRunner | None:
        r = self.route
        return self._runners.get(r.name)

    @property
    def bn_folded(self) -> int:
        """BatchNorms folded into convolutions on the current route (0 on eager)."""
        r = self._current_runner()
        return r.bn_folded if r is not None else 0

    @property
    def fused(self) -> int:
        """Convolutions fused on the current route (0 when not a fused path)."""
        r = self._current_runner()
        return r.fused if r is not None else 0

    @property
    def traced(self) -> bool:
        """True when forwards are specialised per input shape (measured per shape, or traced
        graphs): callers batching a dataset should pad the last batch to keep one shape."""
        return self.fast and (self._forced is None or SPECS[self._forced].trace)

    # ----------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise XTaskError(f"expected an N×3×H×W image batch, got {shape}")
        h, w = x.shape[-2:]
        if h % 32 or w % 32:  # a traced graph no longer runs the model's own check
            raise XTaskError(f"input height and width must be multiples of 32, got {h}x{w}; "
                             "resize or pad the image first")

    def forward(self, x: torch.Tensor, direct_only: bool = False) -> tuple:
        """x: N×3×H×W float (normalised, H, W multiples of 32) → ``(seg, seg_t, depth, depth_t)``.

        Same contract as ``model(x)``: float32 N×C×H×W, N×C×H×W, N×1×H×W, N×1×H×W on
        ``self.device`` (contiguous); seg_t and depth_t are None with ``direct_only``. The first
        call for a new shape measures the candidate paths (or reads the cached decision); while
        :meth:`autotune_in_background` measures this shape, the exact reference runs instead of
        waiting. If the chosen path fails at run time, this shape falls back to eager (``route.fallback``).
        """
        self._check_input(x)
        shape = tuple(int(v) for v in x.shape)
        with self._lock:
            route = self._route_for(shape)
            self._last = shape
            if route.source == "pending":
                with self._table:
                    self._overlaps[shape] = self._overlaps.get(shape, 0) + 1
            try:
                return self._runner(route.name)(x, direct_only=direct_only)
            except XTaskError:
                raise
            except Exception as err:  # noqa: BLE001 - a failing fast path: run eager, say why
                if route.name == "eager":
                    raise
                with self._table:
                    self._routes[shape] = replace(self._make_route("eager", route.source, route.reason, shape),
                                                  times_ms=route.times_ms, rejected=route.rejected,
                                                  fallback=f"{route.name} {tuning.short_error(err)}")
                return self._runner("eager")(x, direct_only=direct_only)

    __call__ = forward

    # ----------------------------------------------------------------- images
    def _size(self, size) -> tuple[int, int]:
        h, w = size if size is not None else (self.config.height, self.config.width)
        h, w = int(h), int(w)
        if h < 32 or w < 32 or h % 32 or w % 32:
            raise XTaskError(f"model input size must be positive multiples of 32, got {h}x{w}")
        return h, w

    def predict(self, rgb, size: tuple[int, int] | None = None, direct_only: bool = False) -> Prediction:
        """One H×W×3 uint8 image of any size → :class:`Prediction` at the model input ``size``
        ((H, W), multiples of 32; default the config's height×width)."""
        return self.predict_batch([rgb], size=size, direct_only=direct_only)[0]

    def predict_batch(self, images: Sequence, size: tuple[int, int] | None = None, batch_size: int = 4,
                      direct_only: bool = False) -> list[Prediction]:
        """Several H×W×3 uint8 images → list of :class:`Prediction`, run ``batch_size`` at a time.

        A short last chunk is padded to ``batch_size`` by repeating its last image, so only
        one graph shape is ever traced (tracing costs more than a few padded images).
        """
        if batch_size < 1:
            raise XTaskError(f"batch_size must be >= 1, got {batch_size}")
        hw = self._size(size)
        mean, std = self.config.mean, self.config.std
        preds: list[Prediction] = []
        images = list(images)
        bs = min(batch_size, max(1, len(images)))
        for start in range(0, len(images), bs):
            chunk = images[start:start + bs]
            prepped = [preprocess_rgb(im, hw, mean, std) for im in chunk]
            xs = [p[0] for p in prepped]
            xs += [xs[-1]] * (bs - len(xs))
            seg, seg_t, depth, depth_t = self.forward(torch.cat(xs), direct_only=direct_only)
            seg, seg_t, depth, depth_t = (None if o is None else o.cpu().numpy() for o in (seg, seg_t, depth, depth_t))
            for i, (im, (_, small)) in enumerate(zip(chunk, prepped)):
                preds.append(Prediction(
                    seg_logits=None if seg is None else seg[i], seg_t_logits=None if seg_t is None else seg_t[i],
                    depth=None if depth is None else depth[i, 0], depth_t=None if depth_t is None else depth_t[i, 0],
                    input_rgb=small, input_size=tuple(int(v) for v in np.asarray(im).shape[:2])))
        return preds
