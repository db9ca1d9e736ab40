"""Committee: votes, consensus, disagreement measures and all-or-nothing teaching."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from conftest import TINY
from skal import (ActiveLearner, CNNClassifier, Committee, MultiLabelCNNClassifier,
                  NotFittedError, SkalTypeError, SkalValueError)
from skal.data import load_digits_images
from skal.query import (KL_max_disagreement, consensus_entropy, consensus_entropy_sampling,
                        max_disagreement_sampling, vote_entropy, vote_entropy_sampling)


@pytest.fixture(scope="module")
def flat_digits():
    """Flattened digits (n, 64) and 3 classes."""
    X, y = load_digits_images()
    return X[:200].reshape(200, -1), y[:200] % 3


@pytest.fixture(scope="module")
def lr_committee(flat_digits):
    X, y = flat_digits
    members = [ActiveLearner(LogisticRegression(C=c, max_iter=300),
                             X_training=X[start:start + 25], y_training=y[start:start + 25])
               for c, start in [(0.05, 0), (1.0, 25), (10.0, 50)]]
    return Committee(members)


def _member_proba(committee, X):
    return np.stack([m.estimator_.predict_proba(X) for m in committee.learner_list], axis=1)


def _entropy(p, axis=-1):
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=axis)


# ------------------------------------------------------------- votes / proba
def test_vote_and_vote_proba_shapes(lr_committee, flat_digits):
    X, _ = flat_digits
    pool = X[100:140]
    votes = lr_committee.vote(pool)
    assert votes.shape == (40, 3)
    for j, member in enumerate(lr_committee.learner_list):
        np.testing.assert_array_equal(votes[:, j], member.predict(pool))
    vp = lr_committee.vote_proba(pool)
    assert vp.shape == (40, 3, 3)
    np.testing.assert_allclose(vp.sum(axis=2), 1, atol=1e-6)   # float32 input
    np.testing.assert_allclose(vp, _member_proba(lr_committee, pool), atol=1e-12)


def test_predict_proba_is_mean(lr_committee, flat_digits):
    X, _ = flat_digits
    pool = X[100:140]
    mean = _member_proba(lr_committee, pool).mean(axis=1)
    np.testing.assert_allclose(lr_committee.predict_proba(pool), mean, atol=1e-12)
    np.testing.assert_array_equal(lr_committee.predict(pool),
                                  lr_committee.classes_[mean.argmax(1)])
    np.testing.assert_array_equal(lr_committee.classes_, [0, 1, 2])
    assert len(lr_committee) == 3


def test_vote_entropy_hand_computed(lr_committee, flat_digits):
    X, _ = flat_digits
    pool = X[100:160]
    votes = np.stack([m.estimator_.predict(pool) for m in lr_committee.learner_list], 1)
    shares = np.stack([(votes == c).mean(1) for c in [0, 1, 2]], axis=1)
    expected = _entropy(shares)
    assert expected.max() > 0, "members never disagree: the test would be vacuous"
    np.testing.assert_allclose(vote_entropy(lr_committee, pool), expected, atol=1e-12)
    np.testing.assert_allclose(vote_entropy(lr_committee, pool, batch_size=7), expected,
                               atol=1e-12)


def test_consensus_entropy_hand_computed(lr_committee, flat_digits):
    X, _ = flat_digits
    pool = X[100:160]
    expected = _entropy(_member_proba(lr_committee, pool).mean(1))
    np.testing.assert_allclose(consensus_entropy(lr_committee, pool), expected, atol=1e-10)


def test_kl_max_disagreement_hand_computed(lr_committee, flat_digits):
    X, _ = flat_digits
    pool = X[100:160]
    P = _member_proba(lr_committee, pool)                    # (n, L, C)
    consensus = P.mean(axis=1)
    kl = np.stack([(P[:, j] * np.log(P[:, j] / consensus)).sum(1) for j in range(3)], 1)
    expected = kl.max(axis=1)
    np.testing.assert_allclose(KL_max_disagreement(lr_committee, pool), expected,
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("strategy,measure", [
    (vote_entropy_sampling, vote_entropy),
    (consensus_entropy_sampling, consensus_entropy),
    (max_disagreement_sampling, KL_max_disagreement),
])
def test_committee_strategies_pick_top_scores(lr_committee, flat_digits, strategy, measure):
    X, _ = flat_digits
    pool = X[100:160]
    scores = measure(lr_committee, pool)
    lr_committee.query_strategy = strategy
    try:
        indices, X_query, metrics = lr_committee.query(pool, n_instances=4,
                                                       return_metrics=True)
    finally:
        lr_committee.query_strategy = vote_entropy_sampling
    assert len(set(indices.tolist())) == 4
    np.testing.assert_allclose(metrics, scores[indices])
    assert metrics.min() >= np.sort(scores)[-4] - 1e-12
    np.testing.assert_array_equal(X_query, pool[indices])


def test_members_with_different_classes_are_aligned(flat_digits):
    X, y = flat_digits
    two = ActiveLearner(LogisticRegression(max_iter=300), X_training=X[:40][y[:40] < 2],
                        y_training=y[:40][y[:40] < 2])
    three = ActiveLearner(LogisticRegression(max_iter=300), X_training=X[:40],
                          y_training=y[:40])
    committee = Committee([two, three])
    np.testing.assert_array_equal(committee.classes_, [0, 1, 2])
    vp = committee.vote_proba(X[100:110])
    assert vp.shape == (10, 2, 3)
    np.testing.assert_array_equal(vp[:, 0, 2], 0)
    np.testing.assert_allclose(vp[:, 0, :2], two.predict_proba(X[100:110]))
    np.testing.assert_allclose(vp.sum(2), 1)


# ------------------------------------------------------------------- CNN
@pytest.fixture(scope="module")
def images():
    X, y = load_digits_images()
    return X[:160], y[:160] % 2


def test_cnn_committee(images):
    X, y = images
    members = [ActiveLearner(CNNClassifier(**TINY, random_state=seed), X_training=X[:30],
                             y_training=y[:30]) for seed in (0, 1)]
    committee = Committee(members, query_strategy=max_disagreement_sampling)
    pool = X[60:160]
    P = np.stack([m.predict_proba(pool) for m in members], axis=1)
    assert not np.allclose(P[:, 0], P[:, 1]), "different seeds should give different models"
    vp = committee.vote_proba(pool)
    assert vp.shape == (100, 2, 2)
    np.testing.assert_allclose(vp, P, atol=1e-6)
    np.testing.assert_allclose(vp.sum(2), 1, atol=1e-5)
    np.testing.assert_allclose(committee.predict_proba(pool), P.mean(1), atol=1e-6)
    assert committee.vote(pool).shape == (100, 2)
    consensus = P.mean(1)
    kl = (P * (np.log(P) - np.log(consensus[:, None]))).sum(-1).max(1)
    np.testing.assert_allclose(KL_max_disagreement(committee, pool), kl, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(consensus_entropy(committee, pool), _entropy(consensus),
                               rtol=1e-5, atol=1e-7)
    indices, X_query = committee.query(pool, n_instances=3)
    assert len(set(indices.tolist())) == 3
    committee.teach(X_query, y[60:160][indices])
    for member in members:
        assert len(member.X_training_) == 33
        np.testing.assert_array_equal(member.X_training_[30:], X_query)


def test_multilabel_cnn_committee(images):
    X, y = images
    Y = np.stack([y, 1 - y, (np.arange(len(y)) % 3 == 0).astype(int)], axis=1)
    members = [ActiveLearner(MultiLabelCNNClassifier(**TINY, random_state=seed),
                             X_training=X[:30], y_training=Y[:30]) for seed in (0, 1)]
    committee = Committee(members, query_strategy=consensus_entropy_sampling)
    pool = X[60:100]
    vp = committee.vote_proba(pool)
    assert vp.shape == (40, 2, 3)
    assert committee.vote(pool).shape == (40, 2, 3)
    p = vp.mean(1)
    expected = (_entropy(np.stack([p, 1 - p], -1))).sum(1)
    np.testing.assert_allclose(consensus_entropy(committee, pool), expected, rtol=1e-5)
    indices, _ = committee.query(pool, n_instances=2)
    assert len(indices) == 2
    np.testing.assert_array_equal(committee.predict(pool), (p >= 0.5).astype(int))


def test_multilabel_committee_uses_members_thresholds(images):
    X, y = images
    Y = np.stack([y, 1 - y, (np.arange(len(y)) % 3 == 0).astype(int)], axis=1)
    members = [ActiveLearner(MultiLabelCNNClassifier(**TINY, random_state=seed,
                                                     threshold=threshold),
                             X_training=X[:30], y_training=Y[:30])
               for seed, threshold in ((0, [0.2, 0.5, 0.9]), (1, 0.4))]
    committee = Committee(members)
    pool = X[60:100]
    p = committee.vote_proba(pool).mean(axis=1)
    expected = (p >= np.array([0.3, 0.45, 0.65])).astype(int)
    np.testing.assert_array_equal(committee.predict(pool), expected)
    members[1].estimator_.threshold = [0.5, 0.5]
    with pytest.raises(SkalValueError, match="threshold"):
        committee.predict(pool)


def test_one_vs_rest_cnn_committee(images):
    """Members fitted one-vs-rest on 1-d (string) labels vote and average classes, as
    single-label members do."""
    X, y = images
    labels = np.array(["even", "odd"])[y]
    members = [ActiveLearner(MultiLabelCNNClassifier(**TINY, random_state=seed),
                             X_training=X[:30], y_training=labels[:30]) for seed in (0, 1)]
    committee = Committee(members, query_strategy=vote_entropy_sampling)
    pool = X[60:100]
    np.testing.assert_array_equal(committee.classes_, ["even", "odd"])
    votes = committee.vote(pool)
    assert votes.shape == (40, 2) and set(votes.ravel()) <= {"even", "odd"}
    P = np.stack([m.predict_proba(pool) for m in members], axis=1)
    np.testing.assert_allclose(committee.vote_proba(pool), P)
    assert set(committee.predict(pool)) <= {"even", "odd"}
    np.testing.assert_allclose(consensus_entropy(committee, pool), _entropy(P.mean(1)),
                               rtol=1e-5, atol=1e-7)
    share = (votes == "odd").mean(axis=1)
    np.testing.assert_allclose(vote_entropy(committee, pool),
                               _entropy(np.stack([1 - share, share], axis=1)), atol=1e-12)
    indices, X_query = committee.query(pool, n_instances=3)
    committee.teach(X_query, labels[60:100][indices])


# ----------------------------------------------------------------- teaching
def test_teach_teaches_all(lr_committee, flat_digits):
    X, y = flat_digits
    members = [ActiveLearner(LogisticRegression(max_iter=300), X_training=X[:30],
                             y_training=y[:30]) for _ in range(3)]
    committee = Committee(members)
    committee.teach(X[150:155], y[150:155])
    for member in members:
        assert len(member.X_training_) == 35
        np.testing.assert_array_equal(member.y_training_[30:], y[150:155])


def test_fit_fits_all(flat_digits):
    X, y = flat_digits
    members = [ActiveLearner(LogisticRegression(max_iter=300)) for _ in range(2)]
    committee = Committee(members)
    with pytest.raises(NotFittedError):
        committee.predict_proba(X[:3])
    committee.fit(X[:20], y[:20])
    assert all(len(m.X_training_) == 20 for m in members)


class FailsAbove(ClassifierMixin, BaseEstimator):
    """Fits like a trivial classifier; raises once it sees more than `limit` samples."""

    def __init__(self, limit=1000):
        self.limit = limit

    def fit(self, X, y):
        if len(X) > self.limit:
            raise RuntimeError("simulated failure during fit")
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


@pytest.mark.parametrize("failing_position", [0, 1, 2])
def test_failed_member_restores_all(flat_digits, failing_position):
    X, y = flat_digits
    members = [ActiveLearner(LogisticRegression(max_iter=300), X_training=X[:20],
                             y_training=y[:20]) for _ in range(3)]
    members[failing_position] = ActiveLearner(FailsAbove(limit=20), X_training=X[:20],
                                              y_training=y[:20])
    committee = Committee(members)
    pool = X[100:130]
    before_proba = committee.predict_proba(pool)         # fits the members lazily
    before_models = [m.estimator_ for m in members]
    with pytest.raises(RuntimeError, match="simulated"):
        committee.teach(X[20:25], y[20:25])
    for member, model in zip(members, before_models):
        assert member.estimator_ is model
        assert len(member.X_training_) == 20 and len(member.y_training_) == 20
        np.testing.assert_array_equal(member.X_training_, X[:20])
    np.testing.assert_array_equal(committee.predict_proba(pool), before_proba)
    # still usable afterwards
    committee.learner_list[failing_position].set_params(estimator__limit=1000)
    committee.teach(X[20:25], y[20:25])
    assert all(len(m.X_training_) == 25 for m in members)


def test_bad_members():
    with pytest.raises(SkalValueError):
        Committee([]).predict_proba(np.zeros((2, 4)))
    with pytest.raises(SkalTypeError):
        Committee([LogisticRegression()]).predict_proba(np.zeros((2, 4)))


# ------------------------------------------------- modAL's habits (issue 12)
def test_committee_is_a_sequence_of_its_members(lr_committee):
    members = lr_committee.learner_list
    assert len(lr_committee) == 3
    assert list(lr_committee) == members
    assert lr_committee[1] is members[1] and lr_committee[-1] is members[2]
    assert lr_committee.n_classes_ == 3


def _members(X, y, n=3, **kw):
    return [ActiveLearner(LogisticRegression(max_iter=300), X_training=X[:30],
                          y_training=y[:30], random_state=seed, **kw) for seed in range(n)]


def test_bagging_each_member_its_own_resample(flat_digits):
    X, y = flat_digits
    committee = Committee(_members(X, y, bootstrap_init=True))
    P = committee.vote_proba(X[100:120])
    assert not np.allclose(P[:, 0], P[:, 1]), "different resamples, different members"
    # a member's model is a fit on a resample of its data: not the fit on all of it
    full = LogisticRegression(max_iter=300).fit(X[:30], y[:30]).predict_proba(X[100:120])
    assert not np.allclose(P[:, 0], full)
    committee.teach(X[30:35], y[30:35], bootstrap=True)
    assert all(len(m.X_training) == 35 for m in committee)
    before = committee.vote_proba(X[100:120])
    committee.rebag()
    assert all(len(m.X_training) == 35 for m in committee)
    assert not np.allclose(committee.vote_proba(X[100:120]), before)


def test_same_member_twice_is_an_error(flat_digits):
    X, y = flat_digits
    member = _members(X, y, n=1)[0]
    committee = Committee([member, member])
    with pytest.raises(SkalValueError, match="same learner at positions 0 and 1"):
        committee.teach(X[30:32], y[30:32])
    assert len(member.X_training) == 30                  # not taught (twice or at all)
    with pytest.raises(SkalValueError, match="same learner"):
        committee.predict(X[:2])


def test_members_of_different_tasks_are_an_error(images):
    X, y = images
    Y = np.stack([y, 1 - y], axis=1)
    single = ActiveLearner(CNNClassifier(**TINY, random_state=0), X_training=X[:30],
                           y_training=y[:30])
    multi = ActiveLearner(MultiLabelCNNClassifier(**TINY, random_state=0), X_training=X[:30],
                          y_training=Y[:30])
    with pytest.raises(SkalValueError, match="same task"):
        Committee([single, multi]).predict(X[40:50])
    with pytest.raises(SkalValueError, match="same task"):
        Committee([multi, single]).query(X[40:50], n_instances=2)
    three = ActiveLearner(MultiLabelCNNClassifier(**TINY, random_state=0), X_training=X[:30],
                          y_training=np.c_[Y[:30], y[:30]])
    with pytest.raises(SkalValueError, match="numbers of labels"):
        Committee([multi, three]).vote_proba(X[40:50])
    strings = ActiveLearner(CNNClassifier(**TINY, random_state=0), X_training=X[:30],
                            y_training=np.where(y[:30] == 1, "yes", "no"))
    with pytest.raises(SkalValueError, match="different kinds"):
        Committee([single, strings]).predict(X[40:50])


def test_committee_as_the_estimator_of_a_learner(flat_digits):
    X, y = flat_digits
    committee = Committee(_members(X, y))                # members fit on first use
    learner = ActiveLearner(committee)
    indices, _ = learner.query(X[100:140], n_instances=2)
    np.testing.assert_allclose(learner.predict_proba(X[100:140]),
                               committee.predict_proba(X[100:140]), atol=1e-12)
    # its first labels: the committee is refitted on them (as modAL does)
    learner.teach(X[140:150], y[140:150])
    assert len(learner.X_training) == 10
    assert all(len(m.X_training) == 10 for m in learner.estimator)
