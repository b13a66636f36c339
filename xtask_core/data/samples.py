"""Single images with their ground truth, for looking at one picture rather than training.

Two sources: loose files in the Cityscapes layout (the shipped ``sample_images/``, found by
:func:`find_samples` and read by :func:`load_sample`), and one item of a dataset split
(:func:`load_dataset_item`, un-augmented). Both give the ground truth at the model's input size,
so it lines up pixel for pixel with a prediction.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtask_core.config import DATASETS
from xtask_core.data.cityscapes import CityscapesDataset, decode_disparity
from xtask_core.data.labels import cityscapes_lut
from xtask_core.data.nyuv2 import NYUv2Dataset
from xtask_core.errors import XTaskError
from xtask_core.io.images import load_image, load_label_png, load_uint16_png, resize_nearest

# Datasets one item can be read from (all of them); "synthetic" is xtask's own render in the Cityscapes layout.
ITEM_DATASETS = DATASETS


@dataclass(frozen=True)
class SampleFiles:
    """One sample in the Cityscapes layout. ``label``/``disparity`` are None when absent."""

    name: str        # "<split>/<city>/<stem>"
    image: Path
    label: Path | None
    disparity: Path | None


def find_samples(root: str | os.PathLike | None) -> list[SampleFiles]:
    """Every ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` under ``root`` with its
    ``gtFine/…_gtFine_labelIds.png`` and ``disparity/…_disparity.png`` when they exist (the
    Cityscapes file layout), sorted by path; a missing root gives an empty list."""
    if not root or not (Path(root) / "leftImg8bit").is_dir():
        return []
    root = Path(root)
    out = []
    for img in sorted((root / "leftImg8bit").glob("*/*/*_leftImg8bit.png")):
        split, city = img.parent.parent.name, img.parent.name
        stem = img.name[: -len("_leftImg8bit.png")]
        lab = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        disp = root / "disparity" / split / city / f"{stem}_disparity.png"
        out.append(SampleFiles(f"{split}/{city}/{stem}", img, lab if lab.is_file() else None,
                               disp if disp.is_file() else None))
    return out


def load_sample(image: str | os.PathLike, label: str | os.PathLike | None,
                disparity: str | os.PathLike | None, num_classes: int, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One Cityscapes-layout sample for display and scoring.

    Returns ``(rgb, gt_seg, gt_depth)``: rgb H×W×3 uint8 at the file's own size; gt_seg
    height×width int64 train ids (250 = ignore) and gt_depth height×width float32 disparity in
    model units ((p-1)/256², 0 = invalid), both resized nearest to the model input size, or None
    when the file is absent. A broken file raises a one-line XTaskError naming it.
    """
    rgb = load_image(image)
    gt_seg = gt_depth = None
    if label is not None:   # exact ids (palette PNGs: indices)
        gt_seg = resize_nearest(cityscapes_lut(num_classes)[load_label_png(label)], height, width)
    if disparity is not None:
        gt_depth = resize_nearest(decode_disparity(load_uint16_png(disparity)), height, width)
    return rgb, gt_seg, gt_depth


def load_dataset_item(dataset: str, root: str | os.PathLike, split: str, index: int,
                      num_classes: int, height: int, width: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item ``index`` of a dataset split, un-augmented, at the model input size.

    Returns ``(rgb uint8 h×w×3, gt_seg int64 h×w, gt_depth float32 h×w in model units)``.
    ``dataset``: one of :data:`ITEM_DATASETS` ("synthetic" and "cityscapes" read the Cityscapes
    layout, "nyuv2" the MTAN .npy layout). An unknown dataset or an index out of range is a
    one-line XTaskError.
    """
    if dataset in ("synthetic", "cityscapes"):
        ds = CityscapesDataset(root, split, num_classes=num_classes, height=height, width=width)
    elif dataset == "nyuv2":
        ds = NYUv2Dataset(root, split, height=height, width=width)
    else:
        raise XTaskError(f"unknown dataset {dataset!r} (valid: {', '.join(ITEM_DATASETS)})")
    if not 0 <= index < len(ds):
        raise XTaskError(f"index {index} is out of range: {split} has {len(ds)} samples (0..{len(ds) - 1})")
    item = ds.load_numpy(index)
    rgb = np.clip(np.rint(item["image"] * 255.0), 0, 255).astype(np.uint8)
    return rgb, np.asarray(item["seg"], dtype=np.int64), np.asarray(item["depth"], dtype=np.float32)
