"""XTaskNet and its parts: ResNet encoder, task decoders, task-transfer nets (FACTS §1)."""
from .decoder import Decoder
from .encoder import BLOCK_COUNTS, RESNETS, ResNetEncoder, encoder_widths
from .ttnet import TaskTransferNet
from .xtasknet import XTaskNet

__all__ = ["XTaskNet", "ResNetEncoder", "Decoder", "TaskTransferNet", "encoder_widths",
           "RESNETS", "BLOCK_COUNTS"]
