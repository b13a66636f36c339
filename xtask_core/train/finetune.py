"""The fine-tune recipe the app's Fine-tune page runs as a job: which data fits a model, its
arguments, the small data sets, a quick validation of a checkpoint, and λ sweeps.

A fine-tune is a short ``xtask train`` run (``max_steps`` steps, ``--init_checkpoint``) started
by :func:`xtask_core.train.jobs.start_job`. A short run validates once, at its end
(``val_every=0``), and logs a metrics row per step so the page can draw live curves.

Data must carry the model's labels: a Cityscapes-label model (7 or 19 classes) trains on the
synthetic street scenes or a Cityscapes-layout folder, an NYUv2 model (13 classes) on the
synthetic indoor rooms or an NYUv2 ``.npy``-layout folder; :func:`plan_data` makes that decision
(and says in one line why nothing fits, e.g. for a model with another class count).

A **λ sweep** is one job (:func:`start_sweep`): ``python -m xtask_core.train.finetune SWEEP_DIR``
trains k fine-tunes one after another, each into its own run folder beside the sweep folder
(so the checkpoint picker and the dashboard list them as ordinary runs). The sweep folder holds
``sweep.json`` (the plan), the job files and a ``progress.json`` over all k runs; cancelling
the sweep job cancels the run in progress and starts no other.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from xtask_core.config import ARCH_FIELDS, DATASET_DEFAULTS, TrainConfig
from xtask_core.data.labels import CITYSCAPES_IGNORE
from xtask_core.data.synthetic import write_dataset, write_indoor_dataset
from xtask_core.device import default_device
from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_write_text
from xtask_core.train import jobs
from xtask_core.train.data import make_loader, make_split, synthetic_has_data
from xtask_core.train.losses import XTaskLoss
from xtask_core.train.run_dir import TERMINAL, ProgressFile, RunDir, read_progress
from xtask_core.train.stl_loss import STLLoss
from xtask_core.train.validate import evaluate

__all__ = ["BALANCING", "LAMBDA_CHOICES", "SOURCES", "SWEEP_FILE", "SWEEP_MODES", "DataPlan", "default_lambda",
           "label_set", "plan_data", "data_sources", "finetune_args", "small_set", "small_synthetic_set",
           "quick_eval", "sweep_lambdas", "start_sweep", "read_sweep", "is_sweep", "run_sweep"]

_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
BALANCING = {"none": {}, "uncertainty": {"uncertainty_weights": True}, "gradnorm": {"gradnorm": True}}
if "pcgrad" in _TRAIN_FIELDS:
    BALANCING["pcgrad"] = {"pcgrad": True}
# Model config fields a fine-tune must copy from its base checkpoint (the trainer refuses a mismatch).
_ARCH = tuple(dict.fromkeys(ARCH_FIELDS + ("height", "width")))
# λ on a log scale: 0 (the term off), then 1 and 3 per decade from 1e-5 to 1. The defaults of
# the original are 0.01 (Cityscapes) and 1e-4 (NYUv2): both are points of the scale.
LAMBDA_CHOICES = (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
_DEFAULT_LAMBDA = {name: DATASET_DEFAULTS[name]["lambda_1"] for name in ("cityscapes", "nyuv2")}
# Where fine-tune data can come from, per label set of the model.
SOURCES = {"street": "synthetic street scenes (Cityscapes labels)",
           "indoor": "synthetic indoor rooms (NYUv2 labels)",
           "folder": "a dataset folder you name"}
_SOURCES_OF = {"cityscapes": ("street", "folder"), "nyuv2": ("indoor", "folder")}
SWEEP_FILE = "sweep.json"
SWEEP_MODES = {"both": "λ1 = λ2 = each value", "lambda_1": "λ1 only (λ2 fixed)", "lambda_2": "λ2 only (λ1 fixed)"}
MAX_SWEEP = 8


def label_set(num_classes: int, dataset: str | None = None) -> str | None:
    """The label set a model predicts: ``"cityscapes"`` (7 or 19 classes, unless its card says
    NYUv2), ``"nyuv2"`` (13 classes, unless its card says a Cityscapes-like set), else None."""
    dataset = (dataset or "").lower()
    if num_classes in (7, 19) and dataset != "nyuv2":
        return "cityscapes"
    if num_classes == 13 and dataset not in ("cityscapes", "synthetic"):
        return "nyuv2"
    return None


def default_lambda(num_classes: int, dataset: str | None = None) -> float:
    """The original's default λ for the model's label set (0.01 Cityscapes, 1e-4 NYUv2)."""
    return _DEFAULT_LAMBDA.get(label_set(num_classes, dataset) or "cityscapes")


def data_sources(num_classes: int, dataset: str | None = None) -> tuple[str, ...]:
    """Keys of :data:`SOURCES` that fit a model (empty when no data here has its labels)."""
    return _SOURCES_OF.get(label_set(num_classes, dataset), ())


@dataclass(frozen=True)
class DataPlan:
    """What a fine-tune trains on. ``ok`` False: ``message`` says in one line why it cannot."""

    ok: bool
    source: str = ""          # key of SOURCES
    dataset: str = ""         # TrainConfig.dataset the trainer reads it as
    folder: Path | None = None   # the named folder (source "folder"), else None: a rendered set
    message: str = ""


def _folder_layout_ok(folder: Path, labels: str) -> str:
    """'' when ``folder`` holds train and val splits in the layout of ``labels``, else why not."""
    if labels == "cityscapes":
        if synthetic_has_data(folder):
            return ""
        return (f"{folder} is not a Cityscapes-layout folder with train and val images "
                "(leftImg8bit/{train,val}/<city>/*_leftImg8bit.png)")
    missing = [s for s in ("train", "val") if not any((folder / s / "image").glob("*.npy"))]
    if missing:
        return (f"{folder} is not an NYUv2 .npy-layout folder: no {' or '.join(missing)}/image/<i>.npy "
                "(expected {train,val}/{image,label,depth}/<i>.npy)")
    return ""


def plan_data(num_classes: int, dataset: str | None, source: str, folder: str | os.PathLike | None = None,
              task: str = "both") -> DataPlan:
    """Decide the fine-tune data of a model with ``num_classes`` classes trained on ``dataset``.

    ``source`` is a key of :data:`SOURCES`; ``folder`` the (already resolved, allowed) folder for
    ``source="folder"``. Never raises for a user's choice: a plan with ``ok=False`` carries the
    one-line reason (labels that no data here has, a source for the other label set, a folder
    without the expected layout, a single-task model the trainer cannot fine-tune).
    """
    labels = label_set(num_classes, dataset)
    if labels is None:
        return DataPlan(False, message=(
            f"No fine-tune data here has this model's labels ({num_classes} classes; the synthetic sets have "
            "Cityscapes 7/19 or NYUv2 13): use `xtask train --init_checkpoint` with your own data."))
    if task != "both" and "task" not in _TRAIN_FIELDS:
        return DataPlan(False, message=f"This is a single-task ({task}) model; the trainer here cannot fine-tune it.")
    if source not in SOURCES:
        raise XTaskError(f"unknown fine-tune data source {source!r} (valid: {', '.join(SOURCES)})")
    if source not in _SOURCES_OF[labels]:
        other = "Cityscapes" if labels == "nyuv2" else "NYUv2"
        return DataPlan(False, source=source, message=(
            f"The {SOURCES[source]} have {other} labels; this model predicts {num_classes} "
            f"{'NYUv2' if labels == 'nyuv2' else 'Cityscapes'} classes."))
    if source == "street":
        return DataPlan(True, source, "synthetic", message="synthetic street scenes rendered at the model's size")
    if source == "indoor":
        return DataPlan(True, source, "nyuv2", message="synthetic indoor rooms rendered at the model's size")
    if folder is None or not str(folder).strip():
        return DataPlan(False, source=source, message="Name a dataset folder first.")
    folder = Path(folder)
    if not folder.is_dir():
        return DataPlan(False, source=source, message=f"{folder} is not a folder.")
    problem = _folder_layout_ok(folder, labels)
    if problem:
        return DataPlan(False, source=source, folder=folder, message=problem)
    ds = "cityscapes" if labels == "cityscapes" else "nyuv2"
    return DataPlan(True, source, ds, folder, message=f"{ds} layout folder {folder}")


def finetune_args(init_checkpoint: str | os.PathLike, model_config, data_root: str | os.PathLike, *,
                  steps: int = 30, lambda_1: float = TrainConfig.lambda_1,
                  lambda_2: float = TrainConfig.lambda_2, lr: float = 1e-4,
                  batch_size: int = 2, lp: str = "L1", tdep_loss: str = "L1", tseg_loss: str = "cross",
                  balancing: str = "none", ignore_index: int = CITYSCAPES_IGNORE, limit_val: int = 0,
                  workers: int = 0, precision: str = "auto", loss_reduction: str = "original",
                  dataset: str = "synthetic") -> dict:
    """Train arguments that fine-tune ``init_checkpoint`` for ``steps`` optimiser steps.

    The architecture and input size (``model_config``: a ModelConfig) are copied from the base
    checkpoint; ``data_root`` is read as ``dataset`` (``synthetic`` = Cityscapes layout,
    ``cityscapes``, ``nyuv2``). Every step logs a metrics row when ``steps <= 100`` (else about
    100 rows in all), so the page can draw live curves; the gradient cosine of the two loss
    groups is measured about 5 times per run. ``epochs`` is large so that ``max_steps`` is what
    ends the run. Unknown ``balancing`` (a key of :data:`BALANCING`) raises XTaskError.
    """
    if balancing not in BALANCING:
        raise XTaskError(f"balancing must be one of {', '.join(BALANCING)}, got {balancing!r}")
    if int(steps) < 1:
        raise XTaskError(f"steps must be >= 1, got {steps}")
    args = {name: getattr(model_config, name) for name in _ARCH if hasattr(model_config, name)}
    args.update(dataset=dataset, input_path=str(data_root), init_checkpoint=str(init_checkpoint),
                max_steps=int(steps), epochs=10_000, log_every=max(1, int(steps) // 100), val_every=0,
                lambda_1=float(lambda_1), lambda_2=float(lambda_2), lr=float(lr),
                batch_size=int(batch_size), lp=lp, tdep_loss=tdep_loss, tseg_loss=tseg_loss,
                ignore_index=int(ignore_index), limit_val=int(limit_val), workers=int(workers),
                precision=precision, loss_reduction=loss_reduction, **BALANCING[balancing])
    if "cosine_every" in _TRAIN_FIELDS:
        args["cosine_every"] = max(1, int(steps) // 5)
    TrainConfig.for_dataset(dataset, **{k: v for k, v in args.items() if k != "dataset"})
    return args


def small_set(kind: str, cache_root: str | os.PathLike, height: int, width: int, *,
              n_train: int = 32, n_val: int = 8, seed: int = 0) -> Path:
    """A small synthetic set for quick fine-tunes, made once: ``kind`` ``"street"`` (Cityscapes
    layout) or ``"indoor"`` (NYUv2 ``.npy`` layout), rendered at ``height``×``width`` pixels (the
    model's input size, so the loader does no resizing work).

    Lives in ``cache_root/<kind>-{n_train}-{n_val}-{height}x{width}-s{seed}``. It is rendered
    into a temporary sibling folder and renamed into place, so a reader never sees a
    half-written set and two sessions generating at once both end with one complete copy.
    """
    writers = {"street": (write_dataset, "synthetic", Path("leftImg8bit") / "val"),
               "indoor": (write_indoor_dataset, "indoor", Path("val") / "image")}
    if kind not in writers:
        raise XTaskError(f"unknown synthetic set {kind!r} (valid: {', '.join(writers)})")
    write, prefix, marker = writers[kind]
    root = Path(cache_root)
    final = root / f"{prefix}-{n_train}-{n_val}-{height}x{width}-s{seed}"
    if (final / marker).is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        write(tmp, n_train=n_train, n_val=n_val, seed=seed, height=height, width=width, workers=0)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / marker).is_dir():   # lost a race is fine; else raise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def small_synthetic_set(cache_root: str | os.PathLike, height: int, width: int, *,
                        n_train: int = 32, n_val: int = 8, seed: int = 0) -> Path:
    """:func:`small_set` of street scenes (Cityscapes layout)."""
    return small_set("street", cache_root, height, width, n_train=n_train, n_val=n_val, seed=seed)


def quick_eval(loaded, data_root: str | os.PathLike, *, limit: int = 8, batch_size: int = 4,
               ignore_index: int | None = None, device=None, dataset: str = "synthetic") -> dict:
    """Validation metrics of a loaded checkpoint on the first ``limit`` images of ``data_root``
    (read as ``dataset``).

    ``loaded`` is a ``checkpoint.Loaded``; its model is only run (in eval mode, no gradients),
    never changed, so a cached shared model may be passed. Images are read at the model's
    input size. Returns :func:`xtask_core.train.validate.evaluate`'s dict (``pixel_acc``, ``miou``,
    ``abs``, ``abs_rel``, ``rmse``, ``delta1``..., ``loss``), depth errors in model units.
    """
    mcfg = loaded.config
    ignore = int(loaded.meta.get("ignore_index", CITYSCAPES_IGNORE) if ignore_index is None else ignore_index)
    cfg = TrainConfig.for_dataset(dataset, input_path=str(data_root), num_classes=mcfg.num_classes,
                                  height=mcfg.height, width=mcfg.width, ignore_index=ignore)
    ds = make_split(cfg, "val", augment=False, limit=limit)
    model = loaded.model
    dev = next(model.parameters()).device if device is None else default_device(device)
    loader = make_loader(ds, batch_size, shuffle=False, workers=0, device=dev)
    task = getattr(mcfg, "task", "both")
    loss_fn = (XTaskLoss(mcfg.num_classes, ignore_index=ignore) if task == "both"
               else STLLoss(task, mcfg.num_classes, ignore_index=ignore)).to(dev)
    return evaluate(model, loader, num_classes=mcfg.num_classes, ignore_index=ignore, device=dev,
                    loss_fn=loss_fn)


# --------------------------------------------------------------------------- λ sweeps
def sweep_lambdas(values: Sequence[float], mode: str, lambda_1: float, lambda_2: float) -> list[tuple[float, float]]:
    """The (λ1, λ2) pairs of a sweep over ``values`` (sorted, duplicates dropped): ``mode``
    ``"both"`` sets λ1 = λ2 = value, ``"lambda_1"`` / ``"lambda_2"`` moves one and keeps the other
    at the given value. XTaskError for an unknown mode, a negative or non-finite value, fewer
    than 2 or more than :data:`MAX_SWEEP` values."""
    if mode not in SWEEP_MODES:
        raise XTaskError(f"unknown sweep mode {mode!r} (valid: {', '.join(SWEEP_MODES)})")
    vals = sorted({float(v) for v in values})
    if any(not math.isfinite(v) or v < 0 or v > 1 for v in vals):
        raise XTaskError(f"λ values must lie in [0, 1], got {vals}")
    if not 2 <= len(vals) <= MAX_SWEEP:
        raise XTaskError(f"a sweep needs 2 to {MAX_SWEEP} different λ values, got {len(vals)}")
    if mode == "both":
        return [(v, v) for v in vals]
    if mode == "lambda_1":
        return [(v, float(lambda_2)) for v in vals]
    return [(float(lambda_1), v) for v in vals]


def _fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")


def start_sweep(base_args: dict, lambdas: Sequence[tuple[float, float]], runs_root: str | os.PathLike, *,
                name: str | None = None, owner: str = "default", python: str = sys.executable,
                env: dict | None = None) -> Path:
    """Start one background job that fine-tunes ``base_args`` (from :func:`finetune_args`) once per
    (λ1, λ2) in ``lambdas``, one after another; return the sweep folder.

    Every run's folder is created here (``<sweep>-<i>-l1_<λ1>-l2_<λ2>`` under ``runs_root``,
    never an existing one) and every run's arguments are validated before anything starts.
    One job per ``owner`` as for a single fine-tune (:func:`xtask_core.train.jobs.start_job`).
    """
    if not lambdas:
        raise XTaskError("a sweep needs at least one λ pair")
    runs_root = Path(runs_root)
    plan = []
    for l1, l2 in lambdas:
        args = dict(base_args, lambda_1=float(l1), lambda_2=float(l2))
        jobs.train_argv(args, runs_root / "check")   # validates; raises XTaskError on a bad value
        plan.append(args)
    sweep = jobs.new_run_dir(runs_root, name, prefix="sweep")
    made: list[Path] = []
    try:
        runs = []
        for i, args in enumerate(plan, 1):
            child = jobs.new_run_dir(runs_root, f"{sweep.name}-{i}-l1_{_fmt(args['lambda_1'])}-"
                                                f"l2_{_fmt(args['lambda_2'])}")
            made.append(child)
            runs.append({"run_dir": str(child), "lambda_1": args["lambda_1"], "lambda_2": args["lambda_2"],
                         "args": args})
        spec = sweep / SWEEP_FILE
        atomic_write_text(spec, json.dumps({"created": time.time(), "runs": runs}, indent=1, default=str))
        # the spec lives in the sweep folder, which start_job wants empty: move it aside meanwhile
        aside = runs_root / f".{sweep.name}.{SWEEP_FILE}"
        os.replace(spec, aside)
        jobs.start_job(None, sweep, owner=owner, runs_root=runs_root, python=python, env=env,
                       argv=["-m", "xtask_core.train.finetune", str(sweep), str(aside)])
    except BaseException:
        for d in [*made, sweep]:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        (runs_root / f".{sweep.name}.{SWEEP_FILE}").unlink(missing_ok=True)
        raise
    return sweep


def is_sweep(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir`` is a sweep folder (its plan is there or on its way)."""
    run_dir = Path(run_dir)
    return (run_dir / SWEEP_FILE).is_file() or (run_dir.parent / f".{run_dir.name}.{SWEEP_FILE}").is_file()


