"""BADGE (Ash et al. ICLR 2020) and core-set (Sener & Savarese ICLR 2018), checked
against brute-force versions that build the full embeddings and distance matrices."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY, ArrayDataset
from skal import ActiveLearner, CNNClassifier, MultiLabelCNNClassifier
from skal.query import badge_sampling, coreset_sampling
from skal.query.diversity import (gradient_embedding_factors, k_center_greedy,
                                  kmeans_pp_rank_one)
from skal.query.registry import get_strategy, strategy_name
from skal.utils.validation import to_image_tensor

SEEDED = dict(TINY, random_state=0)


def _images(n, seed, size=16):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 1, size, size)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data():
    X = _images(40, 0)
    y = np.arange(40) % 3
    return X, y, _images(30, 1)


@pytest.fixture(scope="module")
def learner(data):
    X, y, _ = data
    learner = ActiveLearner(CNNClassifier(**SEEDED), X_training=X, y_training=y)
    learner.predict(X[:1])
    return learner


# ----------------------------------------------------------- brute-force references
def _brute_kmeans_pp(G, k, seed):
    """D^2 seeding on explicit embeddings, drawing from the same generator."""
    rng = np.random.default_rng(seed)
    D = ((G[:, None, :] - G[None, :, :]) ** 2).sum(-1)          # full n x n, small n
    picked = [int(np.argmax((G ** 2).sum(1)))]
    for _ in range(1, k):
        d2 = D[:, picked].min(axis=1)
        d2[picked] = 0.0
        picked.append(int(rng.choice(len(G), p=d2 / d2.sum())))
    return picked


def _brute_k_center(E, k, centres):
    D = ((E[:, None, :] - centres[None, :, :]) ** 2).sum(-1).min(axis=1)
    picked = []
    for _ in range(k):
        j = int(np.argmax(np.where(np.isin(np.arange(len(E)), picked), -1, D)))
        picked.append(j)
        D = np.minimum(D, ((E - E[j]) ** 2).sum(1))
    return picked


# ------------------------------------------------------------------------- BADGE
def test_gradient_embeddings_are_the_final_layer_gradient(learner, data):
    """a (x) h equals autograd's gradient of CE at the predicted class w.r.t. W."""
    _, _, pool = data
    A, H = gradient_embedding_factors(learner, pool[:5])
    net = learner.estimator_
    module, layer = net.module_.eval(), net.final_layer_
    for i in range(5):
        z = module(to_image_tensor(pool[i:i + 1]))
        loss = nn.functional.cross_entropy(z, z.argmax(1))
        (gW,) = torch.autograd.grad(loss, layer.weight)
        np.testing.assert_allclose(np.outer(A[i], H[i]), gW.double().numpy(), rtol=1e-5,
                                   atol=1e-7)
    A_b, H_b = gradient_embedding_factors(learner, pool[:5], bias=True)
    np.testing.assert_allclose(H_b[:, -1], 1.0)


def test_kmeans_pp_rank_one_equals_brute_force():
    rng = np.random.default_rng(0)
    A, H = rng.normal(size=(40, 3)), rng.normal(size=(40, 6))
    G = np.einsum("ic,id->icd", A, H).reshape(40, -1)
    for seed in range(3):
        idx, d2 = kmeans_pp_rank_one(A, H, 8, random_state=seed)
        assert idx.tolist() == _brute_kmeans_pp(G, 8, seed)
        assert d2[0] == pytest.approx((G[idx[0]] ** 2).sum())


def test_kmeans_pp_duplicates_and_full_pool():
    A = np.ones((6, 2))
    H = np.ones((6, 3))                   # every embedding identical: all distances 0
    idx, _ = kmeans_pp_rank_one(A, H, 6, random_state=0)
    assert sorted(idx.tolist()) == list(range(6))


def test_badge_sampling(learner, data):
    _, _, pool = data
    idx, d2 = badge_sampling(learner, pool, 6, random_state=3)
    assert len(idx) == 6 and len(set(idx.tolist())) == 6
    assert idx.min() >= 0 and idx.max() < len(pool)
    np.testing.assert_array_equal(idx, badge_sampling(learner, pool, 6, random_state=3)[0])
    A, H = gradient_embedding_factors(learner, pool)
    G = np.einsum("ic,id->icd", A, H).reshape(len(pool), -1)
    assert idx.tolist() == _brute_kmeans_pp(G, 6, 3)
    assert len({tuple(badge_sampling(learner, pool, 6, random_state=s)[0]) for s in range(5)}) > 1
    # all of the pool: every index once
    full, _ = badge_sampling(learner, pool, len(pool), random_state=0)
    assert sorted(full.tolist()) == list(range(len(pool)))


def test_badge_multilabel(data):
    X, _, pool = data
    Y = (np.random.default_rng(2).random((len(X), 4)) < 0.4).astype(int)
    net = MultiLabelCNNClassifier(**SEEDED).fit(X, Y)
    A, H = gradient_embedding_factors(net, pool[:4])
    p = net.predict_proba(pool[:4])
    np.testing.assert_allclose(A, p - (p >= 0.5), rtol=1e-5, atol=1e-7)
    idx, _ = badge_sampling(net, pool, 5, random_state=0)
    assert len(set(idx.tolist())) == 5


