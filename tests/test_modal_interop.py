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


# ------------------------- modAL's strategies inside skal's learners (issue 12)
# Each modAL strategy runs inside a skal learner and inside a modAL learner that holds a
# copy of the same fitted model and the same labelled data; both must pick the same
# samples. The skal learners have been taught after their initial fit, so a strategy
# reading only the initial data (what skal's names gave before) would pick otherwise.
import copy  # noqa: E402
from functools import partial  # noqa: E402

import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import modAL.batch as modal_batch  # noqa: E402
import modAL.dropout as modal_dropout  # noqa: E402
import modAL.multilabel as modal_multilabel  # noqa: E402

from skal import Committee, MultiLabelCNNClassifier  # noqa: E402


def _modal_expected_error():
    """modAL 0.4.2.1's expected_error annotates with ``np.float``, removed in numpy 2
    (a modAL/numpy incompatibility): give it the alias for the import only."""
    added = not hasattr(np, "float")
    if added:
        np.float = float
    try:
        import modAL.expected_error as module
    finally:
        if added:
            del np.float
    return module


def modal_twin(learner, strategy):
    """A modAL learner with a copy of ``learner``'s fitted model and labelled data."""
    twin = ModalActiveLearner(estimator=copy.deepcopy(learner.estimator),
                              query_strategy=strategy)
    twin.X_training = np.array(learner.X_training)
    twin.y_training = np.array(learner.y_training)
    return twin


def _picks(learner, pool, strategy, **kw):
    learner.query_strategy = strategy
    return np.asarray(learner.query(pool, **kw)[0]).tolist()


@pytest.fixture(scope="module")
def flat_learner(data):
    X, y, pool, pool_y = data
    X, pool = X.reshape(len(X), -1), pool.reshape(len(pool), -1)
    learner = ActiveLearner(LogisticRegression(C=0.5, max_iter=500), X_training=X[:20],
                            y_training=y[:20])
    learner.teach(X[20:], y[20:])
    return learner, pool[:30]


@pytest.mark.parametrize("name", ["uncertainty", "batch", "expected_error"])
def test_modal_strategies_pick_as_in_modal_learner(flat_learner, name):
    learner, pool = flat_learner
    strategy = {
        "uncertainty": modal_uncertainty.uncertainty_sampling,
        "batch": partial(modal_batch.uncertainty_batch_sampling, n_instances=4),
        "expected_error": partial(_modal_expected_error().expected_error_reduction,
                                  n_instances=2),
    }[name]
    kw = {"n_instances": 3} if name == "uncertainty" else {}
    assert len(learner.X_training) == 40                 # all labelled data, not the initial
    ours = _picks(learner, pool, strategy, **kw)
    theirs = _picks(modal_twin(learner, strategy), pool, strategy, **kw)
    assert ours == theirs


def test_modal_committee_strategies_pick_as_in_modal_committee(data):
    X, y, pool, _ = data
    X, pool = X.reshape(len(X), -1), pool.reshape(len(pool), -1)
    members = [ActiveLearner(LogisticRegression(C=c, max_iter=500), X_training=X[:30],
                             y_training=y[:30]) for c in (0.05, 1.0, 20.0)]
    committee = Committee(members)
    modal_committee = ModalCommittee([modal_twin(m, uncertainty_sampling) for m in members])
    np.testing.assert_allclose(modal_disagreement.KL_max_disagreement(committee, pool),
                               modal_disagreement.KL_max_disagreement(modal_committee, pool),
                               atol=1e-12)
    for strategy in (modal_disagreement.max_disagreement_sampling,
                     modal_disagreement.consensus_entropy_sampling,
                     modal_disagreement.vote_entropy_sampling):
        committee.query_strategy = modal_committee.query_strategy = strategy
        assert (np.asarray(committee.query(pool, n_instances=3)[0]).tolist()
                == np.asarray(modal_committee.query(pool, n_instances=3)[0]).tolist())


def test_modal_dropout_picks_as_in_modal_learner(skal_learner, data):
    _, _, pool, _ = data
    model = skal_learner.estimator
    dropout_index = [i for i, m in enumerate(model.module_.modules())
                     if isinstance(m, torch.nn.Dropout)]
    strategy = partial(modal_dropout.mc_dropout_bald, n_instances=3, num_cycles=4,
                       dropout_layer_indexes=dropout_index)
    tensor_pool = torch.as_tensor(pool)
    picks = []
    for learner in (skal_learner, modal_twin(skal_learner, strategy)):
        learner.estimator.module_.eval()        # only the dropout layers sample
        with torch.random.fork_rng():
            torch.manual_seed(0)
            learner.query_strategy = strategy
            picks.append(np.asarray(learner.query(tensor_pool)[0]).tolist())
    skal_learner.query_strategy = uncertainty_sampling
    assert picks[0] == picks[1]


@pytest.mark.parametrize("strategy", [modal_multilabel.avg_confidence,
                                      modal_multilabel.min_confidence,
                                      partial(modal_multilabel.max_score, random_tie_break=False),
                                      modal_multilabel.avg_score])
def test_modal_multilabel_strategies_pick_as_in_modal_learner(data, strategy):
    X, y, pool, _ = data
    Y = np.stack([y, 1 - y, (np.arange(len(y)) % 3 == 0)], axis=1).astype(int)
    learner = ActiveLearner(MultiLabelCNNClassifier(module__widths=(8,), module__hidden=16,
                                                    max_epochs=2, batch_size=16,
                                                    min_steps=None, augment=None,
                                                    random_state=0),
                            X_training=X[:30], y_training=Y[:30])
    assert (_picks(learner, pool, strategy, n_instances=3)
            == _picks(modal_twin(learner, strategy), pool, strategy, n_instances=3))