def read_sweep(run_dir: str | os.PathLike) -> list[dict]:
    """The planned runs of a sweep folder: dicts with ``run_dir`` (Path), ``lambda_1``,
    ``lambda_2``, ``status`` (the run's progress status, ``"waiting"`` before it starts,
    ``"stopped"`` when its process died without saying so) and ``step``. Empty when the folder holds no sweep."""
    run_dir = Path(run_dir)
    spec = next((p for p in (run_dir / SWEEP_FILE, run_dir.parent / f".{run_dir.name}.{SWEEP_FILE}")
                 if p.is_file()), None)
    if spec is None:
        return []
    try:
        runs = json.loads(spec.read_text(encoding="utf-8")).get("runs", [])
    except (OSError, ValueError, AttributeError):
        return []
    out = []
    for r in runs:
        child = Path(r["run_dir"])
        prog = read_progress(child) or {}
        status = str(prog.get("status", "waiting"))
        if status in ("starting", "running") and jobs.progress_process_alive(prog) is False:
            status = "stopped"        # killed with its sweep (a cancel that had to use signals)
        out.append({"run_dir": child, "lambda_1": float(r["lambda_1"]), "lambda_2": float(r["lambda_2"]),
                    "status": status, "step": int(prog.get("step", 0) or 0)})
    return out