def test_badge_one_vs_rest(data):
    """Fitted one-vs-rest on 1-d labels, the pseudo-label is the predicted class, as
    the model is trained: one-hot for K > 2 classes, one 0/1 output for two."""
    X, y, pool = data
    net = MultiLabelCNNClassifier(**{**SEEDED, "max_epochs": 5}).fit(
        X, np.array(["a", "b", "c"])[y])
    A, _ = gradient_embedding_factors(net, pool[:6])
    z = net.decision_function(pool[:6])
    onehot = np.eye(3)[z.argmax(axis=1)]
    assert ((z >= 0) != onehot).any()       # "z >= 0" would not be the predicted class
    np.testing.assert_allclose(A, 1 / (1 + np.exp(-z)) - onehot, rtol=1e-5, atol=1e-7)
    binary = MultiLabelCNNClassifier(**SEEDED).fit(X, np.arange(len(X)) % 2)
    A, _ = gradient_embedding_factors(binary, pool[:6])
    p = binary.predict_proba(pool[:6])[:, 1:]
    np.testing.assert_allclose(A, p - (p >= 0.5), rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------- core-set
def test_k_center_greedy_equals_brute_force():
    rng = np.random.default_rng(1)
    E, centres = rng.normal(size=(50, 4)), rng.normal(size=(7, 4))
    idx, radii = k_center_greedy(E, 10, centres)
    assert idx.tolist() == _brute_k_center(E, 10, centres)
    assert np.all(np.diff(radii) <= 1e-12)              # radii shrink
    idx, _ = k_center_greedy(E, 5, None, random_state=0)
    assert idx[0] == np.random.default_rng(0).integers(50)
    assert len(set(idx.tolist())) == 5


def test_coreset_uses_the_labelled_set(learner, data):
    X, _, pool = data
    # the pool holds copies of labelled images: they are already covered (distance 0)
    mixed = np.concatenate([X[:5], pool])
    idx, radii = coreset_sampling(learner, mixed, 8)
    assert len(set(idx.tolist())) == 8 and idx.min() >= 5
    E = learner.estimator_.embed(mixed)
    L = learner.estimator_.embed(learner.X_training_)
    assert idx.tolist() == _brute_k_center(E.astype(np.float64), 8, L.astype(np.float64))
    same, _ = coreset_sampling(learner.estimator_, mixed, 8, X_labelled=X)
    np.testing.assert_array_equal(idx, same)
    everything, _ = coreset_sampling(learner, pool, len(pool))
    assert sorted(everything.tolist()) == list(range(len(pool)))


def test_memmap_dataset_pools_and_learner_query(learner, data, tmp_path):
    _, _, pool = data
    mm = np.memmap(tmp_path / "pool.dat", dtype=np.uint8, mode="w+", shape=pool.shape)
    mm[:] = pool
    mm.flush()
    mm = np.memmap(tmp_path / "pool.dat", dtype=np.uint8, mode="r", shape=pool.shape)
    for strategy, kw in ((badge_sampling, {"random_state": 1}), (coreset_sampling, {})):
        expected, _ = strategy(learner, pool, 4, **kw)
        np.testing.assert_array_equal(strategy(learner, mm, 4, batch_size=7, **kw)[0], expected)
        np.testing.assert_array_equal(
            strategy(learner, ArrayDataset(pool), 4, batch_size=7, **kw)[0], expected)
    for name in ("badge", "coreset"):
        strategy = get_strategy(name)
        assert strategy_name(strategy) == name
        learner.query_strategy = strategy
        try:
            idx, X_query = learner.query(pool, n_instances=3, random_state=0)
        finally:
            learner.query_strategy = badge_sampling
        assert len(set(idx.tolist())) == 3
        np.testing.assert_array_equal(X_query, pool[idx])


def test_in_modal_learner(data):
    pytest.importorskip("modAL")
    from modAL.models import ActiveLearner as ModalActiveLearner

    X, y, pool = data
    for strategy in (badge_sampling, coreset_sampling):
        learner = ModalActiveLearner(estimator=CNNClassifier(**SEEDED), query_strategy=strategy,
                                     X_training=X, y_training=y)
        idx, _ = learner.query(pool, n_instances=4)
        assert len(set(np.asarray(idx).tolist())) == 4
    # core-set in modAL reads X_training
    expected, _ = coreset_sampling(learner.estimator, pool, 4, X_labelled=X)
    np.testing.assert_array_equal(idx, expected)


def test_badge_pseudo_labels_use_the_models_threshold(data):
    """Bug fix (issue 11): a sigmoid head's predicted labels are taken at the model's
    ``threshold``, as its ``predict`` decides, not at ``p >= 0.5``."""
    X, y, pool = data
    Y = (np.random.default_rng(2).random((len(X), 4)) < 0.4).astype(int)
    net = MultiLabelCNNClassifier(**SEEDED).fit(X, Y)
    p = net.predict_proba(pool[:8])
    net.set_params(threshold=float(np.median(p)))
    decided = net.predict(pool[:8])
    assert not np.array_equal(decided, p >= 0.5)        # the threshold matters here
    A, _ = gradient_embedding_factors(net, pool[:8])
    np.testing.assert_allclose(A, p - decided, rtol=1e-5, atol=1e-7)

    binary = MultiLabelCNNClassifier(**SEEDED).fit(X, np.arange(len(X)) % 2)
    p = binary.predict_proba(pool)[:, 1:]
    binary.set_params(threshold=float(np.median(p)))
    decided = (binary.predict(pool) == 1)[:, None]
    assert not np.array_equal(decided, p >= 0.5)
    A, _ = gradient_embedding_factors(binary, pool)
    np.testing.assert_allclose(A, p - decided, rtol=1e-5, atol=1e-7)
