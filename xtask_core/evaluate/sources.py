"""Where per-image records come from: a dataset split or a plain folder of images.

A :class:`Source` is a sorted list of images (names relative to the source root, ``/``-separated)
plus a way to decode the i-th one into what the model and the metrics need. Listing is cheap
(file names and ``stat`` only); decoding happens one image at a time, so memory does not grow
with the number of images.

- :func:`dataset_source`: a split of ``cityscapes`` / ``synthetic`` (Cityscapes layout, via
  :class:`~xtask_core.data.cityscapes.CityscapesDataset`) or ``nyuv2``
  (:class:`~xtask_core.data.nyuv2.NYUv2Dataset`), resized to the model input size as ``xtask eval``
  does; items carry the ground truth.
- :func:`folder_source`: every regular, non-hidden file under a folder, searched recursively, in
  sorted order; decoded with :func:`xtask_core.io.images.load_image` (any format Pillow reads
  safely; decompression bombs refused from the header). A file that does not decode is reported
  by :meth:`Source.decode` as an error string and skipped by the caller; no labels.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xtask_core.config import DATASETS
from xtask_core.data import make_dataset
from xtask_core.data.labels import CITYSCAPES_IGNORE
from xtask_core.errors import XTaskError
from xtask_core.inference.predictor import preprocess_rgb
from xtask_core.io.images import image_size, load_image

__all__ = ["Source", "dataset_source", "folder_source"]


@dataclass
class Source:
    """A list of images to evaluate.

    Attributes:
        kind: "dataset" or "folder". root: the folder (resolved). dataset, split: for datasets.
        names: image names relative to ``root`` (``/``-separated), sorted as the source lists them.
        labelled: True when items carry ground truth.
        size: model input (height, width), multiples of 32.
        ignore_index: void label of the ground truth (datasets only).
    """

    kind: str
    root: Path
    names: list[str]
    size: tuple[int, int]
    dataset: str | None = None
    split: str | None = None
    labelled: bool = False
    ignore_index: int = CITYSCAPES_IGNORE
    _dataset: Any = field(default=None, repr=False)
    _stats: list[tuple[str, int, int]] = field(default_factory=list, repr=False)
    _files: list[Path] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def identity(self) -> dict:
        """What a records file remembers about its source (kind, dataset, split, root, input size)."""
        return {"kind": self.kind, "dataset": self.dataset, "split": self.split,
                "root": str(self.root), "input_size": list(self.size)}

    def fingerprint(self) -> str:
        """Hash of every file's relative path, size and modification time: changes when the
        source's files change (cache keys use it)."""
        h = hashlib.sha256()
        for name, nbytes, mtime in self._stats:
            h.update(f"{name}\0{nbytes}\0{mtime}\n".encode())
        return h.hexdigest()

    def decode(self, index: int, norms: dict) -> dict:
        """Image ``index`` → ``{"hw": (h, w) of the image itself, "x": {norm: 3×H×W float tensor},
        and with labels "seg" H×W int64, "depth" 1×H×W, "depth_mask" 1×H×W}``, or
        ``{"error": one line}`` when the file cannot be used.

        ``norms``: {key: (mean, std)} for folder images (one normalised tensor per key); dataset
        items come normalised by the dataset (ImageNet statistics, as ``xtask eval``) under every key.
        """
        try:
            if self.kind == "dataset":
                item = self._dataset[index]
                return {"hw": self._native_size(index), "x": dict.fromkeys(norms, item["image"]),
                        "seg": item["seg"], "depth": item["depth"], "depth_mask": item["depth_mask"]}
            rgb = load_image(self._files[index], min_side=1)
            xs = {k: preprocess_rgb(rgb, self.size, mean, std)[0][0] for k, (mean, std) in norms.items()}
            return {"hw": tuple(int(v) for v in rgb.shape[:2]), "x": xs}
        except XTaskError as err:
            return {"error": " ".join(str(err).split())}
        except (OSError, ValueError) as err:  # a file that vanished or a decoder's odd failure
            return {"error": f"{self.names[index]}: {type(err).__name__}: {' '.join(str(err).split())[:160]}"}

    def _native_size(self, index: int) -> tuple[int, int]:
        path = self._files[index]
        if path.suffix == ".npy":
            return tuple(int(v) for v in np.load(path, mmap_mode="r", allow_pickle=False).shape[:2])
        w, h = image_size(path)
        return int(h), int(w)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32 or h % 32 or w % 32:
        raise XTaskError(f"input size must be positive multiples of 32, got {h}x{w}")
    return h, w


def _stat(path: Path, root: Path) -> tuple[str, int, int]:
    st = path.stat()
    return path.relative_to(root).as_posix(), int(st.st_size), int(st.st_mtime_ns)


def dataset_source(dataset: str, root: str | os.PathLike, split: str, size: tuple[int, int],
                   num_classes: int | None = None, limit: int = 0) -> Source:
    """A dataset split (ground truth included), decoded at ``size`` = (height, width).

    ``num_classes``: Cityscapes/synthetic label set (7 or 19; NYUv2 is always 13).
    ``limit``: the first ``limit`` images only (0 = all). One-line XTaskError for a bad layout.
    """
    if dataset not in DATASETS:
        raise XTaskError(f"unknown dataset {dataset!r} (valid: {', '.join(DATASETS)})")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise XTaskError(f"dataset folder {root} does not exist")
    root = root.resolve()
    h, w = _check_size(size)
    kw: dict[str, Any] = {"height": h, "width": w, "augment": False, "limit": limit}
    if num_classes is not None:
        kw["num_classes"] = int(num_classes)
    ds = make_dataset(dataset, root, split, **kw)
    if dataset == "nyuv2":
        groups = [[root / split / sub / f"{i}.npy" for sub in ("image", "label", "depth")] for i in ds.ids]
    else:
        groups = [list(s[:3]) for s in ds.samples]
    files = [g[0] for g in groups]
    stats = [_stat(p, root) for g in groups for p in g]
    return Source(kind="dataset", root=root, names=[f.relative_to(root).as_posix() for f in files],
                  size=(h, w), dataset=dataset, split=split, labelled=True,
                  ignore_index=int(ds.ignore_index), _dataset=ds, _stats=stats, _files=files)


def folder_source(folder: str | os.PathLike, size: tuple[int, int], limit: int = 0,
                  exclude: Callable[[Path], bool] | None = None) -> Source:
    """Every regular non-hidden file under ``folder`` (recursive, sorted by relative path).

    Which files are images is decided when they are decoded (:meth:`Source.decode`), so a
    mislabelled extension neither hides an image nor lets a non-image through. ``exclude``:
    paths to leave out (e.g. the records file being written into the same folder).
    One-line XTaskError when the folder is missing or holds no file at all.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise XTaskError(f"image folder {root} does not exist or is not a folder")
    root = root.resolve()
    h, w = _check_size(size)
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            if name.startswith(".") or not p.is_file() or (exclude is not None and exclude(p)):
                continue
            files.append(p)
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    if limit and limit > 0:
        files = files[:limit]
    if not files:
        raise XTaskError(f"no files under {root}: nothing to evaluate")
    return Source(kind="folder", root=root, names=[p.relative_to(root).as_posix() for p in files],
                  size=(h, w), _stats=[_stat(p, root) for p in files], _files=files)


def stack_x(decoded: list[dict], key) -> torch.Tensor:
    """The batch N×3×H×W of the decoded images' tensors for normalisation ``key``."""
    return torch.stack([d["x"][key] for d in decoded])
