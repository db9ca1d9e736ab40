"""TDGF (Chen et al., IEEE JBHI 2025) against explicit autograd gradients, its proxy and
history models, and multi-label chest X-ray active learning end to end."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone

from conftest import TINY
from skal import ActiveLearner, CNNClassifier, MultiLabelCNNClassifier, SkalValueError
from skal.query import TDGF, entropy_sampling, tdgf_scores
from skal.query.tdgf import derive_proxy

NET = dict(TINY, max_epochs=6)


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(0)
    X = rng.rand(60, 1, 16, 16).astype(np.float32)
    y = (X[:, 0, :8].mean(axis=(1, 2)) > X[:, 0, 8:].mean(axis=(1, 2))).astype(int)
    y[::7] = 2
    Y = np.stack([y == 0, y == 2, X[:, 0].mean(axis=(1, 2)) > 0.5], axis=1).astype(int)
    return X, y, Y


def final_layer_gradient(model, x, target, multilabel):
    """Explicit autograd gradient of one sample's loss w.r.t. the final layer [W, b]."""
    module = model.module_
    module.eval()
    layer = model.final_layer_
    z = module(torch.from_numpy(x[None]))
    if multilabel:
        loss = F.binary_cross_entropy_with_logits(
            z, torch.tensor(target[None], dtype=torch.float32), reduction="sum")
    else:
        loss = F.cross_entropy(z, torch.tensor([int(target)]))
    if layer.bias is None:
        g_w, = torch.autograd.grad(loss, [layer.weight])
        return g_w.flatten().double()
    g_w, g_b = torch.autograd.grad(loss, [layer.weight, layer.bias])
    return torch.cat([g_w.flatten(), g_b]).double()


@pytest.mark.parametrize("multilabel", [False, True])
def test_tdgf_scores_equal_autograd_gradient_difference(images, multilabel):
    X, y, Y = images
    cls = MultiLabelCNNClassifier if multilabel else CNNClassifier
    target = Y if multilabel else y
    proxy = cls(random_state=0, **NET).fit(X, target)
    history = cls(random_state=1, **NET).fit(X, target)
    rng = np.random.RandomState(1)
    y_hat = (rng.rand(*Y.shape) > 0.5).astype(int) if multilabel else rng.randint(0, 3, len(X))
    scores = tdgf_scores(proxy, history, X, y_hat, batch_size=16)
    reference = np.array([
        (final_layer_gradient(proxy, X[i], y_hat[i], multilabel)
         - final_layer_gradient(history, X[i], y_hat[i], multilabel)).norm().item()
        for i in range(len(X))])
    np.testing.assert_allclose(scores, reference, rtol=1e-5)


def test_tdgf_one_vs_rest_binary_pseudo_labels(images):
    """A MultiLabelCNNClassifier fitted on 1-d labels: one sigmoid output, and the
    target's predicted class binarized (one column) as the pseudo-label."""
    X, y, _ = images
    labels = np.array(["left", "right"])[y % 2]
    strategy = TDGF(random_state=0)
    learner = ActiveLearner(MultiLabelCNNClassifier(random_state=0, **NET), strategy,
                            X_training=X[:30], y_training=labels[:30])
    pool = X[30:]
    idx, _ = learner.query(pool, n_instances=4)
    target = learner.estimator_
    assert strategy.proxy_.n_outputs_ == target.n_outputs_ == 1
    predicted = (target.predict(pool) == "right").astype(int)[:, None]
    np.testing.assert_allclose(
        strategy.last_scores_,
        tdgf_scores(strategy.proxy_, strategy.history_, pool, predicted), rtol=1e-12)
    np.testing.assert_array_equal(idx, np.argsort(-strategy.last_scores_)[:4])


def test_tdgf_scores_reject_mismatched_models(images):
    X, y, Y = images
    single = CNNClassifier(random_state=0, **NET).fit(X, y)
    multi = MultiLabelCNNClassifier(random_state=0, **NET).fit(X, Y[:, :2])
    with pytest.raises(SkalValueError, match="outputs"):
        tdgf_scores(single, multi, X, np.zeros(len(X), dtype=int))
    with pytest.raises(SkalValueError, match="shape"):
        tdgf_scores(single, single, X, np.zeros(3, dtype=int))


