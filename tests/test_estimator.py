"""ActiveLearningClassifier: the simulated campaign, its attributes, nested parameters,
grid search over strategies and clear errors on bad input."""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV

from conftest import TINY
from skal import (ActiveLearningClassifier, CNNClassifier, MultiLabelCNNClassifier,
                  NotFittedError, SkalTypeError, SkalValueError)
from skal.data import load_digits_images
from skal.estimator import stratified_indices
from skal.query import entropy_sampling, margin_sampling, random_sampling
from skal.query.base import multi_argmax, predict_proba_pool

def tiny_net(**kw):
    return CNNClassifier(**{**TINY, **kw})


def alc(**kw):
    params = dict(estimator=tiny_net(), n_initial=12, n_queries=2, batch_size=6,
                  random_state=0)
    return ActiveLearningClassifier(**{**params, **kw})


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    return X[:120], y[:120] % 3, X[120:180], y[120:180] % 3


class PowerUncertainty(BaseEstimator):
    """A stateful callable strategy with parameters (searchable like TDGF's)."""

    def __init__(self, power=1.0):
        self.power = power

    def __call__(self, learner, X_pool, n_instances=1, random_state=None, **_):
        proba = predict_proba_pool(learner, X_pool)
        self.n_calls_ = getattr(self, "n_calls_", 0) + 1
        return multi_argmax((1 - proba.max(axis=1)) ** self.power, n_instances, random_state)


# --------------------------------------------------------------------- campaign
def test_fit_runs_a_campaign_and_delegates(digits):
    X, y, X_test, y_test = digits
    model = alc(query_strategy=margin_sampling).fit(X, y)
    assert model.n_initial_ == 12 and model.batch_size_ == 6 and model.n_queries_ == 2
    idx = model.labeled_indices_
    assert len(idx) == 24 and len(np.unique(idx)) == 24
    # labels are revealed only for the queried samples: the learner saw exactly these
    np.testing.assert_array_equal(model.learner_.y_training_, y[idx])
    np.testing.assert_array_equal(model.learner_.X_training_, X[idx])
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    curve = model.learning_curve_
    np.testing.assert_array_equal(curve["n_labels"], [12, 18, 24])
    assert set(curve) >= {"n_labels", "train_score", "pool_score", "fit_time", "query_time"}
    assert np.isfinite(curve["train_score"]).all() and np.isfinite(curve["pool_score"]).all()
    assert curve["query_time"][0] == 0 and (curve["query_time"][1:] > 0).all()
    # pool score of the last round: the model on the samples it never saw
    rest = np.setdiff1d(np.arange(len(y)), idx)
    assert curve["pool_score"][-1] == pytest.approx(model.estimator_.score(X[rest], y[rest]))
    np.testing.assert_array_equal(model.predict(X_test), model.estimator_.predict(X_test))
    np.testing.assert_allclose(model.predict_proba(X_test),
                               model.estimator_.predict_proba(X_test))
    np.testing.assert_allclose(model.decision_function(X_test),
                               model.estimator_.decision_function(X_test))
    assert model.score(X_test, y_test) == model.estimator_.score(X_test, y_test)
    # the net was told every class up front
    assert model.estimator_.classes == pytest.approx([0, 1, 2])


def test_same_seed_same_campaign_and_paired_strategies(digits):
    X, y, X_test, _ = digits
    a = alc(query_strategy=entropy_sampling).fit(X, y)
    b = alc(query_strategy=entropy_sampling).fit(X, y)
    np.testing.assert_array_equal(a.labeled_indices_, b.labeled_indices_)
    np.testing.assert_allclose(a.predict_proba(X_test), b.predict_proba(X_test))
    c = alc(query_strategy=random_sampling).fit(X, y)
    np.testing.assert_array_equal(a.labeled_indices_[:12], c.labeled_indices_[:12])


def test_estimator_and_strategy_are_not_modified(digits):
    X, y, _, _ = digits
    net, strategy = tiny_net(), PowerUncertainty(power=2.0)
    model = alc(estimator=net, query_strategy=strategy).fit(X, y)
    assert not hasattr(net, "module_") and not hasattr(strategy, "n_calls_")
    assert model.learner_.query_strategy.n_calls_ == 2       # a fresh clone was used
    assert model.get_params()["estimator"] is net


def test_nested_parameters_route_and_clone():
    model = alc(query_strategy=PowerUncertainty())
    params = model.get_params()
    assert params["estimator__max_epochs"] == 2
    assert params["query_strategy__power"] == 1.0
    model.set_params(query_strategy__power=3.0, estimator__max_epochs=1)
    assert model.query_strategy.power == 3.0 and model.estimator.max_epochs == 1
    copy = clone(model)
    assert copy.query_strategy is not model.query_strategy
    assert copy.query_strategy.power == 3.0 and copy.estimator.max_epochs == 1
    # plain functions are values, without nested parameters
    assert not any(k.startswith("query_strategy__")
                   for k in alc(query_strategy=margin_sampling).get_params())


