"""Label tables and raw-id → train-id lookup tables, checked on every raw id."""
import numpy as np
import pytest

from xtask_core.data import labels as L
from xtask_core.errors import XTaskError

IDS_19 = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def expected_7(raw: int) -> int:
    # written out from the Cityscapes category id ranges, independently of the table in labels.py
    if 7 <= raw <= 10:
        return 0
    if 11 <= raw <= 16:
        return 1
    if 17 <= raw <= 20:
        return 2
    if raw in (21, 22):
        return 3
    if raw == 23:
        return 4
    if raw in (24, 25):
        return 5
    if 26 <= raw <= 33:
        return 6
    return 250


def test_lut_19_every_raw_id():
    lut = L.cityscapes_lut(19)
    assert lut.shape == (256,) and lut.dtype == np.int64
    assert [int(v) for v in lut] == [IDS_19.index(r) if r in IDS_19 else 250 for r in range(256)]


def test_lut_7_every_raw_id():
    lut = L.cityscapes_lut(7)
    assert lut.shape == (256,) and lut.dtype == np.int64
    assert [int(v) for v in lut] == [expected_7(r) for r in range(256)]
    assert L.CITYSCAPES_7_EXTRA == {-1: 6}  # license plate (-1) → vehicle


def test_lut_indexes_label_images():
    img = np.array([[7, 26], [0, 23]], dtype=np.uint8)
    assert L.cityscapes_lut(19)[img].tolist() == [[0, 13], [250, 10]]
    assert L.cityscapes_lut(7)[img].tolist() == [[0, 6], [250, 4]]
    assert L.cityscapes_id_to_train is L.cityscapes_lut


@pytest.mark.parametrize("dataset,k", [("cityscapes", 19), ("cityscapes", 7), ("synthetic", 7), ("nyuv2", 13)])
def test_names_and_palettes(dataset, k):
    names = L.class_names(dataset, k)
    pal = L.palette(dataset, k)
    assert len(names) == k == len(set(names))
    assert pal.shape == (k, 3) and pal.dtype == np.uint8
    assert len({tuple(c) for c in pal.tolist()}) == k  # distinct colours


def test_specific_entries():
    assert L.class_names("cityscapes", 7) == ["flat", "construction", "object", "nature", "sky", "human", "vehicle"]
    assert L.class_names("nyuv2", 13)[0] == "bed" and L.class_names("nyuv2", 13)[-1] == "window"
    assert L.class_names("cityscapes", 19)[18] == "bicycle"
    assert L.palette("cityscapes", 19)[0].tolist() == [128, 64, 128]   # road
    assert L.palette("cityscapes", 19)[10].tolist() == [70, 130, 180]  # sky
    assert L.ignore_index("cityscapes") == 250 == L.ignore_index("synthetic")
    assert L.ignore_index("nyuv2") == -1
    assert L.depth_kind("cityscapes") == "disparity" == L.depth_kind("synthetic")
    assert L.depth_kind("nyuv2") == "depth"


@pytest.mark.parametrize("call", [lambda: L.class_names("cityscapes", 13), lambda: L.palette("nyuv2", 7),
                                  lambda: L.class_names("kitti", 19), lambda: L.cityscapes_lut(13),
                                  lambda: L.ignore_index("coco"), lambda: L.depth_kind("coco")])
def test_unknown_combinations_raise(call):
    with pytest.raises(XTaskError):
        call()
