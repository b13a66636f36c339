"""Class tables, palettes and raw-id → train-id lookup tables.

Three label sets are known:

- ``("cityscapes", 19)``: the 19 Cityscapes evaluation classes, standard Cityscapes colours.
- ``("cityscapes", 7)``: the 7 Cityscapes categories (flat, construction, object, nature, sky,
  human, vehicle), coloured with the colour of a typical member class so maps read naturally.
- ``("nyuv2", 13)``: the 13 NYUv2 classes of the MTAN preprocessed copy.

``"synthetic"`` is an alias of ``"cityscapes"``: the synthetic generator writes raw Cityscapes
label ids, so it shares the Cityscapes tables. Unknown (dataset, num_classes) pairs raise
:class:`~xtask_core.errors.XTaskError`.
"""
from __future__ import annotations

import numpy as np

from xtask_core.errors import XTaskError

CITYSCAPES_IGNORE = 250   # train id of void pixels (the original's ignore_index)
NYUV2_IGNORE = -1         # label value of unlabelled pixels in the MTAN NYUv2 copy

# (name, raw Cityscapes id, colour) of the 19 evaluation classes, in train-id order.
CITYSCAPES_19 = (
    ("road", 7, (128, 64, 128)),
    ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)),
    ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)),
    ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)),
    ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)

# (name, raw ids, colour) of the 7 categories, in train-id order. Raw id -1 ("license plate"
# in cityscapesScripts) belongs to vehicle; it cannot occur in a uint8 PNG but is kept in
# the table for completeness (see CITYSCAPES_7_EXTRA).
CITYSCAPES_7 = (
    ("flat", tuple(range(7, 11)), (128, 64, 128)),
    ("construction", tuple(range(11, 17)), (70, 70, 70)),
    ("object", tuple(range(17, 21)), (250, 170, 30)),
    ("nature", (21, 22), (107, 142, 35)),
    ("sky", (23,), (70, 130, 180)),
    ("human", (24, 25), (220, 20, 60)),
    ("vehicle", tuple(range(26, 34)), (0, 0, 142)),
)
CITYSCAPES_7_EXTRA = {-1: 6}  # raw id -1 → vehicle (not representable in the 256-entry LUT)

NYUV2_13 = (
    ("bed", (0, 0, 255)),
    ("books", (232, 88, 47)),
    ("ceiling", (0, 217, 0)),
    ("chair", (148, 0, 240)),
    ("floor", (222, 241, 23)),
    ("furniture", (255, 205, 205)),
    ("objects", (0, 223, 228)),
    ("painting", (106, 135, 204)),
    ("sofa", (116, 28, 41)),
    ("table", (240, 35, 235)),
    ("tv", (0, 166, 156)),
    ("wall", (249, 139, 0)),
    ("window", (225, 228, 194)),
)

# Raw Cityscapes ids by name, for the synthetic generator and tests.
CITYSCAPES_IDS = {name: raw for name, raw, _ in CITYSCAPES_19}

# How each dataset's depth channel is to be read (the checkpoint meta's "depth_kind").
DEPTH_KINDS = {"cityscapes": "disparity", "synthetic": "disparity", "nyuv2": "depth"}

_TABLES = {
    ("cityscapes", 19): ([n for n, _, _ in CITYSCAPES_19], [c for _, _, c in CITYSCAPES_19]),
    ("cityscapes", 7): ([n for n, _, _ in CITYSCAPES_7], [c for _, _, c in CITYSCAPES_7]),
    ("nyuv2", 13): ([n for n, _ in NYUV2_13], [c for _, c in NYUV2_13]),
}


def dataset_for_classes(num_classes: int) -> str:
    """The label set a bare class count implies (the original code's files record no dataset):
    13 → ``"nyuv2"``, 7 or 19 → ``"cityscapes"``, any other count → ``"unknown"``."""
    return {k: name for name, k in _TABLES}.get(int(num_classes), "unknown")


def _canonical(dataset: str) -> str:
    """Map ``dataset`` to the name of its label set ("synthetic" shares Cityscapes')."""
    name = str(dataset).lower()
    if name == "synthetic":
        return "cityscapes"
    if name not in ("cityscapes", "nyuv2"):
        raise XTaskError(f"unknown dataset {dataset!r} (valid: cityscapes, synthetic, nyuv2)")
    return name


def _table(dataset: str, num_classes: int):
    key = (_canonical(dataset), int(num_classes))
    if key not in _TABLES:
        valid = ", ".join(f"{d}/{k}" for d, k in _TABLES)
        raise XTaskError(f"no label set for dataset {dataset!r} with {num_classes} classes (valid: {valid})")
    return _TABLES[key]


def class_names(dataset: str, num_classes: int) -> list[str]:
    """Class names in train-id order, e.g. ``class_names("cityscapes", 7)[0] == "flat"``."""
    return list(_table(dataset, num_classes)[0])


def palette(dataset: str, num_classes: int) -> np.ndarray:
    """Colour of each train id: ``num_classes × 3`` uint8 RGB array."""
    return np.asarray(_table(dataset, num_classes)[1], dtype=np.uint8)


def ignore_index(dataset: str) -> int:
    """Label value of void pixels: 250 for Cityscapes / synthetic, -1 for NYUv2."""
    return NYUV2_IGNORE if _canonical(dataset) == "nyuv2" else CITYSCAPES_IGNORE


def depth_kind(dataset: str) -> str:
    """``"disparity"`` (Cityscapes, synthetic: (p-1)/256², larger = nearer) or ``"depth"`` (NYUv2, metres)."""
    _canonical(dataset)  # validates the name
    return DEPTH_KINDS[str(dataset).lower()]


def cityscapes_lut(num_classes: int) -> np.ndarray:
    """Raw Cityscapes label id → train id, as a 256-entry int64 array (ignore = 250).

    Index it with a uint8 label image: ``cityscapes_lut(7)[label_ids]``. 19 classes: the ids
    of :data:`CITYSCAPES_19` → 0..18; 7 classes: category of ids 7..33 (ids 0..6 and 34..255
    → ignore). Raw id -1 (license plate → vehicle) cannot appear in a uint8 image.
    """
    lut = np.full(256, CITYSCAPES_IGNORE, dtype=np.int64)
    if num_classes == 19:
        for train_id, (_, raw, _) in enumerate(CITYSCAPES_19):
            lut[raw] = train_id
    elif num_classes == 7:
        for train_id, (_, raws, _) in enumerate(CITYSCAPES_7):
            lut[list(raws)] = train_id
    else:
        raise XTaskError(f"Cityscapes labels come in 7 or 19 classes, got num_classes={num_classes}")
    return lut


# Older name of cityscapes_lut, kept for scripts that use it.
cityscapes_id_to_train = cityscapes_lut
