"""Cityscapes (and the synthetic street scenes, which share its layout) as a torch Dataset.

Layout under ``root`` (the official Cityscapes one)::

    leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png   RGB (8-bit)
    gtFine/{split}/{city}/{stem}_gtFine_labelIds.png    raw label ids (uint8)
    disparity/{split}/{city}/{stem}_disparity.png       uint16; p = 0 invalid, disparity = (p-1)/256 px

The depth target is the original code's "inverse depth": (p-1)/256², clipped at
:data:`DISPARITY_CLIP` (= 126 px / 256), 0 where invalid. Convert to metres for display with
:func:`disparity_to_metres`.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from xtask_core.data import labels as L
from xtask_core.data.transforms import (
    augment_rng,
    random_flip,
    random_scale_crop,
    to_item,
)
from xtask_core.errors import XTaskError
from xtask_core.io.images import load_image, load_label_png, load_uint16_png

DISPARITY_CLIP = 0.4922            # upper clip of (p-1)/256² used by the original code
CITYSCAPES_FX = 2262.52            # px, focal length at 2048×1024 (Cityscapes camera files)
CITYSCAPES_BASELINE = 0.209313     # m, stereo baseline (Cityscapes camera files)

_LAYOUT = ("expected {root}/leftImg8bit/{split}/<city>/<stem>_leftImg8bit.png with matching "
           "gtFine/{split}/<city>/<stem>_gtFine_labelIds.png and disparity/{split}/<city>/<stem>_disparity.png")

IMG_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
DISP_SUFFIX = "_disparity.png"


def decode_disparity(png: np.ndarray) -> np.ndarray:
    """uint16 disparity PNG values → model units, float32 of the same shape.

    p = 0 → 0 (invalid); otherwise (p - 1) / 256² (i.e. disparity in pixels / 256), clipped at
    :data:`DISPARITY_CLIP`.
    """
    p = np.asarray(png)
    if p.dtype != np.uint16:
        raise XTaskError(f"disparity must be a 16-bit image, got dtype {p.dtype}")
    d = (p.astype(np.float32) - 1.0) / 65536.0
    d = np.minimum(d, DISPARITY_CLIP)
    d[p == 0] = 0.0
    return d


def disparity_to_metres(disp, fx: float = CITYSCAPES_FX, baseline: float = CITYSCAPES_BASELINE):
    """Model-unit disparity ((p-1)/256²) → depth in metres, ``baseline·fx / (value·256)``.

    Works on numpy arrays, torch tensors or floats; values <= 0 (invalid / sky) map to +inf.
    The synthetic generator stores disparity in the same units (pixels of a 2048-wide image),
    so the same constants apply to it.
    """
    if isinstance(disp, torch.Tensor):
        px = disp.float() * 256.0
        return torch.where(px > 0, baseline * fx / px.clamp_min(1e-12), torch.full_like(px, float("inf")))
    px = np.asarray(disp, dtype=np.float64) * 256.0
    with np.errstate(divide="ignore"):
        out = np.where(px > 0, baseline * fx / np.where(px > 0, px, 1.0), np.inf)
    return out if out.ndim else float(out)


def list_samples(root: str | os.PathLike, split: str) -> list[tuple[Path, Path, Path, str]]:
    """Sorted ``(image, label, disparity, stem)`` paths of one split; XTaskError on a bad layout."""
    root = Path(root)
    layout = _LAYOUT.format(root=root, split=split)
    if not root.is_dir():
        raise XTaskError(f"dataset folder {root} does not exist ({layout})")
    img_dir = root / "leftImg8bit" / split
    if not img_dir.is_dir():
        raise XTaskError(f"missing folder {img_dir} ({layout})")
    for sub in ("gtFine", "disparity"):
        if not (root / sub / split).is_dir():
            raise XTaskError(f"missing folder {root / sub / split} ({layout})")
    samples = []
    for city in sorted(p for p in img_dir.iterdir() if p.is_dir()):
        for img in sorted(city.glob("*" + IMG_SUFFIX)):
            stem = img.name[: -len(IMG_SUFFIX)]
            lab = root / "gtFine" / split / city.name / (stem + LABEL_SUFFIX)
            disp = root / "disparity" / split / city.name / (stem + DISP_SUFFIX)
            for p in (lab, disp):
                if not p.is_file():
                    raise XTaskError(f"{img} has no matching {p} ({layout})")
            samples.append((img, lab, disp, stem))
    if not samples:
        raise XTaskError(f"no *{IMG_SUFFIX} files under {img_dir} ({layout})")
    return samples


def read_sample(img_path, label_path, disp_path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one sample at full size: (rgb uint8 H×W×3, label ids uint8 H×W, disparity uint16 H×W).

    All three go through :mod:`xtask_core.io.images` (one decoder, the same header pixel cap as
    uploads: 40 MP, so native 2048×1024 Cityscapes passes). Label ids and disparity values are
    returned exactly as stored (palette label PNGs give their indices). The arrays may be
    read-only views of the decoded buffers (callers here only read them).

    Raises:
        XTaskError: one line naming the offending file (unreadable, wrong kind of PNG, over the
            cap) or, for a size mismatch, the sample.
    """
    rgb = load_image(img_path, min_side=1)
    lab = load_label_png(label_path)
    disp = load_uint16_png(disp_path)
    if not (rgb.shape[:2] == lab.shape == disp.shape):
        raise XTaskError(f"size mismatch for {Path(img_path).name}: image {rgb.shape[:2]}, "
                         f"labels {lab.shape}, disparity {disp.shape}")
    return rgb, lab, disp


