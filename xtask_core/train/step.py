"""One optimisation step, as a free function: the trainer, fine-tune jobs and ``xtask bench`` all call it.

:func:`train_step` is the whole of a training step — forward under the precision's autocast,
the :class:`~xtask_core.train.losses.XTaskLoss` dict, the balancer, backward (through the
GradScaler for fp16 on CUDA), the balancer's own update and the optimiser step — with no
trainer state, so a benchmark times exactly the code that trains.

Two options of the multi-task study:

- ``pcgrad=True`` replaces the backward by :func:`~xtask_core.train.pcgrad.pcgrad_backward` on
  the ``label`` and ``image`` groups (one backward each over every trainable parameter, the
  conflicting components projected away, the sum written into ``.grad``). It is a balancer of its
  own: use it with the plain-sum balancer only (the trainer's config refuses the combinations).
- ``measure_cosine=True`` adds ``"grad_cos"``: the cosine between the two groups' gradients at
  the shared encoder (what :func:`~xtask_core.train.pcgrad.grad_cosine` computes). Without PCGrad
  it costs one extra partial backward on that step: the label group's encoder gradient is taken
  first, and the image group's is what the objective's own backward leaves in ``.grad`` minus the
  label part (the balancer's objective is linear in the two groups, with coefficients read off the
  graph), so the trainer measures every ``cosine_every`` steps only; with PCGrad it is read off
  the gradients PCGrad computed anyway (free).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from xtask_core.errors import XTaskError
from xtask_core.inference.precision import autocast
from xtask_core.train.balancing import Balancer
from xtask_core.train.pcgrad import cosine, flat_grad, grad_cosine, pcgrad_backward

# Loss components of XTaskLoss, in the order the trainer logs them ("total" is unbalanced).
LOSS_KEYS = ("total", "seg", "depth", "tseg", "tdep", "label", "image")
# LOSS_KEYS + the balanced objective that backward() ran on
STEP_KEYS = LOSS_KEYS + ("objective",)


class DivergedError(XTaskError):
    """The step's loss was NaN/Inf; raised before the optimiser step (the weights are untouched).

    ``values`` maps every :data:`STEP_KEYS` name to its float value.
    """

    def __init__(self, values: Mapping[str, float]):
        self.values = dict(values)
        parts = ", ".join(f"{k}={v:.4g}" for k, v in self.values.items())
        super().__init__(f"training diverged: loss is NaN/Inf ({parts})")


def to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool = False) -> dict:
    """Move every tensor of a batch dict to ``device`` (non-blocking from pinned memory);
    the ``image`` (N×3×H×W) becomes channels-last when asked."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if k == "image" and channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def float_outputs(outputs) -> tuple:
    """Autocast outputs → float32 (None stays None): losses and metrics are computed in fp32."""
    return tuple(None if o is None else o.float() for o in outputs)


def shared_parameter(model: nn.Module) -> Tensor:
    """The last shared encoder weight (``pretrained_encoder.layer4[-1].conv2.weight``), where
    GradNorm measures each group's gradient norm; a DDP wrapper is looked through."""
    net = getattr(model, "module", model)
    return net.pretrained_encoder.layer4[-1].conv2.weight


def _encoder_slice(params: list[Tensor], model: nn.Module) -> list[tuple[int, int]]:
    """(offset, length) in a flattened gradient over ``params`` of each shared-encoder parameter."""
    net = getattr(model, "module", model)
    enc = {id(p) for p in net.pretrained_encoder.parameters()}
    out, offset = [], 0
    for p in params:
        if id(p) in enc:
            out.append((offset, p.numel()))
        offset += p.numel()
    return out


def _label_part(model: nn.Module, losses: Mapping[str, Tensor], objective: Tensor):
    """Before backward: the shared encoder's parameters, the label group's gradient there (one
    partial backward) and the objective's coefficients ∂objective/∂label, ∂objective/∂image; None
    when a group has no graph (then :func:`grad_cosine` is used)."""
    label, image = losses["label"], losses["image"]
    if not (label.requires_grad and image.requires_grad):
        return None
    net = getattr(model, "module", model)
    enc = [p for p in net.pretrained_encoder.parameters() if p.requires_grad]
    g_label = flat_grad(label, enc, retain_graph=True)
    a, b = torch.autograd.grad(objective, [label, image], retain_graph=True)
    return enc, g_label, float(a), float(b)


def _cosine_after_backward(part, scale: float) -> float:
    """Cosine of the label gradient and the image gradient ``(grad / scale − a·g_label) / b``."""
    enc, g_label, a, b = part
    if b == 0:
        return math.nan
    total = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1).float() for p in enc])
    return cosine(g_label, (total / scale - a * g_label) / b)


