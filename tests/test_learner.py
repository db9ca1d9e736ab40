"""ActiveLearner: query, teach, in-place training buffers, sklearn contract, seeding."""

import math

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression

from conftest import TINY
from skal import (ActiveLearner, CNNClassifier, MultiLabelCNNClassifier, NotFittedError,
                  SkalValueError)
from skal.data import load_digits_images
from skal.learner import BaseLearner
from skal.query import (classifier_expected_gradnorm, entropy_sampling, expected_gradnorm,
                        margin_sampling, random_sampling, uncertainty_sampling)
from skal.utils.buffer import GrowableArray


def tiny_net(**kw):
    return CNNClassifier(**{**TINY, "random_state": 0, **kw})


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    return X[:200], y[:200] % 2


class CountingClassifier(ClassifierMixin, BaseEstimator):
    """A fast sklearn classifier that records what it was fitted on."""

    def __init__(self, tag=0):
        self.tag = tag

    def fit(self, X, y, **kw):
        self.classes_ = np.unique(y)
        self.n_fit_ = len(X)
        self.fit_kwargs_ = kw
        self.mean_ = np.asarray(X, dtype=float).reshape(len(X), -1).mean()
        return self

    def predict_proba(self, X):
        X = np.asarray(X, dtype=float).reshape(len(X), -1)
        p = 1 / (1 + np.exp(-(X.mean(1) - self.mean_) * 10))
        return np.stack([1 - p, p], axis=1)[:, : len(self.classes_)]

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


# --------------------------------------------------------------------- query
@pytest.mark.parametrize("strategy", [uncertainty_sampling, margin_sampling,
                                      entropy_sampling, random_sampling])
def test_query_returns_indices_and_samples(digits, strategy):
    X, y = digits
    learner = ActiveLearner(tiny_net(), strategy, X_training=X[:30], y_training=y[:30])
    pool = X[100:180]
    indices, X_query = learner.query(pool, n_instances=7)
    assert indices.shape == (7,)
    assert indices.dtype.kind in "iu"
    assert len(set(indices.tolist())) == 7
    assert indices.min() >= 0 and indices.max() < len(pool)
    np.testing.assert_array_equal(X_query, pool[indices])


def test_uncertainty_query_picks_most_uncertain(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:30], y_training=y[:30])
    pool = X[100:180]
    indices, _, scores = learner.query(pool, n_instances=5, return_metrics=True)
    uncertainty = 1 - learner.predict_proba(pool).max(1)
    np.testing.assert_allclose(scores, uncertainty[indices], atol=1e-6)
    assert scores.min() >= np.sort(uncertainty)[-5] - 1e-6
    assert np.all(np.diff(scores) <= 1e-12)    # most uncertain first


def test_query_single_instance_default(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:30], y_training=y[:30])
    indices, X_query = learner.query(X[100:120])
    assert indices.shape == (1,) and X_query.shape == (1, 1, 8, 8)


def test_return_metrics_random_sampling_none(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), random_sampling, X_training=X[:30], y_training=y[:30])
    indices, X_query, metrics = learner.query(X[100:150], n_instances=3, return_metrics=True)
    assert len(indices) == 3 and metrics is None


def test_query_random_state_passes_through(digits):
    X, y = digits
    seen = {}

    def strategy(learner, X_pool, n_instances=1, **kw):
        seen.update(kw)
        return random_sampling(learner, X_pool, n_instances, **kw)

    learner = ActiveLearner(tiny_net(), strategy, X_training=X[:30], y_training=y[:30])
    a, _ = learner.query(X[100:180], n_instances=5, random_state=11)
    assert seen == {"random_state": 11}
    b, _ = learner.query(X[100:180], n_instances=5, random_state=11)
    c, _ = learner.query(X[100:180], n_instances=5, random_state=12)
    np.testing.assert_array_equal(a, b)
    assert set(a.tolist()) != set(c.tolist())


def test_query_strategy_returning_bare_indices(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), lambda lrn, Xp, n_instances=1: np.arange(n_instances),
                            X_training=X[:30], y_training=y[:30])
    indices, X_query = learner.query(X[100:120], n_instances=4)
    np.testing.assert_array_equal(indices, [0, 1, 2, 3])