def run_sweep(sweep_dir: str | os.PathLike, spec_path: str | os.PathLike | None = None, *,
              poll_s: float = 0.5) -> int:
    """The sweep job's body (``python -m xtask_core.train.finetune SWEEP_DIR [SPEC]``): train each
    planned run in a child trainer process, in order, writing the sweep's own progress.

    A cancel file in the sweep folder (or SIGINT) is passed on to the running child, and no
    further run starts. A failed run does not stop the sweep. Returns the exit code (0 when at
    least one run finished, or the sweep was cancelled)."""
    sweep = RunDir(sweep_dir)
    if spec_path is not None and Path(spec_path).is_file():
        os.replace(spec_path, sweep.path / SWEEP_FILE)
    plan = json.loads((sweep.path / SWEEP_FILE).read_text(encoding="utf-8"))["runs"]
    steps = [int(r["args"].get("max_steps", 0)) for r in plan]
    progress = ProgressFile(sweep.progress)
    progress.update(status="running", total_steps=sum(steps), epochs=len(plan), force=True,
                    message=f"starting run 1 of {len(plan)}")
    results: list[str] = []
    child = None
    try:
        for i, r in enumerate(plan):
            if sweep.cancel.exists():
                break
            run = RunDir(r["run_dir"])
            run.path.mkdir(parents=True, exist_ok=True)
            argv = [sys.executable, "-m", "xtask_core", *jobs.train_argv(r["args"], run.path)]
            label = f"run {i + 1} of {len(plan)} (λ1={_fmt(r['lambda_1'])}, λ2={_fmt(r['lambda_2'])})"
            print(f"sweep: {label} → {run.path}", flush=True)
            with open(run.log, "ab") as log:
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            while child.poll() is None:
                if sweep.cancel.exists() and not run.cancel.exists():
                    run.cancel.touch()
                step = int((read_progress(run.path) or {}).get("step", 0) or 0)
                progress.update(step=sum(steps[:i]) + step, epoch=i + 1, message=f"{label}: step {step} of {steps[i]}")
                time.sleep(poll_s)
            status = str((read_progress(run.path) or {}).get("status", "failed"))
            results.append(status if status in TERMINAL else "failed")
            print(f"sweep: {label}: {results[-1]}", flush=True)
            if results[-1] == "cancelled":
                break
    except KeyboardInterrupt:
        # SIGINT reached the whole process group: the child trainer writes "cancelled" and exits
        # at once; wait briefly (the canceller sends SIGTERM a few seconds later).
        if child is not None and child.poll() is None:
            try:
                child.wait(timeout=4)
            except subprocess.TimeoutExpired:
                child.kill()
        results.append("cancelled")
    finally:
        for r in plan:   # runs that never started leave no empty folder behind
            p = Path(r["run_dir"])
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
    done = results.count("done")
    summary = f"{done} of {len(plan)} runs finished" + (
        f", {results.count('failed')} failed" if "failed" in results else "")
    if "cancelled" in results or sweep.cancel.exists():
        progress.update(status="cancelled", message=f"sweep cancelled: {summary}", force=True)
        return 0
    progress.update(status="done" if done else "failed", step=sum(steps), message=summary, force=True)
    return 0 if done else 1


if __name__ == "__main__":   # the sweep job: python -m xtask_core.train.finetune SWEEP_DIR [SPEC]
    sys.exit(run_sweep(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
