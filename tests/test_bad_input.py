"""Bad input gives a clear skal error, and the learner is exactly as it was before."""

import copy

import numpy as np
import pytest
import sklearn.exceptions
from sklearn.base import BaseEstimator, ClassifierMixin

import skal
from conftest import TINY
from skal import (ActiveLearner, CNNClassifier, Committee, MultiLabelCNNClassifier,
                  NotFittedError, SkalError, SkalTypeError, SkalValueError)
from skal.data import load_digits_images
from skal.query import random_sampling

ONE_EPOCH = dict(TINY, max_epochs=1)


def tiny_net(**kw):
    return CNNClassifier(**{**ONE_EPOCH, "random_state": 0, **kw})


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    return X[:120], y[:120] % 3          # 3 classes


@pytest.fixture(scope="module")
def binary(digits):
    """(X_train, y_train) with classes {0, 1} only, and a probe pool."""
    X, y = digits
    keep = y < 2
    return X[keep][:24], y[keep][:24], X[100:120]


_FITTED = {}


def make_learner(binary, **net_kw):
    """A fitted learner; each call returns a fresh deep copy of one fitted per settings
    (fitting once per module keeps this file fast)."""
    key = tuple(sorted((k, repr(v)) for k, v in net_kw.items()))
    if key not in _FITTED:
        X, y, _ = binary
        learner = ActiveLearner(tiny_net(**net_kw), X_training=X, y_training=y)
        learner.predict(X[:1])                              # fit now
        _FITTED[key] = learner
    return copy.deepcopy(_FITTED[key])


@pytest.fixture
def learner(binary):
    return make_learner(binary)


class State:
    """Everything observable about a fitted learner."""

    def __init__(self, learner, probe):
        self.learner = learner
        self.probe = probe
        self.estimator = learner.estimator_
        self.X = learner.X_training_.copy()
        self.y = learner.y_training_.copy()
        self.X_dtype = learner.X_training_.dtype
        self.y_dtype = learner.y_training_.dtype
        self.proba = learner.estimator_.predict_proba(probe)
        self.history = len(getattr(learner.estimator_, "history_", []))
        self.params = {k: v for k, v in learner.get_params(deep=False).items()}

    def assert_unchanged(self):
        learner = self.learner
        assert learner.estimator_ is self.estimator
        assert len(learner.X_training_) == len(self.X)
        assert len(learner.y_training_) == len(self.y)
        assert learner.X_training_.dtype == self.X_dtype
        assert learner.y_training_.dtype == self.y_dtype
        np.testing.assert_array_equal(learner.X_training_, self.X)
        np.testing.assert_array_equal(learner.y_training_, self.y)
        np.testing.assert_array_equal(learner.estimator_.predict_proba(self.probe), self.proba)
        assert len(getattr(learner.estimator_, "history_", [])) == self.history
        after = learner.get_params(deep=False)
        assert after.keys() == self.params.keys()
        for key, value in self.params.items():
            assert after[key] is value


@pytest.fixture
def state(learner, binary):
    return State(learner, binary[2])


def test_exception_hierarchy():
    assert issubclass(SkalValueError, ValueError) and issubclass(SkalValueError, SkalError)
    assert issubclass(SkalTypeError, TypeError) and issubclass(SkalTypeError, SkalError)
    assert issubclass(NotFittedError, sklearn.exceptions.NotFittedError)
    assert skal.NotFittedError is NotFittedError


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("shape", [(8,), (5, 1, 1, 8, 8)])
def test_teach_wrong_ndim(learner, state, shape):
    with pytest.raises(SkalValueError, match="dimensions"):
        learner.teach(np.zeros(shape, np.float32), np.zeros(shape[0], int))
    state.assert_unchanged()


@pytest.mark.parametrize("shape", [(8,), (5, 1, 1, 8, 8)])
def test_query_wrong_ndim(learner, state, shape):
    with pytest.raises(SkalValueError, match="dimensions"):
        learner.query(np.zeros(shape, np.float32))
    state.assert_unchanged()


@pytest.mark.parametrize("shape", [(8,), (5, 1, 1, 8, 8)])
def test_predict_wrong_ndim(learner, state, shape):
    with pytest.raises(SkalValueError):
        learner.predict(np.zeros(shape, np.float32))
    with pytest.raises(SkalValueError):
        learner.estimator_.predict_proba(np.zeros(shape, np.float32))
    state.assert_unchanged()


