"""Graph-level tricks for the fast inference path: BatchNorm folding and frozen oneDNN graphs.

Everything here works on a model the caller owns (the :class:`~xtask_core.inference.Predictor`
passes a deep copy): the app caches one model and shares it across sessions, so the shared
model is never touched.

What was measured on the 2-core Xeon (AVX512-BF16 + AMX) this project benchmarks on, full
model (ResNet34, 128×256, batch 1; eager fp32 ≈ 325 ms):

- bf16 weights + channels-last, eager: ≈ 70-77 ms (AMX matmuls; the single biggest win);
- the same traced, frozen and passed through ``torch.jit.optimize_for_inference`` (oneDNN
  conv+ReLU fusion, weights pre-packed once): ≈ 59 ms, ≈ 0.7 s to build;
- ``torch.compile`` (inductor, freezing): 37 s cold start and slower steady state here, so it
  is not used (the app must show first predictions within seconds).
"""
from __future__ import annotations

import copy
import warnings
from typing import Callable

import torch
from torch import nn

__all__ = ["fold_conv_bn", "fold_batchnorm", "count_batchnorm", "prepare_copy", "freeze_for_inference",
           "FourOutputs", "DirectOutputs"]


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d computing ``bn(conv(x))`` with ``bn`` in eval mode (running statistics).

    y = γ (W x + b − μ) / sqrt(σ² + ε) + β  ⇒  W' = W · s,  b' = (b − μ) · s + β,  s = γ / sqrt(σ² + ε)
    (s broadcast over the output-channel axis). Computed in float64 and cast back to the
    conv's dtype, so folding adds no rounding beyond the final cast.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64,
                                                                                 device=w.device)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
    scale = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_((w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
        fused.bias.copy_(((b - bn.running_mean.detach().double()) * scale + beta).to(conv.weight.dtype))
    return fused


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and not bn.training
            and bn.track_running_stats and bn.running_mean is not None
            and conv.out_channels == bn.num_features)


def _resnet_block_types() -> tuple:
    """torchvision blocks whose forward is exactly ``bnK(convK(x))`` for every K (safe to fold by name)."""
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck
        return (BasicBlock, Bottleneck)
    except ImportError:  # torchvision is a dependency, but folding must never be the reason to fail
        return ()


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it, IN PLACE.

    Two patterns are recognised, both of which guarantee nothing runs between conv and BN:
    adjacent ``Conv2d, BatchNorm2d`` children of an ``nn.Sequential`` (decoders, TTNets with
    ``batch_norm``, the encoder stem and ResNet downsample branches), and ``convK``/``bnK``
    pairs of torchvision ``BasicBlock``/``Bottleneck`` modules. The BN is replaced by
    ``nn.Identity``. Returns the number of BNs folded. Train-mode BNs are left alone (they
    use batch statistics, which cannot be folded). Call this on a copy you own.
    """
    folded = 0
    blocks = _resnet_block_types()
    for parent in list(model.modules()):
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            for a, b in zip(names, names[1:]):
                conv, bn = parent._modules[a], parent._modules[b]
                if _foldable(conv, bn):
                    parent._modules[a] = fold_conv_bn(conv, bn)
                    parent._modules[b] = nn.Identity()
                    folded += 1
        elif blocks and isinstance(parent, blocks):
            for k in (1, 2, 3):
                conv, bn = getattr(parent, f"conv{k}", None), getattr(parent, f"bn{k}", None)
                if conv is not None and bn is not None and _foldable(conv, bn):
                    setattr(parent, f"conv{k}", fold_conv_bn(conv, bn))
                    setattr(parent, f"bn{k}", nn.Identity())
                    folded += 1
    return folded


def count_batchnorm(model: nn.Module) -> int:
    """Number of BatchNorm modules left in ``model`` (0 after a complete fold)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def prepare_copy(model: nn.Module, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                 channels_last: bool = True, fold: bool = True) -> tuple[nn.Module, int]:
    """Deep copy of ``model`` in eval mode, BN folded (in fp32/fp64), then cast and laid out.

    Folding happens before the cast to ``dtype`` so bf16 weights are rounded once, from the
    exact folded values. Returns ``(copy, number_of_BNs_folded)``; ``model`` is not modified.
    """
    net = copy.deepcopy(model).eval()
    net.requires_grad_(False)
    folded = fold_batchnorm(net) if fold else 0
    net = net.to(device=device, dtype=dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net, folded


class FourOutputs(nn.Module):
    """Tracing wrapper: ``model(x)`` → the 4-tuple (no None, no keyword arguments)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        seg, seg_t, depth, depth_t = self.model(x)
        return seg, seg_t, depth, depth_t


class DirectOutputs(nn.Module):
    """Tracing wrapper: ``model(x, direct_only=True)`` → (seg, depth) (a traced graph cannot return None)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        seg, _, depth, _ = self.model(x, direct_only=True)
        return seg, depth


def freeze_for_inference(module: nn.Module, example: torch.Tensor, *, optimize: bool = True) -> Callable:
    """Trace ``module`` on ``example``, freeze it and (CPU) run oneDNN's inference passes.

    ``torch.jit.freeze`` inlines the weights as constants (and folds any BN left); on CPU
    ``optimize_for_inference`` converts convs to pre-packed oneDNN kernels with fused ReLU. The
    graph is specialised to ``example``'s shape, dtype and layout: trace again for another
    shape. Raises whatever tracing raises; callers fall back to eager.
    """
    with warnings.catch_warnings():
        # Tracer warnings about Python ints taken from shapes (the model's /32 check) are
        # expected: the graph is only ever run on the shape it was traced with.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = torch.jit.trace(module.eval(), example, check_trace=False)
            frozen = torch.jit.freeze(traced)
            if optimize and example.device.type == "cpu":
                frozen = torch.jit.optimize_for_inference(frozen)
            frozen(example)  # first run compiles/prepacks here, not in the caller's first request
    return frozen
