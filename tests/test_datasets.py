"""Cityscapes / NYUv2 readers and augmentations, on tiny trees written by the tests."""
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch

from xtask_core.config import IMAGENET_MEAN, IMAGENET_STD
from xtask_core.data import make_dataset
from xtask_core.data import transforms as T
from xtask_core.data.cityscapes import (
    DISPARITY_CLIP,
    CityscapesDataset,
    decode_disparity,
    disparity_to_metres,
    list_samples,
)
from xtask_core.data.nyuv2 import NYUv2Dataset
from xtask_core.errors import XTaskError
from xtask_core.io.images import load_uint16_png


def write_cityscapes(root, split="val", n=2, h=16, w=32, city="testcity"):
    """A tiny Cityscapes tree: RGB, label ids (7=road top half, 26=car, 0=unlabeled corner),
    disparity with p = 0 on the top rows."""
    for i in range(n):
        stem = f"{city}_{i:06d}_000019"
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[..., 0] = 200
        rgb[..., 1] = np.arange(w, dtype=np.uint8)[None] * 4
        lab = np.full((h, w), 7, np.uint8)
        lab[h // 2:] = 26
        lab[0, 0] = 0
        disp = np.full((h, w), 1 + 256 * 10, np.uint16)   # 10 px → 10/256 in model units
        disp[:2] = 0
        for sub, name, arr in (("leftImg8bit", "_leftImg8bit.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)),
                               ("gtFine", "_gtFine_labelIds.png", lab), ("disparity", "_disparity.png", disp)):
            d = root / sub / split / city
            d.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(d / (stem + name)), arr)
    return root


def test_decode_disparity_values(tmp_path):
    p = np.array([[0, 1, 257, 65535], [1 + 256 * 126, 1 + 256 * 127, 2, 0]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), p)
    back = load_uint16_png(tmp_path / "d.png")      # the reader the dataset uses
    assert back.dtype == np.uint16 and np.array_equal(back, p)
    d = decode_disparity(back)
    assert d.dtype == np.float32
    assert d[0, 0] == 0 and d[1, 3] == 0                    # invalid
    assert d[0, 1] == 0                                     # p = 1 → disparity 0
    assert d[0, 2] == pytest.approx(256 / 65536)            # (p-1)/256²
    assert d[1, 2] == pytest.approx(1 / 65536)
    assert d[1, 0] == pytest.approx(126 / 256)              # 0.4921875 < clip
    assert d[1, 1] == pytest.approx(DISPARITY_CLIP)         # 127/256 clipped to 0.4922
    assert d[0, 3] == pytest.approx(DISPARITY_CLIP)
    with pytest.raises(XTaskError):
        decode_disparity(p.astype(np.uint8))


def test_disparity_to_metres():
    # 10 px at 2048 width: 0.209313 * 2262.52 / 10 m
    assert disparity_to_metres(10 / 256) == pytest.approx(0.209313 * 2262.52 / 10, rel=1e-5)
    out = disparity_to_metres(np.array([0.0, 20 / 256]))
    assert np.isinf(out[0]) and out[1] == pytest.approx(0.209313 * 2262.52 / 20, rel=1e-5)
    t = disparity_to_metres(torch.tensor([0.0, 10 / 256]))
    assert torch.isinf(t[0]) and t[1].item() == pytest.approx(47.356, rel=1e-3)


def test_cityscapes_reads_tree(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    for k, road, car in ((7, 0, 6), (19, 0, 13)):
        ds = make_dataset("cityscapes", root, "val", num_classes=k, height=8, width=16)
        assert len(ds) == 2 and ds.names == ["testcity_000000_000019", "testcity_000001_000019"]
        item = ds[0]
        assert set(item) == {"image", "seg", "depth", "seg_mask", "depth_mask", "name"}
        assert item["image"].shape == (3, 8, 16) and item["image"].dtype == torch.float32
        assert item["seg"].shape == (8, 16) and item["seg"].dtype == torch.int64
        assert item["depth"].shape == (1, 8, 16) and item["depth"].dtype == torch.float32
        assert item["seg_mask"].shape == item["depth_mask"].shape == (1, 8, 16)
        seg = item["seg"]
        assert seg[0, 0] == 250 and seg[0, 1] == road and seg[-1, -1] == car
        assert torch.equal(item["seg_mask"][0], (seg != 250).float())
        # disparity: top (invalid) rows are 0 and masked, the rest is 10/256
        dep = item["depth"][0]
        assert torch.all(dep[0] == 0) and torch.allclose(dep[2:], torch.full_like(dep[2:], 10 / 256))
        assert torch.equal(item["depth_mask"][0], (dep > 0).float())
        # image normalisation: red channel is constant 200
        red = 200 / 255
        want = torch.full((8, 16), (red - IMAGENET_MEAN[0]) / IMAGENET_STD[0])
        assert torch.allclose(item["image"][0], want, atol=1e-5)
    assert len(CityscapesDataset(root, "val", limit=1)) == 1


def test_cityscapes_augmented_item_is_consistent(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    ds = CityscapesDataset(root, "val", height=16, width=32, augment=True)
    torch.manual_seed(0)
    for _ in range(4):
        item = ds[0]
        assert torch.equal(item["depth_mask"][0], (item["depth"][0] > 0).float())
        assert torch.equal(item["seg_mask"][0], (item["seg"] != 250).float())
        assert item["depth"].max() <= DISPARITY_CLIP + 1e-6


def test_cityscapes_layout_errors(tmp_path):
    with pytest.raises(XTaskError, match="does not exist"):
        CityscapesDataset(tmp_path / "nothing", "train")
    root = write_cityscapes(tmp_path / "cs")
    with pytest.raises(XTaskError, match="leftImg8bit"):
        CityscapesDataset(root, "train")
    with pytest.raises(XTaskError):
        CityscapesDataset(root, "val", num_classes=13)
    # a missing disparity file is named
    missing = root / "disparity/val/testcity/testcity_000001_000019_disparity.png"
    missing.unlink()
    with pytest.raises(XTaskError, match="testcity_000001_000019_disparity.png"):
        list_samples(root, "val")


def test_cityscapes_bad_files(tmp_path):
    root = write_cityscapes(tmp_path / "cs", n=1)
    disp = root / "disparity/val/testcity/testcity_000000_000019_disparity.png"
    cv2.imwrite(str(disp), np.zeros((16, 32), np.uint8))             # 8-bit disparity
    with pytest.raises(XTaskError, match="16-bit"):
        CityscapesDataset(root, "val")[0]
    cv2.imwrite(str(disp), np.zeros((16, 30), np.uint16))            # wrong size
    with pytest.raises(XTaskError, match="size mismatch"):
        CityscapesDataset(root, "val")[0]
    disp.write_bytes(b"not a png")
    with pytest.raises(XTaskError, match="not an image"):
        CityscapesDataset(root, "val")[0]


def _png_claiming(width, height, bits, colour):
    """A PNG whose header claims width×height (colour type 0 grey / 2 RGB) with a tiny IDAT."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("kind", ["image", "label", "disparity"])
def test_cityscapes_file_with_huge_header_refused_naming_it(tmp_path, kind):
    # 8000×6000 = 48 MP > the 40 MP cap shared with uploads; refused from the header (decoding
    # the 16-byte IDAT would give "truncated" instead), and the message names the file.
    root = write_cityscapes(tmp_path / "cs", n=1)
    stem = "testcity_000000_000019"
    path, bits, colour = {
        "image": (root / f"leftImg8bit/val/testcity/{stem}_leftImg8bit.png", 8, 2),
        "label": (root / f"gtFine/val/testcity/{stem}_gtFine_labelIds.png", 8, 0),
        "disparity": (root / f"disparity/val/testcity/{stem}_disparity.png", 16, 0)}[kind]
    path.write_bytes(_png_claiming(8000, 6000, bits, colour))
    with pytest.raises(XTaskError, match=r"image too large: 8000×6000 = 48000000 pixels > cap") as info:
        CityscapesDataset(root, "val")[0]
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_cityscapes_bad_files_one_line_naming_path(tmp_path):
    root = write_cityscapes(tmp_path / "cs", n=1)
    stem = "testcity_000000_000019"
    lab = root / f"gtFine/val/testcity/{stem}_gtFine_labelIds.png"
    img = root / f"leftImg8bit/val/testcity/{stem}_leftImg8bit.png"
    disp = root / f"disparity/val/testcity/{stem}_disparity.png"
    good_disp = disp.read_bytes()
    cases = [
        (lab, lambda p: cv2.imwrite(str(p), np.zeros((16, 32, 3), np.uint8)), "8-bit label-id PNG"),
        (lab, lambda p: p.write_bytes(b""), "empty file"),
        (img, lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or corrupt"),
        (disp, lambda p: p.write_bytes(good_disp[:60]), "truncated or corrupt"),
        (disp, lambda p: p.write_bytes(b"GIF89a" + b"\0" * 40), "not a"),
    ]
    for path, damage, match in cases:
        backup = path.read_bytes()
        damage(path)
        with pytest.raises(XTaskError, match=match) as info:
            CityscapesDataset(root, "val")[0]
        msg = str(info.value)
        assert msg.startswith(str(path) + ": ") and "\n" not in msg, msg
        path.write_bytes(backup)
    CityscapesDataset(root, "val")[0]   # restored: readable again


def test_cityscapes_reads_exact_values_and_palette_labels(tmp_path):
    """Disparity and label ids reach the dataset bit-exact; palette label PNGs give indices."""
    from PIL import Image

    from xtask_core.data.cityscapes import read_sample

    root = write_cityscapes(tmp_path / "cs", n=1, h=16, w=32)
    stem = "testcity_000000_000019"
    rng = np.random.default_rng(0)
    disp = rng.integers(0, 65536, (16, 32), dtype=np.uint16)
    disp[0, :4] = (0, 1, 257, 65535)
    assert cv2.imwrite(str(root / f"disparity/val/testcity/{stem}_disparity.png"), disp)
    ids = rng.integers(0, 34, (16, 32), dtype=np.uint8)      # every Cityscapes label id 0..33
    pal = Image.fromarray(ids, "P")
    pal.putpalette([(97 * i) % 256 for i in range(768)])     # colours ≠ indices
    lab_path = root / f"gtFine/val/testcity/{stem}_gtFine_labelIds.png"
    pal.save(lab_path)
    rgb16 = np.zeros((16, 32, 3), np.uint16)
    rgb16[..., 0] = 386                                       # round(386/257) = 2, 386 >> 8 = 1
    rgb16[..., 1] = 65535
    rgb_path = root / f"leftImg8bit/val/testcity/{stem}_leftImg8bit.png"
    assert cv2.imwrite(str(rgb_path), rgb16[..., ::-1])
    rgb, lab, d = read_sample(rgb_path, lab_path, root / f"disparity/val/testcity/{stem}_disparity.png")
    assert lab.dtype == np.uint8 and np.array_equal(lab, ids)
    assert d.dtype == np.uint16 and np.array_equal(d, disp)
    assert rgb.dtype == np.uint8 and (rgb[..., 0] == 2).all() and (rgb[..., 1] == 255).all() \
        and (rgb[..., 2] == 0).all()
    # through the dataset at native size: train ids are the LUT of the exact ids
    ds = CityscapesDataset(root, "val", num_classes=19, height=16, width=32)
    from xtask_core.data.labels import cityscapes_lut
    assert np.array_equal(ds[0]["seg"].numpy(), cityscapes_lut(19)[ids])
    assert np.array_equal(ds[0]["depth"][0].numpy(), decode_disparity(disp))


def write_nyu(root, split="train", n=3, h=8, w=12):
    for sub in ("image", "label", "depth"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((h, w, 3), 0.5, np.float32)
        lab = np.full((h, w), 4.0, np.float32)
        lab[0] = -1.0
        dep = np.full((h, w, 1), 2.5, np.float32)
        dep[:, 0] = 0.0
        np.save(root / split / "image" / f"{i}.npy", img)
        np.save(root / split / "label" / f"{i}.npy", lab)
        np.save(root / split / "depth" / f"{i}.npy", dep)
    return root


def test_nyuv2_reads_tree(tmp_path):
    root = write_nyu(tmp_path / "nyu")
    ds = make_dataset("nyuv2", root, "train", height=8, width=12, num_classes=13)
    assert isinstance(ds, NYUv2Dataset) and len(ds) == 3
    item = ds[1]
    assert item["image"].shape == (3, 8, 12) and item["seg"].dtype == torch.int64
    assert torch.all(item["seg"][0] == -1) and torch.all(item["seg"][1:] == 4)
    assert torch.equal(item["seg_mask"][0], (item["seg"] != -1).float())
    assert torch.all(item["depth"][0, :, 0] == 0) and torch.allclose(item["depth"][0, :, 1:], torch.tensor(2.5))
    assert torch.equal(item["depth_mask"][0], (item["depth"][0] > 0).float())
    assert NYUv2Dataset(root, "train", height=16, width=24)[0]["seg"].shape == (16, 24)
    with pytest.raises(XTaskError, match="missing folder"):
        NYUv2Dataset(root, "val")
    (root / "train" / "depth" / "2.npy").unlink()
    with pytest.raises(XTaskError, match="2.npy"):
        NYUv2Dataset(root, "train")


def test_nyuv2_rejects_pickles(tmp_path):
    root = write_nyu(tmp_path / "nyu", n=1)
    np.save(root / "train" / "image" / "0.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(XTaskError):
        NYUv2Dataset(root, "train")[0]


def test_make_dataset_unknown():
    with pytest.raises(XTaskError, match="valid"):
        make_dataset("kitti", ".", "train")


# ------------------------------------------------------------------ augmentations
def colour_sample(h=24, w=40):
    """Label and depth are functions of the pixel colour: image = (col/w, row/h, 0),
    seg = 2*row_band + col_band, depth = 1 + seg."""
    rows, cols = np.mgrid[0:h, 0:w]
    band_r, band_c = rows * 4 // h, cols * 4 // w
    seg = (band_r * 4 + band_c).astype(np.int64)
    img = np.stack([band_c / 3.0, band_r / 3.0, np.zeros_like(rows, float)], -1).astype(np.float32)
    return {"image": img, "seg": seg, "depth": (1.0 + seg).astype(np.float32), "name": "x"}


def test_flip_twice_is_identity():
    s = colour_sample()
    f = T.hflip(s)
    assert not np.array_equal(f["seg"], s["seg"])
    ff = T.hflip(f)
    for k in ("image", "seg", "depth"):
        assert np.array_equal(ff[k], s[k])
    assert ff["name"] == "x"
    assert np.array_equal(f["seg"][:, 0], s["seg"][:, -1])


@pytest.mark.parametrize("scaling,factor", [("none", 1.0), ("divide", None), ("multiply", None)])
def test_scale_crop_keeps_alignment(scaling, factor):
    s = colour_sample()
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(12):
        out = T.random_scale_crop(s, rng, depth_scaling=scaling)
        assert out["seg"].shape == s["seg"].shape and out["seg"].dtype == np.int64
        # label still equals the function of the colour wherever the pixel is not a blend of bands
        band_c = np.rint(out["image"][..., 0] * 3).astype(int)
        band_r = np.rint(out["image"][..., 1] * 3).astype(int)
        pure = (np.abs(out["image"][..., 0] * 3 - band_c) < 1e-4) & (np.abs(out["image"][..., 1] * 3 - band_r) < 1e-4)
        assert pure.mean() > 0.6
        assert np.array_equal(out["seg"][pure], (band_r * 4 + band_c)[pure])
        ratio = out["depth"] / (1.0 + out["seg"])
        seen.add(round(float(ratio.mean()), 4))
        assert np.allclose(ratio, ratio.flat[0])   # one factor for the whole image
        if scaling == "none":
            assert np.allclose(ratio, 1.0)
    # over 12 draws several of the scales 1, 1.2, 1.5 occur, with the right factor
    allowed = {"none": {1.0}, "divide": {1.0, round(1 / 1.2, 4), round(1 / 1.5, 4)},
               "multiply": {1.0, 1.2, 1.5}}[scaling]
    assert seen <= allowed and (scaling == "none" or len(seen) >= 2)


def test_scale_crop_reproducible_and_exact_window():
    s = colour_sample()
    a = T.random_scale_crop(s, np.random.default_rng(7))
    b = T.random_scale_crop(s, np.random.default_rng(7))
    assert all(np.array_equal(a[k], b[k]) for k in ("image", "seg", "depth"))
    # scale 2 window at the top-left corner: bottom-right output pixel comes from input (11, 19)
    out = T.scale_crop(s, 2.0, 0, 0)
    assert out["seg"][-1, -1] == s["seg"][11, 19] and out["seg"][0, 0] == s["seg"][0, 0]
    with pytest.raises(XTaskError):
        T.scale_crop(s, 2.0, 20, 0)
    with pytest.raises(XTaskError):
        T.random_scale_crop(s, depth_divide=True, depth_scaling="multiply")


def test_normalize_roundtrip():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = T.normalize_image(rgb)
    assert x.shape == (3, 5, 7) and x.dtype == torch.float32
    assert x[0, 0, 0].item() == pytest.approx((rgb[0, 0, 0] / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], abs=1e-5)
    assert np.array_equal(T.denormalize(x), rgb)
    assert T.denormalize(x[None]).shape == (1, 5, 7, 3)
    with pytest.raises(XTaskError):
        T.normalize_image(rgb[..., 0])
