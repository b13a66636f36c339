"""XTaskNet: shared ResNet encoder, segmentation + depth decoders, two task-transfer nets.

Parameter names follow the original code (``pretrained_encoder.``, ``decoder_segmt.``,
``decoder_depth.``, ``trans_s2d.``, ``trans_d2s.``) so its ``model.pth`` files load strictly.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from xtask_core.config import ModelConfig
from xtask_core.errors import XTaskError
from xtask_core.model.decoder import Decoder
from xtask_core.model.encoder import ResNetEncoder
from xtask_core.model.ttnet import TaskTransferNet


class XTaskNet(nn.Module):
    """Cross-task consistency network (the original xtask_mt architecture).

    Args:
        config: architecture (:class:`~xtask_core.config.ModelConfig`), kept as ``self.config``.
        pretrained_path: optional local torchvision ResNet state dict for the encoder.

    ``forward(x, direct_only=False)`` with x: N×3×H×W float, ImageNet-normalised, H and W
    multiples of 32, returns ``(seg, seg_t, depth, depth_t)``:

    - ``seg``: N×C×H×W segmentation logits (direct)
    - ``seg_t``: N×C×H×W logits transferred from the direct depth (depth→seg net)
    - ``depth``: N×1×H×W direct depth, in the unit the model was trained on (Cityscapes:
      disparity/256, "inverse depth"; NYUv2: metres)
    - ``depth_t``: N×1×H×W depth transferred from the direct seg logits (seg→depth net)

    With ``direct_only=True`` both transfer nets are skipped and ``seg_t``/``depth_t`` are None.
    """

    def __init__(self, config: ModelConfig, pretrained_path: str | os.PathLike | None = None):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise XTaskError(f"XTaskNet needs a ModelConfig, got {type(config).__name__}")
        self.config = config
        c = config.num_classes
        self.pretrained_encoder = ResNetEncoder(config.enc_layers, pretrained_path)
        widths = self.pretrained_encoder.widths
        self.decoder_segmt = Decoder(widths, config.mid_features, c)
        self.decoder_depth = Decoder(widths, config.mid_features, 1)
        tw = config.ttnet_widths
        self.trans_s2d = TaskTransferNet(c, 1, tw, config.batch_norm, log_softmax_input=True)
        self.trans_d2s = TaskTransferNet(1, c, tw, config.batch_norm, log_softmax_input=False)

    @classmethod
    def from_config(cls, config: ModelConfig, pretrained_path=None) -> XTaskNet:
        return cls(config, pretrained_path)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, direct_only: bool = False):
        if x.dim() != 4 or x.shape[1] != 3:
            raise XTaskError(f"expected an N×3×H×W image batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise XTaskError(f"input height and width must be multiples of 32, got {h}x{w}; "
                             "resize or pad the image first")
        feats = self.pretrained_encoder(x)
        seg = self.decoder_segmt(feats)
        depth = self.decoder_depth(feats)
        if direct_only:
            return seg, None, depth, None
        depth_t = self.trans_s2d(seg)
        seg_t = self.trans_d2s(depth)
        return seg, seg_t, depth, depth_t
