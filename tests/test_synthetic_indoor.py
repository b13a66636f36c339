"""Synthetic indoor rooms (NYUv2 layout): determinism, labels, geometric consistency of depth
and labels, the written dataset read back by the NYUv2 loader, argument errors."""
import numpy as np
import pytest
import torch

from xtask_core.data import synthetic as S
from xtask_core.data.labels import NYUV2_13
from xtask_core.data.nyuv2 import NYUv2Dataset
from xtask_core.data.synthetic import indoor as I
from xtask_core.data.synthetic.indoor_ids import BED, CEILING, CHAIR, FLOOR, SOFA, TABLE, WALL, WINDOW
from xtask_core.errors import XTaskError

H, W = 64, 96
SEEDS = range(6)
FURNITURE_CLASSES = (BED, SOFA, CHAIR, TABLE)


@pytest.fixture(scope="module")
def frames():
    """(full render, empty-room render) per seed; each is (rgb, label, depth, raw z)."""
    return [(I._render(s, H, W), I._render(s, H, W, furniture=False)) for s in SEEDS]


def test_label_indices_follow_the_nyuv2_table():
    names = [n for n, _ in NYUV2_13]
    for name, idx in (("bed", BED), ("ceiling", CEILING), ("chair", CHAIR), ("floor", FLOOR), ("sofa", SOFA),
                      ("table", TABLE), ("wall", WALL), ("window", WINDOW)):
        assert names[idx] == name


def test_types_and_shapes():
    rgb, lab, depth = S.render_indoor(3, H, W)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert lab.shape == (H, W) and np.issubdtype(lab.dtype, np.integer)
    assert depth.shape == (H, W) and depth.dtype == np.float32


def test_deterministic():
    a, b, c = S.render_indoor(11, H, W), S.render_indoor(11, H, W), S.render_indoor(12, H, W)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
    assert a[0].tobytes() != c[0].tobytes() and a[2].tobytes() != c[2].tobytes()


def test_labels_are_nyuv2_classes(frames):
    for (_, lab, _, _), _ in frames:
        assert set(np.unique(lab).tolist()) <= set(range(-1, 13))
        assert {FLOOR, WALL} <= set(np.unique(lab).tolist())      # the camera looks into a room


def test_all_classes_appear_over_a_few_rooms():
    seen = set()
    for seed in range(8):
        seen |= set(np.unique(S.render_indoor(seed, 96, 128)[1]).tolist())
    assert seen == set(range(13)), sorted(set(range(13)) - seen)


def test_depth_is_valid_except_on_window_panes(frames):
    panes = 0
    for (_, lab, depth, _), _ in frames:
        assert np.isfinite(depth).all() and (depth >= 0).all()
        invalid = depth == 0
        assert (lab[invalid] == WINDOW).all()                       # only glass has no depth
        panes += int(invalid.sum())
        valid = depth[~invalid]
        assert valid.min() > 0.3 and valid.max() < 10.0             # NYUv2-like range (metres)
    assert panes > 0                                                # some window is in view


def test_floor_depth_grows_towards_the_horizon(frames):
    columns = 0
    for (_, lab, depth, _), _ in frames:
        for c in range(W):
            rows = np.nonzero(lab[:, c] == FLOOR)[0]
            if len(rows) < 3:
                continue
            d = depth[rows, c]                                      # rows ascending = downwards
            assert np.all(np.diff(d) < 0), (c, d)                   # farther up the image, farther away
            columns += 1
    assert columns > W                                             # plenty of floor seen


def test_structure_has_the_room_box_depth(frames):
    # floor / wall / ceiling pixels come from the empty room itself: same depth with or without furniture
    for (_, lab, _depth, z), (_, lab0, _, z0) in frames:
        shell = np.isin(lab, (FLOOR, WALL, CEILING))
        assert np.array_equal(z[shell], z0[shell])
        assert np.array_equal(lab[shell], lab0[shell])
        assert not np.isin(lab0, FURNITURE_CLASSES).any()


