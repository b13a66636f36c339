"""XTaskNet and its parts: ResNet encoder, task decoders, task-transfer nets."""
from xtask_core.model.decoder import Decoder
from xtask_core.model.encoder import (
           BLOCK_COUNTS,
           RESNETS,
           ResNetEncoder,
           encoder_widths,
)
from xtask_core.model.ttnet import TaskTransferNet
from xtask_core.model.xtasknet import XTaskNet

__all__ = ["XTaskNet", "ResNetEncoder", "Decoder", "TaskTransferNet", "encoder_widths",
           "RESNETS", "BLOCK_COUNTS"]
