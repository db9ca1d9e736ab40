"""Uncertainty measures, selection, streaming pools and random sampling."""

import numpy as np
import pytest

from conftest import ArrayDataset
from skal import ActiveLearner, CNNClassifier, MultiLabelCNNClassifier, SkalValueError
from skal.data import load_digits_images
from skal.query import (classifier_entropy, classifier_margin, classifier_uncertainty,
                        entropy_sampling, margin_sampling, multi_argmax, random_sampling,
                        score_pool, uncertainty_sampling)
from skal.query.base import is_multilabel, predict_proba_pool, predicts_label_sets

PROBA = np.array([
    [0.7, 0.2, 0.1],
    [0.4, 0.4, 0.2],
    [1 / 3, 1 / 3, 1 / 3],
    [1.0, 0.0, 0.0],
    [0.1, 0.5, 0.4],
])
LEAST_CONF = np.array([0.3, 0.6, 2 / 3, 0.0, 0.5])
MARGIN = np.array([0.5, 0.0, 0.0, 1.0, 0.1])
ENTROPY = np.array([
    -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)),
    -(2 * 0.4 * np.log(0.4) + 0.2 * np.log(0.2)),
    np.log(3),
    0.0,
    -(0.1 * np.log(0.1) + 0.5 * np.log(0.5) + 0.4 * np.log(0.4)),
])

ML_PROBA = np.array([
    [0.9, 0.5, 0.2],
    [0.1, 0.0, 1.0],
    [0.6, 0.3, 0.5],
    [0.5, 0.5, 0.5],
])


def _bin_entropy(p):
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return np.nan_to_num(h)


class FakeClassifier:
    """Any object with predict_proba works; it returns fixed rows chosen by X[:, 0]."""

    def __init__(self, proba, multilabel=None):
        self.proba = np.asarray(proba)
        if multilabel is not None:      # the fitted attribute skal's classifiers carry
            self.output_kind_ = "multilabel" if multilabel else "softmax"

    def predict_proba(self, X):
        return self.proba[np.asarray(X)[:, 0].astype(int)]


def _pool(n):
    return np.arange(n, dtype=np.float64)[:, None]


# ----------------------------------------------------------- single label
@pytest.mark.parametrize("measure,expected", [
    (classifier_uncertainty, LEAST_CONF),
    (classifier_margin, MARGIN),
    (classifier_entropy, ENTROPY),
])
def test_single_label_measures(measure, expected):
    clf = FakeClassifier(PROBA)
    np.testing.assert_allclose(measure(clf, _pool(5)), expected, atol=1e-12)
    np.testing.assert_allclose(measure(clf, _pool(5), batch_size=2), expected, atol=1e-12)


def test_binary_margin():
    clf = FakeClassifier(np.array([[0.8, 0.2], [0.45, 0.55]]))
    np.testing.assert_allclose(classifier_margin(clf, _pool(2)), [0.6, 0.1], atol=1e-12)


def test_single_label_strategies():
    clf = FakeClassifier(PROBA)
    idx, scores = uncertainty_sampling(clf, _pool(5), n_instances=2)
    np.testing.assert_array_equal(idx, [2, 1])
    np.testing.assert_allclose(scores, [2 / 3, 0.6])
    idx, scores = entropy_sampling(clf, _pool(5), n_instances=1)
    np.testing.assert_array_equal(idx, [2])
    np.testing.assert_allclose(scores, [np.log(3)])
    idx, margins = margin_sampling(clf, _pool(5), n_instances=3)
    # margins 0, 0 (tie: lower index first), then 0.1
    np.testing.assert_array_equal(idx, [1, 2, 4])
    np.testing.assert_allclose(margins, [0.0, 0.0, 0.1], atol=1e-12)


