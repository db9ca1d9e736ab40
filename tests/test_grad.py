"""skal.grad: closed-form logit gradients and the torch.func per-sample engine, checked
against a slow per-sample autograd loop (batch size 1) and against analytic values."""

import copy
import math

import pytest
import torch
from torch import nn

from skal.exceptions import SkalValueError
from skal.grad import (class_gradient_sqnorms, class_logit_gradients, combine_norms,
                       last_layer_norm, logit_gradient, per_sample_grad_norms,
                       per_sample_gradients, predicted_labels)

RTOL = 1e-5


class TinyBNNet(nn.Module):
    """Conv + BatchNorm + dropout + hidden layer: everything the engine must handle."""

    def __init__(self, n_outputs=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.hidden = nn.Linear(4 * 8 * 8, 8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, n_outputs)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.hidden(self.features(x).flatten(1)))))


def _net(n_outputs=3, seed=0):
    torch.manual_seed(seed)
    net = TinyBNNet(n_outputs)
    bn = net.features[1]
    with torch.no_grad():    # running statistics far from (0, 1): eval mode matters
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return net


def _x(n=7, seed=1):
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def _norm(grads, norm):
    sq = torch.stack([g.double().pow(2).sum() for g in grads])
    return float(sq.sqrt().sum() if norm == "reference" else sq.sum().sqrt())


def _reference_norms(net, x, loss_fn, norm):
    """The slow reference: one sample at a time, autograd of its loss, eval mode."""
    net.eval()
    params = [p for p in net.parameters() if p.requires_grad]
    out = []
    for i in range(len(x)):
        z = net(x[i:i + 1])
        grads = torch.autograd.grad(loss_fn(z, i), params)
        out.append(_norm(grads, norm))
    return torch.tensor(out, dtype=torch.float64)


def _bce_sum(z, y):
    return nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")


# ------------------------------------------------------------------ closed forms
def test_class_gradients_match_autograd_of_cross_entropy():
    z = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A = class_logit_gradients(z)
    sq = class_gradient_sqnorms(z)
    for c in range(4):
        zc = z.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(zc, torch.full((5,), c), reduction="sum")
        (g,) = torch.autograd.grad(loss, zc)
        torch.testing.assert_close(A[:, c], g, rtol=1e-12, atol=0)
        torch.testing.assert_close(logit_gradient(z, torch.full((5,), c)), g, rtol=1e-12,
                                   atol=0)
        torch.testing.assert_close(sq[:, c], g.pow(2).sum(1), rtol=1e-12, atol=0)


def test_entropy_and_bce_gradients_match_autograd():
    z = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    zr = z.clone().requires_grad_(True)
    p, logp = torch.softmax(zr, 1), torch.log_softmax(zr, 1)
    (g,) = torch.autograd.grad(-(p * logp).sum(), zr)
    torch.testing.assert_close(logit_gradient(z, loss="entropy"), g, rtol=1e-10, atol=1e-15)

    y = (torch.rand(6, 3, generator=torch.Generator().manual_seed(3)) < 0.5).double()
    (g,) = torch.autograd.grad(_bce_sum(zr, y), zr)
    torch.testing.assert_close(logit_gradient(z, y, multilabel=True), g, rtol=1e-12, atol=0)

    zr = z.clone().requires_grad_(True)
    ls, lns = nn.functional.logsigmoid(zr), nn.functional.logsigmoid(-zr)
    H = -(ls.exp() * ls + lns.exp() * lns).sum()
    (g,) = torch.autograd.grad(H, zr)
    torch.testing.assert_close(logit_gradient(z, loss="entropy", multilabel=True), g,
                               rtol=1e-10, atol=1e-15)