def test_grid_search_over_strategies_and_their_parameters(digits):
    X, y, _, _ = digits
    search = GridSearchCV(
        alc(n_initial=9, n_queries=1),
        [{"query_strategy": ["random", margin_sampling]},
         {"query_strategy": [PowerUncertainty()], "query_strategy__power": [0.5, 2.0]}],
        cv=2)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert isinstance(search.best_estimator_, ActiveLearningClassifier)
    assert search.predict(X[:5]).shape == (5,)


def test_stateful_strategy_object_from_the_registry(digits):
    tdgf = pytest.importorskip("skal.query.tdgf")
    X, y, _, _ = digits
    model = alc(query_strategy=tdgf.TDGF(random_state=0), n_queries=1)
    model.set_params(query_strategy__history="fraction")
    assert model.get_params()["query_strategy__history"] == "fraction"
    model.fit(X, y)
    assert hasattr(model.learner_.query_strategy, "proxy_")
    assert not hasattr(model.query_strategy, "proxy_")


def test_default_estimator_and_fraction_budgets(digits):
    X, y, _, _ = digits
    model = ActiveLearningClassifier(estimator=None, random_state=0,
                                     n_queries=1).set_params(n_initial=0.1, batch_size=0.05)
    model.fit(X[:40], y[:40])
    assert isinstance(model.estimator_, CNNClassifier)
    assert (model.n_initial_, model.batch_size_, model.n_queries_) == (4, 2, 1)


def test_initial_sets(digits):
    _, y, _, _ = digits
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_indices(y, 10, random_state=0)
    assert np.bincount(y[idx], minlength=3).tolist() == [5, 3, 2]
    assert np.array_equal(idx, stratified_indices(y, 10, random_state=0))
    few = stratified_indices(y, 2, random_state=1)
    assert len(np.unique(y[few])) == 2
    assert np.bincount(y[stratified_indices(y, 3, random_state=0)]).tolist() == [1, 1, 1]
    X = np.random.default_rng(0).random((100, 1, 8, 8), dtype=np.float32)
    for initial in ("stratified", "balanced", "random"):
        model = alc(initial=initial, n_initial=9, n_queries=0).fit(X, y)
        counts = np.bincount(y[model.labeled_indices_], minlength=3)
        assert counts.sum() == 9
        if initial == "balanced":
            assert counts.tolist() == [3, 3, 3]
        if initial == "stratified":
            assert counts.tolist() == [5, 3, 1]


def test_scoring_and_record_scores(digits):
    X, y, _, _ = digits
    model = alc(scoring="balanced_accuracy", n_queries=1).fit(X, y)
    assert np.isfinite(model.learning_curve_["pool_score"]).all()
    quiet = alc(record_scores=False, n_queries=1).fit(X, y)
    assert "pool_score" not in quiet.learning_curve_
    np.testing.assert_array_equal(quiet.learning_curve_["n_labels"], [12, 18])


def test_query_kwargs_reach_the_strategy(digits):
    X, y, _, _ = digits
    seen = []

    def strategy(learner, X_pool, n_instances=1, flag=None, random_state=None):
        seen.append((flag, random_state))
        return np.arange(n_instances)

    alc(query_strategy=strategy, query_kwargs={"flag": "x"}).fit(X, y)
    assert [f for f, _ in seen] == ["x", "x"]
    assert seen[0][1] != seen[1][1]                 # per-round seeds


def test_multilabel_campaign(digits):
    X, y, _, _ = digits
    Y = np.stack([y == 0, y == 1], axis=1).astype(int)
    model = alc(estimator=MultiLabelCNNClassifier(**TINY), n_queries=1).fit(X, Y)
    np.testing.assert_array_equal(model.classes_, [0, 1])
    assert model.predict(X[:4]).shape == (4, 2)


@pytest.mark.parametrize("strategy", ["uncertainty", "expected_gradnorm"])
def test_one_vs_rest_multilabel_net_campaign(digits, strategy):
    """A MultiLabelCNNClassifier on 1-d labels: one-vs-rest, as OneVsRestClassifier."""
    from sklearn.utils import get_tags

    X, y, X_test, _ = digits
    labels = np.array(["a", "b", "c"], dtype=object)[y]
    model = alc(estimator=MultiLabelCNNClassifier(**TINY), query_strategy=strategy,
                n_queries=1).fit(X, labels)
    assert model.estimator_.multilabel_ is False and model.estimator_.n_outputs_ == 3
    np.testing.assert_array_equal(model.classes_, ["a", "b", "c"])
    np.testing.assert_array_equal(model.estimator_.classes_, ["a", "b", "c"])
    proba = model.predict_proba(X_test)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(model.predict(X_test), model.classes_[proba.argmax(axis=1)])
    assert model.decision_function(X_test).shape == (60, 3)
    assert 0 <= model.score(X_test, np.array(["a", "b", "c"], dtype=object)[digits[3]]) <= 1
    tags, inner = get_tags(model), get_tags(MultiLabelCNNClassifier())
    assert tags.target_tags.single_output and tags.target_tags.multi_output
    assert tags.classifier_tags.multi_label and tags.classifier_tags.multi_class
    assert tags.target_tags == inner.target_tags
    assert tags.classifier_tags == inner.classifier_tags


