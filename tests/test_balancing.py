"""Loss balancers: plain sum, uncertainty weights (by hand), GradNorm (toy setups)."""
from __future__ import annotations

import io
import math

import pytest
import torch

from xtask_core.errors import XTaskError
from xtask_core.train.balancing import BALANCERS, balancer_kind, make_balancer


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # checkpoints must load safely


def test_none_is_plain_sum():
    bal = make_balancer("none", device="cpu")
    losses = {"image": torch.tensor(2.0), "label": torch.tensor(3.0)}
    assert bal.combine(losses).item() == 5.0
    assert bal.step(losses, None) is None and bal.parameters() == [] and not bal.needs_graph
    assert bal.weights() == {"w_image": 1.0, "w_label": 1.0}
    bal.load_state_dict(_roundtrip(bal.state_dict()))


def test_uncertainty_formula_by_hand():
    bal = make_balancer("uncertainty", device="cpu")
    assert bal.weights() == {"w_image": 1.0, "w_label": 1.0}  # s = 0 at start
    with torch.no_grad():
        bal.s_img.fill_(0.5)
        bal.s_lbl.fill_(-0.3)
    losses = {"image": torch.tensor(2.0), "label": torch.tensor(3.0)}
    total = bal.combine(losses)
    expected = 0.5 * math.exp(-0.5) * 2 + 0.5 + 0.5 * math.exp(0.3) * 3 - 0.3
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()
    # d/ds (½·e^{-s}·L + s) = 1 - ½·e^{-s}·L
    assert bal.s_img.grad.item() == pytest.approx(1 - 0.5 * math.exp(-0.5) * 2, rel=1e-6)
    assert bal.s_lbl.grad.item() == pytest.approx(1 - 0.5 * math.exp(0.3) * 3, rel=1e-6)
    w = bal.weights()
    assert w["w_image"] == pytest.approx(math.sqrt(math.exp(0.5)))
    assert w["w_label"] == pytest.approx(math.sqrt(math.exp(-0.3)))
    assert len(bal.parameters()) == 2
    other = make_balancer("uncertainty", device="cpu")
    other.load_state_dict(_roundtrip(bal.state_dict()))
    assert other.weights() == pytest.approx(w)


def _toy_losses(shared, offsets):
    """Two group losses with equal gradients w.r.t. ``shared`` (norm 2) but chosen values."""
    return {"image": shared.sum() - offsets[0], "label": shared.sum() - offsets[1]}


def test_gradnorm_moves_weight_to_slower_task_and_sums_to_two():
    shared = torch.ones(4, requires_grad=True)
    bal = make_balancer("gradnorm", device="cpu")
    assert bal.needs_graph and bal.parameters() == []
    # step 1 records the initial losses (4, 4); equal norms and rates → nothing to correct
    gn = bal.step(_toy_losses(shared, (0.0, 0.0)), shared)
    assert gn.item() == pytest.approx(0.0, abs=1e-6)
    assert bal.weights() == pytest.approx({"w_image": 1.0, "w_label": 1.0})
    # step 2: image loss fell to 10 % of its start, label loss did not move
    gn = bal.step(_toy_losses(shared, (3.6, 0.0)), shared)
    ratios = torch.tensor([0.1, 1.0])
    r = ratios / ratios.mean()
    target = 2.0 * r ** 0.16  # mean G = 2 (both w = 1, both norms 2)
    assert gn.item() == pytest.approx(float((2.0 - target).abs().sum()), rel=1e-5)
    w = bal.weights()
    assert w["w_label"] > 1.0 > w["w_image"] > 0
    assert w["w_image"] + w["w_label"] == pytest.approx(2.0)
    for _ in range(5):  # keeps moving the same way, stays positive and normalised
        bal.step(_toy_losses(shared, (3.6, 0.0)), shared)
    w2 = bal.weights()
    assert w2["w_label"] > w["w_label"] and w2["w_image"] > 0
    assert w2["w_image"] + w2["w_label"] == pytest.approx(2.0)


def test_gradnorm_trainer_call_order_on_a_real_graph():
    torch.manual_seed(0)
    shared = torch.nn.Linear(3, 3)
    head_img, head_lbl = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(list(shared.parameters()) + list(head_img.parameters())
                          + list(head_lbl.parameters()), lr=0.1)
    bal = make_balancer("gradnorm", device="cpu")
    x = torch.randn(8, 3)
    for step in range(3):
        h = torch.relu(shared(x))
        losses = {"image": head_img(h).pow(2).mean(), "label": (head_lbl(h) - 1).abs().mean() * (step + 1)}
        total = bal.combine(losses)
        opt.zero_grad()
        total.backward(retain_graph=bal.needs_graph)
        assert bal.w.grad is None  # the network's backward does not train the weights
        bal.step(losses, shared.weight)
        opt.step()
    w = bal.weights()
    assert all(v > 0 for v in w.values()) and sum(w.values()) == pytest.approx(2.0)
    other = make_balancer("gradnorm", device="cpu")
    other.load_state_dict(_roundtrip(bal.state_dict()))
    assert other.weights() == pytest.approx(w)
    assert torch.equal(other.initial, bal.initial)
    assert other.optimizer.state_dict()["state"][0]["step"] == 3


def test_gradnorm_combine_uses_weights():
    bal = make_balancer("gradnorm", device="cpu")
    with torch.no_grad():
        bal.w.copy_(torch.tensor([0.5, 1.5]))
    losses = {"image": torch.tensor(2.0), "label": torch.tensor(4.0)}
    assert bal.combine(losses).item() == pytest.approx(0.5 * 2 + 1.5 * 4)


def test_errors():
    with pytest.raises(XTaskError, match="gradnorm"):
        make_balancer("pcgrad")
    with pytest.raises(XTaskError, match="shared parameter"):
        make_balancer("gradnorm", device="cpu").step({"image": torch.tensor(1.0), "label": torch.tensor(1.0)},
                                                    torch.ones(2))
    with pytest.raises(XTaskError, match="label"):
        make_balancer("none", device="cpu").combine({"image": torch.tensor(1.0)})
    with pytest.raises(XTaskError, match="uncertainty"):
        make_balancer("none", device="cpu").load_state_dict({"kind": "uncertainty"})
    assert set(BALANCERS) == {"none", "uncertainty", "gradnorm"}
    assert balancer_kind() == "none" and balancer_kind(True, False) == "uncertainty"
    assert balancer_kind(gradnorm=True) == "gradnorm"
    with pytest.raises(XTaskError):
        balancer_kind(True, True)
