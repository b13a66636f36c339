"""Evaluation of a model on a dataset split, the fast way: what ``xtask eval`` and the benchmark run.

:func:`evaluate_split` = decoding in a thread that runs ahead of the model (or from an in-memory
cache of decoded items, for repeated evaluation in one process) + the model through
:class:`~xtask_core.inference.predictor.Predictor` (``fast=True``: BN folded, traced/frozen graph, the
resolved precision; ``fast=False``: the model itself, eager fp32 = the exact reference) +
:class:`~xtask_core.evaluate.metrics.SegDepthMetrics`.

It returns the keys of :func:`xtask_core.train.trainer.evaluate`: every key of
``SegDepthMetrics.compute()`` (``miou`` = dataset-level, one confusion matrix over the split;
``miou_per_image`` = the original's per-image average; depth errors in the dataset's depth unit),
``n_images``, and with a ``loss_fn`` ``loss`` + ``loss_<component>`` (mean per image).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import nn

from xtask_core.data.labels import CITYSCAPES_IGNORE
from xtask_core.errors import XTaskError
from xtask_core.evaluate.metrics import SegDepthMetrics
from xtask_core.inference.predictor import Predictor

__all__ = ["evaluate_split", "default_workers"]

_KEYS = ("image", "seg", "depth", "seg_mask", "depth_mask")  # the tensors an item must carry


def default_workers(n_batches: int) -> int:
    """Decoding threads for a split of ``n_batches``: one thread decodes ahead of the model while
    it runs; 0 (decode in the calling thread) when there is a single batch, nothing to overlap."""
    return 0 if n_batches <= 1 else 1


def _stack(items: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in _KEYS if k in items[0]}


def _batches(dataset, n: int, batch_size: int, workers: int,
             cache: MutableMapping[int, Any] | None) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of the first ``n`` items, in order: from ``cache`` when it holds them all, else
    decoded (filling ``cache`` on the way when one is given).

    With ``workers`` > 0, that many threads decode up to two batches ahead while the caller runs
    the model: image decoding and resizing (Pillow, OpenCV) release the GIL, so this overlaps
    like worker processes do, without their start-up (≈ 0.2-0.5 s each, more than decoding a
    small split takes) or the copy of every item between processes. A decoding error is raised
    here, in the caller's thread, for the item that failed.
    """
    if cache is not None and all(i in cache for i in range(n)):
        for start in range(0, n, batch_size):
            yield _stack([cache[i] for i in range(start, min(n, start + batch_size))])
        return

    def keep(index: int, item: Mapping[str, Any]) -> Mapping[str, Any]:
        if cache is not None:
            cache[index] = {k: item[k] for k in _KEYS if k in item}
        return item

    if workers <= 0:
        for start in range(0, n, batch_size):
            yield _stack([keep(i, dataset[i]) for i in range(start, min(n, start + batch_size))])
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xtask-decode")
    pending: deque = deque()
    following = iter(range(n))

    def feed() -> None:  # queue the next item, if any, for decoding
        nxt = next(following, None)
        if nxt is not None:
            pending.append(pool.submit(dataset.__getitem__, nxt))

    try:
        for _ in range(2 * batch_size):  # the first two batches
            feed()
        for start in range(0, n, batch_size):
            items = []
            for i in range(start, min(n, start + batch_size)):
                items.append(keep(i, pending.popleft().result()))
                feed()
            yield _stack(items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ignore_index(dataset, meta: Mapping[str, Any]) -> int:
    value = getattr(dataset, "ignore_index", None)
    if value is None:
        value = meta.get("ignore_index", CITYSCAPES_IGNORE)
    return int(value)


@torch.no_grad()
def evaluate_split(loaded_or_model, dataset, *, batch_size: int = 4, fast: bool = True,
                   precision: str = "auto", direct_only: bool = False, limit: int = 0,
                   cache: MutableMapping[int, Any] | None = None,
                   progress: Callable[[int, int], None] | None = None, workers: int | None = None,
                   loss_fn: nn.Module | None = None, device: str | torch.device | None = None,
                   ignore_index: int | None = None) -> dict[str, Any]:
    """Evaluate a model on ``dataset`` → metrics dict (keys as :func:`xtask_core.train.trainer.evaluate`).

    Args:
        loaded_or_model: a loaded checkpoint (``.model``, ``.config``, ``.meta``), an XTaskNet, or
            a ready :class:`~xtask_core.inference.predictor.Predictor` (reused as is: its graphs are already
            built, and ``fast``/``precision``/``device`` are then ignored).
        dataset: a map-style dataset of items ``image`` 3×H×W float (normalised; H, W multiples of
            32), ``seg`` H×W int64, ``depth`` 1×H×W float (0 = invalid), ``depth_mask`` 1×H×W.
        batch_size: images per forward. On the CPU fast path a short last batch is padded by
            repeating its last image, so only one graph shape is traced.
        fast: True = Predictor fast path at ``precision`` ("auto" | "fp32" | "bf16" | "fp16");
            False = the exact reference: the model itself, eager, fp32.
        direct_only: skip the transfer nets (transferred losses are then not computed).
        limit: only the first ``limit`` items (0 = all).
        cache: optional dict, index → decoded item. Filled on the first call, used on the next
            ones (no decoding at all); only valid for the same dataset and ``limit``.
        progress: optional ``progress(done_images, total_images)`` after every batch.
        workers: decoding threads running ahead of the model (0 = decode in this thread;
            None = :func:`default_workers`).
        loss_fn: optional :class:`~xtask_core.train.losses.XTaskLoss` → ``loss``, ``loss_<component>``.
        device: where to run (None = the model's device).
        ignore_index: label of void pixels (None = ``dataset.ignore_index``, else the checkpoint's).

    Returns the keys of ``SegDepthMetrics.compute()`` + ``n_images`` (+ losses), plus
    ``precision`` (resolved) and ``eval_path`` (one line: which model path ran).
    """
    if batch_size < 1:
        raise XTaskError(f"batch_size must be >= 1, got {batch_size}")
    if limit < 0:
        raise XTaskError(f"limit must be >= 0, got {limit}")
    if isinstance(loaded_or_model, Predictor):
        pred = loaded_or_model
    else:
        pred = Predictor(loaded_or_model, device=device, precision=precision if fast else "fp32", fast=fast)
    n = len(dataset) if not limit else min(limit, len(dataset))
    if n == 0:
        raise XTaskError("evaluation saw no images (empty dataset or limit 0)")
    num_classes = int(pred.config.num_classes)
    ignore = _ignore_index(dataset, pred.meta) if ignore_index is None else int(ignore_index)
    n_batches = -(-n // batch_size)
    workers = default_workers(n_batches) if workers is None else int(workers)
    pad = pred.traced  # traced graphs: pad the last batch, so one shape is traced for all
    metrics = SegDepthMetrics(num_classes, ignore)
    loss_sums: dict[str, float] = {}
    done = 0
    for batch in _batches(dataset, n, batch_size, workers, cache):
        k = int(batch["image"].shape[0])
        x = batch["image"]
        if pad and k < batch_size:
            x = torch.cat([x, x[-1:].expand(batch_size - k, *x.shape[1:])])
        outputs = pred.forward(x, direct_only=direct_only)
        outputs = tuple(None if o is None else o[:k] for o in outputs)
        dev = next(o for o in outputs if o is not None).device  # a single-task net has one output
        batch = {key: v.to(dev, non_blocking=True) for key, v in batch.items()}
        metrics.update(outputs[0], outputs[2], batch["seg"], batch["depth"], batch.get("depth_mask"))
        if loss_fn is not None and not direct_only:
            losses = loss_fn(outputs, batch)
            for name, value in losses.items():  # per-image mean over the split, as train.evaluate
                loss_sums[name] = loss_sums.get(name, 0.0) + float(value) * k
        done += k
        if progress is not None:
            progress(done, n)
    result: dict[str, Any] = dict(metrics.compute())
    result["n_images"] = done
    if loss_sums:
        result["loss"] = loss_sums["total"] / done
        for name, value in loss_sums.items():
            result[f"loss_{name}"] = value / done
    result["precision"] = pred.precision
    result["eval_path"] = str(pred.route)
    return result
