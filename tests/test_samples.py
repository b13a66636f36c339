"""xtask_core.data.samples: Cityscapes-layout samples and dataset items with ground truth at the model size."""
from __future__ import annotations

from pathlib import Path

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


# --------------------------------------------------------------------------- indoor (NYUv2-layout) samples
def _indoor(root, n=2, h=64, w=96):
    from xtask_core.data.synthetic import make_indoor_sample_images
    make_indoor_sample_images(root / samples.NYUV2_SAMPLES, n=n, seed=7, height=h, width=w)


def test_find_samples_lists_both_kinds_with_their_label_set(tmp_path):
    write_samples(tmp_path, n=2)
    _indoor(tmp_path, n=2)
    found = samples.find_samples(tmp_path)
    assert [(s.name, s.label_set) for s in found] == [
        ("val/synth/synth_000000_000019", "cityscapes"), ("val/synth/synth_000001_000019", "cityscapes"),
        ("nyuv2/val/0", "nyuv2"), ("nyuv2/val/1", "nyuv2")]
    room = found[3]
    assert room.image == tmp_path / "nyuv2/val/image/1.npy"
    assert room.label == tmp_path / "nyuv2/val/label/1.npy" and room.disparity == tmp_path / "nyuv2/val/depth/1.npy"
    assert {s.label_set for s in found} <= set(samples.LABEL_SETS)


def test_find_samples_indoor_only_and_missing_ground_truth(tmp_path):
    _indoor(tmp_path, n=2)
    (tmp_path / "nyuv2/val/depth/0.npy").unlink()
    found = samples.find_samples(tmp_path)
    assert [s.name for s in found] == ["nyuv2/val/0", "nyuv2/val/1"]
    assert found[0].disparity is None and found[0].label is not None and found[1].disparity is not None


def test_sample_files_keeps_its_positional_form():
    s = samples.SampleFiles("val/c/x", Path("a.png"), None, None)
    assert s.label_set == "cityscapes"


def test_label_set_says_which_models_the_ground_truth_fits(tmp_path):
    from xtask_core.evaluate.report import labels_fit
    write_samples(tmp_path, n=1)
    _indoor(tmp_path, n=1)
    street, room = samples.find_samples(tmp_path)
    assert labels_fit(room.label_set, "nyuv2", 13).seg and not labels_fit(room.label_set, "synthetic", 7).seg
    assert labels_fit(street.label_set, "synthetic", 7).seg and not labels_fit(street.label_set, "nyuv2", 13).seg


def test_load_sample_reads_an_indoor_room_in_metres(tmp_path):
    from xtask_core.data.synthetic import render_indoor, scene_seed
    _indoor(tmp_path, n=1, h=64, w=96)
    room = samples.find_samples(tmp_path)[0]
    rgb, seg, dep = samples.load_sample(room.image, room.label, room.disparity, 13, 32, 48)
    want_rgb, want_lab, want_dep = render_indoor(scene_seed(7, "val", 0), 64, 96)
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, want_rgb)       # the file's own size, exact colours
    assert seg.shape == dep.shape == (32, 48) and seg.dtype == np.int64 and dep.dtype == np.float32
    np.testing.assert_array_equal(seg, want_lab[::2, ::2])                # nearest, as OpenCV's (the loaders')
    np.testing.assert_array_equal(dep, want_dep[::2, ::2])                # metres, unchanged
    assert 0.3 < dep[dep > 0].min() and dep.max() < 10.0
    # the same room read as an item of the NYUv2 dataset split gives the same ground truth
    full = samples.load_sample(room.image, room.label, room.disparity, 13, 64, 96)
    item = samples.load_dataset_item("nyuv2", tmp_path / "nyuv2", "val", 0, 13, 64, 96)
    assert all(np.array_equal(a, b) for a, b in zip(item, full))
    assert np.array_equal(full[1], want_lab) and np.array_equal(full[2], want_dep)
    small = samples.load_dataset_item("nyuv2", tmp_path / "nyuv2", "val", 0, 13, 32, 48)   # resized: same pixels
    assert np.array_equal(small[1], seg) and np.array_equal(small[2], dep)
    # stated label set == read off the files; image only for a model of another label set
    explicit = samples.load_sample(room.image, room.label, room.disparity, 13, 32, 48, label_set="nyuv2")
    assert all(np.array_equal(a, b) for a, b in zip(explicit, (rgb, seg, dep)))
    rgb3, seg3, dep3 = samples.load_sample(room.image, None, None, 7, 32, 48)
    assert np.array_equal(rgb3, rgb) and seg3 is None and dep3 is None


def test_load_sample_indoor_errors_are_one_line(tmp_path):
    _indoor(tmp_path, n=1)
    room = samples.find_samples(tmp_path)[0]
    with pytest.raises(XTaskError, match="13 classes"):
        samples.load_sample(room.image, room.label, None, 7, 32, 48)
    with pytest.raises(XTaskError, match="unknown label set"):
        samples.load_sample(room.image, None, None, 13, 32, 48, label_set="kitti")
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not an array")
    with pytest.raises(XTaskError, match="bad.npy") as err:
        samples.load_sample(room.image, bad, None, 13, 32, 48)
    assert "\n" not in str(err.value)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(XTaskError, match="obj.npy"):                        # pickles are never loaded
        samples.load_sample(room.image, tmp_path / "obj.npy", None, 13, 32, 48)
    np.save(tmp_path / "small.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(XTaskError, match="differs"):
        samples.load_sample(room.image, None, tmp_path / "small.npy", 13, 32, 48)


def test_shipped_samples_hold_street_and_indoor_rooms_with_ground_truth():
    shipped = Path(__file__).resolve().parents[1] / "sample_images"
    found = samples.find_samples(shipped)
    by_set = {ls: [s for s in found if s.label_set == ls] for ls in samples.LABEL_SETS}
    assert len(by_set["cityscapes"]) >= 4 and len(by_set["nyuv2"]) >= 4
    assert all(s.label is not None and s.disparity is not None for s in found)
    seen = set()
    for s in by_set["nyuv2"]:
        rgb, seg, dep = samples.load_sample(s.image, s.label, s.disparity, 13, 128, 160)
        assert rgb.shape[2] == 3 and seg.shape == dep.shape == (128, 160)
        assert ((dep > 0) | (seg == 12)).all()                               # no depth only on window panes
        seen |= set(np.unique(seg).tolist())
    assert seen == set(range(13))                                            # every NYUv2 class shows up