def test_history_snapshot_differs_from_final_proxy(images):
    X, y, _ = images
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET),
                            TDGF(history="lag", lag=2, random_state=0),
                            X_training=X[:30], y_training=y[:30])
    learner.query(X[30:], n_instances=3)
    strategy = learner.query_strategy
    proxy_w = strategy.proxy_.final_layer_.weight.detach()
    history_w = strategy.history_.final_layer_.weight.detach()
    assert not torch.allclose(proxy_w, history_w)
    # the snapshot is `lag` epochs behind the final proxy
    assert len(strategy.proxy_.history) - len(strategy.history_.history) == 2
    assert np.all(strategy.last_scores_ >= 0) and strategy.last_scores_.max() > 0


def test_previous_round_history_uses_last_proxy(images):
    X, y, _ = images
    strategy = TDGF(history="previous_round", random_state=0)
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET), strategy,
                            X_training=X[:30], y_training=y[:30])
    idx, X_q = learner.query(X[30:], n_instances=3)
    first_proxy = strategy.proxy_
    learner.teach(X_q, y[30:][idx])
    learner.query(X[30:], n_instances=3)
    assert strategy.history_ is first_proxy
    assert strategy.proxy_ is not first_proxy


def test_tdgf_is_deterministic_and_clonable(images):
    X, y, _ = images

    def run():
        learner = ActiveLearner(CNNClassifier(random_state=0, **NET), TDGF(random_state=3),
                                X_training=X[:30], y_training=y[:30])
        return learner.query(X[30:], n_instances=5, return_metrics=True)

    (i1, _, s1), (i2, _, s2) = run(), run()
    assert np.array_equal(i1, i2) and np.allclose(s1, s2)
    strategy = TDGF(lag=2, subset=10, history="previous_round")
    assert clone(strategy).get_params() == strategy.get_params()


def test_subset_scores_only_a_subset(images):
    X, y, _ = images
    strategy = TDGF(subset=8, random_state=0)
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET), strategy,
                            X_training=X[:30], y_training=y[:30])
    idx, _ = learner.query(X[30:], n_instances=4)
    assert len(strategy.last_scores_) == 8
    assert len(np.unique(idx)) == 4 and idx.max() < 30


def test_derived_proxy_is_cheaper():
    target = CNNClassifier(max_epochs=30, min_steps=200, module__widths=(16, 32))
    proxy = derive_proxy(target)
    assert proxy.max_epochs == 15 and proxy.min_steps == 100
    assert proxy.module__widths == (8, 16)
    assert target.max_epochs == 30                      # the target is untouched


def test_explicit_proxy_with_wrong_outputs_is_rejected(images):
    X, y, _ = images
    proxy = CNNClassifier(classes=[0, 1, 2, 3], **NET)
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET), TDGF(proxy=proxy),
                            X_training=X[:30], y_training=y[:30])
    with pytest.raises(SkalValueError, match="outputs"):
        learner.query(X[30:], n_instances=2)


def test_bad_parameters(images):
    X, y, _ = images
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET), TDGF(history="lag", lag=10),
                            X_training=X[:30], y_training=y[:30])
    with pytest.raises(SkalValueError, match="lag"):
        learner.query(X[30:], n_instances=2)
    learner.set_params(query_strategy=TDGF(history="yesterday"))
    with pytest.raises(SkalValueError, match="history"):
        learner.query(X[30:], n_instances=2)


@pytest.mark.parametrize("strategy", [entropy_sampling, TDGF(random_state=0)])
def test_multilabel_query_teach_end_to_end(images, strategy):
    X, _, Y = images
    learner = ActiveLearner(MultiLabelCNNClassifier(random_state=0, **NET), strategy,
                            X_training=X[:20], y_training=Y[:20])
    pool = np.arange(20, 60)
    for _ in range(2):
        idx, X_q = learner.query(X[pool], n_instances=5)
        learner.teach(X_q, Y[pool[idx]])
        pool = np.delete(pool, idx)
    assert learner.y_training_.shape == (30, 3)
    assert learner.predict_proba(X).shape == (60, 3)


def test_multilabel_simulation_reports_macro_auroc(images):
    from skal.simulate import simulate

    X, _, Y = images
    result = simulate(MultiLabelCNNClassifier(**NET), ["random", "tdgf"],
                      X[:40], Y[:40], X[40:], Y[40:], n_initial=10, batch_size=5,
                      n_rounds=1, seeds=1, progress=False)
    assert result.metric == "auroc"
    assert np.isfinite(result.scores["auroc"]).all()


