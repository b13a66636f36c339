"""Import an original xtask_mt experiment folder (``exps/NNN``) as an xtask run folder.

The original code leaves, per experiment::

    exps/results.txt                  one "==========" block per experiment: "Experiment #NNN",
                                      a "Parameters: enc=…, lr=…, beta=(…), lp=…, tsegmt=…,
                                      alpha=…, gamma=…, smoothing=…" line, optimiser/scheduler,
                                      "Pix Acc: x, mIoU: y", "Scores - RMSE: …, Abs: …, Abs Rel: …"
    exps/NNN/indv_results.txt         date, "predicting at size [H*W]", batch size, epochs, params
    exps/NNN/model/model.pth          plain state dict (best validation loss)
    exps/NNN/model/tr_losses.npy      one float per epoch (train loss)
    exps/NNN/model/va_losses.npy      one float per epoch (validation loss)

:func:`import_xtask_mt` turns that into ``RUN/best.safetensors`` (converted weights with the
inferred :class:`~xtask_core.config.ModelConfig`; input size from indv_results when given),
``RUN/metrics.csv`` (one row per epoch: ``epoch, step, train_loss, val_loss``),
``RUN/config.json`` (source, parsed parameters, the original's final scores) and copies of the
two text files for provenance. Every file is optional except ``model.pth``; what is missing is
listed in the returned ``warnings``. Note: the original's "mIoU" is its per-image average,
stored here as ``miou_per_image``.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from xtask_core.checkpoint import default_meta, load_checkpoint, save_checkpoint
from xtask_core.config import DEPTH_LOSSES
from xtask_core.data.labels import dataset_for_classes
from xtask_core.errors import XTaskError
from xtask_core.train.run_dir import RunDir, has_checkpoints
from xtask_core.train.runlog import RunLogger
from xtask_core.train.xtask_mt_format import split_top_level

# original parameter names → TrainConfig fields
_PARAM_TO_TRAIN = {"enc": "enc_layers", "numclasses": "num_classes", "num_classes": "num_classes",
                   "lr": "lr", "beta": "betas", "lp": "lp", "tsegmt": "tseg_loss", "alpha": "lambda_1",
                   "gamma": "lambda_2", "smoothing": "label_smoothing", "step_size": "scheduler_step_size",
                   "scheduler_gamma": "scheduler_gamma", "batch_size": "batch_size", "epochs": "epochs",
                   "height": "height", "width": "width", "use_uncertainty": "uncertainty_weights"}
# original score names → our metric names
_SCORE_KEYS = {"pix_acc": "pixel_acc", "miou": "miou_per_image", "rmse": "rmse", "irmse": "irmse",
               "irmse_log": "irmse_log", "abs": "abs", "abs_rel": "abs_rel", "sqrt_rel": "sqrt_rel",
               "delta1": "delta1", "delta2": "delta2", "delta3": "delta3"}


# --------------------------------------------------------------------------- text parsing
def _value(text: str) -> Any:
    """'0.01' → 0.01, '34' → 34, 'True' → True, '(0.9, 0.99)' → [0.9, 0.99], else the string."""
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    if text in ("None", ""):
        return None
    if text[:1] in "([" and text[-1:] in ")]":
        parts = [p for p in re.split(r"[,\s*]+", text[1:-1]) if p]
        vals = [_value(p) for p in parts]
        return vals if all(isinstance(v, (int, float)) for v in vals) else text
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _key(text: str) -> str:
    key = text.strip().lower().replace("# of classes", "num_classes")
    key = re.sub(r"[^a-z0-9]+", "_", key).strip("_")
    return key


def parse_key_values(text: str) -> dict[str, Any]:
    """Every ``key: value`` / ``key=value`` pair in free text like the original's result files.

    Keys are lower-case with underscores ("Abs Rel" → ``abs_rel``, "Pix Acc" → ``pix_acc``,
    "# of classes" → ``num_classes``); values are numbers, booleans, lists or strings. A
    ``Name(k=v, …)`` value (e.g. ``StepLR(step size=80, gamma=0.5)``) contributes its inner
    pairs as ``name_k`` (``steplr_step_size``). Later occurrences win.
    """
    found: dict[str, Any] = {}
    for line in text.splitlines():
        line = re.sub(r"^\s*scores\s*-\s*", "", line, flags=re.I)
        size = re.search(r"size \[(\d+)\s*\*\s*(\d+)\]", line)
        if size:
            found["height"], found["width"] = int(size.group(1)), int(size.group(2))
        epochs = re.search(r"train for (\d+) epochs", line)
        if epochs:
            found["epochs"] = int(epochs.group(1))
        for part in split_top_level(line):
            m = re.match(r"\s*([^:=()]+?)\s*[:=]\s*(.*)$", part)
            if not m:
                continue
            key, raw = _key(m.group(1)), m.group(2).strip()
            nested = re.match(r"^([A-Za-z_][\w ]*?)\s*=\s*(.*)$", raw)
            if nested:  # "Parameters: enc=34" → the pair is enc=34
                key, raw = _key(nested.group(1)), nested.group(2).strip()
            if not key:
                continue
            inner = re.match(r"^(\w+)\((.*)\)$", raw)
            if inner:
                found[key] = inner.group(1)
                for k, v in parse_key_values(inner.group(2)).items():
                    found[f"{_key(inner.group(1))}_{k}"] = v
                continue
            found[key] = _value(raw)
    return found


def find_experiment_block(text: str, exp_num: int) -> str | None:
    """The block of a results.txt that belongs to experiment ``exp_num`` (or None)."""
    for block in re.split(r"^=+\s*$", text, flags=re.M):
        m = re.search(r"Experiment #\s*0*(\d+)", block)
        if m and int(m.group(1)) == int(exp_num):
            return block.strip()
    return None


def scores_from(values: dict[str, Any]) -> dict[str, float]:
    """Pick the original's final scores out of parsed key/values, renamed to our metric names."""
    return {ours: float(values[theirs]) for theirs, ours in _SCORE_KEYS.items()
            if isinstance(values.get(theirs), (int, float)) and not isinstance(values.get(theirs), bool)}