def test_net_fit_wrong_ndim(binary):
    X, y, _ = binary
    # (n, 8) is tabular (one-row images); a model fitted on images rejects it
    net = tiny_net().fit(X, y)
    with pytest.raises(SkalValueError, match="dimensions"):
        net.predict(X[:, 0, 0])                       # (n, 8): not images
    with pytest.raises(SkalValueError, match="dimensions"):
        net.predict(X[0, 0])                          # one (8, 8) image, no batch axis
    with pytest.raises(SkalValueError, match="dimensions"):
        tiny_net().fit(X[:, 0, 0, 0], y)              # 1-d
    with pytest.raises(SkalValueError, match="dimensions"):
        tiny_net().fit(X[:, None], y)                 # 5-d


def test_teach_different_image_size(learner, state):
    with pytest.raises(SkalValueError, match="match the training data"):
        learner.teach(np.zeros((2, 1, 16, 16), np.float32), [0, 1])
    state.assert_unchanged()


def test_teach_different_channels(learner, state):
    with pytest.raises(SkalValueError):
        learner.teach(np.zeros((2, 3, 8, 8), np.float32), [0, 1])
    state.assert_unchanged()


def test_predict_different_channels(learner, state):
    with pytest.raises(SkalValueError, match="channel"):
        learner.predict(np.zeros((2, 3, 8, 8), np.float32))
    state.assert_unchanged()


# ------------------------------------------------------------------ values
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_teach_non_finite(learner, state, binary, bad):
    X = binary[0][:3].copy()
    X[1, 0, 2, 3] = bad
    with pytest.raises(SkalValueError, match="NaN or infinite"):
        learner.teach(X, [0, 1, 0])
    state.assert_unchanged()


def test_fit_non_finite(binary):
    X, y, _ = binary
    X = X.copy()
    X[0, 0, 0, 0] = np.nan
    with pytest.raises(SkalValueError, match="NaN"):
        tiny_net().fit(X, y)
    with pytest.raises(SkalValueError, match="NaN"):
        ActiveLearner(tiny_net()).fit(X, y)


def test_query_pool_with_nan(learner, state, binary):
    pool = binary[2].copy()
    pool[3, 0, 1, 1] = np.nan
    with pytest.raises(SkalValueError, match="NaN"):
        learner.query(pool, n_instances=2)
    state.assert_unchanged()


def test_teach_nan_labels(learner, state, binary):
    with pytest.raises(SkalValueError, match="NaN"):
        learner.teach(binary[0][:2], np.array([0.0, np.nan]))
    state.assert_unchanged()


def test_teach_labels_none(learner, state, binary):
    with pytest.raises(SkalValueError):
        learner.teach(binary[0][:2], None)
    state.assert_unchanged()


def test_teach_string_images(learner, state):
    with pytest.raises(SkalTypeError):
        learner.teach(np.full((2, 1, 8, 8), "a"), [0, 1])
    with pytest.raises(SkalTypeError):
        learner.teach("not images", [0])
    state.assert_unchanged()


def test_teach_float_into_uint8_training_data(binary):
    X, y, probe = binary
    X8 = np.round(X * 255).astype(np.uint8)
    learner = ActiveLearner(tiny_net(), X_training=X8, y_training=y)
    learner.predict(X8[:1])
    state = State(learner, probe)
    with pytest.raises(SkalValueError, match="uint8"):
        learner.teach(X[:2], y[:2])                  # float images in [0, 1]
    state.assert_unchanged()
    assert learner.X_training_.max() > 1             # stored uint8 rows untouched
    learner.teach(X8[:2], y[:2])                     # same dtype works
    assert learner.X_training_.dtype == np.uint8 and len(learner.X_training_) == 26


def test_teach_string_labels_into_numeric_labels(learner, state, binary):
    with pytest.raises(SkalValueError, match="labels"):
        learner.teach(binary[0][:2], np.array(["a", "b"]))
    state.assert_unchanged()


def test_teach_mismatched_lengths(learner, state, binary):
    with pytest.raises(SkalValueError, match="3 samples but y has 2"):
        learner.teach(binary[0][:3], [0, 1])
    state.assert_unchanged()


def test_fit_mismatched_lengths(binary):
    X, y, _ = binary
    with pytest.raises(SkalValueError, match="must match"):
        tiny_net().fit(X, y[:-1])
    with pytest.raises(SkalValueError, match="must match"):
        ActiveLearner(tiny_net(), X_training=X, y_training=y[:-1]).predict(X[:1])


def test_teach_wrong_label_shape(learner, state, binary):
    with pytest.raises(SkalValueError):
        learner.teach(binary[0][:2], np.zeros((2, 3), int))
    state.assert_unchanged()