def _pcgrad(model: nn.Module, losses: Mapping[str, Tensor], scaler, generator, measure_cosine: bool) -> float:
    """PCGrad backward (scaled by ``scaler`` when given: the projection is linear in a common
    scale); the encoder cosine of the unprojected gradients, or NaN when not asked."""
    params = [p for p in model.parameters() if p.requires_grad]
    group = [losses["label"], losses["image"]]
    if scaler is not None:
        group = [scaler.scale(g) for g in group]
    grads = pcgrad_backward(params, group, generator=generator)
    if not measure_cosine:
        return math.nan
    where = _encoder_slice(params, model)
    a, b = (torch.cat([g[o:o + n] for o, n in where]) for g in grads)
    return cosine(a, b)


def train_step(model: nn.Module, batch: Mapping[str, Any], *, loss_fn: nn.Module, balancer: Balancer,
               optimizer: torch.optim.Optimizer, scaler=None, precision: str = "fp32",
               channels_last: bool = False, device: torch.device | str | None = None,
               reduce_flag: Callable[[Tensor], None] | None = None, pcgrad: bool = False,
               measure_cosine: bool = False, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """One optimisation step of ``model`` on ``batch``.

    Args:
        model: an XTaskNet (or its DDP wrapper) in train mode, already on ``device`` (and in
            channels-last memory format if ``channels_last``).
        batch: a batch dict (``image`` N×3×H×W float, ``seg`` N×H×W int64, ``depth`` /
            ``depth_mask`` N×1×H×W float); moved to ``device`` here.
        loss_fn: an XTaskLoss; returns a dict of 0-dim losses with at least :data:`LOSS_KEYS`.
        balancer: any :class:`Balancer`; used only through the base-class calls ``combine``,
            ``needs_graph`` and ``step`` (a no-op except for GradNorm).
        optimizer: steps the model (and the balancer's ``parameters()``, if any).
        scaler: a GradScaler (fp16 on CUDA) or None.
        precision: a *resolved* precision, "fp32" | "bf16" | "fp16" (fp32 = no autocast).
        channels_last: convert the input image to channels-last.
        device: where the step runs; default: the device of the model's first parameter.
        reduce_flag: distributed runs pass an in-place all-reduce (sum) for the 0-dim "loss is
            not finite" flag, so every rank stops together instead of hanging in the next
            all-reduce.
        pcgrad: PCGrad on the label / image groups instead of ``objective.backward()`` (the
            balancer must be the plain sum; ``objective`` is still returned for the log).
        measure_cosine: also return ``"grad_cos"``, the two groups' gradient cosine at the
            shared encoder (NaN when a group has no gradient there, e.g. a single-task net).
        generator: seeds PCGrad's projection order (None: torch's global generator).

    Returns:
        ``{name: 0-dim detached float tensor}`` for every :data:`STEP_KEYS` name, on ``device``
        (no host sync beyond the finiteness check; call ``float()`` to read one), plus
        ``"grad_cos"`` (a float64 CPU tensor) with ``measure_cosine``.

    Raises:
        DivergedError: a loss component is NaN/Inf; nothing was stepped.
    """
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    batch = to_device(batch, device, channels_last)
    with autocast(device, precision):
        outputs = model(batch["image"])
    losses = loss_fn(float_outputs(outputs), batch)
    objective = balancer.combine(losses)
    values = torch.stack([losses[k].detach() for k in LOSS_KEYS] + [objective.detach()])
    bad = (~torch.isfinite(values).all()).to(torch.float32)
    if reduce_flag is not None:
        reduce_flag(bad)
    if bad.item() > 0:
        raise DivergedError(dict(zip(STEP_KEYS, values.tolist())))
    optimizer.zero_grad(set_to_none=True)
    cos = math.nan
    if pcgrad:
        if balancer.needs_graph or balancer.parameters():
            raise XTaskError(f"pcgrad replaces the loss balancing; it cannot run with the {balancer.kind} balancer")
        cos = _pcgrad(model, losses, scaler, generator, measure_cosine)
    else:
        part = _label_part(model, losses, objective) if measure_cosine else None
        if measure_cosine and part is None:
            cos = grad_cosine(getattr(model, "module", model), losses)
        if scaler is not None:
            scaler.scale(objective).backward(retain_graph=balancer.needs_graph)
        else:
            objective.backward(retain_graph=balancer.needs_graph)
        if part is not None:  # before the optimiser (and GradNorm) touch anything
            cos = _cosine_after_backward(part, float(scaler.get_scale()) if scaler is not None else 1.0)
    # before optimizer.step(): GradNorm differentiates the graph at the current weights
    balancer.step(losses, shared_parameter(model) if balancer.needs_graph else None)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    out = dict(zip(STEP_KEYS, values.unbind(0)))
    if measure_cosine:
        out["grad_cos"] = torch.tensor(cos, dtype=torch.float64)
    return out
