"""Inference: the fast, measured execution of a trained model (layer above ``checkpoint``).

``from xtask_core.inference import Predictor`` is the stable public path.
"""
from xtask_core.inference.predictor import Prediction, Predictor, preprocess_rgb

__all__ = ["Prediction", "Predictor", "preprocess_rgb"]
