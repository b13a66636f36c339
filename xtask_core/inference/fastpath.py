"""Graph-level tricks for the fast inference path: BatchNorm folding, fused oneDNN convolutions
(:func:`fuse_for_cpu`, the default CPU path) and frozen oneDNN graphs (the fallback).

Everything here works on a model the caller owns (the :class:`~xtask_core.inference.predictor.Predictor`
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
from collections.abc import Callable

import torch
from torch import nn

from xtask_core.model.resnet import BasicBlock, Bottleneck
from xtask_core.model.xtasknet import XTaskNet

__all__ = ["fold_conv_bn", "fold_batchnorm", "count_batchnorm", "prepare_copy", "freeze_for_inference",
           "FourOutputs", "DirectOutputs", "fusion_available", "fuse_for_cpu", "FusedConv2d", "FusedBasicBlock",
           "LowResHeadDecoder", "CastInput"]


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
    """ResNet blocks (model/resnet.py) whose forward is exactly ``bnK(convK(x))`` for every K
    (safe to fold by name)."""
    return (BasicBlock, Bottleneck)


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


# ----------------------------------------------------------------------------- fused CPU convs
# oneDNN's "pointwise" convolution (the op inductor emits for CPU convs) takes the weights
# pre-packed once into the blocked layout its kernels read, and applies the ReLU (or a residual
# add) to the accumulators before writing the output. Eager ``conv2d`` re-packs the weights on
# every call and writes, reads and writes the output again for the ReLU: on the 2-core Xeon
# (AMX) the demo model's convs took 25 instead of 34.5 ms. The op cannot be traced (its
# ``Scalar?[]`` argument), so a fused copy runs eagerly.

def fusion_available() -> bool:
    """True when this torch build has oneDNN's fused CPU convolution ops."""
    try:
        ops = torch.ops.mkldnn
        return bool(torch.backends.mkldnn.is_available()) and hasattr(ops, "_convolution_pointwise") \
            and hasattr(ops, "_reorder_convolution_weight")
    except (AttributeError, RuntimeError):
        return False


def _pair(v) -> list[int]:
    return [int(a) for a in (v if isinstance(v, (tuple, list)) else (v, v))]


def _fusable_conv(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.padding_mode == "zeros" and not isinstance(m.padding, str)
            and m.weight.device.type == "cpu" and m.weight.dtype in (torch.float32, torch.bfloat16))


class FusedConv2d(nn.Module):
    """``conv`` (+ ReLU, + a residual added before it) as one oneDNN call with pre-packed weights.

    ``forward(x)`` = ``act(conv(x))``; ``forward(x, other)`` = ``act(conv(x) + other)``, with
    ``act`` the ReLU when ``relu`` else the identity. Inference only (no gradients). The packed
    weights are an opaque oneDNN tensor: the module cannot be deep-copied or saved.
    """

    def __init__(self, conv: nn.Conv2d, relu: bool = False):
        super().__init__()
        self.padding, self.stride = _pair(conv.padding), _pair(conv.stride)
        self.dilation, self.groups = _pair(conv.dilation), int(conv.groups)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.relu = bool(relu)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.packed = torch.ops.mkldnn._reorder_convolution_weight(
            conv.weight.detach().contiguous(), self.padding, self.stride, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, stride={tuple(self.stride)}, "
                f"padding={tuple(self.padding)}, relu={self.relu}")

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        args = (self.padding, self.stride, self.dilation, self.groups)
        if other is None:
            return torch.ops.mkldnn._convolution_pointwise(x, self.packed, self.bias, *args,
                                                           "relu" if self.relu else "none", [], "")
        # The add is fused; oneDNN refuses add + ReLU in one call, so the ReLU runs in place after.
        y = torch.ops.mkldnn._convolution_pointwise.binary(x, other, self.packed, self.bias, *args,
                                                           "add", None, None, [], None)
        return torch.relu_(y) if self.relu else y


