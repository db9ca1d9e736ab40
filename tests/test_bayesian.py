"""MC-dropout BALD, max-entropy and variation ratios (Gal et al. ICML 2017) against loops
over fixed dropout masks, and deep ensembles (Beluch et al. CVPR 2018) built with
``Committee.from_estimator``."""

import itertools

import joblib

import numpy as np
import pytest
import torch
from scipy.special import entr
from torch import nn

from sklearn.base import BaseEstimator, ClassifierMixin

from conftest import TINY
from skal import (ActiveLearner, CNNClassifier, Committee, MultiLabelCNNClassifier,
                  SkalValueError)
from skal.bagging import Bootstrapped
from skal.query import (DeepEnsemble, bald_committee_sampling, bald_sampling, committee_bald,
                        consensus_entropy_sampling, max_disagreement_sampling, max_entropy_mc,
                        mc_dropout_proba, variation_ratios, vote_entropy_sampling)
from skal.query.bayesian import bald, max_entropy, variation_ratio
from skal.query.registry import get_strategy, strategy_name

NET = dict(TINY, max_epochs=3)


@pytest.fixture(scope="module")
def images(tiny_images):
    return tiny_images


def entropy(p):
    return float(sum(-q * np.log(q) for q in p if q > 0))


def bald_loop(samples):
    """``H[mean_t p_t] - mean_t H[p_t]`` for one sample's ``T x C`` probabilities."""
    mean = [sum(samples[t][c] for t in range(len(samples))) / len(samples)
            for c in range(len(samples[0]))]
    return entropy(mean) - sum(entropy(s) for s in samples) / len(samples)


# --------------------------------------------------------------- pure measures
def test_measures_match_loops():
    rng = np.random.default_rng(0)
    samples = rng.dirichlet(np.ones(3), size=(7, 5))          # (n, T, C)
    samples[0] = samples[0, :1]                                # all passes agree
    np.testing.assert_allclose(bald(samples), [bald_loop(s) for s in samples], atol=1e-12)
    assert bald(samples)[0] == pytest.approx(0, abs=1e-12)
    np.testing.assert_allclose(max_entropy(samples),
                               [entropy(s.mean(axis=0)) for s in samples], atol=1e-12)
    votes = samples.argmax(axis=2)
    expected = [1 - max(np.sum(v == c) for c in range(3)) / 5 for v in votes]
    np.testing.assert_allclose(variation_ratio(samples), expected, atol=1e-12)


def test_multilabel_measures_are_per_label_bernoulli_sums():
    rng = np.random.default_rng(1)
    samples = rng.random((6, 5, 4))                            # (n, T, L)
    per_label = [sum(bald_loop(np.stack([1 - s[:, k], s[:, k]], 1)) for k in range(4))
                 for s in samples]
    np.testing.assert_allclose(bald(samples, multilabel=True), per_label, atol=1e-12)
    votes = samples >= 0.3
    expected = [sum(1 - max(v[:, k].sum(), 5 - v[:, k].sum()) / 5 for k in range(4))
                for v in votes]
    np.testing.assert_allclose(variation_ratio(samples, True, threshold=0.3), expected,
                               atol=1e-12)


# ------------------------------------------------------------- MC passes
class InputDropout(nn.Module):
    """BatchNorm and dropout on 3 input features, then a linear layer: 8 possible
    masks."""

    def __init__(self, n_outputs=2, p=0.5):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.drop = nn.Dropout(p)
        self.fc = nn.Linear(3, n_outputs)

    def forward(self, x):
        return self.fc(self.drop(self.bn(x.flatten(1))))


def fitted_input_dropout(p=0.5):
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5]) > 0).astype(int)
    model = CNNClassifier(InputDropout, module__p=p, max_epochs=30, min_steps=None,
                          lr=0.1, random_state=0).fit(X, y)
    return model, X[:10]


