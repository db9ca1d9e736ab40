"""Expected / entropy GradNorm (Wang et al., AAAI 2022) against a slow reference: a
per-sample autograd loop at batch size 1, as the paper's code does it."""

import functools

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY, ArrayDataset
from skal import ActiveLearner, CNNClassifier, MultiLabelCNNClassifier
from skal.exceptions import SkalTypeError, SkalValueError
from skal.query import gradnorm as gradnorm_module
from skal.query import (classifier_entropy_gradnorm, classifier_expected_gradnorm,
                        entropy_gradnorm, expected_gradnorm)
from skal.query.registry import STRATEGIES, get_strategy, strategy_name
from skal.utils.validation import to_image_tensor

RTOL = 1e-5
SEEDED = dict(TINY, random_state=0)


class UserNet(nn.Module):
    """A user's module: its own arguments only; the final layer is found by a hook."""

    def __init__(self, n_classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.mid = nn.Linear(16, 8)
        self.head = nn.Linear(8, n_classes)

    def forward(self, x):
        return self.head(torch.tanh(self.mid(self.body(x))))


def _images(n, seed, size=16):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 1, size, size)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pool():
    return _images(24, 1)


@pytest.fixture(scope="module")
def nets():
    X = _images(60, 0)
    y = np.random.default_rng(0).integers(0, 3, 60)
    Y = (np.random.default_rng(1).random((60, 4)) < 0.4).astype(int)
    return {
        "softmax": CNNClassifier(**SEEDED).fit(X, y),
        "user": CNNClassifier(module=UserNet, module__n_classes=3, max_epochs=2,
                              min_steps=None, augment=None, random_state=0).fit(X, y),
        "sigmoid": MultiLabelCNNClassifier(**SEEDED).fit(X, Y),
        "binary": CNNClassifier(**SEEDED).fit(X, y % 2),
        # one-vs-rest on 1-d labels: one sigmoid logit, or one per class
        "ovr_binary": MultiLabelCNNClassifier(**SEEDED).fit(X, np.array(["no", "yes"])[y % 2]),
        "ovr_multiclass": MultiLabelCNNClassifier(**SEEDED).fit(X, y),
    }


# ------------------------------------------------------------- slow reference
def _norm(grads, norm):
    sq = torch.stack([g.double().pow(2).sum() for g in grads])
    return (sq.sqrt().sum() if norm == "reference" else sq.sum().sqrt()).item()


def _reference_scores(net, X, kind, scope, norm):
    """One sample at a time: forward, then torch.autograd.grad of each loss."""
    module = net.module_.eval()
    params = ([p for p in module.parameters() if p.requires_grad] if scope == "all"
              else [net.final_layer_.weight, net.final_layer_.bias])
    multilabel = isinstance(net, MultiLabelCNNClassifier)     # sigmoid outputs
    scores = []
    for i in range(len(X)):
        z = module(to_image_tensor(X[i:i + 1]))

        def grad_norm(loss):
            return _norm(torch.autograd.grad(loss, params, retain_graph=True), norm)

        if kind == "entropy":
            if multilabel:
                ls, lns = nn.functional.logsigmoid(z), nn.functional.logsigmoid(-z)
                H = -(ls.exp() * ls + lns.exp() * lns).sum()
            else:
                H = -(torch.softmax(z, 1) * torch.log_softmax(z, 1)).sum()
            scores.append(grad_norm(H))
        elif multilabel:    # sum over labels of E_{y_l ~ Bern(p_l)} ||grad BCE_l||
            p = torch.sigmoid(z.double())[0]
            total = 0.0
            for label in range(z.shape[1]):
                for y, prob in ((1.0, p[label]), (0.0, 1 - p[label])):
                    loss = nn.functional.binary_cross_entropy_with_logits(
                        z[0, label], torch.tensor(y))
                    total += prob.item() * grad_norm(loss)
            scores.append(total)
        else:               # sum_c p_c ||grad CE(x, c)||
            p = torch.softmax(z.double(), 1)[0]
            scores.append(sum(p[c].item() * grad_norm(
                nn.functional.cross_entropy(z, torch.tensor([c]))) for c in range(z.shape[1])))
    return np.array(scores)


@pytest.mark.parametrize("head", ["softmax", "user", "sigmoid", "binary", "ovr_binary",
                                  "ovr_multiclass"])
