"""The ``xtask`` command (also ``python -m xtask_core``).

Sub-commands: ``synth``, ``train``, ``eval``, ``predict``, ``import-xtask-mt``, ``bench``.
Run ``xtask <command> --help`` for the options of each.

Error contract: a problem with the user's input (bad flag value, missing or corrupt file,
wrong dataset folder) prints ONE line ``xtask: error: ...`` on stderr and exits with 2;
Ctrl-C exits with 130; an unexpected internal error prints one line and exits with 1.
Set ``XTASK_DEBUG=1`` to get the full traceback instead.

Heavy imports (torch, the model, datasets) happen inside the command handlers, so
``xtask --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from xtask_core.config import (
    DATASET_DEFAULTS,
    DATASETS,
    DEPTH_LOSSES,
    ENC_LAYERS,
    METHODS,
    PRECISIONS,
    TDEP_LOSSES,
    TSEG_LOSSES,
    TrainConfig,
)
from xtask_core.errors import XTaskError

PROG = "xtask"
ARCH_FLAGS = ("enc_layers", "num_classes", "mid_features", "ttnet_features", "wider_ttnet",
              "batch_norm")
MIOU_DEFINITIONS = {
    "miou": "dataset-level mIoU: one confusion matrix accumulated over every evaluated pixel of "
            "the split, IoU per class, mean over classes that occur (the standard definition)",
    "miou_per_image": "the original xtask_mt definition: for each image the mean IoU over the "
                      "classes present in its prediction or target, then averaged over images",
}


class UsageError(Exception):
    """A command-line mistake caught by argparse (reported as one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage + exiting, so main() prints one line."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _out(text: str = "") -> None:
    print(text, flush=True)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


# --------------------------------------------------------------------------- parser
def _add_device_flags(p: argparse.ArgumentParser, precision_default: str | None) -> None:
    p.add_argument("--cpu", action="store_true", default=None, help="run on the CPU even if CUDA is available")
    p.add_argument("--device", default=None, help="explicit torch device, e.g. cuda:1 (default: CUDA if available)")
    p.add_argument("--precision", choices=PRECISIONS, default=precision_default,
                   help="numeric precision; auto = mixed precision where the device runs it natively "
                        f"(default: {precision_default or 'auto'})")


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model (writes a run folder)",
        description="Train an XTaskNet. Flags keep the original xtask_mt names; a flag that is "
                    "not given takes its per-dataset default (Cityscapes / NYUv2 table of the "
                    "original; 'synthetic' uses the Cityscapes values).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # every default is None so we can tell "given" from "not given" (per-dataset defaults)
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="dataset (default: synthetic, generated into --input_path on first use)")
    p.add_argument("--input_path", default=None, help="dataset root (default: data/<dataset>)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<dataset>-<timestamp>)")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue the run in --out from last.state.pt (epoch, step, lr, optimiser)")
    g = p.add_argument_group("schedule")
    g.add_argument("--height", type=int, default=None, help="input height, multiple of 32")
    g.add_argument("--width", type=int, default=None, help="input width, multiple of 32")
    g.add_argument("-e", "--epochs", type=_positive_int, default=None)
    g.add_argument("--max_steps", type=_nonneg_int, default=None,
                   help="stop after this many optimiser steps (0 = off), e.g. for fine-tuning")
    g.add_argument("-b", "--batch_size", type=_positive_int, default=None)
    g.add_argument("--lr", "--learning_rate", type=float, default=None, help="Adam learning rate")
    g.add_argument("--betas", type=float, nargs=2, default=None, metavar=("B1", "B2"), help="Adam betas")
    g.add_argument("--b1", "--beta_1", type=float, default=None, help="Adam beta 1 (original flag)")
    g.add_argument("--b2", "--beta_2", type=float, default=None, help="Adam beta 2 (original flag)")
    g.add_argument("--scheduler_step_size", type=_positive_int, default=None, help="StepLR step (epochs)")
    g.add_argument("--scheduler_gamma", type=float, default=None, help="StepLR decay factor")
    g.add_argument("--seed", type=int, default=None)
    g = p.add_argument_group("loss")
    g.add_argument("--lambda_1", "--alpha", "-a", dest="lambda_1", type=float, default=None,
                   help="weight of the transferred-depth loss in the label group (original: --alpha)")
    g.add_argument("--lambda_2", "--gamma", "-g", dest="lambda_2", type=float, default=None,
                   help="weight of the transferred-seg loss in the image group (original: --gamma)")
    g.add_argument("--label_smoothing", type=float, default=None)
    g.add_argument("--lp", choices=DEPTH_LOSSES, default=None, help="direct depth loss")
    g.add_argument("--tdep_loss", choices=TDEP_LOSSES, default=None, help="transferred depth loss")
    g.add_argument("--tseg_loss", choices=TSEG_LOSSES, default=None, help="transferred seg loss")
    g.add_argument("--method", choices=METHODS, default=None,
                   help="xtsc: transferred vs direct predictions; xtc: transferred vs targets")
    g.add_argument("--uncertainty_weights", action="store_true", default=None,
                   help="Kendall et al. uncertainty weighting of the two loss groups")
    g.add_argument("--gradnorm", action="store_true", default=None, help="GradNorm weighting")
    g.add_argument("-n", "--num_classes", type=int, default=None, help="7 or 19 (Cityscapes), 13 (NYUv2)")
    g.add_argument("--ignore_index", type=int, default=None)
    g = p.add_argument_group("model")
    g.add_argument("--enc_layers", type=int, choices=ENC_LAYERS, default=None, help="ResNet depth")
    g.add_argument("--use_pretrain", nargs="?", const="", default=None, metavar="RESNET_FILE",
                   help="local torchvision ResNet state-dict file for the encoder (nothing is downloaded)")
    g.add_argument("--batch_norm", action="store_true", default=None, help="BatchNorm in the TTNets")
    g.add_argument("--wider_ttnet", action="store_true", default=None, help="double the TTNet widths")
    g.add_argument("--mid_features", type=_positive_int, default=None, help="decoder width")
    g.add_argument("--ttnet_features", type=_positive_int, default=None, help="TTNet base width")
    g.add_argument("--init_checkpoint", default=None,
                   help="start from these weights (fine-tuning); architecture flags not given are "
                        "taken from the checkpoint")
    g = p.add_argument_group("runtime")
    g.add_argument("-j", "--workers", type=_nonneg_int, default=None, help="data-loading processes")
    g.add_argument("--cpu", action="store_true", default=None, help="train on the CPU")
    g.add_argument("--device", default=None, help="explicit torch device, e.g. cuda:1")
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="auto = bf16/fp16 autocast where the device runs it faster (CUDA, AMX CPUs), else fp32")
    g.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: on for CUDA and AMX CPUs)")
    g.add_argument("--limit_train", type=_nonneg_int, default=None, help="use only the first N training images")
    g.add_argument("--limit_val", type=_nonneg_int, default=None, help="use only the first N validation images")
    g.add_argument("--log_every", type=_nonneg_int, default=None,
                   help="also write a metrics.csv row every N steps (0 = per epoch only)")
    g.add_argument("--val_every", type=_nonneg_int, default=None,
                   help="validate every N epochs (0 = only at the end of the run; default 1)")
    g.add_argument("--notqdm", action="store_true", default=False, help="no progress bars (original flag)")
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Cross-task consistency multi-task learning "
                                            "(semantic segmentation + depth): train, evaluate, predict.")
    from xtask_core import __version__

    parser.add_argument("--version", action="version", version=f"xtask {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("synth", help="generate the synthetic street-scene dataset (Cityscapes layout)",
                       description="Render procedural street scenes (RGB, raw Cityscapes label ids, "
                                   "16-bit disparity) into DIR in the Cityscapes folder layout. "
                                   "Synthetic, not real images.")
    p.add_argument("--out", required=True, help="dataset root to write")
    p.add_argument("--n-train", "--n_train", dest="n_train", type=_nonneg_int, default=400)
    p.add_argument("--n-val", "--n_val", dest="n_val", type=_nonneg_int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=_positive_int, default=256)
    p.add_argument("--width", type=_positive_int, default=512)
    p.add_argument("-j", "--workers", type=_nonneg_int, default=0, help="rendering processes (0 = in-process)")
    p.set_defaults(func=cmd_synth)

    _train_parser(sub)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split",
                       description="Evaluate a checkpoint. Reports BOTH mIoU definitions: 'miou' "
                                   "(dataset-level confusion matrix) and 'miou_per_image' (the "
                                   "original's per-image average).")
    p.add_argument("--checkpoint", required=True, action="append",
                   help=".safetensors (ours) or the original model.pth; repeat it with --per-image")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="default: the dataset recorded in the checkpoint")
    p.add_argument("--per-image", "--per_image", dest="per_image", default=None, metavar="FILE.parquet",
                   help="write one row per (checkpoint, image) (metrics, energy, entropy, confusion "
                        "counts) to this Parquet file; re-running resumes; works under torchrun")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="per-image records for a plain folder of images (recursive, no labels) "
                        "instead of a dataset split")
    p.add_argument("--no-cache", "--no_cache", dest="no_cache", action="store_true",
                   help="per-image records: neither read nor fill the records cache ($XTASK_CACHE_DIR)")
    p.add_argument("--input_path", default=None, help="dataset root (default: data/<dataset>)")
    p.add_argument("--split", default="val", choices=("train", "val"))
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--limit", type=_nonneg_int, default=0, help="only the first N images (0 = all)")
    p.add_argument("--direct_only", action="store_true", help="skip the transfer nets (no losses)")
    p.add_argument("-b", "--batch_size", type=_positive_int, default=8)
    p.add_argument("--height", type=int, default=None, help="default: the checkpoint's input size")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("-j", "--workers", type=_nonneg_int, default=None,
                   help="decoding threads running ahead of the model (default: 1, 0 = none)")
    p.add_argument("--exact", action="store_true",
                   help="run the model itself, eager fp32 (the reference path) instead of the fast "
                        "path (BN folded, traced graph, --precision)")
    _add_device_flags(p, "fp32")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="predict segmentation + depth for image(s)",
                       description="Run a checkpoint on image(s); writes coloured PNGs of the input "
                                   "and the four outputs, raw .npy arrays and summary.json.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--image", required=True, nargs="+", help="image file(s) (PNG, JPEG, ...)")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per image if several)")
    p.add_argument("--height", type=int, default=None, help="model input size (default: the checkpoint's)")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--cmap", default="magma", help="depth colour map")
    _add_device_flags(p, "auto")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("import-xtask-mt", help="import an original xtask_mt exps/NNN folder as a run",
                       description="Convert an original experiment folder (model/model.pth, "
                                   "tr_losses.npy, va_losses.npy, indv_results.txt, ../results.txt) "
                                   "into a run folder with best.safetensors, metrics.csv and config.json.")
    p.add_argument("exp_dir", help="the exps/NNN folder")
    p.add_argument("--out", required=True, help="run folder to create")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("bench", help="run the performance benchmarks")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    p.add_argument("--quick", action="store_true", help="a few iterations only (smoke test)")
    p.set_defaults(func=cmd_bench)
    return parser


