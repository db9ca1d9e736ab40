"""The one round engine shared by simulate, ActiveLearningClassifier and Campaign."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skal import ActiveLearner, ActiveLearningClassifier, SkalValueError
from skal.campaign.engine import (check_budget, initial_set, query_round, round_seed,
                                  run_rounds, task_of)
from skal.exceptions import QueryResultError
from skal.query import random_sampling


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.RandomState(0)
    y = np.repeat([0, 1, 2], [30, 20, 10])
    X = rng.normal(size=(60, 5)) + y[:, None]
    return X.astype(np.float32), y


@pytest.mark.parametrize("method", ["balanced", "stratified", "random"])
def test_meta_estimator_starts_from_the_engine_initial_set(blobs, method):
    X, y = blobs
    alc = ActiveLearningClassifier(LogisticRegression(), "margin", n_initial=9, n_queries=2,
                                   batch_size=5, initial=method, random_state=4,
                                   record_scores=False).fit(X, y)
    assert np.array_equal(alc.labeled_indices_[:9], initial_set(y, 9, 4, method))


def test_initial_set_methods(blobs):
    _, y = blobs
    assert np.bincount(y[initial_set(y, 9, 0, "balanced")]).tolist() == [3, 3, 3]
    assert np.bincount(y[initial_set(y, 12, 0, "stratified")]).tolist() == [6, 4, 2]
    multi = np.eye(3, dtype=int)[y]                 # 2-d targets: drawn at random
    assert np.array_equal(initial_set(multi, 5, 1, "balanced"),
                          initial_set(multi, 5, 1, "random"))
    with pytest.raises(SkalValueError, match="initial must be one of"):
        initial_set(y, 5, 0, "typical")


def test_check_budget_and_task_of(blobs):
    _, y = blobs
    with pytest.raises(SkalValueError, match="needs 70 labels .* only 60 samples"):
        check_budget(60, 10, 6, 10)
    assert check_budget(60, 10, 5, 10) == 60
    classes, multilabel = task_of(y, np.array([3]))
    assert classes.tolist() == [0, 1, 2, 3] and not multilabel
    assert task_of(np.eye(3)[y]) == (None, True)


def test_query_round_seeds_the_strategy_and_maps_positions(blobs):
    X, y = blobs
    learner = ActiveLearner(LogisticRegression(), random_sampling)
    start = np.array([0, 1, 2, 30, 31, 32, 50, 51, 52, 53])       # every class
    learner.fit(X[start], y[start])
    unlabelled = np.setdiff1d(np.arange(60), start)
    chosen, _, _ = query_round(learner, X, unlabelled, 5, seed=3, r=2)
    expected, _ = random_sampling(learner, X[unlabelled], 5, random_state=round_seed(3, 2))
    assert np.array_equal(chosen, unlabelled[expected])

    def duplicates(learner, X_pool, n_instances=1, **kw):
        return np.zeros(n_instances, dtype=int)

    learner.query_strategy = duplicates
    with pytest.raises(QueryResultError, match="In round 2 the strategy was given the 50"):
        query_round(learner, X, unlabelled, 3, r=2)

    def fails(learner, X_pool, n_instances=1, **kw):   # the strategy's own error, same words
        raise SkalValueError("The query strategy needs labels.")

    learner.query_strategy = fails
    with pytest.raises(SkalValueError) as info:    # passed on as it is: errors by type
        query_round(learner, X, unlabelled, 3, r=2)
    assert str(info.value) == "The query strategy needs labels."


def test_run_rounds_reveals_only_queried_labels(blobs):
    X, y = blobs
    seen = []

    class Recording(LogisticRegression):
        def fit(self, X, y):
            seen.append(len(y))
            return super().fit(X, y)

    learner = ActiveLearner(Recording(), random_sampling)
    start = [0, 1, 30, 31, 50, 51]
    run = run_rounds(learner, X, y, start, batch_size=4, n_rounds=3, seed=0)
    assert seen == [6, 10, 14, 18]
    order = run["order"]
    assert len(set(order.tolist())) == 18 and order[:6].tolist() == start
    assert np.array_equal(learner.y_training_, y[order])
