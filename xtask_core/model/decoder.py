"""Per-task decoder of XTaskNet.

Five blocks ``conv1..conv5``; each is three (3×3 conv → BN → ReLU) at ``mid_features``
channels, then ×2 bilinear upsampling (``align_corners=True``). Block 1 reads enc4 (stride 32);
block k > 1 reads ``concat(previous block output, enc(5-k))`` along channels, so the resolution
climbs /32 → /16 → /8 → /4 → /2 → /1. ``conv6`` is a bias-free 1×1 conv to the task's channels.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 conv (with bias, as the original) → BatchNorm2d → ReLU; keys ``0.*`` conv, ``1.*`` BN."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def init_conv_bn(module: nn.Module) -> None:
    """The original's initialisation, shared by the decoders and the task-transfer nets:
    Xavier-normal weights and zero biases for every Conv2d, weight 1 / bias 0 for every
    BatchNorm2d inside ``module`` (in place; parameter names are untouched). Parameters on the
    meta device (a model built only to receive a checkpoint's tensors) are skipped: there is
    nothing to draw, and ``normal_`` on meta tensors imports ``torch._dynamo`` (about 1.5 s)."""
    for m in module.modules():
        if getattr(getattr(m, "weight", None), "is_meta", False):
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DecoderBlock(nn.Module):
    """Three conv_bn_relu (``conv1..conv3``) then ×2 bilinear upsampling.

    N×in_channels×h×w → N×mid_features×2h×2w.
    """

    def __init__(self, in_channels: int, mid_features: int):
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels, mid_features)
        self.conv2 = conv_bn_relu(mid_features, mid_features)
        self.conv3 = conv_bn_relu(mid_features, mid_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Decoder(nn.Module):
    """Decoder for one task.

    Args:
        enc_widths: channels of enc0..enc4 (``ResNetEncoder.widths``).
        mid_features: width of every block (original default 128).
        out_channels: num_classes for segmentation (logits), 1 for depth.

    ``forward(feats)`` with ``feats = [enc0..enc4]`` → N×out_channels×H×W (input resolution).
    """

    def __init__(self, enc_widths: Sequence[int], mid_features: int = 128, out_channels: int = 1):
        super().__init__()
        w = list(enc_widths)
        self.conv1 = DecoderBlock(w[4], mid_features)
        self.conv2 = DecoderBlock(mid_features + w[3], mid_features)
        self.conv3 = DecoderBlock(mid_features + w[2], mid_features)
        self.conv4 = DecoderBlock(mid_features + w[1], mid_features)
        self.conv5 = DecoderBlock(mid_features + w[0], mid_features)
        self.conv6 = nn.Sequential(nn.Conv2d(mid_features, out_channels, kernel_size=1, bias=False))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every conv and BN (:func:`init_conv_bn`)."""
        init_conv_bn(self)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        enc0, enc1, enc2, enc3, enc4 = feats
        x = self.conv1(enc4)
        x = self.conv2(torch.cat((x, enc3), dim=1))
        x = self.conv3(torch.cat((x, enc2), dim=1))
        x = self.conv4(torch.cat((x, enc1), dim=1))
        x = self.conv5(torch.cat((x, enc0), dim=1))
        return self.conv6(x)