# --------------------------------------------------------------------------- synth
def cmd_synth(args) -> int:
    from xtask_core.data import synthetic

    if args.height % 32 or args.width % 32:
        raise XTaskError(f"--height and --width must be multiples of 32, got {args.height}x{args.width}")
    t0 = time.time()
    synthetic.write_dataset(Path(args.out), n_train=args.n_train, n_val=args.n_val, seed=args.seed,
                            height=args.height, width=args.width, workers=args.workers)
    _out(f"wrote {args.n_train} train + {args.n_val} val synthetic scenes ({args.height}x{args.width}) "
         f"to {args.out} in {time.time() - t0:.1f} s")
    return 0


# --------------------------------------------------------------------------- train
_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))
_ARG_ONLY = ("b1", "b2", "device", "notqdm")


def train_config_from_args(args) -> TrainConfig:
    """TrainConfig from parsed ``train`` flags.

    New run: per-dataset defaults (FACTS §3), then the flags that were given; with
    ``--init_checkpoint`` the architecture flags not given are read off that checkpoint.
    ``--resume``: the run's saved config, then the flags that were given (e.g. more epochs).
    """
    given = {name: getattr(args, name) for name in _TRAIN_FIELDS
             if getattr(args, name, None) is not None}
    if "betas" in given:
        given["betas"] = tuple(given["betas"])
    if args.b1 is not None or args.b2 is not None:
        if "betas" in given:
            raise XTaskError("give either --betas or --b1/--b2, not both")
        base_betas = TrainConfig().betas
        given["betas"] = (args.b1 if args.b1 is not None else base_betas[0],
                          args.b2 if args.b2 is not None else base_betas[1])
    if given.get("use_pretrain") == "":
        raise XTaskError("--use_pretrain needs a local ResNet weights file (nothing is downloaded), "
                         "e.g. --use_pretrain resnet34.pth")
    if args.resume:
        if not args.out:
            raise XTaskError("--resume needs --out RUN_DIR (the run to continue)")
        from xtask_core.checkpoint import load_train_state

        state_path = Path(args.out) / "last.state.pt"
        if not state_path.exists():
            raise XTaskError(f"cannot resume: {state_path} does not exist")
        saved = load_train_state(state_path).get("train_config")
        if not isinstance(saved, dict):
            raise XTaskError(f"{state_path} holds no training config; cannot resume it")
        changed = [k for k in ARCH_FLAGS + ("height", "width") if k in given and given[k] != saved.get(k)]
        if changed:
            raise XTaskError(f"cannot change {', '.join(changed)} when resuming; start a new run "
                             "with --init_checkpoint instead")
        values = dict(saved)
        values.update(given)
        values.update(resume=True, out=str(args.out))
        return TrainConfig.from_dict(values)
    dataset = given.pop("dataset", None) or "synthetic"
    if given.get("init_checkpoint"):
        from xtask_core.checkpoint import load_checkpoint

        loaded = load_checkpoint(given["init_checkpoint"], device="cpu")
        for name in ARCH_FLAGS + ("height", "width"):
            given.setdefault(name, getattr(loaded.config, name))
    if not given.get("out"):
        given["out"] = str(Path("runs") / f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return TrainConfig.for_dataset(dataset, **given)


def cmd_train(args) -> int:
    from xtask_core.train.trainer import Trainer

    if args.notqdm:
        os.environ["XTASK_NO_TQDM"] = "1"
    cfg = train_config_from_args(args)
    rank = int(os.environ.get("RANK", "0"))
    talk = rank == 0

    def report(event: str, info: dict) -> None:
        if not talk:
            return
        if event == "epoch":
            miou = info.get("val_miou")
            extra = f"  mIoU {100 * miou:.1f}%" if isinstance(miou, float) and math.isfinite(miou) else ""
            _out(f"epoch {info['epoch']}/{cfg.epochs}  step {info['step']}  train {info['train_loss']:.4f}  "
                 f"val {info['val_loss']:.4f}{extra}  lr {info['lr']:.3g}  {info['seconds']:.1f} s")

    if talk:
        _out(f"training on {cfg.dataset} ({cfg.input_path}) -> {cfg.out}"
             + ("  [resume]" if cfg.resume else ""))
    summary = Trainer(cfg, device=args.device, callbacks=[report]).fit()
    if talk:
        if summary["status"] == "cancelled":
            _out(f"cancelled at step {summary['step']}; run folder: {cfg.out}")
        elif summary["best_val_loss"] is not None:
            _out(f"done: best val loss {summary['best_val_loss']:.4f} at epoch {summary['best_epoch']}; "
                 f"checkpoints in {cfg.out}")
        else:
            _out(f"nothing to do: the run in {cfg.out} already reached its epochs / max_steps")
    return 0


# --------------------------------------------------------------------------- eval
def _clean(value: Any) -> Any:
    """JSON-safe: NaN/Inf → None, numpy/torch scalars → Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _device(args):
    from xtask_core.device import default_device

    if args.cpu:
        return default_device("cpu")
    return default_device(args.device)


def evaluate_checkpoint(checkpoint: str, *, dataset: str | None = None, input_path: str | None = None,
                        split: str = "val", limit: int = 0, direct_only: bool = False,
                        batch_size: int = 8, height: int | None = None, width: int | None = None,
                        workers: int | None = None, device=None, precision: str = "fp32",
                        exact: bool = False) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on a dataset split → JSON-ready dict (see ``xtask eval --help``).

    Runs :func:`xtask_core.evaluate.split.evaluate_split`: the fast path at ``precision`` by default,
    the model itself in eager fp32 with ``exact=True``.
    """
    from xtask_core.checkpoint import load_checkpoint
    from xtask_core.evaluate.split import evaluate_split
    from xtask_core.train.losses import XTaskLoss
    from xtask_core.train.trainer import make_split

    loaded = load_checkpoint(checkpoint, device=device)
    dev = next(loaded.model.parameters()).device
    mcfg, meta = loaded.config, loaded.meta
    if dataset is None:
        dataset = meta.get("dataset")
        if dataset not in DATASETS:
            raise XTaskError(f"the checkpoint does not record a known dataset ({dataset!r}); "
                             f"pass --dataset ({', '.join(DATASETS)})")
    defaults = DATASET_DEFAULTS[dataset]
    input_path = input_path or defaults["input_path"]
    if not Path(input_path).exists():
        hint = " (create it with: xtask synth --out DIR)" if dataset == "synthetic" else ""
        raise XTaskError(f"dataset folder {input_path} does not exist{hint}")
    saved = (meta.get("training") or {}).get("train_config") or {}
    loss_opts = {k: saved.get(k, defaults.get(k, d)) for k, d in
                 (("lambda_1", 0.01), ("lambda_2", 0.01), ("label_smoothing", 0.0), ("lp", "L1"),
                  ("tdep_loss", "L1"), ("tseg_loss", "cross"), ("method", "xtsc"))}
    ignore_index = defaults["ignore_index"]
    cfg = TrainConfig.for_dataset(dataset, input_path=str(input_path), num_classes=mcfg.num_classes,
                                  height=height or mcfg.height, width=width or mcfg.width,
                                  ignore_index=ignore_index)
    ds = make_split(cfg, split, augment=False, limit=limit)
    loss_fn = XTaskLoss(mcfg.num_classes, ignore_index=ignore_index, **loss_opts).to(dev)
    t0 = time.time()
    res = evaluate_split(loaded, ds, batch_size=batch_size, fast=not exact, precision=precision,
                         direct_only=direct_only, workers=workers, loss_fn=loss_fn, device=dev,
                         ignore_index=ignore_index)
    seconds = time.time() - t0
    prec = res["precision"]
    names = list(meta.get("class_names") or [f"class {i}" for i in range(mcfg.num_classes)])
    ious = list(res.get("iou_per_class") or [])
    out: dict[str, Any] = {
        "checkpoint": str(checkpoint), "source": loaded.source, "dataset": dataset,
        "input_path": str(input_path), "split": split, "n_images": res["n_images"],
        "num_classes": mcfg.num_classes, "input_size": [cfg.height, cfg.width],
        "direct_only": direct_only, "precision": prec, "device": str(dev), "seconds": seconds,
        "exact": exact, "model_path": res["eval_path"],
        "miou": res.get("miou"), "miou_per_image": res.get("miou_per_image"),
        "pixel_acc": res.get("pixel_acc"),
    }
    for k in ("abs", "abs_rel", "rmse", "delta1", "delta2", "delta3"):
        out[k] = res.get(k)
    out["depth_unit"] = meta.get("depth_kind", "disparity")
    out["depth_unit_note"] = meta.get("depth_scale_note", "")
    out["iou_per_class"] = {names[i] if i < len(names) else f"class {i}": v for i, v in enumerate(ious)}
    if "loss" in res:
        out["loss"] = {k.removeprefix("loss_"): res[k] for k in res if k.startswith("loss_")}
    out["definitions"] = dict(MIOU_DEFINITIONS, loss="unbalanced total = label + image group losses, "
                                                      "mean per image, with the checkpoint's loss options")
    if dataset == "synthetic":
        out["note"] = "synthetic street scenes: numbers are not comparable with real Cityscapes"
    return _clean(out)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def cmd_eval(args) -> int:
    if args.per_image or args.images:
        from xtask_core.evaluate import records_cli  # torch + pyarrow: only for this command

        return records_cli.run(args)
    if len(args.checkpoint) > 1:
        raise XTaskError("several --checkpoint need --per-image FILE.parquet")
    res = evaluate_checkpoint(args.checkpoint[0], dataset=args.dataset, input_path=args.input_path,
                              split=args.split, limit=args.limit, direct_only=args.direct_only,
                              batch_size=args.batch_size, height=args.height, width=args.width,
                              workers=args.workers, device=_device(args), precision=args.precision,
                              exact=args.exact)
    _out(f"{res['checkpoint']} on {res['dataset']} {res['split']} ({res['n_images']} images, "
         f"{res['input_size'][0]}x{res['input_size'][1]}, {res['precision']})")
    rows = [("mIoU (dataset-level)", res["miou"]), ("mIoU (per-image, original)", res["miou_per_image"]),
            ("pixel accuracy", res["pixel_acc"]), (f"abs ({res['depth_unit']})", res["abs"]),
            ("abs rel", res["abs_rel"]), ("rmse", res["rmse"]), ("delta < 1.25", res["delta1"]),
            ("delta < 1.25^2", res["delta2"]), ("delta < 1.25^3", res["delta3"])]
    if "loss" in res:
        rows.append(("val loss (label + image)", res["loss"].get("total")))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        _out(f"  {name:<{width}}  {_fmt(value)}")
    _out("  IoU per class: " + ", ".join(f"{k} {_fmt(v)}" for k, v in res["iou_per_class"].items()))
    if args.json:
        from xtask_core.io.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(res, indent=2))
        _out(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- predict
def _predict_arrays(loaded, rgb, device, precision: str, size):
    """→ dict of numpy outputs at the model input size, via inference.Predictor when present."""
    import numpy as np

    try:
        from xtask_core.inference.predictor import Predictor
    except ImportError:
        Predictor = None
    if Predictor is not None:
        pred = Predictor(loaded, device=device, precision=precision).predict(rgb, size=size)
        return {"input_rgb": np.asarray(pred.input_rgb), "seg_logits": np.asarray(pred.seg_logits),
                "seg_t_logits": np.asarray(pred.seg_t_logits), "depth": np.asarray(pred.depth),
                "depth_t": np.asarray(pred.depth_t)}
    # Fallback without the fast path: plain fp32 forward on a resized copy.
    import torch
    from PIL import Image

    from xtask_core.data.transforms import normalize_image

    h, w = size
    small = np.array(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))  # writable copy
    x = normalize_image(small)[None].to(device)
    with torch.no_grad():
        seg, seg_t, depth, depth_t = loaded.model(x)
    return {"input_rgb": small, "seg_logits": seg[0].float().cpu().numpy(),
            "seg_t_logits": seg_t[0].float().cpu().numpy(), "depth": depth[0, 0].float().cpu().numpy(),
            "depth_t": depth_t[0, 0].float().cpu().numpy()}


