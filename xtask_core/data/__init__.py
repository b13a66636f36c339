"""Datasets, label tables, augmentations and the synthetic street-scene generator.

``make_dataset(name, root, split, **kw)`` builds a dataset by name:
"cityscapes" and "synthetic" → :class:`~.cityscapes.CityscapesDataset` (the synthetic scenes are
written in the Cityscapes layout), "nyuv2" → :class:`~.nyuv2.NYUv2Dataset`. Submodules are
imported lazily so that ``xtask_core.data.synthetic`` (numpy + OpenCV only) stays cheap to
import in generator worker processes.
"""
from __future__ import annotations

from xtask_core.errors import XTaskError


def _cityscapes(root, split, **kw):
    from xtask_core.data.cityscapes import CityscapesDataset
    return CityscapesDataset(root, split, **kw)


def _nyuv2(root, split, **kw):
    from xtask_core.data.nyuv2 import NYUv2Dataset
    return NYUv2Dataset(root, split, **kw)


# dataset name (config.DATASETS) → builder
_BUILDERS = {"cityscapes": _cityscapes, "synthetic": _cityscapes, "nyuv2": _nyuv2}


def make_dataset(name: str, root, split: str, **kw):
    """Dataset ``name`` at ``root`` for ``split``; keyword arguments go to its constructor.

    NYUv2 takes no ``num_classes`` (always 13); passing ``num_classes=13`` is accepted and
    dropped so callers can pass the training config uniformly.
    """
    if name not in _BUILDERS:
        raise XTaskError(f"unknown dataset {name!r} (valid: {', '.join(_BUILDERS)})")
    if name == "nyuv2":
        nc = kw.pop("num_classes", 13)
        if nc != 13:
            raise XTaskError(f"NYUv2 has 13 classes, got num_classes={nc}")
    return _BUILDERS[name](root, split, **kw)


__all__ = ["make_dataset"]
