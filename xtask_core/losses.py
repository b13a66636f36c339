"""Stable public path of the loss (``from xtask_core.losses import XTaskLoss``).

The code lives in :mod:`xtask_core.train.losses`; this module only keeps the documented import
path working for users' scripts.
"""
from xtask_core.train.losses import XTaskLoss

__all__ = ["XTaskLoss"]
