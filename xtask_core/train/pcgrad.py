"""PCGrad (Yu et al., NeurIPS 2020) on the two loss groups, and the gradient cosine between them.

PCGrad, as the original project's MTAN baseline computes it (``model/mtan/pcgrad.py``):

1. one backward per objective gives one flattened gradient ``g_i`` over all trainable
   parameters (a parameter an objective does not reach contributes zeros);
2. the list of gradients is shuffled (the order matters only with three or more objectives);
3. each ``g_i`` (a copy) is projected against every original ``g_k`` in the shuffled order:
   ``g_i -= min(0, g_i·g_k / (|g_k|² + 1e-12)) · g_k``, so only a conflicting pair (negative dot
   product) changes, and then ``g_i`` loses its component along ``g_k``;
4. the projected gradients are summed and written into ``.grad`` before the optimiser step.

Here the objectives are the ``label`` and ``image`` groups of
:class:`~xtask_core.train.losses.XTaskLoss`. With two objectives the projection of ``g_i``
against itself never changes it (its dot product stays ≥ 0 by Cauchy-Schwarz), so the result
is: unchanged sum when ``g_1·g_2 ≥ 0``; otherwise each gradient minus its component along the
other.

:func:`grad_cosine` measures the conflict: the cosine between the two groups' gradients at the
shared encoder (two extra backward passes through the decoders and encoder, no optimiser
change), cheap enough to log every N steps.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from xtask_core.errors import XTaskError

__all__ = ["EPS", "project_conflicting", "pcgrad_combine", "flat_grad", "write_flat_grad",
           "pcgrad_backward", "group_losses", "cosine", "grad_cosine"]

EPS = 1e-12  # added to |g_k|² in the projection, as the original


def project_conflicting(grads: Sequence[Tensor], generator: torch.Generator | None = None) -> list[Tensor]:
    """Projected copies of ``grads`` (each a 1-D float tensor of the same length P).

    ``generator`` (a ``torch.Generator`` on the CPU) seeds the shuffle of the projection order;
    None uses torch's global generator. The inputs are not modified. Returns a list in the
    input order: element i is ``g_i`` after projection against every ``g_k`` (shuffled order).
    """
    if not grads:
        raise XTaskError("PCGrad needs at least one gradient")
    shape = grads[0].shape
    if any(g.dim() != 1 or g.shape != shape for g in grads):
        raise XTaskError(f"PCGrad needs 1-D gradients of one length, got {[tuple(g.shape) for g in grads]}")
    order = torch.randperm(len(grads), generator=generator).tolist()
    sq_norms = [torch.dot(g, g) + EPS for g in grads]
    out = []
    for g_i in grads:
        p = g_i.clone()
        for k in order:
            coef = torch.dot(p, grads[k]) / sq_norms[k]
            p -= torch.clamp(coef, max=0.0) * grads[k]  # min(0, coef)·g_k: only conflicts change
        out.append(p)
    return out


def pcgrad_combine(grads: Sequence[Tensor], generator: torch.Generator | None = None) -> Tensor:
    """Sum of :func:`project_conflicting`: the 1-D gradient PCGrad applies (length P)."""
    return torch.stack(project_conflicting(grads, generator)).sum(0)


def flat_grad(loss: Tensor, params: Sequence[Tensor], retain_graph: bool = True) -> Tensor:
    """∂loss/∂params flattened into one 1-D float32 tensor (Σ numel long); unreached params give 0
    (all zeros for a loss without a graph, e.g. a term switched off)."""
    if not loss.requires_grad:
        return torch.cat([torch.zeros(p.numel(), device=p.device) for p in params])
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).float()
                      for p, g in zip(params, grads)])


def write_flat_grad(params: Sequence[Tensor], flat: Tensor) -> None:
    """Write the 1-D ``flat`` (Σ numel long) into ``p.grad`` of each parameter, in order (replaces it)."""
    total = sum(p.numel() for p in params)
    if flat.dim() != 1 or flat.numel() != total:
        raise XTaskError(f"flat gradient has {flat.numel()} entries, the parameters {total}")
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype).clone()
        offset += n


def group_losses(losses: Sequence[Tensor] | Mapping[str, Tensor]) -> list[Tensor]:
    """``[label, image]`` from a loss dict (``XTaskLoss`` output), or the sequence as given."""
    if isinstance(losses, Mapping):
        missing = [k for k in ("label", "image") if k not in losses]
        if missing:
            raise XTaskError(f"losses dict is missing {', '.join(missing)} (has: {', '.join(losses)})")
        return [losses["label"], losses["image"]]
    return list(losses)


def pcgrad_backward(params: Iterable[Tensor], losses: Sequence[Tensor] | Mapping[str, Tensor],
                    generator: torch.Generator | None = None) -> list[Tensor]:
    """PCGrad in place of ``total.backward()``: writes the combined gradient into ``p.grad``.

    Args:
        params: the parameters the optimiser steps (those without ``requires_grad`` are skipped).
        losses: ``[label_loss, image_loss]`` (0-dim tensors) or a dict with those keys.
        generator: seeds the projection order (see :func:`project_conflicting`).

    Returns the per-objective flattened gradients *before* projection (1-D float32), so the
    caller can log :func:`cosine` of them at no extra cost. The graph is freed afterwards.
    Parameters outside ``params`` (say, uncertainty log-variances) are not touched.
    """
    params = [p for p in params if p.requires_grad]
    group = group_losses(losses)
    if not params:
        raise XTaskError("PCGrad found no trainable parameters")
    grads = [flat_grad(loss, params, retain_graph=i < len(group) - 1) for i, loss in enumerate(group)]
    write_flat_grad(params, pcgrad_combine(grads, generator))
    return grads


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two 1-D tensors, computed in float64; NaN when either is all zero."""
    a, b = a.double(), b.double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return math.nan
    return float(torch.dot(a, b) / (na * nb))


def grad_cosine(model: nn.Module, losses: Sequence[Tensor] | Mapping[str, Tensor],
                at: Iterable[Tensor] | None = None) -> float:
    """Cosine between the gradients of the two loss groups at the shared parameters.

    Args:
        model: the network; ``at`` defaults to its ``pretrained_encoder``'s trainable parameters
            (the part both tasks share).
        losses: ``[label_loss, image_loss]`` or a dict with ``label`` and ``image`` (their graphs
            are kept: the training backward can follow).
        at: the parameters to measure at, instead of the encoder.

    Returns a float in [-1, 1] (negative = the groups pull the shared weights apart), NaN when
    either gradient is zero there. ``.grad`` of the parameters is not changed.
    """
    if at is None:
        encoder = getattr(model, "pretrained_encoder", None)
        if encoder is None:
            raise XTaskError("grad_cosine needs `at` for a model without a pretrained_encoder")
        at = encoder.parameters()
    params = [p for p in at if p.requires_grad]
    if not params:
        raise XTaskError("grad_cosine found no trainable parameters to measure at")
    group = group_losses(losses)
    if len(group) != 2:
        raise XTaskError(f"grad_cosine needs two losses, got {len(group)}")
    a, b = (flat_grad(loss, params, retain_graph=True) for loss in group)
    return cosine(a, b)
