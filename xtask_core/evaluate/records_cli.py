"""``xtask eval --per-image FILE`` / ``xtask eval --images DIR``: per-image records from the command line.

:func:`run` is what the ``eval`` sub-command calls when either flag is given (the argparse
namespace comes from :mod:`xtask_core.cli`). It builds the source, runs
:func:`~xtask_core.evaluate.records.records_for` with a tqdm bar on stderr (rate and ETA; rank 0
only under ``torchrun``), prints one warning line per skipped file and a short summary per
checkpoint, and with ``--json`` writes the dataset-level totals recomputed from the records.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from xtask_core.checkpoint import load_checkpoint
from xtask_core.config import DATASET_DEFAULTS, DATASETS
from xtask_core.device import default_device
from xtask_core.errors import XTaskError
from xtask_core.evaluate.record_summary import score_vs_error, totals
from xtask_core.evaluate.records import RecordsProgress, records_for
from xtask_core.evaluate.sources import dataset_source, folder_source
from xtask_core.io.atomic import atomic_write_text
from xtask_core.io.json_safe import json_safe

__all__ = ["run"]


class _Bar:
    """tqdm on stderr fed from :class:`RecordsProgress` (silent off rank 0 or with XTASK_NO_TQDM)."""

    def __init__(self, show: bool):
        self.bar = None
        self.show = show and not os.environ.get("XTASK_NO_TQDM")

    def __call__(self, p: RecordsProgress) -> None:
        if not self.show:
            return
        if self.bar is None:
            from tqdm import tqdm  # only when a bar is shown

            self.bar = tqdm(total=p.total, unit="img", file=sys.stderr, desc="per-image records",
                            dynamic_ncols=True)
        self.bar.update(p.done - self.bar.n)
        if p.skipped:
            self.bar.set_postfix(skipped=p.skipped)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _f(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.4f}"


def run(args) -> int:
    """Run the records for the parsed ``eval`` arguments; returns the exit status (0)."""
    talk = int(os.environ.get("RANK", "0")) == 0
    device = default_device("cpu" if args.cpu else args.device)
    first = load_checkpoint(args.checkpoint[0], device="cpu")
    size = (args.height or first.config.height, args.width or first.config.width)
    out = Path(args.per_image) if args.per_image else None
    if out is not None and out.suffix.lower() != ".parquet":
        raise XTaskError(f"--per-image must name a .parquet file, got {out}")
    if args.images:
        skip = out.resolve() if out is not None else None
        source = folder_source(args.images, size, limit=args.limit,
                               exclude=(lambda p: p.resolve() == skip) if skip else None)
    else:
        dataset = args.dataset or first.meta.get("dataset")
        if dataset not in DATASETS:
            raise XTaskError(f"the checkpoint does not record a known dataset ({dataset!r}); "
                             f"pass --dataset ({', '.join(DATASETS)}) or --images DIR")
        root = args.input_path or DATASET_DEFAULTS[dataset]["input_path"]
        source = dataset_source(dataset, root, args.split, size, limit=args.limit,
                                num_classes=None if dataset == "nyuv2" else first.config.num_classes)
    del first
    bar = _Bar(talk)

    def warn(line: str) -> None:
        if bar.bar is not None:
            bar.bar.write(f"xtask: warning: {line}", file=sys.stderr)
        else:
            print(f"xtask: warning: {line}", file=sys.stderr, flush=True)

    try:
        df = records_for(args.checkpoint, source, out=out, cache=not args.no_cache, batch_size=args.batch_size,
                         device=device, precision="fp32" if args.exact else args.precision, fast=not args.exact,
                         progress=bar, warn=warn)
    finally:
        bar.close()
    if not talk:
        return 0
    skipped = int(df.attrs.get("skipped", 0))
    where = f"{source.dataset} {source.split}" if source.kind == "dataset" else str(source.root)
    print(f"per-image records: {len(df)} rows ({df['image'].nunique()} images x {df['checkpoint'].nunique()} "
          f"checkpoint(s)) on {where} at {size[0]}x{size[1]}"
          + (f"; {skipped} file(s) skipped (not usable images)" if skipped else ""), flush=True)
    tot = totals(df)
    rank = score_vs_error(df, errors=("pixel_error",), k=20) if source.labelled else None
    for name, t in tot.items():
        line = f"  {name}: seg energy {_f(t['seg_energy'])}, entropy {_f(t['seg_entropy'])}"
        if source.labelled:
            line += f", pixel acc {_f(t['pixel_acc'])}, mIoU {_f(t['miou'])}"
            for _, r in rank[rank["checkpoint"] == name].iterrows():
                line += f"; {r['score']}: Spearman {_f(r['spearman'])}, P@20 {_f(r['precision_at_k'])}"
        print(line, flush=True)
    if out is not None:
        print(f"wrote {out}", flush=True)
    if args.json:
        payload = {"per_image": str(out) if out else None, "source": source.identity, "n_skipped": skipped,
                   "note": "dataset-level totals recomputed from the per-image records (depth errors "
                           "pooled over valid pixels); equal to 'xtask eval' up to float rounding",
                   "checkpoints": tot}
        atomic_write_text(args.json, json.dumps(json_safe(payload), indent=2))
        print(f"wrote {args.json}", flush=True)
    return 0