# ------------------------------------------------- the historical proxy (issue 14)
def test_fraction_history_is_a_real_stretch_of_training(images):
    X, y, _ = images
    strategy = TDGF(history="fraction", history_fraction=0.5, random_state=0)
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET), strategy,
                            X_training=X[:30], y_training=y[:30])
    learner.query(X[30:], n_instances=3)
    epochs = len(strategy.proxy_.history)                 # derived proxy: 3 epochs
    assert epochs == 3
    assert len(strategy.history_.history) == round(0.5 * epochs) == 2
    # the final proxy is the snapshot trained further, not another model
    assert not torch.allclose(strategy.proxy_.final_layer_.weight,
                              strategy.history_.final_layer_.weight)


def test_default_history_is_the_previous_rounds_proxy(images):
    X, y, _ = images
    strategy = TDGF(random_state=0)
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET), strategy,
                            X_training=X[:30], y_training=y[:30])
    idx, X_q = learner.query(X[30:], n_instances=3)
    # first query: no previous proxy, the half-way snapshot stands in
    assert len(strategy.history_.history) < len(strategy.proxy_.history)
    first = strategy.proxy_
    learner.teach(X_q, y[30:][idx])
    learner.query(X[30:], n_instances=3)
    assert strategy.history_ is first


def test_lag_without_history_still_works_but_warns(images):
    X, y, _ = images
    strategy = TDGF(lag=2, random_state=0)
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET), strategy,
                            X_training=X[:30], y_training=y[:30])
    with pytest.warns(FutureWarning, match="lag"):
        learner.query(X[30:], n_instances=3)
    assert len(strategy.proxy_.history) - len(strategy.history_.history) == 2


@pytest.mark.parametrize("fraction", [0, 1, 1.5, True])
def test_bad_history_fraction(images, fraction):
    X, y, _ = images
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET),
                            TDGF(history="fraction", history_fraction=fraction),
                            X_training=X[:30], y_training=y[:30])
    with pytest.raises(SkalValueError, match="history_fraction"):
        learner.query(X[30:], n_instances=2)


def test_multilabel_pseudo_labels_use_the_targets_threshold(images):
    X, _, Y = images
    strategy = TDGF(random_state=0)
    net = MultiLabelCNNClassifier(random_state=0, threshold=0.7, **NET)
    learner = ActiveLearner(net, strategy, X_training=X[:30], y_training=Y[:30])
    pool = X[30:]
    learner.query(pool, n_instances=3)
    proba = learner.estimator_.predict_proba(pool)
    at_threshold = (proba >= 0.7).astype(int)
    assert not np.array_equal(at_threshold, (proba >= 0.5).astype(int))  # it matters here
    np.testing.assert_allclose(
        strategy.last_scores_,
        tdgf_scores(strategy.proxy_, strategy.history_, pool, at_threshold), rtol=1e-12)


def test_one_vs_rest_pseudo_labels_use_the_targets_threshold(images):
    """Bug fix (issue 11): a two-class one-vs-rest target's pseudo-label is its predicted
    class at its ``threshold`` (``predict``), not the arg-max of ``predict_proba``."""
    X, y, _ = images
    strategy = TDGF(random_state=0)
    learner = ActiveLearner(MultiLabelCNNClassifier(random_state=0, **NET), strategy,
                            X_training=X[:30], y_training=y[:30] % 2)
    pool = X[30:]
    learner.predict(pool[:1])
    target = learner.estimator_
    p = target.predict_proba(pool)[:, 1]
    target.set_params(threshold=float(np.median(p)))
    learner.query(pool, n_instances=3)
    predicted = (target.predict(pool) == 1).astype(int)[:, None]
    assert not np.array_equal(predicted[:, 0], p.round())       # the threshold matters here
    np.testing.assert_allclose(
        strategy.last_scores_,
        tdgf_scores(strategy.proxy_, strategy.history_, pool, predicted), rtol=1e-12)


class NoBiasHead(torch.nn.Module):
    def __init__(self, in_channels=1, n_outputs=2):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, n_outputs, bias=False)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_no_bias_term_without_a_bias(images):
    X, y, _ = images
    kw = dict(max_epochs=3, min_steps=None, augment=None)
    proxy = CNNClassifier(NoBiasHead, random_state=0, **kw).fit(X, y)
    history = CNNClassifier(NoBiasHead, random_state=1, **kw).fit(X, y)
    y_hat = np.random.RandomState(2).randint(0, 3, len(X))
    reference = np.array([
        (final_layer_gradient(proxy, X[i], y_hat[i], False)
         - final_layer_gradient(history, X[i], y_hat[i], False)).norm().item()
        for i in range(len(X))])
    # closed form vs autograd in float32 / float64: 1e-5 relative
    np.testing.assert_allclose(tdgf_scores(proxy, history, X, y_hat), reference, rtol=1e-5)