def mask_outputs(model, X, p):
    """Probabilities of each of the 8 fixed dropout masks, and each mask's probability."""
    W = model.final_layer_.weight.detach().double().numpy()
    b = model.final_layer_.bias.detach().double().numpy()
    module = model.module_.eval()
    with torch.no_grad():                    # BatchNorm with its running statistics
        normalised = module.bn(torch.from_numpy(X)).double().numpy()
    outputs, weights = [], []
    for mask in itertools.product([0, 1], repeat=3):
        m = np.array(mask, dtype=float)
        z = (normalised * m / (1 - p)) @ W.T + b
        e = np.exp(z - z.max(axis=1, keepdims=True))
        outputs.append(e / e.sum(axis=1, keepdims=True))
        weights.append((1 - p) ** m.sum() * p ** (3 - m.sum()))
    return np.stack(outputs, 1), np.array(weights)           # (n, 8, C), (8,)


def test_mc_passes_apply_fixed_binary_masks_at_their_rates():
    p = 0.5
    model, X = fitted_input_dropout(p)
    outputs, weights = mask_outputs(model, X, p)
    samples = mc_dropout_proba(model, X, n_samples=400, random_state=0)
    # every pass is one of the 8 masks applied after eval-mode BatchNorm (train-mode
    # BatchNorm would normalise with the stacked batch's statistics and match none);
    # float32 forward vs float64 reference: 1e-5
    distance = np.abs(samples[:, :, None, :] - outputs[:, None, :, :]).max(axis=3)
    assert distance.min(axis=2).max() < 1e-5
    # masks drawn at their rate: the input never varies, so mask k's frequency over
    # the 400 passes of each sample whose 8 mask outputs are distinct estimate
    # weights[k] = 1/8; with >= 8 such samples (>= 3200 passes) the standard error is
    # below 0.006, so 0.025 is ~4 sigma
    distinct = [i for i in range(len(X))
                if np.unique(np.round(outputs[i], 6), axis=0).shape[0] == 8]
    assert len(distinct) >= 8
    which = distance[distinct].argmin(axis=2).ravel()
    np.testing.assert_allclose(np.bincount(which, minlength=8) / len(which), weights,
                               atol=0.025)


def test_bald_converges_to_the_exact_expectation_over_masks():
    p = 0.5
    model, X = fitted_input_dropout(p)
    outputs, weights = mask_outputs(model, X, p)
    mean = (outputs * weights[None, :, None]).sum(axis=1)
    exact = entr(mean).sum(1) - (entr(outputs).sum(2) * weights[None]).sum(1)
    estimate = np.empty(len(X))
    idx, scores = bald_sampling(model, X, n_instances=len(X), n_samples=4000, random_state=0)
    estimate[idx] = scores
    # Monte Carlo with T = 4000: the standard error of a mean of entropies (<= ln 2) is
    # below 0.011; 0.04 allows ~4 sigma
    np.testing.assert_allclose(estimate, exact, atol=0.04)


def test_zero_dropout_is_rejected(images):
    X, y, _ = images
    model = CNNClassifier(random_state=0, module__dropout=0.0, **NET).fit(X[:24], y[:24])
    with pytest.raises(SkalValueError, match="p=0"):
        mc_dropout_proba(model, X[24:], n_samples=3, random_state=0)


def test_same_seed_same_masks_and_no_global_side_effects(images):
    X, y, _ = images
    model = CNNClassifier(random_state=0, module__dropout=0.5, **NET).fit(X[:24], y[:24])
    before = model.predict_proba(X[24:])
    state = torch.get_rng_state()
    a = mc_dropout_proba(model, X[24:], n_samples=5, random_state=1, batch_size=7)
    b = mc_dropout_proba(model, X[24:], n_samples=5, random_state=1, batch_size=7)
    c = mc_dropout_proba(model, X[24:], n_samples=5, random_state=2, batch_size=7)
    assert torch.equal(state, torch.get_rng_state())
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert np.ptp(a, axis=1).max() > 1e-3                 # the passes do differ
    np.testing.assert_array_equal(model.predict_proba(X[24:]), before)  # hooks removed


@pytest.mark.parametrize("strategy", [bald_sampling, max_entropy_mc, variation_ratios])
def test_strategies_through_the_learner(images, strategy):
    X, y, _ = images
    learner = ActiveLearner(CNNClassifier(random_state=0, module__dropout=0.5, **NET),
                            strategy, X_training=X[:24], y_training=y[:24])
    i1, _ = learner.query(X[24:], n_instances=5, random_state=0, n_samples=6)
    i2, _ = learner.query(X[24:], n_instances=5, random_state=0, n_samples=6)
    np.testing.assert_array_equal(i1, i2)
    assert len(np.unique(i1)) == 5 and i1.min() >= 0 and i1.max() < 24