class FusedBasicBlock(nn.Module):
    """A torchvision ``BasicBlock`` whose BNs were folded: relu(conv2(relu(conv1(x))) + shortcut(x))
    with the first ReLU and the residual add fused into the convolutions."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.conv1 = FusedConv2d(block.conv1, relu=True)
        self.conv2 = FusedConv2d(block.conv2, relu=True)
        self.downsample = None
        if block.downsample is not None:
            convs = [m for m in block.downsample if not isinstance(m, nn.Identity)]
            self.downsample = FusedConv2d(convs[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x), shortcut)


def _fusable_block(m: nn.Module) -> bool:
    if type(m) is not BasicBlock or not (isinstance(m.bn1, nn.Identity) and isinstance(m.bn2, nn.Identity)):
        return False
    if not (_fusable_conv(m.conv1) and _fusable_conv(m.conv2)):
        return False
    if m.downsample is None:
        return True
    rest = [c for c in m.downsample if not isinstance(c, nn.Identity)]
    return isinstance(m.downsample, nn.Sequential) and len(rest) == 1 and _fusable_conv(rest[0])


class LowResHeadDecoder(nn.Module):
    """A :class:`~xtask_core.model.decoder.Decoder` whose 1×1 output conv runs *before* the last ×2
    upsampling, and the upsampling in float32 on the task's few channels.

    Both maps are linear, one over channels and one over pixels, and bilinear weights sum to 1,
    so ``conv6(up(x)) == up(conv6(x))`` exactly (up to rounding): the head then reads 4× fewer
    pixels and the upsampling moves 7 (or 1) channels instead of ``mid_features``. Returns
    float32, contiguous.
    """

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, feats):
        d = self.decoder
        enc0, enc1, enc2, enc3, enc4 = feats
        x = d.conv1(enc4)
        x = d.conv2(torch.cat((x, enc3), dim=1))
        x = d.conv3(torch.cat((x, enc2), dim=1))
        x = d.conv4(torch.cat((x, enc1), dim=1))
        b = d.conv5
        x = b.conv3(b.conv2(b.conv1(torch.cat((x, enc0), dim=1))))
        y = d.conv6(x).float().contiguous()
        return torch.nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)


def _head_is_1x1(decoder: nn.Module) -> bool:
    convs = [m for m in decoder.conv6 if not isinstance(m, nn.Identity)]
    if len(convs) != 1:
        return False
    c = convs[0]
    if isinstance(c, FusedConv2d):
        return not c.relu and c.padding == [0, 0] and c.stride == [1, 1] and tuple(c.packed.shape[-2:]) == (1, 1)
    return type(c) is nn.Conv2d and c.kernel_size == (1, 1) and c.stride == (1, 1) and c.padding in ((0, 0), 0)


class CastInput(nn.Module):
    """Runs ``module`` on its input cast to ``dtype``, channels-last (the transfer nets get the
    float32 decoder outputs of :class:`LowResHeadDecoder`)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.dtype).contiguous(memory_format=torch.channels_last))


def fuse_for_cpu(net: nn.Module) -> int:
    """Rewrite a BN-folded CPU inference copy (from :func:`prepare_copy`) IN PLACE for eager speed.

    - every ``Conv2d`` → :class:`FusedConv2d`, taking the ``ReLU`` that follows it in an
      ``nn.Sequential`` (folded BNs, now ``Identity``, in between are skipped);
    - every folded torchvision ``BasicBlock`` → :class:`FusedBasicBlock`;
    - the XTaskNet decoders → :class:`LowResHeadDecoder` (1×1 head before the last upsampling),
      with the transfer nets behind :class:`CastInput`.

    Returns the number of convolutions fused; 0 (nothing changed) if :func:`fusion_available`
    is False. The result can no longer be traced or deep-copied: run it eagerly.
    """
    if not fusion_available():
        return 0
    fused = 0
    for parent in list(net.modules()):
        for name, child in list(parent._modules.items()):
            if _fusable_block(child):
                parent._modules[name] = FusedBasicBlock(child)
                fused += 2 + (child.downsample is not None)
    for parent in list(net.modules()):
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            for i, name in enumerate(names):
                conv = parent._modules[name]
                if not _fusable_conv(conv):
                    continue
                j = i + 1
                while j < len(names) and isinstance(parent._modules[names[j]], nn.Identity):
                    j += 1
                relu = j < len(names) and type(parent._modules[names[j]]) is nn.ReLU
                parent._modules[name] = FusedConv2d(conv, relu=relu)
                if relu:
                    parent._modules[names[j]] = nn.Identity()
                fused += 1
        for name, child in list(parent._modules.items()):
            if _fusable_conv(child):  # convs outside a Sequential (the transfer nets' final conv)
                parent._modules[name] = FusedConv2d(child)
                fused += 1
    if isinstance(net, XTaskNet) and all(_head_is_1x1(d) for d in (net.decoder_segmt, net.decoder_depth)):
        dtype = next(p for p in net.parameters()).dtype
        net.decoder_segmt = LowResHeadDecoder(net.decoder_segmt)
        net.decoder_depth = LowResHeadDecoder(net.decoder_depth)
        net.trans_s2d = CastInput(net.trans_s2d, dtype)
        net.trans_d2s = CastInput(net.trans_d2s, dtype)
    return fused
