"""What Compare's evaluation subset and the Error maps page's subset analysis are computed on:
the first n shipped samples, or the per-image records of any split (the Dataset page's latest
evaluation, or a records file). Both paths go through the same per-image records code
(:func:`xtask_core.evaluate.records.records_for` and :mod:`xtask_core.evaluate.record_summary`).

- **Shipped samples**: the first n samples labelled for the reference checkpoint; each
  cross-task checkpoint's records are computed at its own input size with the disk cache on, so
  they are computed once per checkpoint file and reused by any later session (and a slider move
  only filters rows). Single-task checkpoints have no per-image records (those need the four
  outputs of a cross-task model): they are scored live on the same images with
  :func:`xtask_core.evaluate.report.evaluate_predictions`, which the records' totals equal up to
  float rounding, so Δm still compares like with like.
- **Records (any split)**: rows are matched to the page's checkpoints by content hash (the
  records' ``checkpoint_sha256`` column against the checkpoint file's SHA-256), so a file
  computed on another machine, under another path, still matches.

Design decision: records stay a few hundred numbers per image (metrics, energies, entropy,
confusion counts), never the maps. Figures that need the maps (the pooled per-pixel energy
study) therefore run the model live on a few images chosen from the records
(:func:`pick_rows`, :func:`pixel_inputs`), each loaded by its records ``index`` or name.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from xtask_app import cache, pickers, settings
from xtask_app.messages import USER_ERRORS, show_error
from xtask_app.selection import choices
from xtask_app.ui import dataset as ds
from xtask_app.ui.dataset_links import source_text
from xtask_app.ui.dataset_views import labelled
from xtask_core.data.samples import SampleFiles
from xtask_core.errors import XTaskError
from xtask_core.evaluate import record_summary as rs
from xtask_core.evaluate.records import records_for
from xtask_core.evaluate.report import evaluate_predictions
from xtask_core.evaluate.sources import dataset_source
from xtask_core.io.cache import file_sha256
from xtask_core.io.keys import array_key
from xtask_core.tools import record_job

SOURCES = ("Shipped samples", "Records (any split)")
#: how the live per-pixel study picks its images from the records ({n}: how many)
PICKS = {"first": "the first {n} images", "worst": "the {n} images with the most wrong pixels",
         "energy": "the {n} images with the highest energy"}
DATASET_PAGE = "app_pages/dataset.py"
DEPTH_COLUMNS = tuple(p + k for p in ("", "t_") for k in ("abs", "abs_rel", "rmse", "delta1", "delta2", "delta3"))
METRIC_KEYS = ("pixel_acc", "miou", "miou_per_image", "abs", "abs_rel", "rmse", "delta1", "delta2", "delta3")


@dataclass
class EvalSource:
    """What the dataset-level figures are computed on.

    ``records``: rows of the matched checkpoints only; ``columns``: model label → its value in
    the records' ``checkpoint`` column; ``description``: one line for people ("the first 8
    shipped samples"); ``source``: the records' source identity (kind, dataset, split, root,
    input_size); ``samples``: records ``image`` → shipped sample (shipped samples only);
    ``live``: label → metrics of single-task checkpoints scored live on the same images;
    ``order``: the models' labels in the page's order (the tables' row order).
    """

    records: pd.DataFrame
    columns: dict[str, str]
    description: str
    source: dict = field(default_factory=dict)
    samples: dict[str, SampleFiles] = field(default_factory=dict)
    live: dict[str, dict] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @property
    def results(self) -> dict[str, dict]:
        """label → metrics dict (as :func:`evaluate_predictions` returns), in the models' order."""
        out = records_results(self.records, self.columns) | self.live
        return {lb: out[lb] for lb in self.order or out if lb in out}

    def rows_of(self, label: str) -> pd.DataFrame:
        """The records of one model (by its label)."""
        return self.records[self.records["checkpoint"] == self.columns[label]]


# --------------------------------------------------------------------------- pure parts
def match_checkpoints(shas: Mapping[str, str], records: pd.DataFrame) -> dict[str, str]:
    """label → the records' ``checkpoint`` value whose ``checkpoint_sha256`` equals the label's
    file hash (``shas``: label → SHA-256). Labels the records lack are left out; when the same
    bytes appear under several names, the first in the records wins."""
    if records.empty or "checkpoint_sha256" not in records.columns:
        return {}
    by_sha: dict[str, str] = {}
    for ck, sha in zip(records["checkpoint"], records["checkpoint_sha256"]):
        by_sha.setdefault(str(sha), str(ck))
    return {label: by_sha[sha] for label, sha in shas.items() if sha in by_sha}


def restrict(records: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """The rows of the matched checkpoints, in the order of ``columns``, images in index order."""
    order = {ck: i for i, ck in enumerate(columns.values())}
    part = records[records["checkpoint"].isin(order)]
    key = part["checkpoint"].map(order) * (int(part["index"].max()) + 2 if len(part) else 1) + part["index"]
    return part.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def to_metrics(total: Mapping, confusion: np.ndarray | None) -> dict:
    """A :func:`record_summary.totals` entry (+ the summed confusion, None without labels) → the
    dict :func:`evaluate_predictions` returns, so ``metrics_row``, ``per_class_iou_rows`` and the
    Δm section take it unchanged."""
    out = {k: float(total.get(k, math.nan)) for k in METRIC_KEYS}
    out["iou_per_class"] = list(total.get("iou_per_class") or [])
    conf = np.zeros((0, 0), np.int64) if confusion is None else np.asarray(confusion, np.int64)
    out["confusion"] = conf.tolist()
    out["n_pixels"] = int(conf.sum())
    out["n_images"] = int(total.get("n_images", 0))
    return out


def records_results(records: pd.DataFrame, columns: Mapping[str, str]) -> dict[str, dict]:
    """label → :func:`to_metrics` of that checkpoint's rows (labels without rows are left out)."""
    tot = rs.totals(records) if not records.empty else {}
    out = {}
    for label, ck in columns.items():
        if ck not in tot:
            continue
        part = records[records["checkpoint"] == ck]
        labelled = any(len(v) for v in part["confusion"])
        out[label] = to_metrics(tot[ck], rs.confusion_matrix(part) if labelled else None)
    return out


def without_depth(records: pd.DataFrame) -> pd.DataFrame:
    """The records with the depth metrics blanked (ground-truth depth read another way than the
    model's output, e.g. disparity against metres)."""
    return records.assign(**dict.fromkeys(DEPTH_COLUMNS, math.nan), n_depth_pixels=0)


def pick_rows(rows: pd.DataFrame, how: str, n: int) -> pd.DataFrame:
    """The ``n`` rows of one checkpoint for the live per-pixel study: ``first`` (index order),
    ``worst`` (highest pixel error first) or ``energy`` (highest seg energy first); ties keep
    index order, rows without the value go last."""
    if how not in PICKS:
        raise XTaskError(f"unknown choice {how!r} (valid: {', '.join(PICKS)})")
    rows = rows.sort_values("index", kind="stable")
    if how == "worst":
        rows = rows.assign(_v=rs.error_values(rows, "pixel_error")).sort_values("_v", ascending=False, kind="stable",
                                                                                na_position="last")
    elif how == "energy":
        rows = rows.sort_values("seg_energy", ascending=False, kind="stable", na_position="last")
    return rows.head(max(0, int(n))).drop(columns="_v", errors="ignore").reset_index(drop=True)


def study_where(chosen: EvalSource, how: str, n: int) -> str:
    """Short words for the live per-pixel study's images (chart titles): "the first 3 images",
    "the 8 images with the most wrong pixels of the synthetic val split"."""
    what = PICKS[how].format(n=n)
    if n == 1:
        what = what.replace("1 images", "1 image").replace("first 1 ", "first ")
    src = chosen.source
    if chosen.samples or src.get("kind") != "dataset":
        return what
    return f"{what} of the {src.get('dataset')} {src.get('split')} split"


def sample_place(s: SampleFiles, samples_root: Path) -> tuple[tuple[str, str, str], str]:
    """Where a shipped sample sits as a dataset item: ((dataset, root, split), its records ``image``
    name). Street scenes: the Cityscapes-layout ``synthetic`` split of the samples folder; indoor
    rooms: the NYUv2 split under ``nyuv2/``."""
    if s.label_set == "nyuv2":
        root = samples_root / pickers.NYUV2_SAMPLES
        rel = Path(s.image).relative_to(root)
        return ("nyuv2", str(root), rel.parts[0]), rel.as_posix()
    rel = Path(s.image).relative_to(samples_root)
    return ("synthetic", str(samples_root), s.name.split("/")[0]), rel.as_posix()


def sample_groups(samples: Sequence[SampleFiles], samples_root: Path) -> dict[tuple[str, str, str], list[str]]:
    """Shipped samples grouped by the dataset split that holds them (:func:`sample_place`):
    (dataset, root, split) → their records ``image`` names."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for s in samples:
        where, name = sample_place(s, samples_root)
        out.setdefault(where, []).append(name)
    return out


# --------------------------------------------------------------------------- cached work
@st.cache_data(max_entries=64, show_spinner=False)
def _sha(path: str, mtime: float, size: int) -> str:
    return file_sha256(path)


def checkpoint_sha(path) -> str:
    """SHA-256 of a checkpoint file, cached by (path, mtime, size)."""
    return _sha(*cache.file_key(path))


@st.cache_data(max_entries=32, show_spinner="Computing per-image records (cached on disk for next time)…")
def _records(path: str, mtime: float, size: int, dataset: str, root: str, split: str, height: int, width: int,
             num_classes: int) -> pd.DataFrame:
    source = dataset_source(dataset, root, split, (height, width),
                            num_classes=None if dataset == "nyuv2" else num_classes)
    return records_for_one(path, source)


def records_for_one(path: str, source) -> pd.DataFrame:
    """One checkpoint's records on ``source`` with the disk cache on."""
    return records_for([path], source, cache=True)


def shipped_records(m, samples: Sequence[SampleFiles]) -> pd.DataFrame:
    """Records of model ``m`` (a ModelState, cross-task) on ``samples``, at its own input size."""
    cfg, parts = m.config, []
    for (dataset, root, split), names in sample_groups(samples, settings.samples_dir()).items():
        df = _records(*cache.file_key(m.path), dataset, root, split, int(cfg.height), int(cfg.width),
                      int(m.num_classes))
        parts.append(df[df["image"].isin(names)])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def live_metrics(m, samples: Sequence[SampleFiles]) -> dict:
    """A model without per-image records (single-task) scored live on ``samples`` (cached predictions)."""
    return evaluate_predictions(*pickers.predict_samples(m, samples), m.num_classes, m.ignore_index)


# --------------------------------------------------------------------------- the widget
def choose(models: Sequence, key: str) -> EvalSource | None:
    """The source radio and its inputs (widget keys ``{key}_evsrc``, ``{key}_n``,
    ``{key}_records``) → an :class:`EvalSource` for ``models`` (ModelStates sharing one label
    set, the first the reference), or None after one line saying why there is nothing to show."""
    src = st.radio("Evaluated on", SOURCES, horizontal=True, key=f"{key}_evsrc",
                   help="The shipped samples, or the per-image records of any split (evaluate it on the Dataset "
                        "page, or with `xtask eval --per-image` and type the file here)")
    try:
        return _shipped(models, key) if src == SOURCES[0] else _from_records(models, key)
    except USER_ERRORS as err:
        show_error(err)
        return None


def _shipped(models: Sequence, key: str) -> EvalSource | None:
    ref = models[0]
    found = pickers.fitting_samples(ref)
    if not found:
        st.info(f"No shipped sample is labelled for {ref.label} ({ref.label_set_name}); pick 'Records (any "
                "split)' to use a split evaluated on the Dataset page or by `xtask eval --per-image`.")
        return None
    n = int(st.slider("Samples", 1, len(found), min(8, len(found)), key=f"{key}_n")) if len(found) > 1 else 1
    chosen = found[:n]
    parts, columns, live = [], {}, {}
    for m in models:
        if getattr(m.config, "task", "both") != "both":
            live[m.label] = live_metrics(m, chosen)
            continue
        df = shipped_records(m, chosen)
        if not all(m.fit(pickers.sample_source(s)).depth for s in chosen):
            df = without_depth(df)
        parts.append(df)
        columns[m.label] = str(m.path)
    records = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    places = [sample_place(s, settings.samples_dir()) for s in chosen]
    dataset, root, split = places[0][0]
    samples = {name: s for (_, name), s in zip(places, chosen)}
    if live:
        st.caption("ℹ️ Scored live (per-image records need a cross-task model): " + ", ".join(live) + ".")
    return EvalSource(restrict(records, columns) if columns else records, columns,
                      f"the first {n} shipped sample{'s' if n > 1 else ''}",
                      {"kind": "dataset", "dataset": dataset, "root": root, "split": split}, samples, live,
                      [m.label for m in models])


def _read(text: str) -> tuple[pd.DataFrame, dict, str] | None:
    """(records, source identity, a note) of a typed records file, or of the Dataset page's latest job."""
    if text.strip():
        records, ident = ds.read_file(str(settings.resolve_user_path(text)))
        return records, ident, ""
    run_dir = record_job.latest(ds.owner(), ds.jobs_root())
    if run_dir is None:
        return None
    status = ds.status(str(run_dir))
    records, ident = ds.job_records(str(run_dir))
    note = "" if status is None or status.state == "done" else f" (the evaluation is {status.state}: rows so far)"
    return records, ident, note


def _prefill_dataset_page(checkpoints: Sequence[str], source: Mapping | None) -> None:
    """Preselect ``checkpoints`` (sidebar labels) and, for a dataset split, that split in the
    Dataset page's widgets (their session-state keys), so one click on Evaluate is left."""
    ss = st.session_state
    listed = set(choices())
    picked = [c for c in checkpoints if c in listed]
    if picked:
        ss[ds.MODELS_KEY] = picked
    if source and source.get("kind") == "dataset" and source.get("root"):
        ss.update({"ds_src": "Dataset split", "ds_dataset": str(source.get("dataset")),
                   "ds_root": str(source.get("root")), "ds_split": str(source.get("split") or "val")})


def to_dataset_page(label: str, key: str, box=None, checkpoints: Sequence[str] = (),
                    source: Mapping | None = None) -> None:
    """A button that opens the Dataset page (where the missing checkpoints can be evaluated), with
    ``checkpoints`` and the records' ``source`` split already picked there."""
    if (box or st).button(label, key=key, help="Pick the checkpoints and the split there, then Evaluate"):
        _prefill_dataset_page(checkpoints, source)
        try:
            st.switch_page(DATASET_PAGE)
        except StreamlitAPIException as err:   # a page run on its own (tests): say where it would go
            (box or st).info(f"Would open {DATASET_PAGE} ({type(err).__name__})")


def _from_records(models: Sequence, key: str) -> EvalSource | None:
    text = st.text_input("Records file (empty: the Dataset page's latest evaluation)", key=f"{key}_records",
                         placeholder="runs/…/records.parquet")
    got = _read(text)
    if got is None:
        st.info("No evaluation on the Dataset page yet: evaluate a split there, or type a records file.")
        to_dataset_page("Open the Dataset page", f"{key}_to_ds", checkpoints=[m.label for m in models])
        return None
    records, ident, note = got
    if not labelled(records):
        st.info(f"These records ({source_text(ident)}) have no ground truth (a folder of plain images): the metrics "
                "and the per-pixel study need labels.")
        return None
    columns = match_checkpoints({m.label: checkpoint_sha(m.path) for m in models}, records)
    missing = [m.label for m in models if m.label not in columns]
    if not columns:
        st.info(f"None of {', '.join(m.label for m in models)} is in these records ({source_text(ident)}): evaluate "
                "them on the Dataset page.")
        to_dataset_page("Evaluate on the Dataset page", f"{key}_to_ds", checkpoints=[m.label for m in models],
                        source=ident)
        return None
    part = restrict(records, columns)
    n_img = int(part["image"].nunique())
    if missing:
        c1, c2 = st.columns([4, 1])
        c1.caption(f"ℹ️ Not in these records: {', '.join(missing)} (matched by the file's content).")
        to_dataset_page("Evaluate on the Dataset page", f"{key}_to_ds", c2, checkpoints=missing, source=ident)
    return EvalSource(part, columns, f"{source_text(ident)}, {n_img} images{note}", dict(ident),
                      order=[m.label for m in models])


# --------------------------------------------------------------------------- the live per-pixel study
def load_item(m, chosen: EvalSource, row: Mapping) -> tuple:
    """(rgb, gt_seg, gt_depth) of one records row at ``m``'s input size: a shipped sample by name,
    a dataset item by its records ``index``; ground truth that does not fit the model is None."""
    s = chosen.samples.get(str(row["image"]))
    if s is not None:
        return pickers.sample_arrays(m, s)
    src, cfg = chosen.source, m.config
    if src.get("kind") != "dataset":
        raise XTaskError("a folder of plain images has no labels: the per-pixel study needs them")
    dataset = str(src.get("dataset"))
    fit = m.fit(dataset)
    n_cls = cfg.num_classes if fit.seg or dataset == "nyuv2" else 7
    rgb, gs, gd = cache.cached_dataset_item(dataset, str(src.get("root")), str(src.get("split") or "val"),
                                            int(row["index"]), n_cls, cfg.height, cfg.width)
    return rgb, gs if fit.seg else None, gd if fit.depth else None


def pixel_inputs(m, chosen: EvalSource, rows: pd.DataFrame) -> tuple[list, list, list]:
    """Live predictions of ``m`` and the ground truth of ``rows`` (cached): (preds, gt_segs, gt_depths)."""
    preds, segs, deps = [], [], []
    for _, row in rows.iterrows():
        rgb, gs, gd = load_item(m, chosen, row)
        preds.append(cache.predict(m, rgb, array_key(rgb)))
        segs.append(gs)
        deps.append(gd)
    return preds, segs, deps
