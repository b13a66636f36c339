"""PCGrad on hand-made gradients, its in-place backward, and the gradient cosine logger."""
from __future__ import annotations

import math

import pytest
import torch

from xtask_core.errors import XTaskError
from xtask_core.train.pcgrad import (
    cosine,
    grad_cosine,
    pcgrad_backward,
    pcgrad_combine,
    project_conflicting,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_conflicting_pair_worked_by_hand():
    # g1 = (1, 0), g2 = (-1, 1): g1·g2 = -1, |g1|² = 1, |g2|² = 2.
    # g1' = g1 - (-1/2)·g2 = (1, 0) + (-0.5, 0.5) = (0.5, 0.5)   (now orthogonal to g2)
    # g2' = g2 - (-1/1)·g1 = (-1, 1) + (1, 0)    = (0, 1)       (now orthogonal to g1)
    # sum = (0.5, 1.5); the plain sum would be (0, 1).
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    for seed in range(4):  # either projection order gives the same with two gradients
        p1, p2 = project_conflicting([g1, g2], _gen(seed))
        assert p1.tolist() == pytest.approx([0.5, 0.5])
        assert p2.tolist() == pytest.approx([0.0, 1.0])
        assert pcgrad_combine([g1, g2], _gen(seed)).tolist() == pytest.approx([0.5, 1.5])
    assert g1.tolist() == [1.0, 0.0] and g2.tolist() == [-1.0, 1.0]  # inputs untouched


def test_conflicting_pair_three_dimensional_by_hand():
    # g1 = (2, 0, 1), g2 = (-1, 2, 0): g1·g2 = -2, |g1|² = 5, |g2|² = 5.
    # g1' = g1 + (2/5)·g2 = (2 - 0.4, 0.8, 1) = (1.6, 0.8, 1)
    # g2' = g2 + (2/5)·g1 = (-1 + 0.8, 2, 0.4) = (-0.2, 2, 0.4)
    g1, g2 = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([-1.0, 2.0, 0.0])
    p1, p2 = project_conflicting([g1, g2], _gen())
    assert p1.tolist() == pytest.approx([1.6, 0.8, 1.0])
    assert p2.tolist() == pytest.approx([-0.2, 2.0, 0.4])
    assert float(torch.dot(p1, g2)) == pytest.approx(0.0, abs=1e-6)
    assert pcgrad_combine([g1, g2], _gen()).tolist() == pytest.approx([1.4, 2.8, 1.4])


@pytest.mark.parametrize("g1,g2", [([1.0, 2.0], [3.0, -1.0]),    # dot = 1 > 0
                                   ([1.0, 0.0], [0.0, 5.0]),     # orthogonal
                                   ([1.0, 1.0], [2.0, 2.0])])    # parallel
def test_agreeing_gradients_are_unchanged(g1, g2):
    a, b = torch.tensor(g1), torch.tensor(g2)
    p1, p2 = project_conflicting([a, b], _gen())
    assert torch.equal(p1, a) and torch.equal(p2, b)
    assert torch.equal(pcgrad_combine([a, b], _gen()), a + b)


def test_zero_gradient_is_harmless():
    a, z = torch.tensor([1.0, -2.0]), torch.zeros(2)
    assert torch.equal(pcgrad_combine([a, z], _gen()), a)


def test_shuffle_is_seeded_and_reproducible():
    torch.manual_seed(0)
    grads = [torch.randn(6) for _ in range(4)]
    a = pcgrad_combine(grads, _gen(3))
    b = pcgrad_combine(grads, _gen(3))
    assert torch.equal(a, b)


def test_bad_inputs():
    with pytest.raises(XTaskError, match="at least one"):
        project_conflicting([])
    with pytest.raises(XTaskError, match="1-D gradients of one length"):
        project_conflicting([torch.zeros(2), torch.zeros(3)])


def test_pcgrad_backward_writes_the_projected_sum_into_grad():
    w = torch.zeros(2, requires_grad=True)   # both objectives reach it
    u = torch.zeros(3, requires_grad=True)   # only the image objective reaches it
    frozen = torch.zeros(1, requires_grad=False)
    label = torch.dot(torch.tensor([1.0, 0.0]), w)
    image = torch.dot(torch.tensor([-1.0, 1.0]), w) + torch.dot(torch.tensor([0.0, 0.0, 2.0]), u)
    raw = pcgrad_backward([w, u, frozen], {"label": label, "image": image}, _gen())
    # flat g_label = (1, 0, 0, 0, 0), g_image = (-1, 1, 0, 0, 2): dot = -1, |g_image|² = 6
    # g_label' = g_label + g_image/6; g_image' = g_image + g_label
    # sum = (1 - 1/6, 1/6, 0, 0, 2/6) + (0, 1, 0, 0, 2)
    assert [r.tolist() for r in raw] == [[1, 0, 0, 0, 0], [-1, 1, 0, 0, 2]]
    assert w.grad.tolist() == pytest.approx([5 / 6, 1 + 1 / 6])
    assert u.grad.tolist() == pytest.approx([0.0, 0.0, 2 + 2 / 6])
    assert frozen.grad is None


def test_pcgrad_backward_matches_plain_backward_when_groups_agree():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    x = torch.randn(5, 4)
    out = net(x)
    label, image = out[:, 0].pow(2).mean(), out[:, 0].pow(2).mean() * 3  # same direction
    pcgrad_backward(net.parameters(), [label, image], _gen())
    got = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    out = net(x)
    (out[:, 0].pow(2).mean() * 4).backward()
    for g, p in zip(got, net.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)


class _Tiny(torch.nn.Module):
    """Shared 'encoder' and two heads, like the cross-task net's layout."""

    def __init__(self):
        super().__init__()
        self.pretrained_encoder = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())
        self.head_seg = torch.nn.Linear(4, 2)
        self.head_depth = torch.nn.Linear(4, 1)

    def losses(self, x):
        h = self.pretrained_encoder(x)
        return {"label": self.head_seg(h).pow(2).mean(), "image": (self.head_depth(h) - 1).abs().mean()}


def test_grad_cosine_equals_cosine_of_manual_gradients():
    torch.manual_seed(0)
    model = _Tiny()
    x = torch.randn(6, 3)
    manual = []
    for key in ("label", "image"):
        model.zero_grad()
        model.losses(x)[key].backward()
        manual.append(torch.cat([p.grad.reshape(-1) for p in model.pretrained_encoder.parameters()]))
    a, b = manual[0].double(), manual[1].double()
    expected = float(a @ b / (a.norm() * b.norm()))
    model.zero_grad(set_to_none=True)
    losses = model.losses(x)
    got = grad_cosine(model, losses)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert -1.0 <= got <= 1.0
    assert all(p.grad is None for p in model.parameters())  # measuring leaves .grad alone
    (losses["label"] + losses["image"]).backward()  # the graph is still there for training
    # at a head only one group reaches: cosine with a zero gradient is NaN
    assert math.isnan(grad_cosine(model, model.losses(x), at=model.head_seg.parameters()))


def test_cosine_helper_and_errors():
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])) == pytest.approx(-1 / math.sqrt(2))
    with pytest.raises(XTaskError, match="needs `at`"):
        grad_cosine(torch.nn.Linear(2, 2), [torch.zeros(()), torch.zeros(())])
    model = _Tiny()
    with pytest.raises(XTaskError, match="two losses"):
        grad_cosine(model, [model.losses(torch.randn(2, 3))["label"]])