# ------------------------------------------------------------- n_instances
@pytest.mark.parametrize("n", [0, -1])
def test_n_instances_not_positive(learner, state, binary, n):
    with pytest.raises(SkalValueError, match="at least 1"):
        learner.query(binary[2], n_instances=n)
    state.assert_unchanged()


@pytest.mark.parametrize("n", [1.5, 2.0, "3", None, True])
def test_n_instances_not_int(learner, state, binary, n):
    with pytest.raises(SkalTypeError, match="integer"):
        learner.query(binary[2], n_instances=n)
    state.assert_unchanged()


def test_n_instances_numpy_int_ok(learner, binary):
    indices, _ = learner.query(binary[2], n_instances=np.int64(2))
    assert len(indices) == 2


def test_n_instances_larger_than_pool(learner, state, binary):
    with pytest.raises(SkalValueError, match="larger than the pool"):
        learner.query(binary[2][:3], n_instances=4)
    state.assert_unchanged()


def test_empty_pool(learner, state):
    with pytest.raises(SkalValueError, match="empty"):
        learner.query(np.zeros((0, 1, 8, 8), np.float32))
    state.assert_unchanged()


# ----------------------------------------------------------------- fitting
def test_query_before_fit(binary):
    learner = ActiveLearner(tiny_net())
    with pytest.raises(NotFittedError) as info:
        learner.query(binary[2])
    assert isinstance(info.value, sklearn.exceptions.NotFittedError)
    assert not hasattr(learner, "estimator_")
    with pytest.raises(sklearn.exceptions.NotFittedError):
        learner.predict(binary[2])
    with pytest.raises(NotFittedError):
        learner.X_training_
    with pytest.raises(NotFittedError):
        Committee([ActiveLearner(tiny_net())]).query(binary[2])


def test_only_one_of_training_pair(binary):
    with pytest.raises(SkalValueError, match="both"):
        ActiveLearner(tiny_net(), X_training=binary[0]).predict(binary[2])


def test_fit_single_class(binary):
    X, y, _ = binary
    ones = np.ones(len(X), int)
    with pytest.raises(SkalValueError, match="single class"):
        tiny_net().fit(X, ones)
    learner = ActiveLearner(tiny_net(), X_training=X, y_training=ones)
    with pytest.raises(SkalValueError, match="single class"):
        learner.predict(X[:1])
    assert not hasattr(learner, "estimator_")
    with pytest.raises(SkalValueError, match="single class"):
        ActiveLearner(tiny_net()).teach(X, ones)
    # declaring the classes up front makes a single-class start possible
    net = tiny_net(classes=[0, 1]).fit(X, ones)
    assert net.predict_proba(X).shape == (len(X), 2)


def test_refit_single_class_keeps_state(learner, state, binary):
    with pytest.raises(SkalValueError, match="single class"):
        learner.fit(binary[0], np.zeros(len(binary[0]), int))
    state.assert_unchanged()


def test_teach_failure_in_estimator_restores(binary):
    X, y, probe = binary

    class Boom(ClassifierMixin, BaseEstimator):
        def __init__(self, limit=24):
            self.limit = limit

        def fit(self, X, y):
            if len(X) > self.limit:
                raise RuntimeError("boom")
            self.classes_ = np.unique(y)
            return self

        def predict_proba(self, X):
            return np.full((len(X), 2), 0.5)

    learner = ActiveLearner(Boom(), X_training=X, y_training=y)
    learner.predict_proba(X[:1])
    state = State(learner, probe)
    with pytest.raises(RuntimeError, match="boom"):
        learner.teach(X[:2], y[:2])
    state.assert_unchanged()


# ------------------------------------------------------------- new classes
def test_new_class_with_warm_start(binary):
    learner = make_learner(binary, warm_start=True)
    state = State(learner, binary[2])
    with pytest.raises(SkalValueError, match=r"never seen before.*\[2\]|\[2\] never seen"):
        learner.teach(binary[0][:2], [2, 0])
    state.assert_unchanged()


def test_new_class_with_fixed_classes(binary):
    learner = make_learner(binary, classes=[0, 1])
    state = State(learner, binary[2])
    with pytest.raises(SkalValueError, match="classes"):
        learner.teach(binary[0][:2], [2, 0])
    state.assert_unchanged()


def test_new_class_with_only_new(learner, state, binary):
    with pytest.raises(SkalValueError, match="never seen"):
        learner.teach(binary[0][:2], [2, 0], only_new=True)
    state.assert_unchanged()


