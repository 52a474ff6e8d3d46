"""FOSC, SGCS and the TRADES loss against values computed independently, in closed form."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trades_instability.core.losses import trades_loss, trades_parts
from trades_instability.core.metrics import fosc, fosc_from_grad, grad_cosine, grad_norm, sgcs


def linear_model(d: int, k: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    return m.double()


def ce_input_grad_linear(W, b, x, y):
    """d CE(Wx+b, y) / dx = W^T (softmax(Wx+b) - onehot(y)), per example, in closed form."""
    p = torch.softmax(x @ W.T + b, dim=1)
    onehot = F.one_hot(y, W.shape[0]).double()
    return (p - onehot) @ W


def test_fosc_matches_closed_form_of_linear_model():
    d, k, eps = 12, 5, 0.03
    model = linear_model(d, k)
    W, b = model[1].weight.detach(), model[1].bias.detach()
    x = torch.rand(7, d, dtype=torch.double)
    y = torch.randint(0, k, (7,))
    x_adv = (x + eps * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
    g = ce_input_grad_linear(W, b, x_adv, y)
    expected = eps * g.abs().sum(1) - ((x_adv - x) * g).sum(1)
    got = fosc(model, x, x_adv, y, eps)
    assert got.shape == (7,)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_fosc_does_not_depend_on_batch_size():
    d, k, eps = 12, 5, 0.03
    model = linear_model(d, k, seed=1)
    x = torch.rand(6, d, dtype=torch.double)
    y = torch.randint(0, k, (6,))
    x_adv = (x + eps * torch.sign(torch.randn_like(x))).clamp(0, 1)
    whole = fosc(model, x, x_adv, y, eps)
    singles = torch.cat([fosc(model, x[i:i + 1], x_adv[i:i + 1], y[i:i + 1], eps) for i in range(6)])
    torch.testing.assert_close(whole, singles)


def test_fosc_is_zero_on_the_boundary_in_the_gradient_sign_direction():
    # Two classes, linear model: the CE input gradient is (p_1 - y_1) (w_1 - w_0), whose sign does not
    # depend on x. So x + eps * sign(g) is the exact maximiser of the linearised loss: FOSC = 0.
    d, eps = 10, 0.05
    model = linear_model(d, 2, seed=2)
    W, b = model[1].weight.detach(), model[1].bias.detach()
    x = 0.2 + 0.6 * torch.rand(4, d, dtype=torch.double)  # away from [0,1] edges: no clamping
    y = torch.tensor([0, 1, 0, 1])
    g = ce_input_grad_linear(W, b, x, y)
    x_adv = x + eps * g.sign()
    torch.testing.assert_close(fosc(model, x, x_adv, y, eps), torch.zeros(4, dtype=torch.double), atol=1e-12, rtol=0)
    # and strictly positive at the centre of the ball (the attack has not moved)
    assert (fosc(model, x, x, y, eps) > 0).all()


def test_fosc_from_grad_formula():
    x = torch.zeros(1, 3)
    x_adv = torch.tensor([[0.1, -0.1, 0.0]])
    g = torch.tensor([[2.0, 1.0, -3.0]])
    # eps*||g||_1 - <x_adv - x, g> = 0.1*6 - (0.2 - 0.1) = 0.5
    torch.testing.assert_close(fosc_from_grad(x, x_adv, g, 0.1), torch.tensor([0.5]))


def brute_force_sgcs(step_grads):
    k = len(step_grads)
    out = []
    for e in range(step_grads[0].shape[0]):
        sims = []
        for i, j in itertools.permutations(range(k), 2):
            a = step_grads[i][e].flatten().sign().double()
            c = step_grads[j][e].flatten().sign().double()
            den = a.norm() * c.norm()
            sims.append(float(a @ c / den) if den > 0 else 0.0)
        out.append(sum(sims) / (k * (k - 1)))
    return torch.tensor(out, dtype=torch.double)


def test_sgcs_is_one_when_sign_gradients_never_change():
    g = torch.randn(3, 2, 4, 4)
    steps = [g * (i + 1) * 0.5 for i in range(10)]  # same signs, different magnitudes
    torch.testing.assert_close(sgcs(steps), torch.ones(3))


def test_sgcs_known_values():
    a = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    c = torch.tensor([[-1.0, -1.0, -1.0, -1.0]])
    assert sgcs([a, b]).item() == pytest.approx(0.0)
    assert sgcs([a, c]).item() == pytest.approx(-1.0)
    # ordered pairs (a,b),(b,a)=0, (a,c),(c,a)=-1, (b,c),(c,b)=0 -> -2/6
    assert sgcs([a, b, c]).item() == pytest.approx(-1 / 3)


def test_sgcs_matches_brute_force_on_random_gradients():
    torch.manual_seed(0)
    steps = [torch.randn(5, 3, 4, 4) for _ in range(6)]
    steps[2][1] = 0  # a zero gradient has no direction: cosine 0
    torch.testing.assert_close(sgcs(steps).double(), brute_force_sgcs(steps), rtol=1e-6, atol=1e-6)


def test_trades_loss_matches_independent_computation():
    torch.manual_seed(0)
    model = linear_model(8, 3)
    x = torch.rand(5, 8, dtype=torch.double)
    x_adv = x + 0.01 * torch.randn_like(x)
    y = torch.randint(0, 3, (5,))
    beta = 3.0
    with torch.no_grad():
        zc, za = model(x), model(x_adv)
        p = torch.softmax(zc, 1)
        q = torch.softmax(za, 1)
        ce = -torch.log(p[torch.arange(5), y]).mean()
        kl = (p * (p.log() - q.log())).sum(1).mean()
    got = trades_loss(model, x, x_adv, y, beta)
    torch.testing.assert_close(got, ce + beta * kl)
    parts = trades_parts(model, x, x_adv, y, beta)
    torch.testing.assert_close(parts.ce, ce)
    torch.testing.assert_close(parts.kl, kl)
    # one joint forward gives the same value for a model without BatchNorm
    torch.testing.assert_close(trades_loss(model, x, x_adv, y, beta, joint_forward=True), ce + beta * kl)


def test_trades_loss_gradient_stays_finite_when_a_clean_probability_underflows():
    """A clean logit gap of 120 makes softmax give an exact 0 in fp32. The official form
    KLDivLoss(log_softmax(adv), softmax(clean)) then has a NaN gradient (0 * log 0); ours must give the
    gradient that float64 (no underflow until a gap of ~745) gives."""
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    x_adv = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    y = torch.tensor([0, 1])
    grads = {}
    for dtype in (torch.float32, torch.float64):
        m = nn.Linear(2, 3, bias=False).to(dtype)
        with torch.no_grad():
            m.weight.copy_(torch.tensor([[120.0, 0.0], [0.0, 60.0], [0.0, 0.0]]))
        loss = trades_loss(m, x.to(dtype), x_adv.to(dtype), y, beta=6.0)
        (grads[dtype],) = torch.autograd.grad(loss, m.weight)
        assert torch.isfinite(loss)
    assert (torch.softmax(torch.tensor([[120.0, 0.0, 0.0]]), 1) == 0).any()  # the underflow is real in fp32
    torch.testing.assert_close(grads[torch.float32].double(), grads[torch.float64], rtol=1e-4, atol=1e-5)
    # the official formulation on the same fp32 numbers: NaN
    m = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[120.0, 0.0], [0.0, 60.0], [0.0, 0.0]]))
    official = F.kl_div(F.log_softmax(m(x_adv), 1), F.softmax(m(x), 1), reduction="batchmean")
    (g,) = torch.autograd.grad(official, m.weight)
    assert torch.isnan(g).any()


def test_grad_norm_and_cosine():
    a = [torch.tensor([3.0]), torch.tensor([[4.0]])]
    b = [torch.tensor([-3.0]), torch.tensor([[-4.0]])]
    assert grad_norm(a) == pytest.approx(5.0)
    assert grad_cosine(a, a) == pytest.approx(1.0)
    assert grad_cosine(a, b) == pytest.approx(-1.0)
