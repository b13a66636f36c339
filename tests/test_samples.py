"""xtask_core.data.samples: Cityscapes-layout samples and dataset items with ground truth at the model size."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.app_helpers import write_samples
from xtask_core.data import samples
from xtask_core.errors import XTaskError


def test_find_samples_pairs_ground_truth(tmp_path):
    write_samples(tmp_path, n=2)
    (tmp_path / "disparity" / "val" / "synth" / "synth_000001_000019_disparity.png").unlink()
    found = samples.find_samples(tmp_path)
    assert [s.name for s in found] == ["val/synth/synth_000000_000019", "val/synth/synth_000001_000019"]
    assert found[0].label is not None and found[0].disparity is not None
    assert found[1].disparity is None and found[1].label is not None
    assert samples.find_samples(tmp_path / "nothing") == []


def test_load_sample_maps_ids_and_decodes_disparity(tmp_path):
    # 2×4 image: raw ids road(7)→flat 0, sky(23)→4, car(26)→vehicle 6, 0 → ignore 250
    for sub in ("leftImg8bit", "gtFine", "disparity"):
        (tmp_path / sub).mkdir()
    img, lab, disp = (tmp_path / "leftImg8bit/x.png", tmp_path / "gtFine/x.png", tmp_path / "disparity/x.png")
    def big(a):  # each cell → a 4×4 block (images must be at least 8 px a side)
        return np.repeat(np.repeat(np.asarray(a), 4, 0), 4, 1)
    cv2.imwrite(str(img), np.full((8, 16, 3), 100, np.uint8))
    cv2.imwrite(str(lab), big(np.array([[7, 7, 23, 23], [26, 26, 0, 0]], np.uint8)))
    cv2.imwrite(str(disp), big(np.array([[0, 0, 257, 257], [65537 // 2, 65537 // 2, 1, 1]], np.uint16)))
    rgb, seg, dep = samples.load_sample(img, lab, disp, num_classes=7, height=2, width=2)
    assert rgb.shape == (8, 16, 3) and rgb.dtype == np.uint8         # image keeps its own size
    np.testing.assert_array_equal(seg, [[0, 4], [6, 250]])           # cells (0,1),(0,3),(1,1),(1,3)
    # p=0 → 0 (invalid); p=257 → 256/65536 = 1/256; p=32768 → 32767/65536 clipped at 0.4922; p=1 → 0
    np.testing.assert_allclose(dep, [[0.0, 1 / 256], [0.4922, 0.0]], rtol=1e-6)
    rgb2, seg2, dep2 = samples.load_sample(img, None, None, 7, 2, 2)
    assert seg2 is None and dep2 is None


def test_load_dataset_item_index_range(tmp_path):
    write_samples(tmp_path, n=2)
    rgb, seg, dep = samples.load_dataset_item("synthetic", tmp_path, "val", 1, 7, 32, 64)
    assert rgb.shape == (32, 64, 3) and rgb.dtype == np.uint8
    assert seg.shape == dep.shape == (32, 64) and seg.dtype == np.int64
    with pytest.raises(XTaskError, match="out of range"):
        samples.load_dataset_item("synthetic", tmp_path, "val", 2, 7, 32, 64)
    with pytest.raises(XTaskError, match="unknown dataset"):
        samples.load_dataset_item("kitti", tmp_path, "val", 0, 7, 32, 64)
