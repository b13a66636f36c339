"""The smallest sensible model config, shared by every test that builds a tiny model."""
from __future__ import annotations

from typing import Any

from xtask_core.config import ModelConfig, TrainConfig

# ResNet18 encoder, 8-wide decoders, 4-wide TTNets, 64x64 input: builds in well under a second on 2 CPU cores.
TINY = {"enc_layers": 18, "num_classes": 7, "mid_features": 8, "ttnet_features": 4, "height": 64, "width": 64}


def tiny_model_config(**overrides: Any) -> ModelConfig:
    """``ModelConfig`` of the tiny test model; ``overrides`` (num_classes, task, batch_norm, height, ...) replace
    the defaults above, e.g. ``tiny_model_config(num_classes=13, width=128)``."""
    return ModelConfig(**{**TINY, **overrides})


def tiny_train_config(root, out, **overrides: Any) -> TrainConfig:
    """``TrainConfig`` of a one-epoch fp32 CPU run of the tiny model on the synthetic set at ``root``
    (64x128, batch 3, 3 training and 1 validation image); ``overrides`` replace any of it."""
    base = dict(input_path=str(root), out=str(out), enc_layers=18, mid_features=8, ttnet_features=4,
                height=64, width=128, batch_size=3, epochs=1, cpu=True, precision="fp32", workers=0,
                seed=7, limit_train=3, limit_val=1, channels_last=False)
    return TrainConfig.for_dataset("synthetic", **{**base, **overrides})