def test_base_learner_gives_a_custom_learner_query(digits):
    """A learner serving a model trained elsewhere: BaseLearner supplies ``query``
    (the strategy sees the learner; its result is checked; modAL's return value)."""
    X, y = digits
    model = LogisticRegression(max_iter=200).fit(X[:60].reshape(60, -1), y[:60])

    class Served(BaseLearner):
        query_strategy = staticmethod(uncertainty_sampling)

        def _prepare(self, required=True):
            return model

        @property
        def estimator(self):
            return model

        def predict_proba(self, X):
            return model.predict_proba(np.asarray(X).reshape(len(X), -1))

    pool = X[100:140]
    indices, X_query = Served().query(pool, n_instances=3)
    uncertainty = 1 - Served().predict_proba(pool).max(axis=1)
    np.testing.assert_array_equal(np.sort(indices), np.sort(np.argsort(-uncertainty)[:3]))
    np.testing.assert_array_equal(X_query, pool[indices])

    class Repeats(Served):
        query_strategy = staticmethod(lambda learner, X_pool, n_instances=1: np.zeros(2, int))

    with pytest.raises(SkalValueError, match="duplicate"):
        Repeats().query(pool, n_instances=2)
    with pytest.raises(NotImplementedError, match="_prepare"):
        type("NoHook", (BaseLearner,), {"query_strategy": staticmethod(random_sampling)})(
        ).query(pool)
    with pytest.warns(DeprecationWarning, match="BaseLearner"):
        from skal.learner import _QueryMixin
    assert _QueryMixin is BaseLearner


# --------------------------------------------------------------------- teach
def test_teach_grows_training_data(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:20], y_training=y[:20])
    pool, pool_y = X[100:200], y[100:200]
    indices, X_query = learner.query(pool, n_instances=5)
    learner.teach(X_query, pool_y[indices])
    assert len(learner.X_training_) == len(learner.y_training_) == 25
    np.testing.assert_array_equal(learner.X_training_[:20], X[:20])
    np.testing.assert_array_equal(learner.X_training_[20:], pool[indices])
    np.testing.assert_array_equal(learner.y_training_[20:], pool_y[indices])
    learner.teach(pool[:3], pool_y[:3])
    assert len(learner.X_training_) == 28
    assert learner.estimator_.n_channels_in_ == 1


def test_teach_refits_on_all_data():
    rng = np.random.default_rng(0)
    X = rng.random((30, 4))
    y = np.arange(30) % 2
    learner = ActiveLearner(CountingClassifier(), X_training=X[:10], y_training=y[:10])
    learner.teach(X[10:15], y[10:15])
    assert learner.estimator_.n_fit_ == 15
    learner.teach(X[15:16], y[15:16], only_new=True)
    assert learner.estimator_.n_fit_ == 1            # no partial_fit: fit on new only
    assert len(learner.X_training_) == 16


def test_teach_without_initial_data_fits(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net())
    with pytest.raises(NotFittedError):
        learner.query(X[:10])
    learner.teach(X[:20], y[:20])
    assert len(learner.X_training_) == 20
    assert learner.predict(X[:5]).shape == (5,)


def test_fit_replaces_training_data(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:20], y_training=y[:20])
    learner.teach(X[20:30], y[20:30])
    learner.fit(X[50:62], y[50:62])
    assert len(learner.X_training_) == 12
    np.testing.assert_array_equal(learner.X_training_, X[50:62])


# ----------------------------------------------------------- growable buffer
def test_buffer_grows_geometrically():
    rng = np.random.default_rng(0)
    X = rng.random((120, 4))
    y = np.arange(120) % 2
    learner = ActiveLearner(CountingClassifier(), X_training=X[:10], y_training=y[:10])
    learner.predict(X[:1])                              # lazy initial fit
    # X_training_ is a view of the buffer: it moves to new memory only on a reallocation
    reallocations = 0
    previous = learner.X_training_
    for i in range(10, 60):
        learner.teach(X[i:i + 1], y[i:i + 1])
        if not np.shares_memory(learner.X_training_, previous):
            reallocations += 1
        previous = learner.X_training_
    assert len(learner.X_training_) == 60
    assert reallocations <= math.ceil(math.log2(60)) - 3    # 16 -> 32 -> 64: 2
    np.testing.assert_array_equal(learner.X_training_, X[:60])
    np.testing.assert_array_equal(learner.y_training_, y[:60])