def predict_image(loaded, image_path: str, out_dir: Path, *, device, precision: str = "auto",
                  size: tuple[int, int] | None = None, cmap: str = "magma",
                  rgb=None) -> dict[str, Any]:
    """Predict one image and write PNGs, .npy arrays and summary.json into ``out_dir``.

    ``rgb``: the already decoded H×W×3 uint8 image of ``image_path`` (skips decoding it again).
    """
    import numpy as np

    from xtask_core.io.atomic import atomic_write_bytes, atomic_write_text
    from xtask_core.io.images import load_image, to_png_bytes
    from xtask_core.viz import colour as viz

    # writable copy: torch warns on read-only arrays
    rgb = np.array(load_image(image_path) if rgb is None else rgb)
    size = size or (loaded.config.height, loaded.config.width)
    if size[0] % 32 or size[1] % 32:
        raise XTaskError(f"--height and --width must be multiples of 32, got {size[0]}x{size[1]}")
    arr = _predict_arrays(loaded, rgb, device, precision, size)
    seg, seg_t = arr["seg_logits"].argmax(0), arr["seg_t_logits"].argmax(0)
    depth, depth_t = arr["depth"].astype(np.float32), arr["depth_t"].astype(np.float32)
    palette = np.asarray(loaded.meta.get("palette"), dtype=np.uint8)
    # one shared colour range, so direct and transferred depth PNGs are comparable by eye
    finite = np.concatenate([depth[np.isfinite(depth)], depth_t[np.isfinite(depth_t)]])
    vmin = float(np.percentile(finite, 1)) if finite.size else 0.0
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1e-6
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {"input.png": arr["input_rgb"].astype(np.uint8),
            "seg.png": viz.colorize_seg(seg, palette),
            "seg_transferred.png": viz.colorize_seg(seg_t, palette),
            "depth.png": viz.colorize_depth(depth, cmap=cmap, vmin=vmin, vmax=vmax),
            "depth_transferred.png": viz.colorize_depth(depth_t, cmap=cmap, vmin=vmin, vmax=vmax),
            "overlay.png": viz.overlay(arr["input_rgb"].astype(np.uint8), viz.colorize_seg(seg, palette), 0.5)}
    for name, img in pngs.items():
        atomic_write_bytes(out_dir / name, to_png_bytes(np.asarray(img)))
    npys = {"seg.npy": seg.astype(np.int32), "seg_transferred.npy": seg_t.astype(np.int32),
            "seg_logits.npy": arr["seg_logits"].astype(np.float32),
            "seg_transferred_logits.npy": arr["seg_t_logits"].astype(np.float32),
            "depth.npy": depth, "depth_transferred.npy": depth_t}
    for name, a in npys.items():
        np.save(out_dir / name, a)
    names = list(loaded.meta.get("class_names") or [])
    n_pix = float(seg.size)

    def fractions(labels):
        counts = np.bincount(labels.ravel(), minlength=len(names) or int(labels.max()) + 1)
        return {(names[i] if i < len(names) else f"class {i}"): round(float(c) / n_pix, 6)
                for i, c in enumerate(counts)}

    def stats(d):
        return {"min": float(np.min(d)), "max": float(np.max(d)), "mean": float(np.mean(d))}

    summary = {
        "checkpoint": str(loaded.path), "image": str(image_path), "image_size": list(rgb.shape[:2]),
        "model_input_size": list(size), "outputs_at": "model input size",
        "depth_unit": loaded.meta.get("depth_kind", "disparity"),
        "depth_unit_note": loaded.meta.get("depth_scale_note", ""),
        "class_names": names,
        "seg_class_fraction": fractions(seg), "seg_transferred_class_fraction": fractions(seg_t),
        "depth_stats": stats(depth), "depth_transferred_stats": stats(depth_t),
        "consistency": {"seg_agreement": float((seg == seg_t).mean()),
                        "depth_mean_abs_diff": float(np.abs(depth - depth_t).mean())},
        "depth_colour_range": [vmin, vmax], "cmap": cmap,
        "files": sorted(list(pngs) + list(npys)),
    }
    summary = _clean(summary)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def cmd_predict(args) -> int:
    from xtask_core.io.images import load_image

    stems = [Path(p).stem for p in args.image]
    if len(set(stems)) != len(stems):
        raise XTaskError("several --image files share a name; predict them into separate --out folders")
    # Decode every image before loading the model: a bad file fails in a fraction of a second
    # and before any output is written (not after the earlier images' results).
    images = [load_image(p) for p in args.image]
    from xtask_core.checkpoint import (
        load_checkpoint,  # imports torch: only once the inputs are known good
    )
    from xtask_core.inference.precision import resolve_precision

    dev = _device(args)
    prec = resolve_precision(dev, args.precision)
    loaded = load_checkpoint(args.checkpoint, device=dev)
    size = None
    if args.height or args.width:
        size = (args.height or loaded.config.height, args.width or loaded.config.width)
    out = Path(args.out)
    for path, rgb in zip(args.image, images):
        target = out if len(args.image) == 1 else out / Path(path).stem
        s = predict_image(loaded, path, target, device=dev, precision=prec, size=size, cmap=args.cmap,
                          rgb=rgb)
        c = s["consistency"]
        _out(f"{path} -> {target}  (seg agreement direct/transferred {100 * c['seg_agreement']:.1f}%, "
             f"mean |depth - depth_t| {c['depth_mean_abs_diff']:.4g} {s['depth_unit']})")
    return 0


