"""Per-image evaluation records: one row per (checkpoint, image), streamed, resumable, cached.

:func:`records_for` runs one or more checkpoints over a :class:`~xtask_core.evaluate.sources.Source`
(a dataset split or a folder of images) and returns a pandas DataFrame with the columns of
:mod:`xtask_core.evaluate.record_store` (metrics, energies, entropy, the image's confusion counts).

- **Streams.** Images are decoded one batch at a time (a thread decodes the next batch while the
  model runs); only the rows (a few hundred numbers per image) are kept, never the maps, so
  memory does not grow with the number of images.
- **Exact metrics.** Each image's metrics come from its own
  :class:`~xtask_core.evaluate.metrics.SegDepthMetrics` (the same kernels as ``xtask eval``), its
  energies from :func:`~xtask_core.evaluate.metrics.consistency_energy`; so ``miou`` is the
  original's per-image mIoU and the sum of the ``confusion`` column is the split's confusion matrix.
- **Resumable.** Rows go to ``out`` chunk by chunk (:class:`~.record_store.RecordStore`): a kill
  leaves only readable files, and a re-run computes only the missing (checkpoint, image) rows.
- **Cached.** With ``cache=True`` each checkpoint's rows are also kept under
  ``cache_dir()/records/`` (:func:`cache_path`: checkpoint content hash, source, split, input
  size, record format), so the app never recomputes what the CLI or an earlier session did.
- **Sharded.** Under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes every N-th pending
  image (gloo on CPU, NCCL with one GPU per process); rank 0 merges, and the merged file is the
  one a single process writes (same rows, same order).

Model outputs go through :class:`~xtask_core.inference.predictor.Predictor` (its fast path unless
``fast=False``, which runs the model itself in eager fp32: the exact reference).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F

from xtask_core.checkpoint import load_checkpoint
from xtask_core.errors import XTaskError
from xtask_core.evaluate.analysis import disagreement
from xtask_core.evaluate.metrics import SegDepthMetrics, consistency_energy
from xtask_core.evaluate.record_store import (
    METRIC_KEYS,
    RECORD_FORMAT,
    RecordStore,
    empty_frame,
    load_records,
    rows_frame,
)
from xtask_core.evaluate.sources import Source, dataset_source, folder_source, stack_x
from xtask_core.inference.predictor import Predictor
from xtask_core.io.cache import cache_dir, file_sha256

__all__ = ["records_for", "load_records", "cache_path", "image_rows", "softmax_entropy",
           "RecordsProgress", "dataset_source", "folder_source", "Source", "RECORD_FORMAT"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordsProgress:
    """Where a :func:`records_for` run stands (this process's share under torchrun).

    ``done`` / ``total``: (checkpoint, image) rows computed / to compute in this run (rows found in
    the output file or the cache are not counted); ``skipped``: files that are not usable images;
    ``elapsed_s``: seconds since the first batch started.
    """

    done: int
    total: int
    skipped: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Rows per second so far (0 before the first chunk)."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float:
        """Seconds left at the current rate (NaN before the first chunk)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else float("nan")


# --------------------------------------------------------------------------- per-image values
@torch.no_grad()
def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Softmax entropy per pixel in nats: N×C×H×W logits → N×H×W float32 (0 = certain, ln C = uniform)."""
    logp = F.log_softmax(logits.float(), dim=1)
    return (-(logp.exp() * logp).sum(1)).clamp_min(0)


def _metric_values(seg, depth, target: dict | None, i: int, num_classes: int, ignore: int) -> dict:
    """The image's own metrics from a one-image SegDepthMetrics (NaN without ground truth, and for
    a task whose output is None: single-task nets, no transferred outputs)."""
    if target is None or (seg is None and depth is None):
        return {**dict.fromkeys(METRIC_KEYS, float("nan")), "confusion": None, "n_pixels": 0,
                "n_depth_pixels": 0}
    m = SegDepthMetrics(num_classes, ignore)
    m.update(None if seg is None else seg[i:i + 1], None if depth is None else depth[i:i + 1],
             target["seg"][i:i + 1], target["depth"][i:i + 1], target["depth_mask"][i:i + 1])
    r = m.compute()
    out = {k: float(r[k]) for k in METRIC_KEYS if k != "miou"}
    out["miou"] = float(r["miou_per_image"])  # the image's own mIoU (original definition)
    out["confusion"] = np.asarray(r["confusion"], dtype=np.int64).reshape(-1) if seg is not None else None
    out["n_pixels"], out["n_depth_pixels"] = int(r["n_pixels"]), int(r["n_depth_pixels"])
    return out


def image_rows(outputs: Sequence[torch.Tensor], target: dict | None, num_classes: int,
               ignore_index: int) -> list[dict]:
    """Per-image values of one batch (every record column except the identifying ones).

    Args:
        outputs: ``(seg, seg_t, depth, depth_t)`` as :meth:`Predictor.forward` returns them:
            N×C×H×W logits, N×C×H×W transferred logits, N×1×H×W depth, N×1×H×W transferred depth.
        target: None (no labels) or ``{"seg": N×H×W int64, "depth": N×1×H×W, "depth_mask": N×1×H×W}``
            on the outputs' device.
        num_classes, ignore_index: C and the void label.

    Returns one dict per image: ``pixel_acc, miou, abs, …`` (direct), ``t_…`` (transferred),
    ``n_pixels``, ``n_depth_pixels``, ``seg_energy``, ``depth_energy``, ``seg_disagree``,
    ``seg_entropy`` and ``confusion`` (C·C int64, empty without labels).
    """
    seg, seg_t, depth, depth_t = outputs
    n = next(o.shape[0] for o in outputs if o is not None)
    nan = float("nan")
    entropy = softmax_entropy(seg).mean((1, 2)).double().cpu().tolist() if seg is not None else [nan] * n
    rows = []
    for i in range(n):
        direct = _metric_values(seg, depth, target, i, num_classes, ignore_index)
        moved = _metric_values(seg_t, depth_t, target, i, num_classes, ignore_index)
        seg_e = depth_e = disagree = nan     # a single-task net (or no transferred outputs): no energy
        if all(o is not None for o in outputs):
            energy = consistency_energy(seg[i:i + 1], seg_t[i:i + 1], depth[i:i + 1], depth_t[i:i + 1])
            seg_e, depth_e = float(energy["seg_kl_mean"]), float(energy["depth_abs_mean"])
            disagree = float(disagreement(seg[i], seg_t[i]).mean())
        conf = direct.pop("confusion")
        moved.pop("confusion")
        rows.append({**direct, **{f"t_{k}": moved[k] for k in METRIC_KEYS},
                     "seg_energy": seg_e, "depth_energy": depth_e, "seg_disagree": disagree,
                     "seg_entropy": float(entropy[i]),
                     "confusion": conf if conf is not None else np.zeros(0, np.int64)})
    return rows


# --------------------------------------------------------------------------- cache
def cache_path(checkpoint_sha256: str, source: Source, root: Path | None = None) -> Path:
    """The cached records file for one checkpoint on one source.

    Keyed by the checkpoint's content hash, the source (kind, dataset, split, resolved root and
    a fingerprint of its files' names, sizes and modification times), the input size and
    :data:`RECORD_FORMAT`. Not keyed by device or precision: records computed on a GPU server
    (bf16) are reused on a laptop.
    """
    key = {"format": RECORD_FORMAT, "checkpoint": checkpoint_sha256, "source": source.identity,
           "files": source.fingerprint()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
    return (root or cache_dir("records")) / f"v{RECORD_FORMAT}-{digest}.parquet"


# --------------------------------------------------------------------------- distributed
def _dist() -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def _sum_over_ranks(value: int, world: int) -> int:
    if world <= 1:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    torch.distributed.all_reduce(t)
    return int(t.item())


# --------------------------------------------------------------------------- the run
def _decode_batches(source: Source, indices: list[int], batch_size: int, norms: dict):
    """Yield (indices, decoded items) per batch; a thread decodes the next batch meanwhile."""
    chunks = [indices[s:s + batch_size] for s in range(0, len(indices), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xtask-records-decode") as pool:
        def submit(chunk):
            return pool.submit(lambda: [source.decode(i, norms) for i in chunk])

        nxt = submit(chunks[0])
        for k, chunk in enumerate(chunks):
            items = nxt.result()
            if k + 1 < len(chunks):
                nxt = submit(chunks[k + 1])
            yield chunk, items


def _run_model(pred: Predictor, x: torch.Tensor, batch_size: int) -> tuple:
    k = int(x.shape[0])
    if pred.traced and k < batch_size:  # one traced shape for every batch, as evaluate_split
        x = torch.cat([x, x[-1:].expand(batch_size - k, *x.shape[1:])])
    return tuple(None if o is None else o[:k] for o in pred.forward(x))


def records_for(checkpoints: Sequence[str | os.PathLike], source: Source, *,
                out: str | os.PathLike | None = None, cache: bool = True, batch_size: int = 4,
                device: str | torch.device | None = None, precision: str = "auto", fast: bool = True,
                progress: Callable[[RecordsProgress], None] | None = None,
                on_rows: Callable[[pd.DataFrame], None] | None = None,
                warn: Callable[[str], None] | None = None,
                stop: Callable[[], bool] | None = None, cache_root: Path | None = None) -> pd.DataFrame:
    """Per-image records of every checkpoint on ``source`` → DataFrame (rows of these checkpoints,
    checkpoint by checkpoint in the given order, images in source order).

    Args:
        checkpoints: checkpoint files; the ``checkpoint`` column holds each as given (str).
        source: from :func:`dataset_source` or :func:`folder_source` (its ``size`` is the input size
            every checkpoint runs at).
        out: records file to write (and resume from); None = no file besides the cache.
        cache: read and fill the records cache (see :func:`cache_path`).
        batch_size: images per forward. device, precision, fast: as :class:`Predictor`.
        progress: called after every chunk with a :class:`RecordsProgress`.
        on_rows: called with each chunk's new rows (a DataFrame), as they are computed.
        warn: called with one line per skipped file (default: the module's logger).
        stop: polled before every batch; True ends the run early (rows so far are kept).
        cache_root: cache folder (default ``cache_dir()/records``).

    Raises XTaskError (one line) for unreadable checkpoints, a records file of another schema or
    source, checkpoints with different class counts on a dataset, and when the source has no
    usable image at all.
    """
    if batch_size < 1:
        raise XTaskError(f"batch_size must be >= 1, got {batch_size}")
    labels = [str(c) for c in checkpoints]
    if not labels:
        raise XTaskError("give at least one checkpoint")
    if len(set(labels)) != len(labels):
        raise XTaskError("the same checkpoint is given twice")
    warn = warn or log.warning
    rank, world, started = _dist()
    try:
        if device is None and world > 1 and torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        if world > 1 and out is None and not cache:
            raise XTaskError("a sharded run needs an output file or the cache to merge into")
        shas = [file_sha256(c) for c in labels]
        loaded = [load_checkpoint(c, device=device) for c in labels]
        single = [(lb, ld.config.task) for lb, ld in zip(labels, loaded) if ld.config.task != "both"]
        if single:  # the records' energy and transferred columns need all four outputs
            raise XTaskError(f"{single[0][0]} is a single-task baseline ({single[0][1]}): per-image records "
                             "need a cross-task model; evaluate it with xtask eval without --per-image")
        classes = {int(ld.config.num_classes) for ld in loaded}
        if source.labelled and len(classes) > 1:
            raise XTaskError(f"checkpoints with different class counts ({sorted(classes)}) cannot share "
                             "one dataset's labels; evaluate them separately")
        store = RecordStore(out, source.identity, rank) if out is not None else None
        caches = [RecordStore(cache_path(s, source, cache_root), source.identity, rank) for s in shas] if cache else []
        # ---- what is done already (every rank reads before any rank writes)
        have = store.read() if store is not None else empty_frame()
        memory: list[pd.DataFrame] = []
        pending: list[set[int]] = []
        position = {n: i for i, n in enumerate(source.names)}
        for ci, (label, sha) in enumerate(zip(labels, shas)):
            mine = have[have["checkpoint"] == label]
            if (mine["checkpoint_sha256"] != sha).any():
                raise XTaskError(f"{out} holds rows of {label} computed from other bytes of that file; "
                                 "write to another records file")
            done = set(mine["image"])
            if caches:
                cached = caches[ci].read().drop_duplicates("image")
                reuse = cached[~cached["image"].isin(done) & cached["image"].isin(position)]
                if not reuse.empty:
                    reuse = reuse.assign(checkpoint=label)
                    done |= set(reuse["image"])
                    if store is not None and rank == 0:
                        store.append(reuse)
            pending.append({i for i, n in enumerate(source.names) if n not in done})
        _barrier(world)
        todo = sorted(set().union(*pending))
        share = todo[rank::world]
        total = sum(sum(1 for i in share if i in p) for p in pending)
        preds = [Predictor(ld, device=device, precision=precision if fast else "fp32", fast=fast) for ld in loaded]
        norms = {ci: (tuple(ld.config.mean), tuple(ld.config.std)) for ci, ld in enumerate(loaded)}
        done_rows = skipped = 0
        t0 = time.perf_counter()
        for chunk, items in _decode_batches(source, share, batch_size, norms):
            if stop is not None and stop():
                break
            ok = []
            for idx, item in zip(chunk, items):
                if "error" in item:
                    skipped += 1
                    warn(f"skipped {source.names[idx]}: {item['error']}")
                else:
                    ok.append((idx, item))
            new = []
            for ci, pred in enumerate(preds):
                sel = [(idx, item) for idx, item in ok if idx in pending[ci]]
                if not sel:
                    continue
                out_t = _run_model(pred, stack_x([it for _, it in sel], ci), batch_size)
                dev = next(o for o in out_t if o is not None).device
                target = None
                if source.labelled:
                    target = {k: torch.stack([it[k] for _, it in sel]).to(dev) for k in ("seg", "depth", "depth_mask")}
                values = image_rows(out_t, target, int(pred.config.num_classes), source.ignore_index)
                rows = [{"checkpoint": labels[ci], "checkpoint_sha256": shas[ci], "image": source.names[idx],
                         "index": idx, "height": it["hw"][0], "width": it["hw"][1],
                         "num_classes": int(pred.config.num_classes), **v}
                        for (idx, it), v in zip(sel, values)]
                df = rows_frame(rows)
                if caches:
                    caches[ci].append(df)
                new.append(df)
            if new:
                chunk_df = pd.concat(new, ignore_index=True)
                done_rows += len(chunk_df)
                if store is not None:
                    store.append(chunk_df)
                elif not caches:
                    memory.append(chunk_df)
                if on_rows is not None:
                    on_rows(chunk_df)
            if progress is not None:
                progress(RecordsProgress(done_rows, total, skipped, time.perf_counter() - t0))
        skipped = _sum_over_ranks(skipped, world)
        _barrier(world)
        if rank == 0:
            for c in caches:
                c.finalize()
            if store is not None:
                store.finalize(labels)
        _barrier(world)
        result = _collect(labels, source, store, caches, memory)
    finally:
        if started:
            torch.distributed.destroy_process_group()
    if result.empty:
        extra = f" ({skipped} file(s) skipped: not usable images)" if skipped else ""
        raise XTaskError(f"no usable images in {source.root}{extra}")
    result.attrs["skipped"] = skipped
    return result


def _collect(labels: list[str], source: Source, store: RecordStore | None, caches: list[RecordStore],
             memory: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of ``labels`` on ``source``, checkpoint by checkpoint, images in source order."""
    if store is not None:
        df = load_records(store.path, partial=False)
    elif caches:
        df = pd.concat([load_records(c.path, partial=False).assign(checkpoint=lab)
                        for lab, c in zip(labels, caches)] + memory, ignore_index=True)
    else:
        df = pd.concat(memory, ignore_index=True) if memory else empty_frame()
    if df.empty:
        return df
    position = {n: i for i, n in enumerate(source.names)}
    df = df[df["checkpoint"].isin(labels) & df["image"].isin(position)].drop_duplicates(["checkpoint", "image"])
    df = df.assign(index=df["image"].map(position))
    order = df["checkpoint"].map({c: i for i, c in enumerate(labels)}) * (len(position) + 1) + df["index"]
    return df.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)