def test_furniture_stands_in_front_of_the_walls(frames):
    seen = 0
    for (_, lab, depth, _), (_, _, _, z0) in frames:
        furn = np.isin(lab, FURNITURE_CLASSES)
        assert (depth[furn] < z0[furn] + 1e-4).all()                # never behind the room box along its ray
        seen += int(furn.sum())
        if furn.any():
            assert np.median(z0[furn] - depth[furn]) > 0.05
    assert seen > 100


def test_rgb_is_not_trivial(frames):
    (rgb, lab, _, _), _ = frames[2]
    wall = rgb[lab == WALL].astype(float)
    floor = rgb[lab == FLOOR].astype(float)
    assert wall.std(0).mean() > 2.0 and floor.std(0).mean() > 2.0   # texture, shading, noise
    assert np.abs(wall.mean(0) - floor.mean(0)).sum() > 20


def test_write_indoor_dataset_roundtrip(tmp_path):
    calls = []
    root = tmp_path / "indoor"
    info = S.write_indoor_dataset(root, n_train=2, n_val=1, seed=5, height=H, width=W,
                                  progress=lambda d, t: calls.append((d, t)))
    assert info["train"] == 2 and info["val"] == 1 and calls[-1] == (3, 3)
    assert "SYNTHETIC" in (root / "README.txt").read_text()
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    img = np.load(root / "val/image/0.npy")
    lab = np.load(root / "val/label/0.npy")
    dep = np.load(root / "val/depth/0.npy")
    assert img.shape == (H, W, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    assert lab.shape == (H, W) and lab.dtype == np.float32
    assert dep.shape == (H, W, 1) and dep.dtype == np.float32
    rgb, want_lab, want_dep = S.render_indoor(S.scene_seed(5, "val", 0), H, W)
    assert np.array_equal(img, rgb.astype(np.float32) / 255) and np.array_equal(lab, want_lab)
    assert np.array_equal(dep[:, :, 0], want_dep)

    ds = NYUv2Dataset(root, "train", height=H, width=W)
    assert len(ds) == 2
    item = ds[1]
    assert item["image"].shape == (3, H, W) and item["depth"].shape == (1, H, W)
    assert item["seg"].shape == (H, W) and item["seg"].dtype == torch.int64
    assert int(item["seg"].min()) >= -1 and int(item["seg"].max()) <= 12
    assert torch.equal(item["depth_mask"][0] == 0, item["depth"][0] == 0)
    assert len(NYUv2Dataset(root, "val", height=H, width=W)) == 1


def test_indoor_samples_load_as_a_val_split(tmp_path):
    S.make_indoor_sample_images(tmp_path / "samples", n=1, height=H, width=W)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["README.txt", "val"]
    ds = NYUv2Dataset(tmp_path / "samples", "val", height=H, width=W)
    assert len(ds) == 1 and ds[0]["seg"].shape == (H, W)


@pytest.mark.parametrize("size", [(60, 96), (64, 100), (0, 96), (64.0, 96), (True, 96)])
def test_bad_size_is_refused(size):
    with pytest.raises(XTaskError):
        S.render_indoor(0, *size)


@pytest.mark.parametrize("kw", [dict(n_train=0, n_val=0), dict(n_train=-1, n_val=2),
                                dict(n_train=1, n_val=0, workers=-1),
                                dict(n_train=1, n_val=0, height=50)])
def test_bad_dataset_arguments_are_refused(tmp_path, kw):
    with pytest.raises(XTaskError):
        S.write_indoor_dataset(tmp_path / "x", **{"height": H, "width": W, **kw})
    assert not (tmp_path / "x").exists()                            # refused before anything is written


def test_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(XTaskError):
        S.write_indoor_dataset(tmp_path / "file", n_train=1, n_val=0, height=H, width=W)