def test_training_data_not_restacked(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(max_epochs=1), X_training=X[:20], y_training=y[:20])
    learner.teach(X[20:21], y[20:21])          # the first growth: capacity doubles
    first, first_y = learner.X_training_, learner.y_training_
    learner.teach(X[21:22], y[21:22])
    second = learner.X_training_
    learner.teach(X[22:23], y[22:23])
    third = learner.X_training_
    # no restacking: the labelled data stay in one array, X and y alike
    assert np.shares_memory(first, second) and np.shares_memory(second, third)
    assert np.shares_memory(first_y, learner.y_training_)
    assert len(first) == 21 and len(third) == 23
    np.testing.assert_array_equal(third, X[:23])


def test_growable_array_unit():
    buf = GrowableArray()
    assert len(buf) == 0 and buf.view is None and buf.capacity == 0
    buf.append(np.zeros((3, 2)))
    assert buf.capacity == 16
    first = buf.view
    for _ in range(4):
        buf.append(np.ones((3, 2)))
    assert np.shares_memory(buf.view, first) and len(buf) == 15   # appended in place
    buf.append(np.ones((2, 2)))
    assert buf.capacity == 32 and len(buf) == 17
    assert not np.shares_memory(buf.view, first)                  # grown: new storage
    np.testing.assert_array_equal(buf.view[:3], 0)
    np.testing.assert_array_equal(buf.view[3:], 1)
    buf.truncate(5)
    assert len(buf) == 5 and buf.view.shape == (5, 2)
    from skal import SkalValueError
    with pytest.raises(SkalValueError):
        buf.append(np.ones((1, 3)))
    with pytest.raises(SkalValueError):
        buf.truncate(6)


# -------------------------------------------------------------- lazy fitting
def test_lazy_initial_fit(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:20], y_training=y[:20])
    assert not hasattr(learner, "estimator_")
    # __init__ stores the parameters as given (sklearn contract)
    assert learner.X_training is not None and learner.X_training.shape == (20, 1, 8, 8)
    learner.predict(X[:3])
    assert hasattr(learner, "estimator_")
    template = learner.get_params()["estimator"]
    assert learner.estimator is learner.estimator_        # modAL's name: the fitted model
    assert not hasattr(template, "module_")               # the template is untouched
    assert len(learner.X_training_) == 20


def test_lazy_fit_on_training_attribute(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:20], y_training=y[:20])
    assert len(learner.y_training_) == 20
    assert hasattr(learner, "estimator_")


def test_score(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:40], y_training=y[:40])
    assert learner.score(X[100:150], y[100:150]) == pytest.approx(
        (learner.predict(X[100:150]) == y[100:150]).mean())


# ------------------------------------------------------------- sklearn API
def test_get_set_params_with_fit_kwargs(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), uncertainty_sampling, X_training=X[:20],
                            y_training=y[:20], epochs=3)
    params = learner.get_params(deep=False)
    assert set(params) == {"estimator", "query_strategy", "X_training", "y_training",
                           "bootstrap_init", "on_transformed", "random_state", "epochs",
                           "finetune_from", "finetune_on", "finetune_epochs"}
    assert params["epochs"] == 3
    deep = learner.get_params(deep=True)
    assert deep["estimator__max_epochs"] == 2
    learner.set_params(epochs=4, query_strategy=margin_sampling, estimator__max_epochs=1)
    assert learner.fit_kwargs == {"epochs": 4}
    assert learner.query_strategy is margin_sampling
    assert learner.estimator.max_epochs == 1


def test_fit_kwargs_reach_estimator():
    rng = np.random.default_rng(0)
    X = rng.random((20, 4))
    y = np.arange(20) % 2
    learner = ActiveLearner(CountingClassifier(), X_training=X[:10], y_training=y[:10],
                            sample_weight=None)
    learner.predict(X[:1])
    assert learner.estimator_.fit_kwargs_ == {"sample_weight": None}
    learner.teach(X[10:12], y[10:12], extra=1)
    assert learner.estimator_.fit_kwargs_ == {"sample_weight": None, "extra": 1}


