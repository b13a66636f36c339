"""Stable public path of the metrics (``from xtask_core.metrics import SegDepthMetrics``).

The code lives in :mod:`xtask_core.evaluate.metrics`; this module only keeps the documented
import path working for users' scripts.
"""
from xtask_core.evaluate.metrics import SegDepthMetrics, consistency_energy

__all__ = ["SegDepthMetrics", "consistency_energy"]
