"""Procedural SYNTHETIC data (not real photos), rendered by ray casting so that labels and
depth come from the same hits and are consistent by construction.

- Street scenes in the Cityscapes layout, the product's default data: :func:`render_scene`,
  :func:`write_dataset`, :func:`make_sample_images` (modules ``street``, ``street_agents``,
  ``street_ids``, ``cityscapes_layout``).
- Indoor rooms in the NYUv2 ``.npy`` layout (13 classes, depth in metres): :func:`render_indoor`,
  :func:`write_indoor_dataset`, :func:`make_indoor_sample_images` (modules ``indoor``,
  ``indoor_furniture``, ``indoor_ids``, ``nyuv2_layout``).

Both share the ray caster (``canvas``) and the per-image seeds and worker pool (``dataset_io``).
Only numpy and OpenCV are imported, so generator worker processes start fast.
"""
from __future__ import annotations

from xtask_core.data.synthetic.cityscapes_layout import CITY, make_sample_images, stem, write_dataset, write_sample
from xtask_core.data.synthetic.dataset_io import SPLIT_CODES, scene_seed
from xtask_core.data.synthetic.indoor import render_indoor
from xtask_core.data.synthetic.indoor_ids import KINECT_FX_640
from xtask_core.data.synthetic.nyuv2_layout import make_indoor_sample_images, write_indoor_dataset
from xtask_core.data.synthetic.street import render_scene
from xtask_core.data.synthetic.street_ids import (
    BASELINE,
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    FX_2048,
    GENERATED_IDS,
    LIGHT,
    MAX_RANGE,
    MIN_RANGE,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    TRUCK,
    VEG,
    WALL,
)

__all__ = [
    # street scenes (Cityscapes layout)
    "render_scene", "write_dataset", "write_sample", "make_sample_images", "scene_seed", "stem", "CITY",
    "SPLIT_CODES", "FX_2048", "BASELINE", "MAX_RANGE", "MIN_RANGE", "GENERATED_IDS",
    "ROAD", "SIDEWALK", "BUILDING", "WALL", "FENCE", "POLE", "LIGHT", "SIGN", "VEG", "TERRAIN", "SKY",
    "PERSON", "RIDER", "CAR", "TRUCK", "BUS", "BICYCLE",
    # indoor rooms (NYUv2 layout)
    "render_indoor", "write_indoor_dataset", "make_indoor_sample_images", "KINECT_FX_640",
]