def train_params_from(values: dict[str, Any]) -> dict[str, Any]:
    """Map the original's parameter names onto TrainConfig field names (only those present)."""
    out: dict[str, Any] = {}
    for theirs, ours in _PARAM_TO_TRAIN.items():
        if theirs in values and values[theirs] is not None:
            out[ours] = values[theirs]
    if "steplr_step_size" in values:
        out["scheduler_step_size"] = values["steplr_step_size"]
    if "steplr_gamma" in values:
        out["scheduler_gamma"] = values["steplr_gamma"]
    if "lp" in out:  # the original spelt the choices like ours; keep only known ones
        if out["lp"] not in DEPTH_LOSSES:
            out.pop("lp")
    return out


# --------------------------------------------------------------------------- the import
def _exp_number(exp_dir: Path) -> int | None:
    m = re.fullmatch(r"0*(\d+)", exp_dir.name)
    return int(m.group(1)) if m else None


def _load_losses(path: Path, warnings: list[str]) -> np.ndarray | None:
    if not path.exists():
        warnings.append(f"{path.name} not found: no {path.stem} curve")
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise XTaskError(f"{path} is not a readable .npy array ({err})") from None
    arr = np.asarray(arr, dtype=np.float64).reshape(-1)
    return arr


def import_xtask_mt(exp_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Convert the original experiment folder ``exp_dir`` into the run folder ``out_dir``.

    Returns a summary dict: ``out``, ``experiment``, ``model`` (ModelConfig dict),
    ``dataset``, ``epochs`` (rows written), ``params`` (TrainConfig-named), ``results``
    (original scores, our names), ``warnings`` (list of what was missing).
    Raises XTaskError if ``exp_dir`` has no model.pth, if a file is unreadable or if
    ``out_dir`` already holds checkpoints (runs are never overwritten).
    """
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    if not exp_dir.is_dir():
        raise XTaskError(f"experiment folder not found: {exp_dir}")
    model_path = next((p for p in (exp_dir / "model" / "model.pth", exp_dir / "model.pth") if p.exists()), None)
    if model_path is None:
        raise XTaskError(f"{exp_dir} has no model/model.pth: not an xtask_mt experiment folder")
    existing = has_checkpoints(out_dir)
    if existing:
        raise XTaskError(f"{out_dir} already has checkpoints ({', '.join(existing)}); choose a new --out")
    warnings: list[str] = []
    exp_num = _exp_number(exp_dir)

    indv_text, block = "", None
    indv = exp_dir / "indv_results.txt"
    if indv.exists():
        indv_text = indv.read_text(encoding="utf-8", errors="replace")
    else:
        warnings.append("indv_results.txt not found")
    for candidate in (exp_dir.parent / "results.txt", exp_dir / "results.txt"):
        if candidate.exists() and exp_num is not None:
            block = find_experiment_block(candidate.read_text(encoding="utf-8", errors="replace"), exp_num)
            if block:
                break
    if block is None:
        warnings.append(f"no 'Experiment #{exp_dir.name}' block in ../results.txt: no final scores")
    values = parse_key_values(indv_text)
    values.update(parse_key_values(block or ""))
    params = train_params_from(values)
    results = scores_from(parse_key_values(block or "")) if block else {}

    loaded = load_checkpoint(model_path, device="cpu")
    config = loaded.config
    h, w = params.get("height"), params.get("width")
    if isinstance(h, int) and isinstance(w, int) and h % 32 == 0 and w % 32 == 0:
        config = replace(config, height=h, width=w)
        loaded.model.config = config
    else:
        warnings.append(f"input size not recorded; assuming {config.height}x{config.width}")
    if params.get("num_classes") not in (None, config.num_classes):
        warnings.append(f"results say {params['num_classes']} classes but the weights have {config.num_classes}")
    dataset = dataset_for_classes(config.num_classes)

    tr = _load_losses(exp_dir / "model" / "tr_losses.npy", warnings)
    va = _load_losses(exp_dir / "model" / "va_losses.npy", warnings)
    n_epochs = max(len(tr) if tr is not None else 0, len(va) if va is not None else 0)
    best_epoch = None
    if va is not None and len(va) and np.isfinite(va).any():
        best_epoch = int(np.nanargmin(np.where(np.isfinite(va), va, np.nan))) + 1

    name = f"xtask_mt exp {exp_dir.name}"
    meta = default_meta(config.num_classes, dataset=dataset)
    meta["name"] = name
    meta["training"] = {"source": "xtask_mt", "experiment": exp_dir.name, "epochs": n_epochs or None,
                        "best_epoch": best_epoch, "params": params, "original_scores": results,
                        "val_loss": float(va[best_epoch - 1]) if best_epoch else None,
                        "note": "the original's mIoU is its per-image average (miou_per_image)"}

    out_dir.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(out_dir)
    try:
        logger.write_config({"source": "xtask_mt", "experiment": exp_dir.name,
                             "exp_dir": str(exp_dir.resolve()), "model": config.to_dict(),
                             "dataset": dataset, "train": params, "original_params": _jsonable(values),
                             "results": results, "warnings": warnings})
        for i in range(n_epochs):
            row: dict[str, Any] = {"kind": "epoch", "epoch": i + 1, "step": i + 1}
            if tr is not None and i < len(tr):
                row["train_loss"] = float(tr[i])
            if va is not None and i < len(va):
                row["val_loss"] = float(va[i])
            logger.log(row)
    finally:
        logger.close()
    save_checkpoint(RunDir(out_dir).best, loaded.model, meta, overwrite=False)
    if indv.exists():
        shutil.copyfile(indv, out_dir / "xtask_mt_indv_results.txt")
    if block:
        (out_dir / "xtask_mt_results.txt").write_text(block + "\n", encoding="utf-8")
    return {"out": str(out_dir), "experiment": exp_dir.name, "model": config.to_dict(),
            "dataset": dataset, "epochs": n_epochs, "best_epoch": best_epoch, "params": params,
            "results": results, "warnings": warnings}


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    def fix(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v
    return json.loads(json.dumps({k: fix(v) for k, v in values.items()}, default=str))