def test_new_class_on_cold_refit_works(learner, binary):
    np.testing.assert_array_equal(learner.estimator_.classes_, [0, 1])
    learner.teach(binary[0][:2], [2, 2])
    np.testing.assert_array_equal(learner.estimator_.classes_, [0, 1, 2])
    assert learner.predict_proba(binary[2]).shape == (20, 3)
    assert len(learner.X_training_) == 26


def test_known_classes_with_warm_start_work(binary):
    learner = make_learner(binary, warm_start=True)
    learner.teach(binary[0][:2], [1, 0])
    assert len(learner.X_training_) == 26


def test_net_partial_fit_unknown_label(binary):
    X, y, _ = binary
    net = tiny_net().fit(X, y)
    with pytest.raises(SkalValueError, match="not among the classes"):
        net.partial_fit(X[:2], np.array([0, 5]))


# --------------------------------------------------------------- strategies
def test_non_callable_strategy(binary):
    X, y, probe = binary
    learner = ActiveLearner(tiny_net(), query_strategy="uncertainty", X_training=X,
                            y_training=y)
    with pytest.raises(SkalTypeError, match="callable"):
        learner.query(probe)
    assert not hasattr(learner, "estimator_")
    with pytest.raises(SkalTypeError, match="callable"):
        Committee([make_learner(binary)], query_strategy=3).query(probe)


def _strategy(result):
    def strategy(learner, X_pool, n_instances=1, **kw):
        return result

    return strategy


@pytest.mark.parametrize("result,match", [
    (np.array([1, 1, 2]), "duplicate"),
    ((np.array([3, 3]), None), "duplicate"),
    (np.array([0, 20]), "outside the pool"),
    (np.array([-1, 2]), "outside the pool"),
    (np.array([0.0, 1.0]), "integer"),
    (np.array(["0", "1"]), "integer"),
    (np.array([[0, 1]]), "1-d"),
    (np.array([0, 1, 2, 3]), "4 indices"),
    (np.array([], dtype=int), "0 indices"),
])
def test_bad_strategy_results(learner, state, binary, result, match):
    learner.query_strategy = _strategy(result)
    try:
        with pytest.raises(SkalValueError, match=match):
            learner.query(binary[2], n_instances=3)
    finally:
        learner.query_strategy = state.params["query_strategy"]
    state.assert_unchanged()


def test_good_custom_strategy(learner, binary):
    learner.query_strategy = _strategy((np.array([5, 2]), np.array([0.9, 0.1])))
    indices, X_query, scores = learner.query(binary[2], n_instances=2, return_metrics=True)
    np.testing.assert_array_equal(indices, [5, 2])
    np.testing.assert_array_equal(X_query, binary[2][[5, 2]])
    np.testing.assert_array_equal(scores, [0.9, 0.1])


def test_strategy_error_propagates_unchanged(learner, state, binary):
    def broken(learner, X_pool, n_instances=1):
        raise KeyError("inside the strategy")

    learner.query_strategy = broken
    try:
        with pytest.raises(KeyError):
            learner.query(binary[2])
    finally:
        learner.query_strategy = state.params["query_strategy"]
    state.assert_unchanged()


def test_unknown_query_kwarg_is_type_error(learner, binary):
    learner.query_strategy = random_sampling
    with pytest.raises(TypeError):
        learner.query(binary[2], n_instances=2, not_a_parameter=1)


# ---------------------------------------------------------------- multilabel
def test_multilabel_bad_targets(binary):
    X, y, _ = binary
    with pytest.raises(SkalValueError, match="multi-hot"):
        MultiLabelCNNClassifier(**ONE_EPOCH).fit(X, np.full((len(X), 2), 2))
    net = MultiLabelCNNClassifier(**ONE_EPOCH, random_state=0).fit(X, np.stack([y, 1 - y], 1))
    with pytest.raises(SkalValueError, match="labels"):
        net.partial_fit(X[:2], np.zeros((2, 3), int))


def test_committee_bad_input_restores_all(binary):
    X, y, probe = binary
    members = [make_learner(binary), make_learner(binary)]
    states = [State(m, probe) for m in members]
    committee = Committee(members)
    with pytest.raises(SkalValueError):
        committee.teach(np.zeros((2, 1, 16, 16), np.float32), [0, 1])
    with pytest.raises(SkalValueError):
        committee.query(probe, n_instances=0)
    for s in states:
        s.assert_unchanged()


@pytest.mark.parametrize("random_state", ["abc", 1.5])
def test_bad_random_state(binary, random_state):
    X, y, _ = binary
    with pytest.raises(SkalTypeError, match="random_state"):
        tiny_net(random_state=random_state).fit(X, y)