def test_clone_keeps_params_and_is_unfitted(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), margin_sampling, X_training=X[:20],
                            y_training=y[:20], epochs=2)
    learner.teach(X[20:25], y[20:25])
    cloned = clone(learner)
    assert not hasattr(cloned, "estimator_")
    assert cloned.query_strategy is margin_sampling
    assert cloned.fit_kwargs == {"epochs": 2}
    template = cloned.get_params()["estimator"]
    assert template is not learner.get_params()["estimator"]
    assert template.get_params()["module__widths"] == (8,)
    assert not hasattr(template, "module_")
    # the clone is lazily fitted on the original initial data, not on taught samples
    assert len(cloned.X_training_) == 20


def test_clone_without_data_raises_not_fitted(digits):
    X, _ = digits
    cloned = clone(ActiveLearner(tiny_net()))
    with pytest.raises(NotFittedError):
        cloned.predict(X[:2])


# ---------------------------------------------------------- continued training
def test_only_new_uses_partial_fit(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:30], y_training=y[:30])
    learner.predict(X[:1])
    before = learner.estimator_
    weights = before.module_.fc.weight.detach().clone()
    learner.teach(X[30:40], y[30:40], only_new=True)
    after = learner.estimator_
    assert after is not before                          # a copy is trained
    assert len(before.history_) == 2                    # the old model is untouched
    assert len(after.history_) == 4                     # training continued
    assert after.history_[2]["batches"][0]["train_batch_size"] <= 10   # on new data only
    np.testing.assert_array_equal(before.module_.fc.weight.detach(), weights)
    assert not np.allclose(after.module_.fc.weight.detach(), weights)
    assert len(learner.X_training_) == 40


def test_warm_start_continues_training(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(warm_start=True), X_training=X[:30], y_training=y[:30])
    learner.predict(X[:1])
    assert len(learner.estimator_.history_) == 2
    learner.teach(X[30:40], y[30:40])
    assert len(learner.estimator_.history_) == 4
    learner.teach(X[40:45], y[40:45])
    assert len(learner.estimator_.history_) == 6
    assert len(learner.X_training_) == 45


def test_cold_refit_restarts_training(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:30], y_training=y[:30])
    learner.teach(X[30:40], y[30:40])
    assert len(learner.estimator_.history_) == 2
    # a cold refit on all data equals fitting a fresh clone on the same data
    fresh = clone(tiny_net()).fit(X[:40], y[:40])
    np.testing.assert_array_equal(learner.predict_proba(X[100:120]),
                                  fresh.predict_proba(X[100:120]))


# --------------------------------------------------------------- determinism
def test_same_random_state_same_campaign(digits):
    X, y = digits
    pool, pool_y = X[60:200], y[60:200]

    def campaign(seed):
        learner = ActiveLearner(tiny_net(random_state=seed), X_training=X[:20],
                                y_training=y[:20])
        picked = []
        for _ in range(2):
            indices, X_query = learner.query(pool, n_instances=4)
            learner.teach(X_query, pool_y[indices])
            picked.append(indices)
        return np.concatenate(picked), learner.predict_proba(pool)

    idx_a, p_a = campaign(1)
    idx_b, p_b = campaign(1)
    idx_c, p_c = campaign(2)
    np.testing.assert_array_equal(idx_a, idx_b)
    np.testing.assert_array_equal(p_a, p_b)
    assert not np.allclose(p_a, p_c)


def test_predict_proba_delegates(digits):
    X, y = digits
    learner = ActiveLearner(tiny_net(), X_training=X[:30], y_training=y[:30])
    np.testing.assert_array_equal(learner.predict_proba(X[:10]),
                                  learner.estimator_.predict_proba(X[:10]))
    np.testing.assert_array_equal(learner.predict(X[:10]), learner.estimator_.predict(X[:10]))


def test_flat_features_with_logistic_regression(digits):
    X, y = digits
    flat = X.reshape(len(X), -1)
    learner = ActiveLearner(LogisticRegression(max_iter=200), X_training=flat[:30],
                            y_training=y[:30])
    indices, X_query = learner.query(flat[100:150], n_instances=3)
    assert X_query.shape == (3, 64)
    learner.teach(X_query, y[100:150][indices])
    assert learner.X_training_.shape == (33, 64)