@pytest.mark.parametrize("scope", ["last", "all"])
@pytest.mark.parametrize("norm", ["reference", "l2"])
def test_scores_match_per_sample_autograd_loop(nets, pool, head, scope, norm):
    net = nets[head]
    X = pool[:9]
    for kind, measure in (("expected", classifier_expected_gradnorm),
                          ("entropy", classifier_entropy_gradnorm)):
        got = measure(net, X, scope=scope, norm=norm, batch_size=4, chunk_size=5)
        expected = _reference_scores(net, X, kind, scope, norm)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=0,
                                   err_msg=f"{kind} {head} {scope} {norm}")


def test_user_module_head_is_found_by_hook(nets):
    assert nets["user"].final_layer_name_ == "head"


def test_papers_literal_loss_collapses(nets, pool):
    """The paper's expected loss sum_c p_c CE(f(x), c): with p attached it is H(p), so the
    reference code's two scores coincide; with p detached its gradient is zero."""
    net = nets["softmax"]
    module = net.module_.eval()
    params = [p for p in module.parameters()]
    entropy = classifier_entropy_gradnorm(net, pool[:4], scope="all")
    for i in range(4):
        z = module(to_image_tensor(pool[i:i + 1]))
        p = torch.softmax(z, 1)[0]
        ce = [nn.functional.cross_entropy(z, torch.tensor([c])) for c in range(3)]
        attached = sum(p[c] * ce[c] for c in range(3))
        assert _norm(torch.autograd.grad(attached, params, retain_graph=True),
                     "reference") == pytest.approx(entropy[i], rel=1e-4)
        detached = sum(p[c].detach() * ce[c] for c in range(3))
        (g,) = torch.autograd.grad(detached, z, retain_graph=True)
        assert g.abs().max().item() < 1e-6


def test_expected_and_entropy_differ_and_scopes_differ(nets, pool):
    net = nets["softmax"]
    last = classifier_expected_gradnorm(net, pool, scope="last")
    full = classifier_expected_gradnorm(net, pool, scope="all")
    ent = classifier_entropy_gradnorm(net, pool, scope="last")
    assert last.shape == (len(pool),) and np.all(last > 0)
    assert np.all(full > last)                   # all parameters include the last layer
    assert not np.allclose(last / last.max(), ent / ent.max())


# ------------------------------------------------------------------- strategies
def test_strategy_selects_top_scores(nets, pool):
    net = nets["softmax"]
    scores = classifier_expected_gradnorm(net, pool, scope="all")
    idx, values = expected_gradnorm(net, pool, 5, scope="all")
    np.testing.assert_array_equal(idx, np.argsort(-scores)[:5])
    np.testing.assert_allclose(values, scores[idx])
    idx, _ = entropy_gradnorm(net, pool, 3, scope="last", norm="l2")
    ent = classifier_entropy_gradnorm(net, pool, scope="last", norm="l2")
    np.testing.assert_array_equal(idx, np.argsort(-ent)[:3])


def test_subset_scores_only_the_subset(nets, pool, monkeypatch):
    net = nets["softmax"]
    scored = []
    real = gradnorm_module.score_pool

    def spy(score_batch, X, batch_size=None, n_jobs=None):
        scored.append(len(X))
        return real(score_batch, X, batch_size, n_jobs=n_jobs)

    monkeypatch.setattr(gradnorm_module, "score_pool", spy)
    idx, values = expected_gradnorm(net, pool, 3, subset=10, random_state=7)
    assert scored == [10]
    # positions refer to the full pool, and are the best of the seeded subset
    subset = np.sort(np.random.default_rng(7).choice(len(pool), 10, replace=False))
    assert set(idx) <= set(subset)
    full = classifier_expected_gradnorm(net, pool)
    # the subset is scored as one batch of 10, the full pool in other batches: the
    # float32 forward passes may round differently, so scores agree to float32
    # precision (a wrong row or a wrong formula is off by far more)
    np.testing.assert_allclose(values, full[idx], rtol=1e-5)
    # the picks are the subset's 3 best: their scores are its top-3 scores (compared
    # by value, so a near-tie that rounds the other way does not fail the test)
    np.testing.assert_allclose(np.sort(full[idx]), np.sort(full[subset])[-3:], rtol=1e-5)
    again, _ = expected_gradnorm(net, pool, 3, subset=10, random_state=7)
    np.testing.assert_array_equal(idx, again)
    seen = {tuple(expected_gradnorm(net, pool, 3, subset=10, random_state=s)[0])
            for s in range(6)}
    assert len(seen) > 1
    scored.clear()
    expected_gradnorm(net, pool, 3, subset=1000)          # larger than the pool: all
    assert scored == [len(pool)]
    with pytest.raises(SkalValueError, match="subset"):
        expected_gradnorm(net, pool, 5, subset=4)


