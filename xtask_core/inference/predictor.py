"""Fast inference: :class:`Predictor` (preprocessing + fast model path) and :class:`Prediction`.

Paths (``Predictor.path`` says which one runs):

- ``fast=True`` on CPU: a private deep copy of the model with every BatchNorm folded into its
  conv (in float64), channels-last, with bf16 weights where the CPU has AMX (``precision="auto"``;
  AVX512-BF16 alone runs bf16 slower than fp32), fp32 elsewhere. Its convolutions are fused with
  their ReLU / residual add and run as oneDNN calls on pre-packed weights, and the decoders'
  1×1 heads run before their last upsampling (:func:`~xtask_core.inference.fastpath.fuse_for_cpu`;
  eager). Where the fused ops are missing, the copy runs as a traced + frozen + oneDNN-optimised
  graph per input shape with bf16 weights, eagerly with fp32 ones. See ``xtask bench`` and the
  README for the measured factors (eager fp32 is the reference).
- ``fast=True`` on CUDA: the folded copy, channels-last, under autocast (bf16, or fp16 where
  bf16 is missing); eager, so no per-shape warm-up.
- ``fast=False``: the caller's model itself, eager, under ``autocast(precision)``;
  ``precision="fp32", fast=False`` is the exact reference path.

The shared model is never modified (the app caches one per checkpoint and shares it between
sessions): folding, casting and layout changes happen on the copy. One lock serialises
forwards, so a Predictor may be shared by several threads (Streamlit sessions).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xtask_core.errors import XTaskError
from xtask_core.inference.precision import autocast, resolve_precision

__all__ = ["Predictor", "Prediction", "preprocess_rgb", "MAX_CACHED_GRAPHS"]

MAX_CACHED_GRAPHS = 4  # traced graphs kept per Predictor (one per input shape), least recent dropped
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------- Prediction
@dataclass(frozen=True)
class Prediction:
    """The four outputs of one image, numpy, at the model input size (H, W).

    - ``seg_logits``: C×H×W float32, direct segmentation logits
    - ``seg_t_logits``: C×H×W float32, logits transferred from the direct depth (None if direct_only)
    - ``depth``: H×W float32, direct depth in model units (disparity or metres: ``meta["depth_kind"]``)
    - ``depth_t``: H×W float32, depth transferred from the direct segmentation (None if direct_only)
    - ``input_rgb``: H×W×3 uint8, the resized image actually fed to the model
    - ``input_size``: (h, w) of the original image before resizing
    """

    seg_logits: np.ndarray
    seg_t_logits: np.ndarray | None
    depth: np.ndarray
    depth_t: np.ndarray | None
    input_rgb: np.ndarray
    input_size: tuple[int, int]

    @property
    def seg(self) -> np.ndarray:
        """H×W int64 direct class labels (argmax of the logits)."""
        return self.seg_logits.argmax(axis=0).astype(np.int64)

    @property
    def seg_t(self) -> np.ndarray | None:
        """H×W int64 transferred class labels, or None."""
        return None if self.seg_t_logits is None else self.seg_t_logits.argmax(axis=0).astype(np.int64)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the maps."""
        return tuple(self.depth.shape)

    def resized(self, h: int, w: int) -> "Prediction":
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
    import cv2

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