def test_multilabel_bald_is_summed_per_label(images):
    X, _, Y = images
    model = MultiLabelCNNClassifier(random_state=0, module__dropout=0.5, **NET).fit(
        X[:24], Y[:24])
    samples = mc_dropout_proba(model, X[24:], n_samples=6, random_state=0)
    assert samples.shape == (24, 6, 3)
    idx, scores = bald_sampling(model, X[24:], n_instances=24, n_samples=6, random_state=0)
    expected = [sum(bald_loop(np.stack([1 - s[:, k], s[:, k]], 1)) for k in range(3))
                for s in samples]
    np.testing.assert_allclose(scores, np.asarray(expected)[idx], atol=1e-9)


class NoDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_clear_errors():
    rng = np.random.RandomState(0)
    X = rng.randn(20, 3).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    plain = CNNClassifier(NoDropout, max_epochs=2, min_steps=None).fit(X, y)
    with pytest.raises(SkalValueError, match="no dropout layer"):
        bald_sampling(plain, X, n_instances=2)
    model, _ = fitted_input_dropout()
    with pytest.raises(SkalValueError, match="n_samples"):
        bald_sampling(model, X, n_instances=2, n_samples=1)


def test_registered():
    assert get_strategy("bald") is bald_sampling


# ------------------------------------------------------------- deep ensembles


@pytest.fixture(scope="module")
def ensemble(images):
    X, y, _ = images
    return Committee.from_estimator(CNNClassifier(**NET), n_members=3, random_state=0,
                                    X_training=X[:24], y_training=y[:24])


def test_from_estimator_builds_seeded_members(images, ensemble):
    X, _, _ = images
    assert isinstance(ensemble, Committee) and len(ensemble) == 3
    seeds = [m.estimator.random_state for m in ensemble.learner_list]
    assert seeds == [0, 1, 2]
    proba = ensemble.vote_proba(X[24:])                    # (n, members, C)
    assert not np.allclose(proba[:, 0], proba[:, 1])       # different initialisations
    first = ensemble.learner_list[0].predict_proba(X[24:])
    np.testing.assert_array_equal(first, CNNClassifier(random_state=0, **NET).fit(
        X[:24], images[1][:24]).predict_proba(X[24:]))


@pytest.mark.parametrize("strategy", [vote_entropy_sampling, consensus_entropy_sampling,
                                      max_disagreement_sampling, bald_committee_sampling])
def test_committee_strategies_run_on_the_ensemble(images, ensemble, strategy):
    X, _, _ = images
    ensemble.set_params(query_strategy=strategy)
    idx, _ = ensemble.query(X[24:], n_instances=4, random_state=0)
    assert len(np.unique(idx)) == 4 and idx.min() >= 0 and idx.max() < 24


def test_committee_bald_matches_a_loop_over_members(images, ensemble):
    X, _, _ = images
    members = [m.predict_proba(X[24:]) for m in ensemble.learner_list]
    expected = [bald_loop([member[i] for member in members]) for i in range(24)]
    np.testing.assert_allclose(committee_bald(ensemble, X[24:], batch_size=5), expected,
                               atol=1e-9)


def test_bootstrap_bagging_resamples_each_member(images):
    X, y, _ = images
    build = lambda: Committee.from_estimator(  # noqa: E731
        CNNClassifier(**NET), n_members=2, bootstrap=True, random_state=0,
        X_training=X[:24], y_training=y[:24])
    a, b = build(), build()
    drawn = [m.estimator_.sample_indices_ for m in a.learner_list]
    for indices in drawn:
        assert isinstance(a.learner_list[0].estimator_, Bootstrapped)
        assert len(indices) == 24 and len(np.unique(indices)) < 24      # with replacement
        np.testing.assert_array_equal(np.bincount(y[:24][indices], minlength=3),
                                      np.bincount(y[:24], minlength=3))  # stratified
    assert not np.array_equal(drawn[0], drawn[1])
    np.testing.assert_array_equal(drawn[0], b.learner_list[0].estimator_.sample_indices_)
    a.teach(X[24:30], y[24:30])
    assert len(a.learner_list[0].estimator_.sample_indices_) == 30
    assert a.predict_proba(X[30:]).shape == (18, 3)


