"""xtask_core: cross-task consistency multi-task learning (segmentation + depth).

Public entry points: :func:`load_checkpoint`, :func:`save_checkpoint`,
:class:`XTaskNet`, :class:`ModelConfig`, :class:`TrainConfig`, :class:`XTaskError`.
Heavier modules (inference, metrics, losses, data, ...) are imported from their submodules.
"""
from xtask_core.config import ModelConfig, TrainConfig
from xtask_core.errors import XTaskError

__version__ = "0.1.0"
__all__ = ["ModelConfig", "TrainConfig", "XTaskError", "XTaskNet", "load_checkpoint",
           "save_checkpoint", "Loaded", "__version__"]


def __getattr__(name):  # lazy, so `import xtask_core` stays cheap for the CLI's --help
    if name == "XTaskNet":
        from xtask_core.model import XTaskNet
        return XTaskNet
    if name in ("load_checkpoint", "save_checkpoint", "Loaded"):
        from xtask_core import checkpoint
        return getattr(checkpoint, name)
    raise AttributeError(f"module 'xtask_core' has no attribute {name!r}")