def test_tabular_input_sets_n_features_in():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = (X[:, 0] > 0).astype(int)
    model = alc(n_initial=10, n_queries=1, batch_size=5).fit(X, y)
    assert model.n_features_in_ == 5
    with pytest.raises(ValueError, match="X has 4 features, but CNNClassifier is expecting 5"):
        model.predict(X[:, :4])


# -------------------------------------------------------------------- bad input
def test_not_fitted():
    with pytest.raises(NotFittedError):
        alc().predict(np.zeros((2, 1, 8, 8), np.float32))


def test_budget_larger_than_the_data(digits):
    X, y, _, _ = digits
    with pytest.raises(SkalValueError, match="needs 132 labels.*only 120 samples"):
        alc(n_initial=12, n_queries=20, batch_size=6).fit(X, y)
    with pytest.raises(SkalValueError, match="only 120 samples"):
        alc(n_initial=0.5, n_queries=3, batch_size=0.2).fit(X, y)
    with pytest.raises(SkalValueError, match="only 120 samples"):
        alc(n_initial=200, n_queries=0).fit(X, y)


def test_fraction_budget_clipped_on_tiny_data(digits):
    X, y, _, _ = digits
    with pytest.warns(UserWarning, match="running 2 query round"):
        model = alc(n_initial=0.1, n_queries=3, batch_size=0.1).fit(X[:4], np.arange(4) % 2)
    assert (model.n_initial_, model.batch_size_, model.n_queries_) == (2, 1, 2)
    assert sorted(model.labeled_indices_) == [0, 1, 2, 3]


@pytest.mark.parametrize("params, error, match", [
    (dict(n_initial=0), SkalValueError, "n_initial must be at least 1"),
    (dict(n_initial=1.5), SkalValueError, r"fraction.*\(0, 1\)"),
    (dict(batch_size="10"), SkalTypeError, "batch_size must be an int"),
    (dict(n_queries=0.5), SkalTypeError, "n_queries must be an int"),
    (dict(n_queries=-1), SkalValueError, "n_queries must be at least 0"),
    (dict(initial="first"), SkalValueError, "initial must be one of"),
    (dict(query_strategy=42), SkalTypeError, "query_strategy must be callable"),
    (dict(query_strategy="no-such-strategy"), SkalValueError, "Unknown strategy"),
    (dict(query_kwargs=[1]), SkalTypeError, "query_kwargs must be a dict"),
    (dict(random_state="abc"), SkalTypeError, "random_state"),
])
def test_bad_parameters(digits, params, error, match):
    X, y, _, _ = digits
    with pytest.raises(error, match=match):
        alc(**params).fit(X, y)


def _returning(indices):
    def strategy(learner, X_pool, n_instances=1, **_):
        return np.asarray(indices(len(X_pool), n_instances))
    return strategy


@pytest.mark.parametrize("indices, match", [
    (lambda n, k: np.zeros(k, int), "duplicate indices"),
    (lambda n, k: np.arange(k) + n, "outside the pool.*already labelled"),
    (lambda n, k: np.array([-1] + list(range(k - 1))), "outside the pool"),
    (lambda n, k: np.arange(k + 1), "returned 7 indices for n_instances=6"),
    (lambda n, k: np.linspace(0, 1, k), "integer pool indices"),
])
def test_strategy_returning_invalid_indices(digits, indices, match):
    X, y, _, _ = digits
    with pytest.raises(SkalValueError, match=match):
        alc(query_strategy=_returning(indices)).fit(X, y)


def test_bad_targets(digits):
    X, y, _, _ = digits
    with pytest.raises(SkalValueError, match="requires y to be passed"):
        alc().fit(X, None)
    with pytest.raises(SkalValueError, match="one class"):
        alc().fit(X, np.zeros(len(X), int))
    with pytest.raises(SkalValueError, match="X has 120 samples but y has 119"):
        alc().fit(X, y[:-1])
    with pytest.raises(SkalValueError, match="Unknown label type"):
        alc().fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(SkalValueError, match="n_samples=1"):
        alc().fit(X[:1], y[:1])
    with pytest.raises(SkalTypeError, match="sample_weight"):
        alc().fit(X, y, sample_weight=np.ones(len(y)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SkalValueError, match="NaN"):
            bad = X.copy()
            bad[0, 0, 0, 0] = np.nan
            alc().fit(bad, y)
