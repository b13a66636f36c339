"""Pure helpers behind the Streamlit explorer (no Streamlit imports; tested in tests/test_explore.py).

What lives here is the small amount of logic the pages need that is not already a core module:
where checkpoints, runs and samples are found, which folders a user may point the app at, ground
truth of a sample at the model's resolution, one image's metrics, and running only the
task-transfer nets on ground-truth maps ("what did the transfer nets learn?").
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from xtask_core.errors import XTaskError
from xtask_core.viz.colour import (
    resize_nearest,  # labels / masks: never invents a class
)

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")


# --------------------------------------------------------------------------- allowed folders
def allowed_roots(repo_root: str | os.PathLike, env: Mapping[str, str] | None = None) -> list[Path]:
    """Folders the app may read user-named paths from, resolved and de-duplicated.

    The repo's ``checkpoints/``, ``runs/``, ``sample_images/`` and ``data/``, the override
    folders ``XTASK_CHECKPOINT_DIR``, ``XTASK_RUNS_DIR``, ``XTASK_SAMPLES_DIR`` (set by whoever
    starts the server, so trusted), and every entry of ``XTASK_ALLOWED_ROOTS``
    (``os.pathsep``-separated). A web user can never widen this list: it comes from the server's
    environment only.
    """
    env = os.environ if env is None else env
    repo = Path(repo_root)
    roots = [repo / "checkpoints", repo / "runs", repo / "sample_images", repo / "data"]
    for name in ("XTASK_CHECKPOINT_DIR", "XTASK_RUNS_DIR", "XTASK_SAMPLES_DIR"):
        if env.get(name):
            roots.append(Path(env[name]))
    for item in env.get("XTASK_ALLOWED_ROOTS", "").split(os.pathsep):
        if item.strip():
            roots.append(Path(item.strip()).expanduser())
    out: list[Path] = []
    for r in roots:
        r = r.resolve()
        if r not in out:
            out.append(r)
    return out


def resolve_inside(path: str | os.PathLike, roots: Sequence[Path], base: str | os.PathLike,
                   must_exist: bool = True) -> Path:
    """Resolve a user-typed ``path`` (relative to ``base``) and refuse it unless it lies inside a root.

    Symlinks and ``..`` are resolved first, so neither can escape a root. Raises XTaskError with
    one line naming the allowed folders when the path escapes them or (``must_exist``) is missing.
    """
    text = str(path).strip()
    if not text:
        raise XTaskError("type a path first")
    p = Path(text).expanduser()
    if not p.is_absolute():
        p = Path(base) / p
    p = p.resolve()
    if not any(p == r or p.is_relative_to(r) for r in roots):
        names = ", ".join(str(r) for r in roots)
        raise XTaskError(f"{text} is outside the allowed folders ({names}); "
                         "add its folder to XTASK_ALLOWED_ROOTS to use it")
    if must_exist and not p.exists():
        raise XTaskError(f"{text} does not exist")
    return p


# --------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class CheckpointChoice:
    """One checkpoint the picker offers: ``label`` shown to the user, ``path`` to load."""

    label: str
    path: Path
    kind: str  # "shipped" | "run" | "uploaded" | "path"


def find_checkpoints(checkpoint_dir: str | os.PathLike | None,
                     runs_dir: str | os.PathLike | None) -> list[CheckpointChoice]:
    """Shipped checkpoints (``checkpoint_dir/*.safetensors|.pth``, plus ``checkpoint_dir/*/best.*``
    run folders) and runs (``runs_dir/*/best.safetensors``), sorted by label; missing folders → none."""
    out: list[CheckpointChoice] = []
    if checkpoint_dir and Path(checkpoint_dir).is_dir():
        d = Path(checkpoint_dir)
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES and not p.name.startswith("."):
                out.append(CheckpointChoice(f"shipped: {p.stem}", p, "shipped"))
            elif p.is_dir() and (p / "best.safetensors").is_file():
                out.append(CheckpointChoice(f"shipped: {p.name}", p / "best.safetensors", "shipped"))
    if runs_dir and Path(runs_dir).is_dir():
        for p in sorted(Path(runs_dir).iterdir()):
            if p.is_dir() and (p / "best.safetensors").is_file():
                out.append(CheckpointChoice(f"run: {p.name}", p / "best.safetensors", "run"))
    return out


@dataclass(frozen=True)
class SampleFiles:
    """One sample in the Cityscapes layout. ``label``/``disparity`` are None when absent."""

    name: str        # "<split>/<city>/<stem>"
    image: Path
    label: Path | None
    disparity: Path | None


def find_samples(root: str | os.PathLike | None) -> list[SampleFiles]:
    """Every ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` under ``root`` with its
    ``gtFine/…_gtFine_labelIds.png`` and ``disparity/…_disparity.png`` when they exist (FACTS §4)."""
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


def sha1_hex(data: bytes) -> str:
    """Content key for caching an image or file (40 hex chars)."""
    return hashlib.sha1(data).hexdigest()


def array_key(a: np.ndarray) -> str:
    """Content key of an array (shape, dtype and bytes)."""
    h = hashlib.sha1(f"{a.shape}{a.dtype}".encode())
    h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


# --------------------------------------------------------------------------- ground truth
def load_sample(image: str | os.PathLike, label: str | os.PathLike | None,
                disparity: str | os.PathLike | None, num_classes: int, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One Cityscapes-layout sample for display and scoring.

    Returns ``(rgb, gt_seg, gt_depth)``: rgb H×W×3 uint8 at the file's own size; gt_seg
    height×width int64 train ids (250 = ignore) and gt_depth height×width float32 disparity in
    model units ((p-1)/256², 0 = invalid), both resized nearest to the model input size, or None
    when the file is absent.
    """
    from xtask_core.data.cityscapes import decode_disparity
    from xtask_core.data.labels import cityscapes_lut
    from xtask_core.io.images import load_image, load_label_png, load_uint16_png

    rgb = load_image(image)
    gt_seg = gt_depth = None
    if label is not None:   # exact ids (palette PNGs: indices); one-line XTaskError naming the file
        gt_seg = resize_nearest(cityscapes_lut(num_classes)[load_label_png(label)], height, width)
    if disparity is not None:
        gt_depth = resize_nearest(decode_disparity(load_uint16_png(disparity)), height, width)
    return rgb, gt_seg, gt_depth


def load_dataset_item(dataset: str, root: str | os.PathLike, split: str, index: int,
                      num_classes: int, height: int, width: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item ``index`` of a dataset split, un-augmented, at the model input size.

    Returns ``(rgb uint8 h×w×3, gt_seg int64 h×w, gt_depth float32 h×w in model units)``.
    ``dataset``: "synthetic" | "cityscapes" (Cityscapes layout) | "nyuv2" (MTAN .npy layout).
    """
    if dataset in ("synthetic", "cityscapes"):
        from xtask_core.data.cityscapes import CityscapesDataset
        ds = CityscapesDataset(root, split, num_classes=num_classes, height=height, width=width)
    elif dataset == "nyuv2":
        from xtask_core.data.nyuv2 import NYUv2Dataset
        ds = NYUv2Dataset(root, split, height=height, width=width)
    else:
        raise XTaskError(f"unknown dataset {dataset!r} (valid: synthetic, cityscapes, nyuv2)")
    if not 0 <= index < len(ds):
        raise XTaskError(f"index {index} is out of range: {split} has {len(ds)} samples (0..{len(ds) - 1})")
    item = ds.load_numpy(index)
    rgb = np.clip(np.rint(item["image"] * 255.0), 0, 255).astype(np.uint8)
    return rgb, np.asarray(item["seg"], dtype=np.int64), np.asarray(item["depth"], dtype=np.float32)


# --------------------------------------------------------------------------- scoring one image
def image_metrics(seg_logits: np.ndarray | None, depth: np.ndarray | None, gt_seg: np.ndarray | None,
                  gt_depth: np.ndarray | None, num_classes: int, ignore_index: int) -> dict:
    """SegDepthMetrics of one prediction: seg_logits C×h×w (or h×w labels), depth h×w, targets
    at the same h×w (gt_depth: 0 = invalid). A task whose prediction or target is None is
    skipped and its metrics are NaN."""
    from xtask_core.evaluate.metrics import SegDepthMetrics

    m = SegDepthMetrics(num_classes, ignore_index)
    if seg_logits is not None and gt_seg is not None:
        m.update(torch.as_tensor(seg_logits)[None], None,
                 torch.as_tensor(gt_seg, dtype=torch.int64)[None], None)
    if depth is not None and gt_depth is not None:
        m.update(None, torch.as_tensor(depth, dtype=torch.float32)[None, None], None,
                 torch.as_tensor(gt_depth, dtype=torch.float32)[None, None])
    return m.compute()


METRIC_LABELS = {"pixel_acc": "pixel acc", "miou": "mIoU", "abs": "Abs", "abs_rel": "Abs Rel",
                 "rmse": "RMSE", "delta1": "δ<1.25"}


def metrics_row(name: str, m: Mapping) -> dict:
    """One table row of the headline metrics of a SegDepthMetrics result (percent for the
    fractions, raw model units for the depth errors), labelled ``name``."""
    row = {"model": name}
    for key, label in METRIC_LABELS.items():
        v = float(m.get(key, float("nan")))
        row[label] = round(100 * v, 2) if key in ("pixel_acc", "miou", "delta1") else round(v, 5)
    return row


def depth_range(maps: Iterable[np.ndarray]) -> tuple[float, float]:
    """One robust (vmin, vmax) shared by several depth maps (1st–99th percentile of their valid
    (finite, > 0) pixels), so panels side by side use the same colours for the same value."""
    vals = [np.asarray(m, np.float64).ravel() for m in maps if m is not None]
    v = np.concatenate(vals) if vals else np.zeros(0)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1e-6)


NYU_FOV_DEG = 60.0   # assumed horizontal field of view when a model predicts metres (no camera file)


def pinhole_intrinsics(depth_kind: str, height: int, width: int) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` in pixels of an h×w prediction, for back-projecting it to 3-D.

    "disparity" (Cityscapes-style models): the Cityscapes focal length (FACTS §4), scaled from
    its 2048-px width to ``width`` (the image is resized isotropically, so fy = fx).
    "depth" (metres, NYUv2-style): an assumed 60° horizontal field of view. The principal point
    is the image centre in both cases.
    """
    if depth_kind == "disparity":
        from xtask_core.data.cityscapes import CITYSCAPES_FX
        f = CITYSCAPES_FX * width / 2048.0
    elif depth_kind == "depth":
        f = (width / 2.0) / np.tan(np.radians(NYU_FOV_DEG / 2.0))
    else:
        raise XTaskError(f"depth_kind must be 'disparity' or 'depth', got {depth_kind!r}")
    return float(f), float(f), (width - 1) / 2.0, (height - 1) / 2.0


def metric_depth(depth: np.ndarray, depth_kind: str, max_metres: float = 80.0) -> np.ndarray:
    """A prediction in model units → h×w float32 metres, NaN where there is no usable depth.

    "disparity": model units (disparity_px / 256 at 2048 px) through the Cityscapes stereo
    camera; "depth": already metres. Values ≤ 0, non-finite or beyond ``max_metres`` (far
    disparities blow up: 0.001 model units is ~1.8 km) become NaN, so a point cloud or a hover
    never shows them.
    """
    d = np.asarray(depth, np.float64)
    if depth_kind == "disparity":
        from xtask_core.data.cityscapes import disparity_to_metres
        z = np.asarray(disparity_to_metres(np.where(np.isfinite(d), d, 0.0)), np.float64)
    elif depth_kind == "depth":
        z = d
    else:
        raise XTaskError(f"depth_kind must be 'disparity' or 'depth', got {depth_kind!r}")
    ok = np.isfinite(z) & (z > 0) & (z <= max_metres)
    return np.where(ok, z, np.nan).astype(np.float32)


def energy_scale(clean_map: np.ndarray, factor: float = 3.0, q: float = 99.0) -> float:
    """Fixed top of an energy colour scale: ``factor`` × the ``q``-th percentile of the clean
    image's energy (finite pixels), at least 1e-6. Fixing it on the clean image makes energy
    visibly *grow* when the input is corrupted instead of being re-normalised away."""
    v = np.asarray(clean_map, np.float64)
    v = v[np.isfinite(v)]
    top = float(np.percentile(v, q)) * factor if v.size else 0.0
    return max(1e-6, top)


# --------------------------------------------------------------------------- transfer nets alone
GT_LOGIT_SCALE = 10.0  # one-hot × 10 → softmax puts ~0.9999 on the true class for ≤ 19 classes


@torch.no_grad()
def transfer_from_ground_truth(model: torch.nn.Module, gt_seg: np.ndarray | None,
                               gt_depth: np.ndarray | None, num_classes: int, ignore_index: int,
                               logit_scale: float = GT_LOGIT_SCALE) -> dict[str, np.ndarray | None]:
    """Run only the task-transfer nets on ground truth ("what did they learn?").

    - ``depth_from_gt_seg`` (h×w float32, model depth units): ``model.trans_s2d`` fed the one-hot
      ground-truth segmentation scaled by ``logit_scale``. The s2d net applies log-softmax to its
      input, so scaled one-hot acts as near-certain logits; ignored pixels get all-zero logits
      (a uniform distribution: "no idea").
    - ``seg_from_gt_depth`` (C×h×w float32 logits): ``model.trans_d2s`` fed the ground-truth
      depth (invalid pixels stay 0, as in training targets).

    h, w must be multiples of 8 (TTNet pooling). ``model`` is only read (no_grad, not mutated).
    """
    p = next(model.parameters())
    out: dict[str, np.ndarray | None] = {"depth_from_gt_seg": None, "seg_from_gt_depth": None}
    if gt_seg is not None:
        seg = torch.as_tensor(np.asarray(gt_seg), dtype=torch.int64)
        valid = (seg >= 0) & (seg < num_classes) & (seg != ignore_index)
        onehot = torch.zeros((num_classes, *seg.shape), dtype=torch.float32)
        onehot.scatter_(0, torch.where(valid, seg, 0)[None], 1.0)
        onehot *= valid[None].float() * logit_scale
        d = model.trans_s2d(onehot[None].to(p.device, p.dtype))
        out["depth_from_gt_seg"] = d[0, 0].float().cpu().numpy()
    if gt_depth is not None:
        dep = torch.as_tensor(np.asarray(gt_depth), dtype=torch.float32)[None, None]
        s = model.trans_d2s(dep.to(p.device, p.dtype))
        out["seg_from_gt_depth"] = s[0].float().cpu().numpy()
    return out


# --------------------------------------------------------------------------- teaching helpers
def apply_corruptions(rgb: np.ndarray, strengths: Mapping[str, float], seed: int = 0) -> np.ndarray:
    """Apply several :func:`analysis.corrupt` corruptions in the order given (e.g. noise, blur,
    occlusion, brightness); zero strengths are skipped. H×W×3 uint8 in and out."""
    from xtask_core.evaluate.analysis import corrupt

    out = np.asarray(rgb)
    for i, (kind, strength) in enumerate(strengths.items()):
        if strength:
            out = corrupt(out, kind, float(strength), seed=seed + i)
    return out if out is not rgb else out.copy()


def wipe(before: np.ndarray, after: np.ndarray, position: float) -> np.ndarray:
    """Before/after wipe: columns left of ``position``·W come from ``after``, the rest from
    ``before``, with a 2-px white divider. Both H×W×3 uint8 of the same shape."""
    if before.shape != after.shape:
        raise XTaskError(f"wipe needs equal shapes, got {before.shape} and {after.shape}")
    w = before.shape[1]
    cut = int(round(np.clip(position, 0.0, 1.0) * w))
    out = before.copy()
    out[:, :cut] = after[:, :cut]
    if 0 < cut < w:
        out[:, max(0, cut - 1): cut + 1] = 255
    return out


# --------------------------------------------------------------------------- energy vs error
def energy_error_study(preds: Sequence, gt_segs: Sequence, gt_depths: Sequence, ignore_index: int,
                       n_steps: int = 20, n_bins: int = 10) -> dict[str, dict]:
    """How well label-free consistency energy predicts the true error, pooled over images.

    ``preds``: inference.Prediction objects; ``gt_segs``/``gt_depths``: matching ground truth at
    the prediction size (None entries are skipped for that task). Pixels of all images are pooled.
    Returns ``{"depth": {...}, "seg": {...}}``, each with ``sparsification`` (analysis dict),
    ``binned`` (DataFrame), ``report`` (spearman, ause, aurg, …, auroc for seg) — or an empty
    dict when no image had that ground truth. Depth: error = |direct − GT| vs energy =
    |transferred − direct|; seg: error = wrong (0/1) vs energy = KL(direct ‖ transferred).
    """
    from xtask_core.evaluate import analysis

    dep_err, dep_en, seg_err, seg_en = [], [], [], []
    for p, gs, gd in zip(preds, gt_segs, gt_depths):
        e = analysis.energy_maps(p.seg_logits, p.seg_t_logits, p.depth, p.depth_t)
        if gd is not None:
            d = analysis.depth_error_maps(p.depth, gd)
            dep_err.append(d["abs"][d["valid"]])
            dep_en.append(e["depth_abs"][d["valid"]])
        if gs is not None:
            s = analysis.seg_error_map(p.seg, gs, ignore_index)
            seg_err.append(s["wrong"][s["valid"]].astype(np.float64))
            seg_en.append(e["seg_kl"][s["valid"]])
    out: dict[str, dict] = {"depth": {}, "seg": {}}
    for name, err, en in (("depth", dep_err, dep_en), ("seg", seg_err, seg_en)):
        if not err:
            continue
        err_a, en_a = np.concatenate(err), np.concatenate(en)
        out[name] = {"sparsification": analysis.sparsification(err_a, en_a, n_steps=n_steps),
                     "binned": analysis.binned_error(err_a, en_a, n_bins=n_bins),
                     "report": analysis.energy_error_report(en_a, err_a, wrong=err_a > 0 if name == "seg" else None,
                                                            n_steps=n_steps)}
    return out


def evaluate_predictions(preds: Sequence, gt_segs: Sequence, gt_depths: Sequence, num_classes: int,
                         ignore_index: int, transferred: bool = False) -> dict:
    """SegDepthMetrics over a list of predictions and their ground truth (dataset-level mIoU from
    one confusion matrix, plus the original's per-image mIoU). ``transferred`` scores the
    transferred outputs instead of the direct ones."""
    from xtask_core.evaluate.metrics import SegDepthMetrics

    m = SegDepthMetrics(num_classes, ignore_index)
    for p, gs, gd in zip(preds, gt_segs, gt_depths):
        seg = p.seg_t_logits if transferred else p.seg_logits
        dep = p.depth_t if transferred else p.depth
        m.update(torch.as_tensor(seg)[None] if gs is not None else None,
                 torch.as_tensor(dep)[None, None] if gd is not None else None,
                 torch.as_tensor(gs)[None] if gs is not None else None,
                 torch.as_tensor(gd)[None, None] if gd is not None else None)
    return m.compute()