# ------------------------------------------- one-vs-rest MultiLabelCNNClassifier
def test_one_vs_rest_multilabel_net_in_learner(digits):
    """A MultiLabelCNNClassifier fitted on 1-d (string) labels: uncertainty reads its
    [1 - p, p] as one distribution, gradient strategies its one sigmoid logit, and
    unseen labels are caught before continued training."""
    X, y = digits
    labels = np.array(["even", "odd"])[y]
    net = MultiLabelCNNClassifier(**TINY, random_state=0)
    learner = ActiveLearner(net, uncertainty_sampling, X_training=X[:30],
                            y_training=labels[:30])
    pool = X[100:160]
    idx, _ = learner.query(pool, n_instances=5)
    proba = learner.predict_proba(pool)
    assert proba.shape == (60, 2)
    np.testing.assert_array_equal(idx, np.argsort(np.abs(proba[:, 1] - 0.5))[:5])
    learner.teach(pool[idx], labels[100:160][idx])
    assert set(learner.predict(pool)) <= {"even", "odd"}
    assert learner.estimator_.multilabel_ is False

    learner.query_strategy = expected_gradnorm
    idx, _ = learner.query(pool, n_instances=5)
    scores = classifier_expected_gradnorm(learner, pool)
    np.testing.assert_array_equal(idx, np.argsort(-scores)[:5])
    # one sigmoid logit z: E_{y ~ Bern(p)} ||grad BCE|| = 2 p (1 - p) ||[h, 1]|| on the
    # final layer (weights and bias, norm="reference": ||h|| + 1)
    p = learner.predict_proba(pool)[:, 1]
    h = learner.estimator_.embed(pool)
    np.testing.assert_allclose(scores, 2 * p * (1 - p) * (np.linalg.norm(h, axis=1) + 1),
                               rtol=1e-5)
    with pytest.raises(SkalValueError, match="never seen before"):
        learner.teach(pool[:2], ["odd", "seven"], only_new=True)


# ---------------------------------------------- modAL's names and habits (issue 12)
def flat(digits, n=None):
    X, y = digits
    return X.reshape(len(X), -1)[:n], y[:n]


def test_training_names_read_all_labelled_data_and_params_stay(digits):
    X, y = flat(digits)
    learner = ActiveLearner(LogisticRegression(max_iter=200), X_training=X[:10],
                            y_training=y[:10])
    learner.teach(X[10:14], y[10:14])
    learner.teach(X[14:15], y[14:15])
    # modAL's names: every labelled sample, in order
    np.testing.assert_array_equal(learner.X_training, X[:15])
    np.testing.assert_array_equal(learner.y_training, y[:15])
    with pytest.raises(ValueError):          # read-only: only teach changes them
        learner.X_training[0, 0] = 1.0
    # scikit-learn's names: the constructor values, untouched
    params = learner.get_params(deep=False)
    assert params["X_training"].shape[0] == 10 and params["y_training"].shape[0] == 10
    assert len(clone(learner).X_training) == 10


def test_estimator_reads_as_the_fitted_model(digits):
    X, y = flat(digits)
    template = LogisticRegression(max_iter=200)
    learner = ActiveLearner(template, X_training=X[:20], y_training=y[:20])
    model = learner.estimator                         # fits lazily, as predict would
    assert model is learner.estimator_ and model is not template
    np.testing.assert_array_equal(model.predict(X[50:60]), learner.predict(X[50:60]))
    assert not hasattr(template, "coef_")             # the template is never trained
    assert learner.get_params()["estimator"] is template


def test_assigning_training_data_drops_the_model(digits):
    X, y = flat(digits)
    learner = ActiveLearner(CountingClassifier(), X_training=X[:10], y_training=y[:10])
    learner.teach(X[10:12], y[10:12])
    learner.set_params(X_training=X[:30], y_training=y[:30])
    assert not hasattr(learner, "estimator_")
    np.testing.assert_array_equal(learner.X_training, X[:30])
    learner.predict(X[:2])                            # refits on what was assigned
    assert learner.estimator_.n_fit_ == 30
    # a new estimator keeps the labelled data
    learner.teach(X[30:33], y[30:33])
    learner.estimator = CountingClassifier(tag=1)
    learner.predict(X[:2])
    assert learner.estimator_.tag == 1 and learner.estimator_.n_fit_ == 33


