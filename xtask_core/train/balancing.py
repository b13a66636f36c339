"""Balancing the two loss groups (``image`` and ``label`` of :class:`~xtask_core.train.losses.XTaskLoss`).

Three balancers, chosen by name through :func:`make_balancer` (registry :data:`BALANCERS`):

* ``"none"``: ``total = label + image``.
* ``"uncertainty"`` (Kendall et al., CVPR 2018; formula as in the original code): learnable
  log-variances ``s_img``, ``s_lbl`` (init 0); ``total = ½·exp(-s_img)·image + s_img +
  ½·exp(-s_lbl)·label + s_lbl``. Reported weights are ``sqrt(exp(s))`` (the σ of each group).
  The two scalars are trained by the trainer's own optimiser: add ``bal.parameters()`` to it.
* ``"gradnorm"`` (Chen et al., ICML 2018): weights ``w_image``, ``w_label`` (init 1) trained by
  the balancer's own Adam; ``total = w_image·image + w_label·label`` with the weights taken as
  constants by the network's backward. ``step()`` makes each weighted group's gradient norm at a
  shared parameter move toward ``mean norm · r_i^α`` (α = 0.16), where ``r_i`` is the group's
  loss relative to its first recorded value, divided by the mean of those ratios: the group that
  has learned least gets the larger weight. Weights are renormalised to sum to 2 after each step.

Trainer call order, once per optimisation step (the same code for every balancer)::

    bal = make_balancer(kind, device=device)
    optimizer = Adam(list(model.parameters()) + bal.parameters(), ...)   # [] for none/gradnorm
    ...
    losses = criterion(model(x), batch)                  # dict with "image", "label", ...
    total = bal.combine(losses)
    optimizer.zero_grad()
    total.backward(retain_graph=bal.needs_graph)         # GradNorm needs the graph once more
    bal.step(losses, shared_param)                       # BEFORE optimizer.step(): it
    optimizer.step()                                     # differentiates the graph at the
                                                         # parameter's current value
    log(bal.weights())                                   # {"w_image": float, "w_label": float}

``shared_param`` is the last shared encoder weight, ``model.pretrained_encoder.layer4[-1].conv2.weight``.
With a GradScaler, scale only ``total`` (``scaler.scale(total).backward(...)``) and pass the
unscaled ``losses`` to ``step``. Checkpoints: ``bal.state_dict()`` holds only tensors, numbers,
strings and the Adam state dict, so it loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from xtask_core.device import default_device
from xtask_core.errors import XTaskError

__all__ = ["Balancer", "NoBalancer", "UncertaintyBalancer", "GradNormBalancer", "BALANCERS",
           "make_balancer", "balancer_kind"]

GROUPS = ("image", "label")  # order of the two groups in every tensor below


def _group_losses(losses: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    missing = [k for k in GROUPS if k not in losses]
    if missing:
        raise XTaskError(f"losses dict is missing {', '.join(missing)} (has: {', '.join(losses)})")
    return losses["image"], losses["label"]


class Balancer:
    """Base class and the plain sum. Subclasses override what they change."""

    kind = "none"
    needs_graph = False  # True when step() differentiates the loss graph after backward()

    def __init__(self, device: str | torch.device | None = None):
        self.device = default_device(device)

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        """0-dim tensor to call ``backward()`` on."""
        image, label = _group_losses(losses)
        return image + label

    def step(self, losses: Mapping[str, Tensor], shared_param: Tensor | None = None) -> Tensor | None:
        """Update the balancer's own weights (GradNorm only). Returns its loss, or None."""
        return None

    def weights(self) -> dict[str, float]:
        """Current weights for logging: ``{"w_image": float, "w_label": float}``."""
        return {"w_image": 1.0, "w_label": 1.0}

    def parameters(self) -> list[Tensor]:
        """Parameters the TRAINER's optimiser must update (GradNorm has its own: returns [])."""
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise XTaskError(f"balancer state is for {state.get('kind')!r}, not {self.kind!r}")


class NoBalancer(Balancer):
    """``total = image + label``; nothing to learn."""


class UncertaintyBalancer(Balancer):
    """Homoscedastic-uncertainty weights; ``s`` are log-variances (0-dim float32 parameters)."""

    kind = "uncertainty"

    def __init__(self, device: str | torch.device | None = None):
        super().__init__(device)
        self.s_img = torch.zeros((), device=self.device, requires_grad=True)
        self.s_lbl = torch.zeros((), device=self.device, requires_grad=True)

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        image, label = _group_losses(losses)
        return (0.5 * torch.exp(-self.s_img) * image + self.s_img
                + 0.5 * torch.exp(-self.s_lbl) * label + self.s_lbl)

    def weights(self) -> dict[str, float]:
        # sqrt(exp(s)) = exp(s/2): the learned σ of each group, as the original printed it
        return {"w_image": float(torch.exp(0.5 * self.s_img.detach())),
                "w_label": float(torch.exp(0.5 * self.s_lbl.detach()))}

    def parameters(self) -> list[Tensor]:
        return [self.s_img, self.s_lbl]

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "s_img": self.s_img.detach().cpu().clone(),
                "s_lbl": self.s_lbl.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.s_img.copy_(torch.as_tensor(state["s_img"]))
            self.s_lbl.copy_(torch.as_tensor(state["s_lbl"]))


