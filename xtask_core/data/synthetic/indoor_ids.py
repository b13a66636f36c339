"""Camera constant and label indices of the synthetic indoor rooms (NYUv2 13-class convention).

The indices are those of :data:`xtask_core.data.labels.NYUV2_13` (the class order of MTAN's
preprocessed NYUv2): bed 0, books 1, ceiling 2, chair 3, floor 4, furniture 5, objects 6,
painting 7, sofa 8, table 9, tv 10, wall 11, window 12; -1 = ignore. Objects are labelled the
way NYUv2's 40-class labels map onto the 13 classes: a desk is a table, a bookshelf, cabinet,
dresser or nightstand is furniture, a pillow, lamp, plant or vase is objects, a curtain is
window, a door is wall, a rug is floor.
"""
from __future__ import annotations

from xtask_core.data.labels import NYUV2_13, NYUV2_IGNORE

KINECT_FX_640 = 518.857901   # NYUv2 Kinect RGB focal length, px at 640 width (~63° horizontal view)

_INDEX = {name: i for i, (name, _) in enumerate(NYUV2_13)}
BED, BOOKS, CEILING, CHAIR, FLOOR = (_INDEX[n] for n in ("bed", "books", "ceiling", "chair", "floor"))
FURNITURE, OBJECTS, PAINTING, SOFA = (_INDEX[n] for n in ("furniture", "objects", "painting", "sofa"))
TABLE, TV, WALL, WINDOW = (_INDEX[n] for n in ("table", "tv", "wall", "window"))
IGNORE = NYUV2_IGNORE
NUM_CLASSES = len(NYUV2_13)

# Canvas-only label codes (uint8), mapped when a frame is finished: a window pane is labelled
# window with depth 0 (a Kinect gets no return through glass); NOTHING never survives in a
# closed room, and would become IGNORE.
GLASS = 254
NOTHING = 255