def test_fitted_estimator_without_data_is_used_at_once(digits):
    X, y = flat(digits)
    fitted = LogisticRegression(max_iter=200).fit(X[:40], y[:40])
    expected = fitted.predict_proba(X[100:150])
    learner = ActiveLearner(fitted)
    assert learner.X_training is None
    np.testing.assert_allclose(learner.predict_proba(X[100:150]), expected, atol=0)
    indices, _ = learner.query(X[100:150], n_instances=3)
    margins = np.abs(expected[:, 1] - expected[:, 0])
    assert set(indices.tolist()) == set(np.argsort(margins, kind="stable")[:3].tolist())
    learner.teach(X[40:44], y[40:44])                # its first labels
    assert len(learner.X_training) == 4
    np.testing.assert_allclose(fitted.predict_proba(X[100:150]), expected, atol=0)


def test_unfitted_estimator_without_data_queries_with_model_free_strategy(digits):
    X, _ = digits
    learner = ActiveLearner(tiny_net(), random_sampling)
    indices, X_query = learner.query(X[:50], n_instances=4, random_state=0)
    assert len(set(indices.tolist())) == 4
    with pytest.raises(NotFittedError):
        ActiveLearner(tiny_net()).query(X[:50], n_instances=2)


def test_strategy_receives_exactly_the_callers_arguments(digits):
    X, y = flat(digits)
    calls = []

    def strategy(learner, X_pool, *args, **kwargs):
        calls.append((args, kwargs))
        return np.array([0])

    learner = ActiveLearner(CountingClassifier(), strategy, X_training=X[:10],
                            y_training=y[:10])
    learner.query(X[20:30])
    learner.query(X[20:30], 1, flag="x")
    learner.query(X[20:30], n_instances=1)
    assert calls == [((), {}), ((1,), {"flag": "x"}), ((), {"n_instances": 1})]

    def no_n_instances(learner, X_pool):               # modAL's old interface
        return 3

    learner.query_strategy = no_n_instances
    index, row = learner.query(X[20:30])
    assert index == 3
    np.testing.assert_array_equal(row, X[23])

    def k_and_n(learner, X_pool, K=1, N=1):            # positional args of its own
        return np.arange(K + N)

    learner.query_strategy = k_and_n
    indices, _ = learner.query(X[20:30], 2, 3)
    np.testing.assert_array_equal(indices, np.arange(5))


@pytest.mark.parametrize("where", ["init", "teach"])
def test_modal_only_arguments_name_the_skal_way(digits, where):
    X, y = flat(digits)
    kwargs = {"force_all_finite": False}
    learner = ActiveLearner(CountingClassifier(), X_training=X[:10], y_training=y[:10],
                            **(kwargs if where == "init" else {}))
    with pytest.raises(TypeError, match="modAL argument.*NaN"):
        if where == "init":
            learner.predict(X[:2])
        else:
            learner.teach(X[10:12], y[10:12], **kwargs)


def test_n_classes(digits):
    X, y = flat(digits)
    learner = ActiveLearner(LogisticRegression(max_iter=200), X_training=X[:20],
                            y_training=y[:20] + 3)
    np.testing.assert_array_equal(learner.classes_, [3, 4])
    assert learner.n_classes_ == 2


def test_bootstrap_init_and_rebag_train_on_resamples(digits):
    X, y = flat(digits)
    X = X + np.arange(len(X))[:, None] * 1e-3          # every row distinct

    class Recorder(CountingClassifier):
        def fit(self, X, y, **kw):
            self.n_distinct_ = len(np.unique(X, axis=0))
            return super().fit(X, y, **kw)

    def learner(seed):
        return ActiveLearner(Recorder(), X_training=X[:40], y_training=y[:40],
                             bootstrap_init=True, random_state=seed)

    a, b = learner(0), learner(0)
    a.predict(X[:1])
    b.predict(X[:1])
    assert a.estimator_.n_fit_ == 40 and a.estimator_.n_distinct_ < 40   # with replacement
    assert a.estimator_.mean_ == b.estimator_.mean_                     # seeded
    a.rebag()
    assert a.estimator_.n_fit_ == 40 and a.estimator_.n_distinct_ < 40
    a.teach(X[40:45], y[40:45], bootstrap=True)
    assert a.estimator_.n_fit_ == 45 and len(a.X_training) == 45