# ------------------------------------------------------------ multi label
@pytest.mark.parametrize("aggregate", ["sum", "mean", "max"])
def test_multilabel_measures(aggregate):
    agg = {"sum": np.sum, "mean": np.mean, "max": np.max}[aggregate]
    expected = {
        classifier_uncertainty: agg(np.minimum(ML_PROBA, 1 - ML_PROBA), axis=1),
        classifier_margin: agg(np.abs(2 * ML_PROBA - 1), axis=1),
        classifier_entropy: agg(_bin_entropy(ML_PROBA), axis=1),
    }
    detected = FakeClassifier(ML_PROBA, multilabel=True)
    plain = FakeClassifier(ML_PROBA)
    for measure, values in expected.items():
        np.testing.assert_allclose(measure(detected, _pool(4), aggregate=aggregate), values,
                                   atol=1e-12)
        np.testing.assert_allclose(
            measure(plain, _pool(4), multilabel=True, aggregate=aggregate), values,
            atol=1e-12)


def test_multilabel_hand_values():
    clf = FakeClassifier(ML_PROBA, multilabel=True)
    np.testing.assert_allclose(classifier_uncertainty(clf, _pool(4)),
                               [0.1 + 0.5 + 0.2, 0.1 + 0 + 0, 0.4 + 0.3 + 0.5, 1.5],
                               atol=1e-12)
    np.testing.assert_allclose(classifier_uncertainty(clf, _pool(4), aggregate="mean"),
                               [0.8 / 3, 0.1 / 3, 1.2 / 3, 0.5], atol=1e-12)
    np.testing.assert_allclose(classifier_entropy(clf, _pool(4))[3], 3 * np.log(2))
    np.testing.assert_allclose(classifier_entropy(clf, _pool(4))[1], _bin_entropy(0.1))


def test_multilabel_flag_changes_result():
    # the same probabilities read as single-label give a different uncertainty
    plain = FakeClassifier(ML_PROBA)
    single = classifier_uncertainty(plain, _pool(4))
    np.testing.assert_allclose(single, 1 - ML_PROBA.max(1))
    explicit_off = classifier_uncertainty(FakeClassifier(ML_PROBA, multilabel=True),
                                          _pool(4), multilabel=False)
    np.testing.assert_allclose(explicit_off, single)


def test_bad_aggregate():
    with pytest.raises(SkalValueError, match="aggregate"):
        classifier_entropy(FakeClassifier(ML_PROBA, True), _pool(4), aggregate="median")


def test_multilabel_detection_through_learner():
    class Learner:
        estimator_ = FakeClassifier(ML_PROBA, multilabel=True)

        def predict_proba(self, X):
            return self.estimator_.predict_proba(X)

    np.testing.assert_allclose(
        classifier_uncertainty(Learner(), _pool(4)),
        np.minimum(ML_PROBA, 1 - ML_PROBA).sum(1))


def test_one_vs_rest_fit_is_scored_as_single_label():
    """A sigmoid head fitted on 1-d labels (``output_kind_ == "one-vs-rest"``) returns
    one distribution over classes_: it is scored as a single-label model."""
    clf = FakeClassifier(PROBA)
    clf.output_kind_ = "one-vs-rest"
    assert is_multilabel(clf) and not predicts_label_sets(clf)
    for measure, expected in ((classifier_uncertainty, LEAST_CONF),
                              (classifier_margin, MARGIN), (classifier_entropy, ENTROPY)):
        np.testing.assert_allclose(measure(clf, _pool(5)), expected)
    clf.output_kind_ = "multilabel"                         # multi-hot fit: per label
    np.testing.assert_allclose(classifier_entropy(clf, _pool(5)),
                               _bin_entropy(PROBA).sum(axis=1))
    assert predicts_label_sets(FakeClassifier(ML_PROBA, multilabel=True))