@pytest.mark.parametrize("scope", ["last", "all"])
def test_memmap_and_dataset_pools(nets, pool, tmp_path, scope):
    net = nets["softmax"]
    expected = classifier_expected_gradnorm(net, pool, scope=scope, batch_size=5)
    mm = np.memmap(tmp_path / "pool.dat", dtype=np.uint8, mode="w+", shape=pool.shape)
    mm[:] = pool
    mm.flush()
    ro = np.memmap(tmp_path / "pool.dat", dtype=np.uint8, mode="r", shape=pool.shape)
    np.testing.assert_allclose(classifier_expected_gradnorm(net, ro, scope=scope, batch_size=5),
                               expected, rtol=1e-6)
    np.testing.assert_allclose(
        classifier_expected_gradnorm(net, ArrayDataset(pool, labelled=True), scope=scope, batch_size=5),
        expected, rtol=1e-6)
    idx, _ = expected_gradnorm(net, ArrayDataset(pool, labelled=True), 2, scope=scope, subset=12,
                               random_state=0)
    assert len(set(idx.tolist())) == 2 and idx.max() < len(pool)


def test_in_skal_learner_and_registry(pool):
    X = _images(30, 3)
    y = np.arange(30) % 2
    learner = ActiveLearner(CNNClassifier(**SEEDED), query_strategy=get_strategy("expected_gradnorm_all"),
                            X_training=X, y_training=y)
    idx, X_query = learner.query(pool, n_instances=4, random_state=0)
    assert len(set(idx.tolist())) == 4
    np.testing.assert_array_equal(X_query, pool[idx])
    scores = classifier_expected_gradnorm(learner, pool, scope="all")
    np.testing.assert_array_equal(idx, np.argsort(-scores)[:4])
    for name in ("expected_gradnorm", "expected_gradnorm_last", "expected_gradnorm_all",
                 "entropy_gradnorm", "entropy_gradnorm_last", "entropy_gradnorm_all"):
        assert strategy_name(STRATEGIES[name]) == name
    idx, _ = get_strategy("entropy_gradnorm_all")(learner, pool, 4)   # the "all" scope
    scores = classifier_entropy_gradnorm(learner, pool, scope="all")
    np.testing.assert_array_equal(idx, np.argsort(-scores)[:4])
    assert strategy_name(functools.partial(expected_gradnorm, scope="all")) == \
        "expected_gradnorm_all"
    assert strategy_name(functools.partial(expected_gradnorm, norm="l2")) == \
        "expected_gradnorm(norm='l2')"


def test_errors(nets, pool):
    with pytest.raises(SkalValueError, match="scope"):
        classifier_expected_gradnorm(nets["softmax"], pool, scope="first")
    with pytest.raises(SkalValueError, match="norm"):
        classifier_entropy_gradnorm(nets["softmax"], pool, norm="fro")

    class Proba:
        def predict_proba(self, X):
            return np.full((len(X), 2), 0.5)

    with pytest.raises(SkalTypeError, match="skal image classifier"):
        expected_gradnorm(Proba(), pool, 2)


def test_in_modal_learner(nets, pool):
    pytest.importorskip("modAL")
    from modAL.models import ActiveLearner as ModalActiveLearner

    X = _images(30, 3)
    y = np.arange(30) % 2
    learner = ModalActiveLearner(estimator=CNNClassifier(**SEEDED),
                                 query_strategy=functools.partial(expected_gradnorm, scope="all"),
                                 X_training=X, y_training=y)
    idx, X_query = learner.query(pool, n_instances=3)
    assert len(set(np.asarray(idx).tolist())) == 3
    scores = classifier_expected_gradnorm(learner, pool, scope="all")
    np.testing.assert_array_equal(idx, np.argsort(-scores)[:3])
