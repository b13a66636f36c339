"""Single-task baseline network: the original's ``BaseSTLNet`` (``main_stl.py``).

One ResNet encoder (:class:`~xtask_core.model.encoder.ResNetEncoder`) and one decoder
(:class:`~xtask_core.model.decoder.Decoder`, ``mid_features`` wide, 128 in the original) whose
1×1 head has ``num_classes`` channels for ``task="segmt"`` or 1 for ``task="depth"``. No
task-transfer nets. The multi-task gain Δm is measured against a pair of these (one per task).

Parameter names are the original's, so its single-task ``model.pth`` loads strictly:
``pretrained_encoder.*`` (the same keys as the cross-task net's encoder) and ``decoder.*`` (the
cross-task net's ``decoder_segmt.*`` / ``decoder_depth.*`` keys with that prefix replaced by
``decoder.``). ResNet34: 216 encoder + 106 decoder = 322 state-dict entries. Which task a state
dict holds is read off the first dimension of ``decoder.conv6.0.weight`` (1 = depth).

Output contract: every consumer of a model (losses, metrics, pages) takes the cross-task net's
four outputs ``(seg, seg_t, depth, depth_t)``. A single-task net returns the one direct output it
has and ``None`` for the other three, the same convention as ``XTaskNet(direct_only=True)``
returning ``None`` for the transferred outputs: ``(seg, None, None, None)`` for ``"segmt"`` and
``(None, None, depth, None)`` for ``"depth"``. Code that handles ``None`` outputs (the loss's
missing terms are 0; the metrics skip a ``None`` prediction) works unchanged.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from xtask_core.config import TASKS, ModelConfig
from xtask_core.errors import XTaskError
from xtask_core.model.decoder import Decoder
from xtask_core.model.encoder import ResNetEncoder
from xtask_core.model.xtasknet import XTaskNet

STL_TASKS = tuple(t for t in TASKS if t != "both")  # ModelConfig.task values STLNet builds


def stl_task_from_state(state) -> str:
    """``"segmt"`` or ``"depth"`` for a single-task state dict (mapping name → tensor).

    Read off ``decoder.conv6.0.weight`` (out_channels × mid_features × 1 × 1): 1 output channel
    is depth, ≥ 2 is segmentation logits. Raises :class:`XTaskError` when the key is absent.
    """
    w = state.get("decoder.conv6.0.weight")
    if w is None:
        raise XTaskError("not a single-task state dict: no decoder.conv6.0.weight")
    return "depth" if int(w.shape[0]) == 1 else "segmt"


class STLNet(nn.Module):
    """Single-task baseline: encoder + one decoder.

    Args:
        config: :class:`~xtask_core.config.ModelConfig` with ``task`` ``"segmt"`` or ``"depth"``
            (kept as ``self.config``). The transfer-net fields are ignored.
        pretrained_path: optional local torchvision ResNet state dict for the encoder.

    ``forward(x, direct_only=False)`` with x: N×3×H×W float, ImageNet-normalised, H and W
    multiples of 32 → ``(seg, None, None, None)`` (seg: N×C×H×W logits) for ``"segmt"``, or
    ``(None, None, depth, None)`` (depth: N×1×H×W, the training target's unit) for ``"depth"``.
    ``direct_only`` is accepted for call compatibility with :class:`XTaskNet`; there is nothing
    to skip.
    """

    def __init__(self, config: ModelConfig, pretrained_path: str | os.PathLike | None = None):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise XTaskError(f"STLNet needs a ModelConfig, got {type(config).__name__}")
        if config.task not in STL_TASKS:
            raise XTaskError(f"STLNet needs task 'segmt' or 'depth', got {config.task!r}")
        self.config = config
        self.task = config.task
        self.pretrained_encoder = ResNetEncoder(config.enc_layers, pretrained_path)
        out = config.num_classes if self.task == "segmt" else 1
        self.decoder = Decoder(self.pretrained_encoder.widths, config.mid_features, out)

    @classmethod
    def from_config(cls, config: ModelConfig, pretrained_path=None) -> STLNet:
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
        out = self.decoder(self.pretrained_encoder(x))
        if self.task == "segmt":
            return out, None, None, None
        return None, None, out, None


def build_model(config: ModelConfig, pretrained_path: str | os.PathLike | None = None) -> nn.Module:
    """The network ``config`` describes: :class:`XTaskNet` for ``task="both"``, else :class:`STLNet`."""
    if config.task == "both":
        return XTaskNet(config, pretrained_path)
    return STLNet(config, pretrained_path)