def test_confident_sample_is_exact():
    """Logit gap 40: 1 - p_top = e^-40 / (1 + e^-40) ~ 4e-18 is below float64's epsilon
    relative to 1, so ``1 - p`` (or ``sum(p) - p``) would give 0."""
    z = torch.tensor([[40.0, 0.0]], dtype=torch.float32)
    q = math.exp(-40.0) / (1.0 + math.exp(-40.0))             # p of the other class
    # ||p - e_0|| = sqrt(2) q; ||p - e_1|| = sqrt(2) (1 - q)
    norms = class_gradient_sqnorms(z).sqrt()[0]
    assert norms[0].item() == pytest.approx(math.sqrt(2.0) * q, rel=1e-12, abs=0)
    assert norms[1].item() == pytest.approx(math.sqrt(2.0) * (1.0 - q), rel=1e-12, abs=0)
    a = logit_gradient(z, torch.tensor([0]))[0]
    assert a[0].item() == pytest.approx(-q, rel=1e-12, abs=0)
    assert a[1].item() == pytest.approx(q, rel=1e-12, abs=0)
    assert class_logit_gradients(z)[0, 0, 0].item() == pytest.approx(-q, rel=1e-12, abs=0)
    # pseudo-label = top class, the BADGE / TDGF gradient
    torch.testing.assert_close(logit_gradient(z, "predicted"), logit_gradient(z, torch.tensor([0])))
    # entropy of a binary softmax: dH/dz_0 = (z_0 - z_1) * dp_1/dz_0 = -40 p_0 p_1
    g = logit_gradient(z, loss="entropy")[0]
    p0p1 = q * (1.0 - q)
    assert g[0].item() == pytest.approx(-40.0 * p0p1, rel=1e-10, abs=0)
    assert g[1].item() == pytest.approx(40.0 * p0p1, rel=1e-10, abs=0)
    # three classes, top one confident
    z3 = torch.tensor([[1.0, 41.0, 0.5]])
    e = [math.exp(-40.0), 1.0, math.exp(-40.5)]
    p = [v / sum(e) for v in e]
    expected = math.sqrt(p[0] ** 2 + (p[0] + p[2]) ** 2 + p[2] ** 2)
    assert class_gradient_sqnorms(z3)[0, 1].sqrt().item() == pytest.approx(expected, rel=1e-12, abs=0)
    # sigmoid: p - 1 for a positive label at z = 40 is -sigmoid(-40)
    zl = torch.tensor([[40.0, -40.0]])
    a = logit_gradient(zl, torch.tensor([[1.0, 0.0]]), multilabel=True)[0]
    s = 1.0 / (1.0 + math.exp(40.0))
    assert a[0].item() == pytest.approx(-s, rel=1e-12, abs=0)
    assert a[1].item() == pytest.approx(s, rel=1e-12, abs=0)
    # summed binary entropies: dH/dz = -sigmoid(z) sigmoid(-z) z
    g_ml = logit_gradient(zl, loss="entropy", multilabel=True)[0]
    assert g_ml[0].item() == pytest.approx(-40.0 * s * (1.0 - s), rel=1e-12, abs=0)
    assert g_ml[1].item() == pytest.approx(40.0 * s * (1.0 - s), rel=1e-12, abs=0)
    for value in (norms, g, a, g_ml):
        assert torch.isfinite(value).all() and (value != 0).all()


def test_predicted_labels_and_norm_helpers():
    z = torch.tensor([[0.2, 1.0, -1.0], [2.0, -3.0, 0.0]])
    assert predicted_labels(z).tolist() == [1, 0]
    assert predicted_labels(z, multilabel=True).tolist() == [[1, 1, 0], [1, 0, 1]]
    a_sq, h_sq = torch.tensor([4.0]), torch.tensor([9.0])
    assert last_layer_norm(a_sq, h_sq).item() == pytest.approx(2 * 3 + 2)
    assert last_layer_norm(a_sq, h_sq, norm="l2").item() == pytest.approx(2 * math.sqrt(10))
    assert last_layer_norm(a_sq, h_sq, bias=False).item() == pytest.approx(6)
    assert combine_norms(torch.tensor([[9.0, 16.0]])).item() == pytest.approx(7.0)
    assert combine_norms(torch.tensor([[9.0, 16.0]]), norm="l2").item() == pytest.approx(5.0)
    with pytest.raises(SkalValueError, match="norm"):
        last_layer_norm(a_sq, h_sq, norm="fro")
    with pytest.raises(SkalValueError, match="target"):
        logit_gradient(z)