def test_transform_without_estimating(digits):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = flat(digits)
    learner = ActiveLearner(make_pipeline(StandardScaler(), LogisticRegression()),
                            X_training=X[:30], y_training=y[:30], on_transformed=True)
    scaler = StandardScaler().fit(X[:30])
    np.testing.assert_allclose(learner.transform_without_estimating(X[50:55]),
                               scaler.transform(X[50:55]), atol=1e-12)
    images, labels = digits
    net_learner = ActiveLearner(tiny_net(), X_training=images[:20], y_training=labels[:20])
    np.testing.assert_array_equal(net_learner.transform_without_estimating(images[:5]),
                                  net_learner.estimator_.embed(images[:5]))


class SoftmaxNet(torch.nn.Module):
    """A plain torch module for skorch's own NeuralNetClassifier (probabilities out)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, X):
        return torch.softmax(self.fc(X), dim=-1)


def test_only_new_with_a_plain_skorch_classifier():
    from skorch import NeuralNetClassifier

    rng = np.random.default_rng(0)
    X = rng.random((60, 4)).astype(np.float32)
    y = np.arange(60) % 3
    learner = ActiveLearner(NeuralNetClassifier(SoftmaxNet, max_epochs=1, train_split=None,
                                                verbose=0),
                            X_training=X[:30], y_training=y[:30])
    learner.teach(X[30:33][y[30:33] == 0], y[30:33][y[30:33] == 0], only_new=True)
    # class 2 was not in the last batch (skorch reset classes_ to [0]) but was trained on
    learner.teach(X[33:36], y[33:36], only_new=True)
    assert len(learner.X_training) == 34
    with pytest.raises(SkalValueError, match="never seen"):
        learner.teach(X[36:38], np.array([7, 7]), only_new=True)


# -------------------------------------------- a failed teach changes nothing (issue 15)
class Explodes(CountingClassifier):
    """Raises the given exception when fitted on more than ``limit`` samples."""

    def __init__(self, limit=10, error=RuntimeError):
        self.limit = limit
        self.error = error

    def fit(self, X, y, **kw):
        if len(X) > self.limit:
            raise self.error("simulated failure")
        return super().fit(X, y, **kw)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_teach_leaves_buffers_as_they_were(digits, error):
    X, y = flat(digits)
    y = y.astype(np.int64) + 2**60                        # not exact as float64
    learner = ActiveLearner(Explodes(error=error), X_training=X[:10], y_training=y[:10])
    model = learner.estimator
    with pytest.raises(error, match="simulated"):         # re-raised, Ctrl-C included
        learner.teach(X[10:13], y[10:13])
    assert learner.estimator_ is model
    assert learner.y_training.dtype == np.int64 and learner.X_training.dtype == X.dtype
    np.testing.assert_array_equal(learner.y_training, y[:10])
    np.testing.assert_array_equal(learner.X_training, X[:10])
    learner.set_params(estimator__limit=100)              # usable afterwards
    learner.teach(X[10:13], y[10:13])
    np.testing.assert_array_equal(learner.y_training, y[:13])


def test_bad_labels_leave_the_learner_unchanged(digits):
    X, y = flat(digits)
    learner = ActiveLearner(CountingClassifier(), X_training=X[:10], y_training=y[:10])
    learner.predict(X[:1])
    model = learner.estimator_
    with pytest.raises(SkalValueError, match="not values of"):
        learner.teach(X[10:12], np.array([0.5, 1.0]))
    with pytest.raises(SkalValueError):
        learner.teach(X[10:12], np.array(["a", "b"]))
    assert learner.estimator_ is model and learner.y_training.dtype == y.dtype
    np.testing.assert_array_equal(learner.y_training, y[:10])
    learner.teach(X[10:12], np.array([1.0, 0.0]))        # integral floats are stored as ints
    assert learner.y_training.dtype == y.dtype