class GradNormBalancer(Balancer):
    """GradNorm with two groups. ``w`` is a float32 parameter of shape (2,), order (image, label).

    Args:
        alpha: restoring-force strength α (0.16, the original code's value).
        lr: learning rate of the weights' own Adam.
    """

    kind = "gradnorm"
    needs_graph = True

    def __init__(self, device: str | torch.device | None = None, alpha: float = 0.16, lr: float = 0.025):
        super().__init__(device)
        if alpha < 0 or lr <= 0:
            raise XTaskError(f"gradnorm needs alpha >= 0 and lr > 0, got alpha={alpha}, lr={lr}")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.w = torch.ones(2, device=self.device, requires_grad=True)
        self.initial: Tensor | None = None  # first recorded (image, label) losses, float32 (2,)
        self.optimizer = torch.optim.Adam([self.w], lr=self.lr)

    def combine(self, losses: Mapping[str, Tensor]) -> Tensor:
        image, label = _group_losses(losses)
        w = self.w.detach()  # the network's backward must not train the weights
        return w[0] * image + w[1] * label

    def step(self, losses: Mapping[str, Tensor], shared_param: Tensor | None = None) -> Tensor:
        """One GradNorm update of ``w``; returns the (detached) GradNorm loss Σ|G_i - target_i|.

        ``losses`` must still hold their graph (``backward(retain_graph=True)`` before this) and
        ``shared_param`` must be a parameter both groups depend on.
        """
        if shared_param is None or not shared_param.requires_grad:
            raise XTaskError("gradnorm needs a shared parameter that requires grad "
                             "(the encoder's layer4[-1].conv2.weight)")
        group = _group_losses(losses)
        values = torch.stack([g.detach().float() for g in group])
        if self.initial is None:
            self.initial = values.clamp_min(1e-12)
        # ‖∂L_i/∂W‖ for each unweighted group; the weighted norm is w_i·‖∂L_i/∂W‖ (w_i > 0), so
        # the weights' gradient is exact without a second-order graph through the network.
        norms = []
        for loss in group:
            (grad,) = torch.autograd.grad(loss, shared_param, retain_graph=True, allow_unused=True)
            norms.append(torch.zeros((), device=self.device) if grad is None
                         else grad.detach().float().norm().to(self.device))
        g = torch.stack(norms)
        G = self.w * g
        ratio = values.to(self.device) / self.initial.to(self.device)
        r = ratio / ratio.mean().clamp_min(1e-12)
        target = (G.mean() * r ** self.alpha).detach()
        gn_loss = (G - target).abs().sum()
        self.optimizer.zero_grad(set_to_none=True)
        gn_loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # leave no stale grad on w between steps
        with torch.no_grad():
            self.w.clamp_(min=1e-6)  # keep both weights positive before renormalising
            self.w.mul_(2.0 / self.w.sum())
        return gn_loss.detach()

    def weights(self) -> dict[str, float]:
        w = self.w.detach().cpu()
        return {"w_image": float(w[0]), "w_label": float(w[1])}

    def parameters(self) -> list[Tensor]:
        return []  # trained by self.optimizer only

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "alpha": self.alpha, "lr": self.lr,
                "w": self.w.detach().cpu().clone(),
                "initial": None if self.initial is None else self.initial.detach().cpu().clone(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.w.copy_(torch.as_tensor(state["w"]))
        init = state.get("initial")
        self.initial = None if init is None else torch.as_tensor(init).float().to(self.device)
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])


BALANCERS: dict[str, type[Balancer]] = {
    "none": NoBalancer, "uncertainty": UncertaintyBalancer, "gradnorm": GradNormBalancer,
}


def make_balancer(kind: str, device: str | torch.device | None = None, **kw) -> Balancer:
    """Build a balancer by name (``"none" | "uncertainty" | "gradnorm"``); ``kw`` go to its class."""
    if kind not in BALANCERS:
        raise XTaskError(f"unknown balancer {kind!r} (valid: {', '.join(BALANCERS)})")
    return BALANCERS[kind](device=device, **kw)


def balancer_kind(uncertainty_weights: bool = False, gradnorm: bool = False) -> str:
    """Map the original's two flags (TrainConfig) to a balancer name."""
    if uncertainty_weights and gradnorm:
        raise XTaskError("choose at most one of uncertainty_weights and gradnorm")
    return "uncertainty" if uncertainty_weights else "gradnorm" if gradnorm else "none"
