"""The ``xtask`` command (also ``python -m xtask_core``).

Sub-commands: ``synth``, ``train``, ``eval``, ``predict``, ``import-xtask-mt``, ``bench``.
Run ``xtask <command> --help`` for the options of each.

Error contract: a problem with the user's input (bad flag value, missing or corrupt file,
wrong dataset folder) prints ONE line ``xtask: error: ...`` on stderr and exits with 2;
Ctrl-C exits with 130; an unexpected internal error prints one line and exits with 1.
Set ``XTASK_DEBUG=1`` to get the full traceback instead.

Heavy imports (torch, numpy, the model, datasets) happen inside the command handlers, so
``xtask --help`` stays fast (a fraction of a second instead of several seconds); the library functions the
handlers call live in their layers (``train.run_config``, ``tools.checkpoint_eval``,
``tools.predict_files``, ...), this module only parses, dispatches and prints.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from xtask_core import __version__
from xtask_core.config import (
    DATASETS,
    DEPTH_LOSSES,
    ENC_LAYERS,
    LOSS_REDUCTIONS,
    METHODS,
    PRECISIONS,
    TASKS,
    TDEP_LOSSES,
    TSEG_LOSSES,
    TrainConfig,
)
from xtask_core.errors import XTaskError
from xtask_core.io.atomic import atomic_write_text

PROG = "xtask"


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
        description="Train an XTaskNet (or, with --task segmt|depth, a single-task baseline). "
                    "Flags keep the original xtask_mt names; a flag that is "
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
    g.add_argument("--loss_reduction", choices=LOSS_REDUCTIONS, default=None,
                   help="original (default): the original code's arithmetic, e.g. the transferred-seg "
                        "cross-entropy averaged over all pixels; masked: every masked term averaged "
                        "over the pixels its mask keeps")
    g.add_argument("--uncertainty_weights", action="store_true", default=None,
                   help="Kendall et al. uncertainty weighting of the two loss groups")
    g.add_argument("--gradnorm", action="store_true", default=None, help="GradNorm weighting")
    g.add_argument("--pcgrad", action="store_true", default=None,
                   help="PCGrad: project away the conflicting part of the label and image groups' "
                        "gradients, then sum (instead of uncertainty weights / GradNorm)")
    g.add_argument("-n", "--num_classes", type=int, default=None, help="7 or 19 (Cityscapes), 13 (NYUv2)")
    g.add_argument("--ignore_index", type=int, default=None)
    g = p.add_argument_group("model")
    g.add_argument("--task", choices=TASKS, default=None,
                   help="both: the cross-task network (default); segmt / depth: the original's single-task "
                        "baseline (encoder + one decoder, same per-dataset defaults)")
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
    g.add_argument("--cosine_every", type=_nonneg_int, default=None,
                   help="log the cosine of the two loss groups' gradients at the shared encoder every N "
                        "steps (0 = off; default 50)")
    g.add_argument("--notqdm", action="store_true", default=False, help="no progress bars (original flag)")
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Cross-task consistency multi-task learning "
                                            "(semantic segmentation + depth): train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"xtask {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("synth", help="generate a synthetic dataset (street: Cityscapes layout; indoor: NYUv2)",
                       description="Render procedural street scenes (RGB, raw Cityscapes label ids, "
                                   "16-bit disparity) into DIR in the Cityscapes folder layout, or with "
                                   "--kind indoor furnished rooms (13 NYUv2 classes, depth in metres) in "
                                   "the NYUv2 .npy layout. Synthetic, not real images.")
    p.add_argument("--kind", choices=("street", "indoor"), default="street",
                   help="street scenes (Cityscapes layout, default) or indoor rooms (NYUv2 .npy layout)")
    p.add_argument("--out", required=True, help="dataset root to write")
    p.add_argument("--n-train", "--n_train", dest="n_train", type=_nonneg_int, default=400)
    p.add_argument("--n-val", "--n_val", dest="n_val", type=_nonneg_int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=_positive_int, default=None, help="default 256 street, 288 indoor")
    p.add_argument("--width", type=_positive_int, default=None, help="default 512 street, 384 indoor")
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

    indoor = args.kind == "indoor"
    height = args.height or (288 if indoor else 256)
    width = args.width or (384 if indoor else 512)
    if height % 32 or width % 32:
        raise XTaskError(f"--height and --width must be multiples of 32, got {height}x{width}")
    t0 = time.time()
    write = synthetic.write_indoor_dataset if indoor else synthetic.write_dataset
    write(Path(args.out), n_train=args.n_train, n_val=args.n_val, seed=args.seed,
          height=height, width=width, workers=args.workers)
    what = "indoor rooms (NYUv2 layout)" if indoor else "scenes"
    _out(f"wrote {args.n_train} train + {args.n_val} val synthetic {what} ({height}x{width}) "
         f"to {args.out} in {time.time() - t0:.1f} s")
    return 0


# --------------------------------------------------------------------------- train
_TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))


def train_config_from_args(args) -> TrainConfig:
    """TrainConfig from parsed ``train`` flags (see :mod:`xtask_core.train.run_config`)."""
    from xtask_core.train.run_config import train_config_from_options  # lazy: torch, see module docstring

    given = {name: getattr(args, name, None) for name in _TRAIN_FIELDS}
    return train_config_from_options(given, b1=args.b1, b2=args.b2)


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
def _device(args):
    from xtask_core.device import default_device

    if args.cpu:
        return default_device("cpu")
    return default_device(args.device)


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
    from xtask_core.tools.checkpoint_eval import evaluate_checkpoint  # torch: only for this command

    res = evaluate_checkpoint(args.checkpoint[0], dataset=args.dataset, input_path=args.input_path,
                              split=args.split, limit=args.limit, direct_only=args.direct_only,
                              batch_size=args.batch_size, height=args.height, width=args.width,
                              workers=args.workers, device=_device(args), precision=args.precision,
                              exact=args.exact)
    _out(f"{res['checkpoint']} on {res['dataset']} {res['split']} ({res['n_images']} images, "
         f"{res['input_size'][0]}x{res['input_size'][1]}, {res['precision']})")
    if res.get("task", "both") != "both":
        _out(f"  single-task baseline ({res['task']}): the other task's metrics are n/a")
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
        atomic_write_text(args.json, json.dumps(res, indent=2))
        _out(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- predict
def cmd_predict(args) -> int:
    from xtask_core.io.images import load_image

    stems = [Path(p).stem for p in args.image]
    if len(set(stems)) != len(stems):
        raise XTaskError("several --image files share a name; predict them into separate --out folders")
    # Decode every image before loading the model: a bad file fails in a fraction of a second
    # and before any output is written (not after the earlier images' results).
    images = [load_image(p) for p in args.image]
    # torch: imported only once the inputs are known good
    from xtask_core.checkpoint import load_checkpoint
    from xtask_core.inference.precision import resolve_precision
    from xtask_core.tools.predict_files import predict_image

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
        if c is None:  # a single-task baseline: no transferred outputs to agree with
            _out(f"{path} -> {target}  (single-task baseline: {s['task']} only)")
            continue
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
