"""The smallest sensible model config, shared by every test that builds a tiny model."""
from __future__ import annotations

from typing import Any

from xtask_core.config import ModelConfig

# ResNet18 encoder, 8-wide decoders, 4-wide TTNets, 64x64 input: builds in well under a second on 2 CPU cores.
TINY = {"enc_layers": 18, "num_classes": 7, "mid_features": 8, "ttnet_features": 4, "height": 64, "width": 64}


def tiny_model_config(**overrides: Any) -> ModelConfig:
    """``ModelConfig`` of the tiny test model; ``overrides`` (num_classes, task, batch_norm, height, ...) replace
    the defaults above, e.g. ``tiny_model_config(num_classes=13, width=128)``."""
    return ModelConfig(**{**TINY, **overrides})
