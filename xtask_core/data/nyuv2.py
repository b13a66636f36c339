"""NYUv2 as preprocessed by MTAN: ``{root}/{split}/{image,label,depth}/{i}.npy``.

Files: ``image`` H×W×3 float in [0, 1]; ``label`` H×W float, classes 0..12, -1 = ignore;
``depth`` H×W×1 (or H×W) float metres, 0 = invalid. Indices run 0..N-1 (795 train / 654 val).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from xtask_core.data import labels as L
from xtask_core.data.transforms import (
    augment_rng,
    random_flip,
    random_scale_crop,
    to_item,
)
from xtask_core.errors import XTaskError

_LAYOUT = "expected {root}/{split}/image/<i>.npy, {split}/label/<i>.npy and {split}/depth/<i>.npy for i = 0..N-1"


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise XTaskError(f"cannot read {path} as a numeric .npy array ({err})") from None


class NYUv2Dataset(Dataset):
    """NYUv2 batch items (keys as :func:`~xtask_core.data.transforms.to_item`); ``seg`` ignore value
    is -1, ``depth`` is metres.

    Args:
        root: folder holding ``train/`` and ``val/``. split: "train" or "val".
        height, width: output size (files are 288×384; other sizes are resized: image linear,
            labels and depth nearest). augment: flip + scale-crop with depth divided by the scale
            (the MTAN / original convention). limit: first ``limit`` samples only (0 = all).
    """

    def __init__(self, root, split, height=288, width=384, augment=False, limit=0):
        self.root, self.split = Path(root), split
        self.height, self.width, self.augment = int(height), int(width), bool(augment)
        self.ignore_index = L.NYUV2_IGNORE
        base = self.root / split
        layout = _LAYOUT.format(root=self.root, split=split)
        for sub in ("image", "label", "depth"):
            if not (base / sub).is_dir():
                raise XTaskError(f"missing folder {base / sub} ({layout})")
        ids = sorted(int(p.stem) for p in (base / "image").glob("*.npy") if p.stem.isdigit())
        if not ids:
            raise XTaskError(f"no <i>.npy files in {base / 'image'} ({layout})")
        for i in ids:
            for sub in ("label", "depth"):
                if not (base / sub / f"{i}.npy").is_file():
                    raise XTaskError(f"{base / 'image' / f'{i}.npy'} has no matching "
                                     f"{base / sub / f'{i}.npy'} ({layout})")
        self.ids = ids[:limit] if limit and limit > 0 else ids

    def __len__(self) -> int:
        return len(self.ids)

    def load_numpy(self, index: int) -> dict:
        """Un-augmented sample: ``image`` H×W×3 float32 [0,1], ``seg`` H×W int64, ``depth`` H×W float32 m."""
        i = self.ids[index]
        base = self.root / self.split
        img = _load(base / "image" / f"{i}.npy")
        lab = _load(base / "label" / f"{i}.npy")
        dep = _load(base / "depth" / f"{i}.npy")
        if img.ndim != 3 or img.shape[2] != 3:
            raise XTaskError(f"{base / 'image' / f'{i}.npy'}: expected H×W×3, got shape {img.shape}")
        if dep.ndim == 3 and dep.shape[2] == 1:
            dep = dep[:, :, 0]
        if lab.shape != img.shape[:2] or dep.shape != img.shape[:2]:
            raise XTaskError(f"sample {i} of {base}: image {img.shape[:2]}, label {lab.shape}, "
                             f"depth {dep.shape} differ")
        for name, arr in (("image", img), ("label", lab), ("depth", dep)):
            if not np.issubdtype(arr.dtype, np.number):
                raise XTaskError(f"{base / name / f'{i}.npy'} is not numeric (dtype {arr.dtype})")
        img = img.astype(np.float32)
        seg = np.nan_to_num(lab.astype(np.float32), nan=-1.0).round().astype(np.int64)
        seg[(seg < 0) | (seg >= len(L.NYUV2_13))] = self.ignore_index
        dep = np.nan_to_num(dep.astype(np.float32), nan=0.0, posinf=0.0)
        dep[dep < 0] = 0.0
        if img.shape[:2] != (self.height, self.width):
            size = (self.width, self.height)
            img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
            seg = cv2.resize(seg.astype(np.int32), size, interpolation=cv2.INTER_NEAREST).astype(np.int64)
            dep = cv2.resize(dep, size, interpolation=cv2.INTER_NEAREST)
        return {"image": np.clip(img, 0.0, 1.0), "seg": seg, "depth": dep, "name": f"{self.split}_{i}"}

    def __getitem__(self, index: int) -> dict:
        sample = self.load_numpy(index)
        if self.augment:
            rng = augment_rng()
            sample = random_flip(sample, rng)
            sample = random_scale_crop(sample, rng, depth_divide=True)
        return to_item(sample, self.ignore_index)