def test_one_vs_rest_multiclass_net_uncertainty():
    X, y = load_digits_images()
    net = MultiLabelCNNClassifier(min_steps=None, augment=None, module__widths=(8,),
                                  module__hidden=16, max_epochs=2,
                                  random_state=0).fit(X[:60], y[:60] % 3)
    proba = net.predict_proba(X[60:90])
    np.testing.assert_allclose(classifier_entropy(net, X[60:90]),
                               -(proba * np.log(proba)).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(classifier_uncertainty(net, X[60:90]), 1 - proba.max(axis=1))


# ------------------------------------------------------------- multi_argmax
def test_multi_argmax_orders_by_value():
    idx, vals = multi_argmax([0.1, 0.9, 0.5, 0.7], n_instances=3)
    np.testing.assert_array_equal(idx, [1, 3, 2])
    np.testing.assert_allclose(vals, [0.9, 0.7, 0.5])


def test_multi_argmax_ties_seeded():
    values = np.ones(100)
    a, _ = multi_argmax(values, 5, random_state=0)
    b, _ = multi_argmax(values, 5, random_state=0)
    c, _ = multi_argmax(values, 5, random_state=1)
    np.testing.assert_array_equal(a, b)
    assert set(a.tolist()) != set(c.tolist())
    assert len(set(a.tolist())) == 5
    none, _ = multi_argmax(values, 5, random_state=None)
    np.testing.assert_array_equal(none, [0, 1, 2, 3, 4])


def test_multi_argmax_ties_only_among_tied():
    values = np.array([0.2, 0.9, 0.5, 0.5, 0.5, 0.5, 0.1])
    for seed in range(5):
        idx, vals = multi_argmax(values, 3, random_state=seed)
        assert idx[0] == 1
        assert set(idx[1:].tolist()) <= {2, 3, 4, 5}
        np.testing.assert_allclose(vals, [0.9, 0.5, 0.5])


def test_multi_argmax_random_state_objects():
    values = np.zeros(50)
    a, _ = multi_argmax(values, 4, random_state=np.random.RandomState(3))
    b, _ = multi_argmax(values, 4, random_state=np.random.RandomState(3))
    np.testing.assert_array_equal(a, b)


def test_multi_argmax_errors():
    with pytest.raises(SkalValueError):
        multi_argmax([1.0, np.nan], 1)
    with pytest.raises(SkalValueError):
        multi_argmax(np.ones((2, 2)), 1)
    with pytest.raises(SkalValueError):
        multi_argmax([1.0, 2.0], 3)


def test_strategy_random_state_tie_breaking():
    clf = FakeClassifier(np.full((40, 2), 0.5))
    a, _ = uncertainty_sampling(clf, _pool(40), n_instances=3, random_state=4)
    b, _ = uncertainty_sampling(clf, _pool(40), n_instances=3, random_state=4)
    c, _ = uncertainty_sampling(clf, _pool(40), n_instances=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, [0, 1, 2])


# ---------------------------------------------------------------- streaming
@pytest.fixture(scope="module")
def fitted():
    X, y = load_digits_images()
    X8 = np.round(X[:150] * 255).astype(np.uint8)
    clf = CNNClassifier(min_steps=None, augment=None, module__widths=(8,), module__hidden=16,
                        max_epochs=2, random_state=0).fit(X8[:40], y[:40] % 2)
    return clf, X8[40:150]


def test_memmap_pool_matches_array(fitted, tmp_path):
    clf, pool = fitted
    path = tmp_path / "pool.dat"
    mm = np.memmap(path, dtype=pool.dtype, mode="w+", shape=pool.shape)
    mm[:] = pool
    mm.flush()
    del mm
    mm = np.memmap(path, dtype=pool.dtype, mode="r", shape=pool.shape)
    for measure in (classifier_uncertainty, classifier_margin, classifier_entropy):
        # batches of 16 vs the default: float32 forward passes batched differently may
        # round differently (~1e-7 relative on logits, more on other CPUs' kernels);
        # 1e-5 still catches a wrong row, a skipped batch or a mis-scaled memmap
        np.testing.assert_allclose(measure(clf, mm, batch_size=16), measure(clf, pool),
                                   atol=1e-5)
    np.testing.assert_array_equal(uncertainty_sampling(clf, mm, 5)[0],
                                  uncertainty_sampling(clf, pool, 5)[0])


@pytest.mark.parametrize("labelled", [False, True])
def test_dataset_pool_matches_array(fitted, labelled):
    clf, pool = fitted
    ds = ArrayDataset(pool, labelled=labelled)
    for measure in (classifier_uncertainty, classifier_margin, classifier_entropy):
        # differently batched float32 forward passes: equal up to rounding (see above)
        np.testing.assert_allclose(measure(clf, ds, batch_size=32), measure(clf, pool),
                                   atol=1e-5)


def test_learner_query_on_dataset_and_memmap(fitted, tmp_path):
    clf, pool = fitted
    X, y = load_digits_images()
    learner = ActiveLearner(CNNClassifier(min_steps=None, augment=None, module__widths=(8,),
                                          module__hidden=16, max_epochs=2, random_state=0),
                            X_training=np.round(X[:40] * 255).astype(np.uint8),
                            y_training=y[:40] % 2)
    ref_idx, ref_X = learner.query(pool, n_instances=4)
    idx, subset = learner.query(ArrayDataset(pool), n_instances=4)
    np.testing.assert_array_equal(idx, ref_idx)
    assert len(subset) == 4
    np.testing.assert_array_equal(np.stack([subset[i].numpy() for i in range(4)]), ref_X)
    # a Subset of a dataset can be taught directly
    learner.teach(subset, y[40:150][idx] % 2)
    assert len(learner.X_training_) == 44
    np.testing.assert_array_equal(learner.X_training_[40:], ref_X)


class SpyClassifier:
    def __init__(self):
        self.batch_lengths = []

    def predict_proba(self, X):
        self.batch_lengths.append(len(X))
        p = (np.asarray(X, dtype=float).reshape(len(X), -1)[:, 0] % 10) / 10
        return np.stack([p, 1 - p], axis=1)


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_scoring_loop_respects_batch_size(batch_size):
    pool = np.arange(100, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    spy = SpyClassifier()
    scores = classifier_entropy(spy, pool, batch_size=batch_size)
    assert max(spy.batch_lengths) <= batch_size
    assert sum(spy.batch_lengths) == 100
    assert scores.shape == (100,)
    spy_ds = SpyClassifier()
    classifier_uncertainty(spy_ds, ArrayDataset(pool), batch_size=batch_size)
    assert max(spy_ds.batch_lengths) <= batch_size
    assert sum(spy_ds.batch_lengths) == 100


def test_default_batch_size_bounds_predict_calls():
    pool = np.zeros((600, 2, 2), np.float32)
    spy = SpyClassifier()
    uncertainty_sampling(spy, pool, n_instances=2)
    assert max(spy.batch_lengths) <= 256 and sum(spy.batch_lengths) == 600


def test_net_predict_batch_size_bounds_forward(fitted):
    clf, pool = fitted
    sizes = []
    handle = clf.module_.register_forward_pre_hook(lambda _m, inp: sizes.append(len(inp[0])))
    try:
        old = clf.predict_batch_size
        clf.predict_batch_size = 16
        clf.predict_proba(pool)
    finally:
        clf.predict_batch_size = old
        handle.remove()
    assert max(sizes) <= 16 and sum(sizes) == len(pool)


def test_score_pool_generic():
    X = np.arange(10, dtype=float)[:, None]
    out = score_pool(lambda b: b[:, 0] * 2, X, batch_size=3)
    np.testing.assert_allclose(out, np.arange(10) * 2)
    out2 = score_pool(lambda b: np.repeat(b, 2, axis=1), X, batch_size=4)
    assert out2.shape == (10, 2)
    with pytest.raises(SkalValueError):
        score_pool(lambda b: b[:1, 0], X, batch_size=3)
    with pytest.raises(SkalValueError):
        score_pool(lambda b: b, np.zeros((0, 1)))
    np.testing.assert_allclose(predict_proba_pool(FakeClassifier(PROBA), _pool(5), 2), PROBA)


# ----------------------------------------------------------------- random
def test_random_sampling():
    pool = np.zeros((50, 4, 4))
    idx, scores = random_sampling(None, pool, n_instances=10, random_state=0)
    assert scores is None
    assert len(set(idx.tolist())) == 10
    assert idx.min() >= 0 and idx.max() < 50
    again, _ = random_sampling(None, pool, n_instances=10, random_state=0)
    other, _ = random_sampling(None, pool, n_instances=10, random_state=1)
    np.testing.assert_array_equal(idx, again)
    assert set(idx.tolist()) != set(other.tolist())
    everything, _ = random_sampling(None, pool, n_instances=50, random_state=2)
    assert sorted(everything.tolist()) == list(range(50))
    with pytest.raises(SkalValueError):
        random_sampling(None, pool, n_instances=51)
