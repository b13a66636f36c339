"""Camera constants and raw Cityscapes label ids of the synthetic street scenes.

The street generator renders with the Cityscapes camera and writes raw Cityscapes label ids, so
the Cityscapes loader, its 7- and 19-class mappings and its disparity decoding read the
synthetic data unchanged.
"""
from __future__ import annotations

FX_2048 = 2262.52          # Cityscapes focal length (px at 2048 width)
BASELINE = 0.209313        # Cityscapes stereo baseline (m)
MAX_RANGE = 300.0          # m; farther hits (ground near the horizon) are clipped to this depth
MIN_RANGE = 2.0            # m; keeps p = disparity·256+1 inside uint16

# raw Cityscapes ids used here
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = 7, 8, 11, 12, 13, 17
LIGHT, SIGN, VEG, TERRAIN, SKY, PERSON, RIDER = 19, 20, 21, 22, 23, 24, 25
CAR, TRUCK, BUS, BICYCLE = 26, 27, 28, 33
GENERATED_IDS = (ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEG, TERRAIN, SKY,
                 PERSON, RIDER, CAR, TRUCK, BUS, BICYCLE)