# --------------------------------------------------------------------------- import / bench
def cmd_import(args) -> int:
    from xtask_core.tools.import_xtask_mt import import_xtask_mt

    summary = import_xtask_mt(args.exp_dir, args.out)
    _out(f"imported {args.exp_dir} -> {args.out}: ResNet{summary['model']['enc_layers']}, "
         f"{summary['model']['num_classes']} classes, {summary['epochs']} epochs of losses"
         + (f", original mIoU {summary['results'].get('miou')}" if summary.get("results", {}).get("miou")
            is not None else ""))
    for warning in summary.get("warnings", []):
        _out(f"  note: {warning}")
    return 0


def cmd_bench(args) -> int:
    try:
        from xtask_core.tools.bench import main as bench_main
    except ImportError as err:
        raise XTaskError(f"the benchmark module is not available ({err})") from None
    return int(bench_main(json_path=args.json, quick=args.quick) or 0)


# --------------------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xtask`` command line; returns the exit code (never raises on bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("XTASK_DEBUG", "") not in ("", "0")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except SystemExit as exit_:  # --help / --version
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    except (UsageError, XTaskError, OSError, ValueError) as err:
        if debug:
            raise
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr, flush=True)
        return 2
    except Exception as err:  # noqa: BLE001 - a bug, but the user still gets one line
        if debug:
            raise
        print(f"{PROG}: error: internal error ({type(err).__name__}: {_one_line(err)}); "
              "set XTASK_DEBUG=1 for the traceback", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