class CityscapesDataset(Dataset):
    """Cityscapes-layout dataset yielding batch items (keys as :func:`~xtask_core.data.transforms.to_item`).

    Each item: ``image`` 3×H×W float32 (ImageNet-normalised), ``seg`` H×W int64 train ids
    (250 = ignore), ``depth`` 1×H×W float32 disparity in model units (0 = invalid),
    ``seg_mask`` / ``depth_mask`` 1×H×W float32 in {0, 1}, ``name`` (the file stem).

    Args:
        root: dataset root (see module docstring). split: "train" / "val" / "test".
        num_classes: 7 (categories) or 19. height, width: output size; the image is resized
            with area (down) / linear (up) interpolation, labels and disparity nearest.
        augment: random horizontal flip + random scale-crop (scales 1, 1.2, 1.5).
        limit: keep only the first ``limit`` samples (0 = all).
        disparity_scaling: what scale-crop does to disparity: "multiply" (physically right,
            default), "none" (as the original), see :mod:`.transforms`.
    """

    def __init__(self, root, split, num_classes=7, height=128, width=256, augment=False, limit=0,
                 disparity_scaling="multiply"):
        self.root, self.split = Path(root), split
        self.num_classes, self.height, self.width = int(num_classes), int(height), int(width)
        self.lut = L.cityscapes_lut(self.num_classes)
        self.ignore_index = L.CITYSCAPES_IGNORE
        self.augment, self.disparity_scaling = bool(augment), disparity_scaling
        if height < 1 or width < 1:
            raise XTaskError(f"height and width must be positive, got {height}x{width}")
        self.samples = list_samples(self.root, split)
        if limit and limit > 0:
            self.samples = self.samples[:limit]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def names(self) -> list[str]:
        return [s[3] for s in self.samples]

    def load_numpy(self, index: int) -> dict:
        """Resized, un-augmented sample: ``image`` H×W×3 float32 [0,1], ``seg`` H×W int64,
        ``depth`` H×W float32 (model units), ``name``."""
        img_path, lab_path, disp_path, stem = self.samples[index]
        rgb, lab, disp = read_sample(img_path, lab_path, disp_path)
        size = (self.width, self.height)
        if rgb.shape[:2] != (self.height, self.width):
            down = rgb.shape[0] > self.height or rgb.shape[1] > self.width
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
            lab = cv2.resize(lab, size, interpolation=cv2.INTER_NEAREST)
            disp = cv2.resize(disp, size, interpolation=cv2.INTER_NEAREST)
        return {"image": rgb.astype(np.float32) / 255.0, "seg": self.lut[lab],
                "depth": decode_disparity(disp), "name": stem}

    def __getitem__(self, index: int) -> dict:
        sample = self.load_numpy(index)
        if self.augment:
            rng = augment_rng()
            sample = random_flip(sample, rng)
            sample = random_scale_crop(sample, rng, depth_scaling=self.disparity_scaling)
            # zooming multiplies disparity; keep the original's range cap
            sample["depth"] = np.minimum(sample["depth"], DISPARITY_CLIP)
        return to_item(sample, self.ignore_index)
