"""Single images with their ground truth, for looking at one picture rather than training.

Two sources: loose sample files (the shipped ``sample_images/``, found by :func:`find_samples`
and read by :func:`load_sample`), and one item of a dataset split (:func:`load_dataset_item`,
un-augmented). Both give the ground truth at the model's input size, so it lines up pixel for
pixel with a prediction.

A samples folder holds two kinds, told apart by :attr:`SampleFiles.label_set`:

- street scenes in the Cityscapes file layout (``leftImg8bit/``, ``gtFine/`` raw ids,
  ``disparity/`` uint16): label set ``"cityscapes"``;
- indoor rooms in the NYUv2 ``.npy`` layout under ``nyuv2/`` (``nyuv2/<split>/{image,label,
  depth}/<i>.npy``: 13 classes, depth in metres): label set ``"nyuv2"``. The same folder is a
  NYUv2 dataset root, so ``load_dataset_item("nyuv2", <samples>/nyuv2, "val", i, …)`` reads it too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtask_core.config import DATASETS
from xtask_core.data.cityscapes import CityscapesDataset, decode_disparity
from xtask_core.data.labels import NYUV2_13, NYUV2_IGNORE, cityscapes_lut
from xtask_core.data.nyuv2 import NYUv2Dataset
from xtask_core.errors import XTaskError
from xtask_core.io.images import load_image, load_label_png, load_uint16_png, resize_nearest

# Datasets one item can be read from (all of them); "synthetic" is xtask's own render in the Cityscapes layout.
ITEM_DATASETS = DATASETS
# Label sets a sample's ground truth can use (the values of SampleFiles.label_set).
LABEL_SETS = ("cityscapes", "nyuv2")
NYUV2_SAMPLES = "nyuv2"   # sub-folder of a samples folder holding its NYUv2-layout rooms


@dataclass(frozen=True)
class SampleFiles:
    """One sample image and its ground-truth files (``label``/``disparity`` None when absent).

    ``label_set`` says which labels the ground truth uses, so a caller can tell whether it fits
    a model before loading anything:

    - ``"cityscapes"``: Cityscapes file layout; ``label`` is a ``*_gtFine_labelIds.png`` of raw
      Cityscapes ids (they fit a 7- or 19-class Cityscapes model), ``disparity`` a uint16
      ``*_disparity.png`` (disparity; fits models whose depth output is disparity).
      ``name`` is ``"<split>/<city>/<stem>"``.
    - ``"nyuv2"``: NYUv2 ``.npy`` layout; ``image`` is the float RGB ``.npy``, ``label`` holds the
      13 NYUv2 classes (-1 = ignore), ``disparity`` is the DEPTH file in metres (0 = invalid;
      the field keeps its name for existing callers). Fits 13-class NYUv2 models.
      ``name`` is ``"nyuv2/<split>/<i>"``.

    The values are those of :data:`LABEL_SETS`, the same words as
    ``xtask_core.evaluate.report.labels_fit`` takes as its ``source``.
    """

    name: str
    image: Path
    label: Path | None
    disparity: Path | None
    label_set: str = "cityscapes"


def find_samples(root: str | os.PathLike | None) -> list[SampleFiles]:
    """The samples under ``root``: first the street scenes, every
    ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` with its ``gtFine/…_gtFine_labelIds.png``
    and ``disparity/…_disparity.png`` when they exist (label set "cityscapes"), sorted by path;
    then the indoor rooms, every ``nyuv2/<split>/image/<i>.npy`` with its ``label/<i>.npy`` and
    ``depth/<i>.npy`` when they exist (label set "nyuv2"), by split and number. A missing root
    gives an empty list."""
    if not root or not Path(root).is_dir():
        return []
    root = Path(root)
    return _cityscapes_samples(root) + _nyuv2_samples(root / NYUV2_SAMPLES)


def _nyuv2_samples(base: Path) -> list[SampleFiles]:
    out = []
    for split_dir in sorted(p for p in base.glob("*") if (p / "image").is_dir()):
        for i in sorted(int(p.stem) for p in (split_dir / "image").glob("*.npy") if p.stem.isdigit()):
            lab, dep = split_dir / "label" / f"{i}.npy", split_dir / "depth" / f"{i}.npy"
            out.append(SampleFiles(f"{NYUV2_SAMPLES}/{split_dir.name}/{i}", split_dir / "image" / f"{i}.npy",
                                   lab if lab.is_file() else None, dep if dep.is_file() else None, "nyuv2"))
    return out


def _cityscapes_samples(root: Path) -> list[SampleFiles]:
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
                disparity: str | os.PathLike | None, num_classes: int, height: int, width: int,
                label_set: str | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One sample for display and scoring (``SampleFiles.image``/``.label``/``.disparity``).

    ``label_set``: "cityscapes" or "nyuv2" (:attr:`SampleFiles.label_set`); None reads it off
    the files: ``.npy`` files are the NYUv2 layout, anything else the Cityscapes one.

    Returns ``(rgb, gt_seg, gt_depth)``: rgb H×W×3 uint8 at the file's own size; gt_seg and
    gt_depth height×width, resized nearest to the model input size, or None when the file is
    absent. Cityscapes: gt_seg int64 train ids (250 = ignore), gt_depth float32 disparity in
    model units ((p-1)/256², 0 = invalid). NYUv2: gt_seg int64 classes 0..12 (-1 = ignore),
    gt_depth float32 metres (0 = invalid). A broken file, or a class count the labels cannot
    give (Cityscapes: 7 or 19; NYUv2: 13), raises a one-line XTaskError.
    """
    if label_set is None:
        files = [p for p in (image, label, disparity) if p is not None]
        label_set = "nyuv2" if any(Path(p).suffix.lower() == ".npy" for p in files) else "cityscapes"
    if label_set == "nyuv2":
        return _load_nyuv2_sample(image, label, disparity, num_classes, height, width)
    if label_set != "cityscapes":
        raise XTaskError(f"unknown label set {label_set!r} (valid: {', '.join(LABEL_SETS)})")
    rgb = load_image(image)
    gt_seg = gt_depth = None
    if label is not None:   # exact ids (palette PNGs: indices)
        gt_seg = resize_nearest(cityscapes_lut(num_classes)[load_label_png(label)], height, width)
    if disparity is not None:
        gt_depth = resize_nearest(decode_disparity(load_uint16_png(disparity)), height, width)
    return rgb, gt_seg, gt_depth


_MAX_NPY_BYTES = 256 * 1024 * 1024   # a 4K float32 RGB image is ~100 MB: anything bigger is not a sample


def _load_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """A numeric ``.npy`` array (no pickles); a missing, huge, broken or non-numeric file is a one-line XTaskError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > _MAX_NPY_BYTES:
            raise XTaskError(f"{path}: {what} file too large ({size} bytes)")
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise XTaskError(f"{path}: cannot read the {what} as a numeric .npy array ({err})") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise XTaskError(f"{path}: the {what} is not a numeric array")
    return arr


def _load_nyuv2_sample(image, label, disparity, num_classes: int, height: int, width: int):
    """:func:`load_sample` for the NYUv2 ``.npy`` layout (``disparity`` is the depth file, metres)."""
    if label is not None and num_classes != len(NYUV2_13):
        raise XTaskError(f"NYUv2 labels come in {len(NYUV2_13)} classes, got num_classes={num_classes}")
    if Path(image).suffix.lower() == ".npy":
        img = _load_npy(image, "image")
        if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
            raise XTaskError(f"{image}: expected an H×W×3 image, got shape {img.shape}")
        if img.dtype != np.uint8:   # the layout's float RGB in [0, 1]
            img = np.clip(np.rint(np.nan_to_num(img.astype(np.float32)) * 255.0), 0, 255).astype(np.uint8)
        rgb = img
    else:
        rgb = load_image(image)
    gt_seg = gt_depth = None
    if label is not None:
        lab = _load_npy(label, "label")
        if lab.shape != rgb.shape[:2]:
            raise XTaskError(f"{label}: label shape {lab.shape} differs from the image's {rgb.shape[:2]}")
        seg = np.nan_to_num(lab.astype(np.float32), nan=-1.0).round().astype(np.int64)
        seg[(seg < 0) | (seg >= len(NYUV2_13))] = NYUV2_IGNORE
        gt_seg = resize_nearest(seg, height, width)
    if disparity is not None:
        dep = _load_npy(disparity, "depth")
        if dep.ndim == 3 and dep.shape[2] == 1:
            dep = dep[:, :, 0]
        if dep.shape != rgb.shape[:2]:
            raise XTaskError(f"{disparity}: depth shape {dep.shape} differs from the image's {rgb.shape[:2]}")
        dep = np.nan_to_num(dep.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        dep[dep < 0] = 0.0
        gt_depth = resize_nearest(dep, height, width)
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
