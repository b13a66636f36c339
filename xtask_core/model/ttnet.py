"""Task-transfer net: a small U-Net mapping one task's prediction to the other task.

Channel flow with ``widths = (f, 2f, 4f)`` (default f = 64; ×2 with ``wider_ttnet``) for an
N×C_in×H×W input (H, W multiples of 8)::

    enc1: C_in → f,    two convs at H×W,       then 2×2 maxpool → e1: f  × H/2
    enc2: f    → 2f,   two convs at H/2,       then maxpool     → e2: 2f × H/4
    enc3: 2f   → 4f,   two convs at H/4,       then maxpool     → e3: 4f × H/8
    dec1: up ×2 (H/4),  two convs 4f      → 2f                   → d1: 2f × H/4
    dec2: concat(d1, e2) = 4f, up ×2 (H/2), two convs 4f → f    → d2: f  × H/2
    dec3: concat(d2, e1) = 2f, up ×2 (H),   two convs 2f → f    → d3: f  × H
    final_conv: 1×1, no bias, f → C_out

The skips join the *pooled* encoder outputs, the only ones at the matching resolution. This is
the "with skip connection" variant the original trains; its parameter names are kept
(``enc1.double_conv.0.conv.0.weight``, ...) so original checkpoints load strictly.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xtask_core.model.decoder import init_conv_bn


class ConvUnit(nn.Module):
    """3×3 conv (with bias) [→ BatchNorm2d] → ReLU, held in ``.conv`` (keys ``conv.0``, ``conv.1``)."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DoubleConv(nn.Module):
    """Two ConvUnits in ``double_conv`` (in → out → out); ``down`` pools after, ``up`` upsamples before."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool, mode: str):
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"mode must be 'down' or 'up', got {mode!r}")
        self.mode = mode
        self.double_conv = nn.Sequential(ConvUnit(in_channels, out_channels, batch_norm),
                                         ConvUnit(out_channels, out_channels, batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "down":
            return F.max_pool2d(self.double_conv(x), kernel_size=2, stride=2)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.double_conv(x)


class TaskTransferNet(nn.Module):
    """U-Net with skips (see module docstring).

    Args:
        in_channels: channels of the source prediction (num_classes for seg→depth, 1 for depth→seg).
        out_channels: channels of the target task (1 for depth, num_classes for seg logits).
        widths: (f, 2f, 4f) stage widths (``ModelConfig.ttnet_widths``).
        batch_norm: BatchNorm after every 3×3 conv (original flag ``batch_norm``).
        log_softmax_input: apply log-softmax over channels to the input first (seg→depth: the
            net sees log-probabilities, not raw logits, so logit scale does not matter).

    ``forward(x)``: N×in_channels×H×W float → N×out_channels×H×W float (H, W multiples of 8).
    """

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int] = (64, 128, 256),
                 batch_norm: bool = False, log_softmax_input: bool = False):
        super().__init__()
        f1, f2, f3 = (int(w) for w in widths)
        self.log_softmax_input = log_softmax_input
        self.enc1 = DoubleConv(in_channels, f1, batch_norm, "down")
        self.enc2 = DoubleConv(f1, f2, batch_norm, "down")
        self.enc3 = DoubleConv(f2, f3, batch_norm, "down")
        self.dec1 = DoubleConv(f3, f2, batch_norm, "up")
        self.dec2 = DoubleConv(f2 + f2, f1, batch_norm, "up")
        self.dec3 = DoubleConv(f1 + f1, f1, batch_norm, "up")
        self.final_conv = nn.Conv2d(f1, out_channels, kernel_size=1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same initialisation as the decoders (:func:`decoder.init_conv_bn`)."""
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.log_softmax_input:
            x = F.log_softmax(x, dim=1)
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d = self.dec1(e3)
        d = self.dec2(torch.cat((d, e2), dim=1))
        d = self.dec3(torch.cat((d, e1), dim=1))
        return self.final_conv(d)