class Predictor:
    """Runs an XTaskNet for display and evaluation, as fast as the device allows.

    Args:
        loaded: a :class:`~xtask_core.checkpoint.Loaded` (``.model``, ``.config``, ``.meta``),
            or a bare XTaskNet (its ``.config`` is used).
        device: where to run; None = the model's own device.
        precision: "auto" | "fp32" | "bf16" | "fp16" (see :mod:`xtask_core.inference.precision`).
        fast: use the fast path (a private optimised copy); False runs the model itself, eager.
        trace: CPU fast path only: run a traced + frozen graph (True) or the copy eagerly (False);
            None = trace only where the copy is not fused and holds bf16 weights.
        fuse: CPU fast path only: fuse each conv with its ReLU / residual add and pre-pack its
            weights (:func:`~xtask_core.inference.fastpath.fuse_for_cpu`; eager). None = wherever this
            torch build has the ops, unless ``trace=True``; False = never.

    Attributes: ``device``, ``precision`` (resolved), ``fast``, ``config``, ``meta``, ``path``
    (a short description of the path that runs), ``bn_folded`` (BatchNorms folded), ``fused``
    (convolutions fused; 0 when not), ``fallback_reason`` (why a faster path was given up, or "").
    """

    def __init__(self, loaded, device: str | torch.device | None = None, precision: str = "auto",
                 fast: bool = True, trace: bool | None = None, fuse: bool | None = None):
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
        self.precision = resolve_precision(self.device, precision)
        self.fast = bool(fast)
        self._lock = threading.RLock()
        self._graphs: OrderedDict = OrderedDict()  # (shape, direct_only) -> traced graph
        self.bn_folded = 0
        self.fused = 0
        self.fallback_reason = ""
        self._jit_ok = False
        self._dtype = torch.float32
        if self.fast:
            from xtask_core.inference.fastpath import prepare_copy

            # CPU: weights in the compute dtype (no per-call autocast casts); CUDA keeps fp32 weights
            # under autocast, which keeps the reductions (log-softmax) in fp32.
            self._dtype = _DTYPES[self.precision] if self.device.type == "cpu" else torch.float32
            self._net, self.bn_folded = prepare_copy(model, dtype=self._dtype, device=self.device,
                                                     channels_last=True)
            if self.device.type == "cpu":
                if trace is not True and fuse is not False:
                    self._fuse(model)
                # Unfused: the traced + frozen oneDNN graph paid off with bf16 weights (AMX: ≈ 59
                # vs 70-77 ms eager); with fp32 weights on an AVX2 CPU it was slower than the
                # folded channels-last copy run eagerly (full model, batch 1: 829 vs 722 ms;
                # batch 4: 3.44 vs 2.71 s). ``trace`` can force either choice.
                self._jit_ok = not self.fused and (self.precision == "bf16" if trace is None else bool(trace))
        elif model.training or _model_device(model) != self.device:
            import copy

            # A train-mode model would update BN statistics, and moving it would move the
            # caller's: both are mutations, so run a private eval copy instead.
            self._net = copy.deepcopy(model).eval().to(self.device)
        else:
            self._net = model

    def _fuse(self, model: nn.Module) -> None:
        """Fuse the CPU copy's convolutions (:func:`~xtask_core.inference.fastpath.fuse_for_cpu`) and run it
        once on a small input; if the fused ops fail on this build, go back to an unfused copy."""
        from xtask_core.inference.fastpath import fuse_for_cpu, prepare_copy

        try:
            self.fused = fuse_for_cpu(self._net)
            if self.fused:
                with torch.no_grad():
                    self._net(torch.zeros(1, 3, 32, 32, dtype=self._dtype).contiguous(
                        memory_format=torch.channels_last))
        except Exception as err:  # noqa: BLE001 - any failure of the private ops: run unfused, say why
            self.fused = 0
            self.fallback_reason = f"conv fusion failed: {type(err).__name__}"
            self._net, self.bn_folded = prepare_copy(model, dtype=self._dtype, device=self.device,
                                                     channels_last=True)

    # ----------------------------------------------------------------- description
    @property
    def path(self) -> str:
        if not self.fast:
            return f"eager {self.precision} (reference path)"
        if self.device.type == "cpu":
            if self.fused:
                return (f"eager, {self.precision} weights, BN folded ({self.bn_folded}), "
                        f"{self.fused} convs fused with their ReLU/residual (pre-packed), channels-last")
            how = ("traced+frozen oneDNN graph" if self._jit_ok
                   else f"eager ({self.fallback_reason})" if self.fallback_reason else "eager")
            return f"{how}, {self.precision} weights, BN folded ({self.bn_folded}), channels-last"
        return f"eager autocast {self.precision}, BN folded ({self.bn_folded}), channels-last"

    @property
    def traced(self) -> bool:
        """True when forwards run as traced graphs (one per input shape, built on first use)."""
        return self._jit_ok

    # ----------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise XTaskError(f"expected an N×3×H×W image batch, got {shape}")
        h, w = x.shape[-2:]
        if h % 32 or w % 32:  # the traced graph no longer runs the model's own check
            raise XTaskError(f"input height and width must be multiples of 32, got {h}x{w}; "
                             "resize or pad the image first")

    def _graph(self, x: torch.Tensor, direct_only: bool):
        """The traced graph for x's shape (built on first use), or None to run eager."""
        if not self._jit_ok:
            return None
        key = (tuple(x.shape), direct_only)
        g = self._graphs.get(key)
        if g is not None:
            self._graphs.move_to_end(key)
            return g
        from xtask_core.inference.fastpath import (
            DirectOutputs,
            FourOutputs,
            freeze_for_inference,
        )

        wrapper = DirectOutputs(self._net) if direct_only else FourOutputs(self._net)
        try:
            g = freeze_for_inference(wrapper, x)
        except Exception as err:  # noqa: BLE001 - any tracing failure: fall back to eager, say why
            self._jit_ok = False
            self.fallback_reason = f"tracing failed: {type(err).__name__}"
            return None
        self._graphs[key] = g
        while len(self._graphs) > MAX_CACHED_GRAPHS:
            self._graphs.popitem(last=False)
        return g

    def forward(self, x: torch.Tensor, direct_only: bool = False) -> tuple:
        """x: N×3×H×W float (normalised, H, W multiples of 32) → ``(seg, seg_t, depth, depth_t)``.

        Same contract as ``model(x)``: float32 N×C×H×W, N×C×H×W, N×1×H×W, N×1×H×W on
        ``self.device`` (contiguous); seg_t and depth_t are None with ``direct_only``.
        """
        self._check_input(x)
        with self._lock, torch.no_grad():
            if not self.fast:
                with autocast(self.device, self.precision):
                    out = self._net(x.to(self.device), direct_only=direct_only)
                return tuple(None if o is None else o.float() for o in out)
            dtype = self._dtype
            xin = x.to(self.device, dtype=dtype).contiguous(memory_format=torch.channels_last)
            g = self._graph(xin, direct_only)
            if g is not None:
                out = g(xin)
                out = (out[0], None, out[1], None) if direct_only else out
            else:
                with autocast(self.device, self.precision if self.device.type == "cuda" else "fp32"):
                    out = self._net(xin, direct_only=direct_only)
            return tuple(None if o is None else o.float().contiguous() for o in out)

    __call__ = forward

    def warmup(self, size: tuple[int, int] | None = None, batch: int = 1) -> None:
        """Build the graph for ``batch``×3×size now (default: the model's size), so the first real
        request does not pay for tracing (≈0.1-1 s on CPU)."""
        h, w = size or (self.config.height, self.config.width)
        self.forward(torch.zeros(batch, 3, h, w))

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
            seg, depth = seg.cpu().numpy(), depth.cpu().numpy()
            seg_t = None if seg_t is None else seg_t.cpu().numpy()
            depth_t = None if depth_t is None else depth_t.cpu().numpy()
            for i, (im, (_, small)) in enumerate(zip(chunk, prepped)):
                preds.append(Prediction(
                    seg_logits=seg[i], seg_t_logits=None if seg_t is None else seg_t[i],
                    depth=depth[i, 0], depth_t=None if depth_t is None else depth_t[i, 0],
                    input_rgb=small, input_size=tuple(int(v) for v in np.asarray(im).shape[:2])))
        return preds