@pytest.mark.parametrize("backend", [pytest.param("loky", marks=pytest.mark.slow), "threading"])
def test_parallel_training_gives_the_sequential_members(images, backend):
    X, y, _ = images
    kw = dict(n_members=2, random_state=5, X_training=X[:24], y_training=y[:24])
    serial = Committee.from_estimator(CNNClassifier(**NET), **kw)
    with joblib.parallel_backend(backend):
        parallel = Committee.from_estimator(CNNClassifier(**NET), n_jobs=2, **kw)
        parallel.teach(X[24:28], y[24:28])
    serial.teach(X[24:28], y[24:28])
    np.testing.assert_array_equal(serial.vote_proba(X[24:]), parallel.vote_proba(X[24:]))
    assert all(len(m.y_training_) == 28 for m in parallel.learner_list)


class Unseeded(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self


def test_from_estimator_errors():
    with pytest.raises(SkalValueError, match="n_members"):
        Committee.from_estimator(CNNClassifier(**NET), n_members=1)
    with pytest.raises(SkalValueError, match="random_state"):
        Committee.from_estimator(Unseeded(), n_members=3)


# --------------------------------------------- deep ensemble as a strategy


def test_deep_ensemble_strategy_scores_its_members_votes(images):
    X, y, _ = images
    strategy = DeepEnsemble(n_members=3, random_state=4)
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET), strategy,
                            X_training=X[:24], y_training=y[:24])
    idx, _ = learner.query(X[24:], n_instances=5)
    members = strategy.members_
    assert members[0] is learner.estimator_ and len(members) == 3
    assert [m.random_state for m in members[1:]] == [5, 6]
    votes = np.stack([m.predict(X[24:]) for m in members], axis=1)
    expected = [entropy([np.mean(v == c) for c in range(3)]) for v in votes]
    np.testing.assert_allclose(strategy.last_scores_, expected, atol=1e-12)
    assert len(np.unique(idx)) == 5 and idx.max() < 24
    again = DeepEnsemble(n_members=3, random_state=4)
    learner.set_params(query_strategy=again)
    np.testing.assert_array_equal(learner.query(X[24:], n_instances=5)[0], idx)


def test_deep_ensemble_registered_by_measure():
    assert get_strategy("ensemble_bald").measure == "bald"
    assert strategy_name(get_strategy("ensemble_bald")) == "ensemble_bald"
    assert strategy_name(get_strategy("ensemble_vote_entropy")) == "ensemble_vote_entropy"
    with pytest.raises(SkalValueError, match="measure"):
        DeepEnsemble(measure="votes")(None, None)


@pytest.mark.parametrize("start", ["scratch", "pretrained"])
def test_features_once_path_draws_the_masks_of_stacked_copies(images, start):
    """skal's networks (dropout only before ``fc``) compute the features once and mask
    only the head's input: the same masks, in the same order, as one forward pass over
    ``T`` stacked copies of the batch with every dropout layer switched on."""
    from skal.nets.pretrained import small_cnn_encoder
    from skal.query.bayesian import mc_dropout

    X, y, _ = images
    extra = {"pretrained": small_cnn_encoder(widths=(8,))} if start == "pretrained" else {}
    model = CNNClassifier(random_state=0, module__dropout=0.5, **NET, **extra).fit(X[:24], y[:24])
    pool, T = X[24:34], 5
    fast = mc_dropout_proba(model, pool, n_samples=T, random_state=3, batch_size=len(pool))
    generator = torch.Generator().manual_seed(3)
    with mc_dropout(model.module_, generator):
        stacked = model.predict_proba(np.concatenate([pool] * T))   # one batch of T * n
    reference = stacked.reshape(T, len(pool), -1).transpose(1, 0, 2)
    # same masks; the convolutions see batches of n vs T * n rows: float32 rounding
    np.testing.assert_allclose(fast, reference, atol=1e-5)
    assert np.ptp(fast, axis=1).max() > 1e-3        # the passes really differ