# ------------------------------------------------------------ full-network engine
@pytest.mark.parametrize("norm", ["reference", "l2"])
def test_engine_matches_autograd_loop_softmax(norm):
    net, x = _net(), _x()
    labels = torch.tensor([0, 2, 1, 1, 0, 2, 1])
    net.train()                       # the engine must switch to eval and back
    got, z = per_sample_grad_norms(net, x, lambda zz, y: logit_gradient(zz, y), labels,
                                   norm=norm, chunk_size=3)
    assert net.training
    ref = _reference_norms(net, x, lambda zz, i: nn.functional.cross_entropy(zz, labels[i:i + 1]),
                           norm)
    torch.testing.assert_close(got[:, 0], ref, rtol=RTOL, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(z, net.eval()(x), rtol=1e-5, atol=1e-6)

    got, _ = per_sample_grad_norms(net, x, class_logit_gradients, norm=norm, chunk_size=4)
    assert got.shape == (7, 3)
    for c in range(3):
        ref = _reference_norms(
            net, x, lambda zz, i: nn.functional.cross_entropy(zz, torch.tensor([c])), norm)
        torch.testing.assert_close(got[:, c], ref, rtol=RTOL, atol=0)

    got, _ = per_sample_grad_norms(net, x, lambda zz: logit_gradient(zz, loss="entropy"),
                                   norm=norm)
    ref = _reference_norms(
        net, x, lambda zz, i: -(torch.softmax(zz, 1) * torch.log_softmax(zz, 1)).sum(), norm)
    torch.testing.assert_close(got[:, 0], ref, rtol=RTOL, atol=0)


@pytest.mark.parametrize("norm", ["reference", "l2"])
def test_engine_matches_autograd_loop_sigmoid(norm):
    net, x = _net(n_outputs=4), _x(6)
    Y = (torch.rand(6, 4, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    got, _ = per_sample_grad_norms(net, x, lambda zz, y: logit_gradient(zz, y, multilabel=True),
                                   Y, norm=norm, chunk_size=2)
    ref = _reference_norms(net, x, lambda zz, i: _bce_sum(zz, Y[i:i + 1]), norm)
    torch.testing.assert_close(got[:, 0], ref, rtol=RTOL, atol=0)


def test_per_sample_gradients_equal_autograd_and_chunks_are_bounded():
    net, x = _net(), _x(5)
    net.eval()
    params = dict(net.named_parameters())
    chunks = list(per_sample_gradients(net, x, class_logit_gradients, chunk_size=7))
    # K = 3 cotangents per sample, at most 7 per-sample gradients at once: 2 samples
    assert [len(z) for _, _, z in chunks] == [2, 2, 1]
    assert [start for start, _, _ in chunks] == [0, 2, 4]
    grads = {k: torch.cat([g[k] for _, g, _ in chunks]) for k in params}
    assert grads["fc.weight"].shape == (5, 3, 3, 8)
    for i in (0, 4):
        for c in range(3):
            loss = nn.functional.cross_entropy(net(x[i:i + 1]), torch.tensor([c]))
            expected = torch.autograd.grad(loss, list(params.values()))
            for name, g in zip(params, expected):
                torch.testing.assert_close(grads[name][i, c], g, rtol=1e-4, atol=1e-6)


def test_engine_chunk_size_does_not_change_results_and_respects_frozen_parameters():
    net, x = _net(), _x(5)
    a, _ = per_sample_grad_norms(net, x, class_logit_gradients, chunk_size=1)
    b, _ = per_sample_grad_norms(net, x, class_logit_gradients, chunk_size=1000)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    net.features[0].weight.requires_grad_(False)
    c, _ = per_sample_grad_norms(net, x, class_logit_gradients, norm="l2")
    net.features[0].weight.requires_grad_(True)
    only, _ = per_sample_grad_norms(net, x, class_logit_gradients, norm="l2",
                                    parameters=["fc.weight", "fc.bias"])
    assert (c < per_sample_grad_norms(net, x, class_logit_gradients, norm="l2")[0]).all()
    # final layer only = closed form ||p - e_c|| sqrt(||h||^2 + 1)
    with torch.no_grad():
        net.eval()
        h = torch.relu(net.hidden(net.features(x).flatten(1)))
        closed = last_layer_norm(class_gradient_sqnorms(net.fc(h)), h.double().pow(2).sum(1, keepdim=True),
                                 norm="l2")
    torch.testing.assert_close(only, closed, rtol=RTOL, atol=0)


def test_engine_errors():
    net, x = _net(), _x(2)
    with pytest.raises(SkalValueError, match="norm"):
        per_sample_grad_norms(net, x, class_logit_gradients, norm="max")
    with pytest.raises(SkalValueError, match="chunk_size"):
        per_sample_grad_norms(net, x, class_logit_gradients, chunk_size=0)
    with pytest.raises(SkalValueError, match="cotangent"):
        per_sample_grad_norms(net, x, lambda z: torch.ones(1, 2, 5))
    with pytest.raises(SkalValueError, match="Unknown parameter"):
        per_sample_grad_norms(net, x, class_logit_gradients, parameters=["nope"])
    with pytest.raises(SkalValueError, match="torch.Tensor"):
        per_sample_grad_norms(net, x.numpy(), class_logit_gradients)


class SharedLinearNet(nn.Module):
    """Linear layers used twice, tied to another layer, applied to a sequence, and
    followed by a user's forward hook: the closed form must fall back or stay exact."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, (3, 2), stride=2, dilation=(2, 1), padding=(2, 0))
        self.grouped = nn.Conv2d(2, 2, 1, groups=2)            # no closed form: vmap
        self.tokens = nn.Linear(8, 5)            # applied to (n, 2 * 8, 8) rows
        self.shared = nn.Linear(5, 5)            # called twice
        self.a = nn.Linear(5, 5)
        self.b = nn.Linear(5, 5)
        self.b.weight = self.a.weight            # tied weights, each layer called once
        self.fc = nn.Linear(5, 3, bias=False)
        self.fc.register_forward_hook(lambda _m, _i, out: 2.0 * out)

    def forward(self, x):
        t = self.tokens(self.grouped(self.conv(x)).flatten(1, 2))   # (n, 16, 5)
        u = t.mean(1)
        u = torch.tanh(self.shared(torch.tanh(self.shared(u))))
        u = torch.tanh(self.b(torch.tanh(self.a(u))))
        return self.fc(u)


@pytest.mark.parametrize("closed_form", [True, False])
def test_linear_closed_form_fallbacks_and_bn_patch_removed(closed_form):
    torch.manual_seed(3)
    net = SharedLinearNet()
    x = _x(5)
    for norm in ("reference", "l2"):
        got, _ = per_sample_grad_norms(net, x, class_logit_gradients, norm=norm,
                                       closed_form=closed_form)
        for c in range(3):
            ref = _reference_norms(
                net, x, lambda zz, i: nn.functional.cross_entropy(zz, torch.tensor([c])), norm)
            torch.testing.assert_close(got[:, c], ref, rtol=RTOL, atol=0)
    from skal.grad import _layer_plan
    _, plan = _layer_plan(net, x[:1], dict(net.named_parameters()), closed_form)
    assert set(plan) == ({"tokens", "fc"} if closed_form else set())   # not "shared"
    # the module is left as it was: a later forward, in train and in eval mode, equals
    # that of a copy never probed (a left-over probe hook would raise or shift the
    # output; a left-over BatchNorm patch would use running statistics in train mode)
    bn_net = _net()
    untouched = copy.deepcopy(bn_net)
    per_sample_grad_norms(bn_net, x[:, :, :16, :16], class_logit_gradients,
                          closed_form=closed_form)
    xs = _x(6, seed=2)
    for train in (True, False):
        for net_ in (bn_net, untouched):
            net_.train(train)
        torch.manual_seed(0)                                     # same dropout masks
        got = bn_net(xs)
        torch.manual_seed(0)
        torch.testing.assert_close(got, untouched(xs), rtol=0, atol=0)
    for a, b in zip(bn_net.buffers(), untouched.buffers()):     # same running statistics
        torch.testing.assert_close(a, b, rtol=0, atol=0)
