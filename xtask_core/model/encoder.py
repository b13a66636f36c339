"""ResNet encoder cut into the five stages the decoders tap.

Stages and their outputs for an N×3×H×W input (H, W multiples of 32):

====== ============================== ========= ===========================
stage  modules                        stride    channels (18/34 | 50+)
====== ============================== ========= ===========================
layer0 conv1, bn1, relu               /2        64 | 64
layer1 maxpool, resnet.layer1         /4        64 | 256
layer2 resnet.layer2                  /8        128 | 512
layer3 resnet.layer3                  /16       256 | 1024
layer4 resnet.layer4                  /32       512 | 2048
====== ============================== ========= ===========================

The module layout (``layer1 = Sequential(maxpool, layer1)``) is kept exactly as in the original
code so that its checkpoints load with ``strict=True`` (keys ``layer1.1.<block>.*``).
Nothing is ever downloaded: pretrained weights come from a local file or not at all.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from xtask_core.config import ENC_LAYERS
from xtask_core.errors import XTaskError
from xtask_core.io.tensorfile import describe_key_mismatch, read_tensor_file, strip_module_prefix
from xtask_core.model.resnet import STAGE_BLOCKS, resnet

# Registry: depth -> ResNet constructor (torchvision's layout, written in model/resnet.py).
RESNETS = {depth: (lambda d=depth: resnet(d)) for depth in STAGE_BLOCKS}
assert tuple(RESNETS) == ENC_LAYERS

# Residual blocks per stage; with the block type this identifies the depth from a state dict.
BLOCK_COUNTS = {depth: counts for depth, (_, counts) in STAGE_BLOCKS.items()}


def encoder_widths(enc_layers: int) -> list[int]:
    """Output channels of layer0..layer4: [64, 64, 128, 256, 512], ×4 except the first for 50+."""
    if enc_layers not in RESNETS:
        raise XTaskError(f"enc_layers must be one of {tuple(RESNETS)}, got {enc_layers}")
    mult = 4 if enc_layers >= 50 else 1  # bottleneck blocks expand channels by 4
    return [64] + [w * mult for w in (64, 128, 256, 512)]


def load_pretrained_resnet(resnet: nn.Module, path: str | os.PathLike) -> None:
    """Copy a local torchvision-format ResNet state dict (``conv1.weight``, ``layer1.0...``) into ``resnet``.

    Accepts ``.safetensors`` or a ``torch.save`` file (loaded with ``weights_only=True`` only; a
    ``module.`` prefix is stripped). The classifier (``fc.*``) is optional and ignored. Any other
    missing, unexpected or mis-shaped key raises :class:`XTaskError` naming the keys.
    """
    path = Path(path)
    state = read_tensor_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise XTaskError(f"{path.name}: pretrained encoder file must hold a ResNet state dict of tensors")
    state = {k: v for k, v in strip_module_prefix(state).items() if not k.startswith("fc.")}
    expected = {k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    problem = describe_key_mismatch(expected, state)
    if problem:
        raise XTaskError(f"{path.name} is not a matching torchvision ResNet state dict: {problem}")
    resnet.load_state_dict(state, strict=False)  # strictness enforced above; fc stays random


class ResNetEncoder(nn.Module):
    """Five-stage ResNet encoder.

    Args:
        enc_layers: ResNet depth, one of 18, 34, 50, 101, 152.
        pretrained_path: optional local torchvision ResNet state-dict file (ImageNet weights the
            user already has). ``None`` keeps the random initialisation (torchvision's, see model/resnet.py).

    Attributes: ``layer0..layer4`` (see module docstring), ``widths`` (list of 5 ints),
    ``enc_layers``.
    """

    def __init__(self, enc_layers: int = 34, pretrained_path: str | os.PathLike | None = None):
        super().__init__()
        if enc_layers not in RESNETS:
            raise XTaskError(f"enc_layers must be one of {tuple(RESNETS)}, got {enc_layers}")
        resnet = RESNETS[enc_layers]()
        if pretrained_path:
            load_pretrained_resnet(resnet, pretrained_path)
        self.enc_layers = enc_layers
        self.widths = encoder_widths(enc_layers)
        self.layer0 = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)
        self.layer1 = nn.Sequential(resnet.maxpool, resnet.layer1)
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        # resnet.avgpool / resnet.fc are dropped: the decoders need spatial features only.

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: N×3×H×W float (ImageNet-normalised) → [enc0..enc4], enc_k: N×widths[k]×H/2^(k+1)×W/2^(k+1)."""
        feats = []
        for layer in (self.layer0, self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats
