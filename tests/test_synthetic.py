"""Synthetic street scenes: determinism, physical consistency of labels and disparity, layout."""
import numpy as np
import pytest
import torch

from xtask_core.data import make_dataset
from xtask_core.data import synthetic as S
from xtask_core.data.cityscapes import DISPARITY_CLIP, read_sample
from xtask_core.errors import XTaskError

H, W = 64, 128


@pytest.fixture(scope="module")
def scenes():
    return [S.render_scene(seed, H, W) for seed in range(6)]


def test_types_and_shapes(scenes):
    rgb, lab, disp = scenes[0]
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert lab.shape == (H, W) and lab.dtype == np.uint8
    assert disp.shape == (H, W) and disp.dtype == np.uint16
    assert set(np.unique(lab)) <= set(S.GENERATED_IDS)


def test_deterministic():
    a = S.render_scene(11, H, W)
    b = S.render_scene(11, H, W)
    c = S.render_scene(12, H, W)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
    assert a[0].tobytes() != c[0].tobytes() and a[1].tobytes() != c[1].tobytes()


def test_sky_is_exactly_the_invalid_disparity(scenes):
    for _, lab, disp in scenes:
        # sky ⇔ p = 0: everything else hit geometry and has a finite, clipped depth
        assert np.array_equal(lab == S.SKY, disp == 0)


def test_disparity_matches_depth_range(scenes):
    lo = round(S.FX_2048 * S.BASELINE / S.MAX_RANGE * 256) + 1
    hi = round(S.FX_2048 * S.BASELINE / S.MIN_RANGE * 256) + 1
    for _, _, disp in scenes:
        valid = disp[disp > 0].astype(int)
        assert valid.min() >= lo and valid.max() <= hi


def test_road_disparity_grows_towards_camera(scenes):
    for _, lab, disp in scenes:
        road = lab == S.ROAD
        rows = [r for r in range(H) if road[r].sum() >= 4]
        means = [disp[r][road[r]].astype(float).mean() for r in rows]
        # the bottom rows are near: mean road disparity increases with the image row
        assert len(rows) > H // 4
        assert np.all(np.diff(means) > 0), means


def test_all_classes_appear_over_a_few_scenes():
    seen = set()
    for seed in range(12):
        seen |= set(np.unique(S.render_scene(seed, 128, 256)[1]).tolist())
    assert seen == set(S.GENERATED_IDS), sorted(set(S.GENERATED_IDS) - seen)


def test_rgb_is_not_trivial(scenes):
    rgb, lab, _ = scenes[0]
    # texture and noise: a class region is not one flat colour, and classes differ in mean colour
    road = rgb[lab == S.ROAD].astype(float)
    assert road.std(0).mean() > 2.0
    if (lab == S.SKY).any():
        assert np.abs(rgb[lab == S.SKY].mean(0) - road.mean(0)).sum() > 30


def test_scene_seeds_disjoint_per_split():
    tr = {S.scene_seed(0, "train", i) for i in range(200)}
    va = {S.scene_seed(0, "val", i) for i in range(200)}
    assert len(tr) == 200 and not tr & va
    assert S.scene_seed(0, "train", 3) == S.scene_seed(0, "train", 3) != S.scene_seed(1, "train", 3)
    with pytest.raises(XTaskError):
        S.scene_seed(0, "holdout", 0)


def test_write_dataset_roundtrip(tmp_path):
    calls = []
    info = S.write_dataset(tmp_path / "synth", n_train=2, n_val=1, seed=5, height=H, width=W,
                           progress=lambda d, t: calls.append((d, t)))
    assert info["train"] == 2 and calls[-1] == (3, 3)
    root = tmp_path / "synth"
    assert "synthetic" in (root / "README.txt").read_text().lower()
    assert not list(root.rglob("*.tmp*"))
    img = root / "leftImg8bit/val" / S.CITY / f"{S.stem(0)}_leftImg8bit.png"
    rgb, lab, disp = read_sample(img, root / "gtFine/val" / S.CITY / f"{S.stem(0)}_gtFine_labelIds.png",
                                 root / "disparity/val" / S.CITY / f"{S.stem(0)}_disparity.png")
    want = S.render_scene(S.scene_seed(5, "val", 0), H, W)
    assert np.array_equal(rgb, want[0]) and np.array_equal(lab, want[1]) and np.array_equal(disp, want[2])
    # the Cityscapes reader takes it unchanged
    ds = make_dataset("synthetic", root, "train", num_classes=19, height=H, width=W)
    assert len(ds) == 2 and ds.names[1] == S.stem(1)
    item = ds[0]
    assert item["seg"].shape == (H, W) and int(item["seg"].max()) <= 18   # no void pixels
    assert torch.equal(item["depth_mask"][0] == 0, item["seg"] == 10)     # sky (train id 10) invalid
    assert float(item["depth"].max()) <= DISPARITY_CLIP


def test_write_dataset_rejects_nothing(tmp_path):
    with pytest.raises(XTaskError):
        S.write_dataset(tmp_path / "x", n_train=0, n_val=0)
