"""The original code's (xtask_mt) text formats and published numbers.

:func:`parse_results_text` reads its ``results.txt`` / ``indv_results.txt`` (one
"Experiment #NNN" block per run: parameter lines and score lines); :data:`PUBLISHED_RESULTS`
are the numbers its README publishes, shown next to ours on the dashboard.
"""
from __future__ import annotations

import re
from typing import Any

import pandas as pd

from xtask_core.errors import XTaskError

__all__ = ["parse_results_text", "split_top_level", "PUBLISHED_RESULTS", "PUBLISHED_SOURCE",
           "published_results"]


_EXPERIMENT_RE = re.compile(r"^\s*Experiment\s*#\s*(\S+)\s*$", re.IGNORECASE)
_SCORE_NAMES = {"pix acc": "pixel_acc", "pixel acc": "pixel_acc", "miou": "miou", "rmse": "rmse",
                "irmse": "irmse", "irmse log": "irmse_log", "abs": "abs", "abs rel": "abs_rel",
                "sqrt rel": "sqrt_rel", "delta1": "delta1", "delta2": "delta2", "delta3": "delta3"}


def split_top_level(s: str) -> list[str]:
    """Split on commas that are not inside parentheses/brackets: 'beta=(0.9, 0.99), lp=L1'."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _top_level_sep(part: str) -> int | None:
    """Index of the first ':' or '=' outside parentheses, or None."""
    depth = 0
    for i, ch in enumerate(part):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch in ":=" and depth == 0:
            return i
    return None


def _value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def _param_key(key: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", key.strip().lower()).strip("_")


def parse_results_text(text: str) -> dict[str | None, dict[str, dict]]:
    """Parse the original code's results.txt / indv_results.txt tolerantly.

    Returns ``{experiment id (str) or None for text before any "Experiment #" header:
    {"params": {...}, "scores": {...}}}``. Score lines are those holding "Pix Acc", "mIoU" or
    "Scores"; their ``name: value`` pairs become ``pixel_acc, miou, rmse, irmse, irmse_log, abs,
    abs_rel, sqrt_rel, delta1..3`` (unknown names are kept, snake_cased). Other ``key=value`` /
    ``key: value`` pairs become params. Lines that match nothing are ignored. If the same
    experiment appears twice, later values win.
    """
    blocks: dict[str | None, dict[str, dict]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or set(line) <= set("=-*#"):
            continue
        m = _EXPERIMENT_RE.match(line)
        if m:
            current = m.group(1)
            blocks[current] = {"params": {}, "scores": {}}   # a re-run replaces the old block
            continue
        block = blocks.setdefault(current, {"params": {}, "scores": {}})
        is_score = bool(re.search(r"pix(el)?\s*acc|miou|^scores\b", line, re.IGNORECASE))
        body = re.sub(r"^scores\s*-\s*", "", line, flags=re.IGNORECASE)
        for part in split_top_level(body):
            sep = _top_level_sep(part)
            if sep is None:
                continue
            key, val = part[:sep].strip(), part[sep + 1:].strip()
            inner = _top_level_sep(val)
            if part[sep] == ":" and inner is not None and val[inner] == "=":
                # "Parameters: enc=34": the text before ':' only labels the line.
                key, val = val[:inner].strip(), val[inner + 1:].strip()
            if not key or not val:
                continue
            if is_score:
                name = _SCORE_NAMES.get(key.lower(), _param_key(key))
                num = _value(val)
                if isinstance(num, (int, float)) and not isinstance(num, bool):
                    block["scores"][name] = float(num)
            else:
                block["params"][_param_key(key)] = _value(val)
    return blocks


PUBLISHED_SOURCE = "published in the xtask_mt README (paper's numbers, not measured here)"

# The xtask_mt README's tables. Cityscapes: 7 classes, 128×256, ResNet34; Abs / Abs Rel
# are on inverse depth (disparity) as the original computes them. NYUv2: 13 classes, 288×384,
# depth in metres; "tasks" says how many tasks the model was trained on.
PUBLISHED_RESULTS: list[dict[str, Any]] = [
    {"dataset": "cityscapes", "model": "MTAN", "tasks": 2,
     "miou": 53.04, "pixel_acc": 91.11, "abs": 0.0144, "abs_rel": 33.63},
    {"dataset": "cityscapes", "model": "KD4MTL", "tasks": 2,
     "miou": 52.71, "pixel_acc": 91.54, "abs": 0.0139, "abs_rel": 27.33},
    {"dataset": "cityscapes", "model": "PCGrad", "tasks": 2,
     "miou": 53.59, "pixel_acc": 91.45, "abs": 0.0171, "abs_rel": 31.34},
    {"dataset": "cityscapes", "model": "AdaMT-Net", "tasks": 2,
     "miou": 62.53, "pixel_acc": 94.16, "abs": 0.0125, "abs_rel": 22.23},
    {"dataset": "cityscapes", "model": "xtask_mt (ours in the paper)", "tasks": 2,
     "miou": 66.51, "pixel_acc": 93.56, "abs": 0.0122, "abs_rel": 19.40},
    {"dataset": "nyuv2", "model": "MTAN", "tasks": 2,
     "miou": 20.10, "pixel_acc": 53.73, "abs": 0.6417, "abs_rel": 0.2758},
    {"dataset": "nyuv2", "model": "KD4MTL", "tasks": 2,
     "miou": 22.44, "pixel_acc": 57.32, "abs": 0.6003, "abs_rel": 0.2601},
    {"dataset": "nyuv2", "model": "PCGrad", "tasks": 2,
     "miou": 21.29, "pixel_acc": 54.07, "abs": 0.6705, "abs_rel": 0.3000},
    {"dataset": "nyuv2", "model": "AdaMT-Net", "tasks": 2,
     "miou": 20.61, "pixel_acc": 58.91, "abs": 0.6136, "abs_rel": 0.2547},
    {"dataset": "nyuv2", "model": "xtask_mt (ours in the paper)", "tasks": 2,
     "miou": 30.31, "pixel_acc": 63.02, "abs": 0.5954, "abs_rel": 0.2235},
]
for _row in PUBLISHED_RESULTS:
    _row["source"] = PUBLISHED_SOURCE
del _row


def published_results(dataset: str | None = None) -> pd.DataFrame:
    """:data:`PUBLISHED_RESULTS` as a DataFrame (optionally one dataset). Units: mIoU and pixel
    accuracy in %, Abs in the predicted quantity's unit, Abs Rel as printed in the README."""
    df = pd.DataFrame(PUBLISHED_RESULTS)
    if dataset is not None:
        if dataset not in set(df["dataset"]):
            raise XTaskError(f"no published numbers for {dataset!r}; "
                             f"choose one of {', '.join(sorted(set(df['dataset'])))}")
        df = df[df["dataset"] == dataset].reset_index(drop=True)
    return df
