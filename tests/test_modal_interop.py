"""skal and modAL interoperate: each one's strategies run in the other's learners.

modAL is optional (CI installs ``modAL-python==0.4.2.1`` with ``--no-deps``).
"""

import numpy as np
import pytest

modAL = pytest.importorskip("modAL")

import modAL.disagreement as modal_disagreement  # noqa: E402
import modAL.uncertainty as modal_uncertainty  # noqa: E402
from modAL.models import ActiveLearner as ModalActiveLearner  # noqa: E402
from modAL.models import Committee as ModalCommittee  # noqa: E402

from skal import ActiveLearner, CNNClassifier  # noqa: E402
from skal.data import load_digits_images  # noqa: E402
from skal.query import (classifier_entropy, classifier_margin,  # noqa: E402
                        classifier_uncertainty, consensus_entropy_sampling,
                        entropy_sampling, margin_sampling, random_sampling,
                        uncertainty_sampling, vote_entropy, vote_entropy_sampling)


def tiny_net(seed=0):
    return CNNClassifier(module__widths=(8,), module__hidden=16, max_epochs=2, batch_size=16,
                         min_steps=None, augment=None,
                         random_state=seed)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits_images()
    return X[:40], y[:40] % 2, X[100:160], y[100:160] % 2


@pytest.fixture(scope="module")
def skal_learner(data):
    X, y, _, _ = data
    learner = ActiveLearner(tiny_net(), X_training=X, y_training=y)
    learner.predict(X[:1])
    return learner


PAIRS = [
    (modal_uncertainty.uncertainty_sampling, uncertainty_sampling),
    (modal_uncertainty.margin_sampling, margin_sampling),
    (modal_uncertainty.entropy_sampling, entropy_sampling),
]


@pytest.mark.parametrize("modal_strategy,skal_strategy", PAIRS)
def test_modal_strategies_in_skal_learner(skal_learner, data, modal_strategy, skal_strategy):
    _, _, pool, pool_y = data
    skal_learner.query_strategy = modal_strategy
    try:
        indices, X_query = skal_learner.query(pool, n_instances=3)
    finally:
        skal_learner.query_strategy = uncertainty_sampling
    assert len(indices) == 3 and len(set(indices.tolist())) == 3
    np.testing.assert_array_equal(X_query, pool[indices])
    ours, _ = skal_strategy(skal_learner, pool, n_instances=3)
    assert set(indices.tolist()) == set(ours.tolist())


@pytest.mark.parametrize("modal_measure,skal_measure", [
    (modal_uncertainty.classifier_uncertainty, classifier_uncertainty),
    (modal_uncertainty.classifier_margin, classifier_margin),
    (modal_uncertainty.classifier_entropy, classifier_entropy),
])
def test_measures_agree_with_modal(skal_learner, data, modal_measure, skal_measure):
    _, _, pool, _ = data
    np.testing.assert_allclose(skal_measure(skal_learner, pool),
                               modal_measure(skal_learner, pool), atol=1e-6)


def test_modal_strategy_then_teach(data):
    X, y, pool, pool_y = data
    learner = ActiveLearner(tiny_net(), modal_uncertainty.margin_sampling, X_training=X,
                            y_training=y)
    indices, X_query = learner.query(pool, n_instances=2)
    learner.teach(X_query, pool_y[indices])
    assert len(learner.X_training_) == 42


@pytest.mark.parametrize("strategy", [uncertainty_sampling, margin_sampling,
                                      entropy_sampling, random_sampling])
@pytest.mark.parametrize("n_instances", [2, 3])
def test_skal_strategies_in_modal_learner(data, strategy, n_instances):
    X, y, pool, pool_y = data
    learner = ModalActiveLearner(estimator=tiny_net(), query_strategy=strategy,
                                 X_training=X, y_training=y)
    result = learner.query(pool, n_instances=n_instances)
    indices = np.asarray(result[0])
    assert indices.shape == (n_instances,)
    assert len(set(indices.tolist())) == n_instances
    assert indices.min() >= 0 and indices.max() < len(pool)
    np.testing.assert_array_equal(result[1], pool[indices])
    if strategy is not random_sampling:
        expected, _ = strategy(learner.estimator, pool, n_instances=n_instances)
        np.testing.assert_array_equal(indices, expected)


def test_modal_learner_teach_after_skal_query(data):
    X, y, pool, pool_y = data
    learner = ModalActiveLearner(estimator=tiny_net(), query_strategy=margin_sampling,
                                 X_training=X, y_training=y)
    indices = np.asarray(learner.query(pool, n_instances=2)[0])
    try:
        learner.teach(pool[indices], pool_y[indices])
    except TypeError as exc:
        if "force_all_finite" not in str(exc):
            raise
        # modAL 0.4.2.1 calls sklearn's check_X_y(force_all_finite=...), removed in
        # scikit-learn 1.8: a modAL/sklearn incompatibility, not a skal one.
        pytest.skip(f"modAL's teach is incompatible with this scikit-learn: {exc}")
    assert len(learner.X_training) == len(X) + 2


def _modal_committee(data):
    X, y, _, _ = data
    members = [ModalActiveLearner(estimator=tiny_net(seed), X_training=X, y_training=y)
               for seed in (0, 1, 2)]
    try:
        return ModalCommittee(learner_list=members, query_strategy=vote_entropy_sampling)
    except Exception as exc:  # pragma: no cover - depends on modAL vs sklearn versions
        pytest.skip(f"modAL's Committee does not work with this scikit-learn: {exc!r}")


def test_skal_vote_entropy_in_modal_committee(data):
    _, _, pool, _ = data
    committee = _modal_committee(data)
    try:
        modal_scores = modal_disagreement.vote_entropy(committee, pool)
    except Exception as exc:  # pragma: no cover - modAL internals vs sklearn versions
        pytest.skip(f"modAL's own vote_entropy fails here: {exc!r}")
    np.testing.assert_allclose(vote_entropy(committee, pool), modal_scores, atol=1e-9)
    for n_instances in (2, 3):
        result = committee.query(pool, n_instances=n_instances)
        indices = np.asarray(result[0])
        assert indices.shape == (n_instances,)
        assert len(set(indices.tolist())) == n_instances
        expected, _ = vote_entropy_sampling(committee, pool, n_instances=n_instances)
        np.testing.assert_array_equal(indices, expected)


def test_skal_consensus_entropy_in_modal_committee(data):
    _, _, pool, _ = data
    committee = _modal_committee(data)
    committee.query_strategy = consensus_entropy_sampling
    try:
        modal_scores = modal_disagreement.consensus_entropy(committee, pool)
    except Exception as exc:  # pragma: no cover
        pytest.skip(f"modAL's own consensus_entropy fails here: {exc!r}")
    indices = np.asarray(committee.query(pool, n_instances=3)[0])
    assert set(indices.tolist()) == set(np.argsort(-modal_scores, kind="stable")[:3].tolist())
