"""Property-based tests of the public API (hypothesis).

Random shapes, dtypes, label types, pool kinds, budgets and call sequences on tiny
nets. The invariant everywhere: a correct result, or a skal error that derives from
``ValueError`` / ``TypeError`` and leaves the state unchanged.

CI stability: ``derandomize=True`` (the examples are a fixed function of the test),
no example database, no deadline, few examples; the whole file runs in well under a
minute.
"""

import copy

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import TINY, ArrayDataset
from skal import (ActiveLearner, CNNClassifier, MultiLabelCNNClassifier, NotFittedError,
                  SkalError)
from skal.query import coreset_sampling, margin_sampling, random_sampling
from skal.simulate import simulate

NET = dict(TINY, max_epochs=1, batch_size=8, module__widths=(4,), module__hidden=8,
           random_state=0)

PROFILE = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))


def _assert_skal_error(exc):
    """A failure must be a skal error that is also a ValueError or TypeError."""
    assert isinstance(exc, SkalError), repr(exc)
    assert isinstance(exc, (ValueError, TypeError)), repr(exc)


# ------------------------------------------------------------------ generators
DTYPES = ["uint8", "float32", "float64", ">f4", "int16", "<f2"]


@st.composite
def image_sets(draw, min_n=2, max_n=10):
    """(X, channels, size, dtype) with values on the dtype's natural scale."""
    n = draw(st.integers(min_n, max_n))
    channels = draw(st.sampled_from([None, 1, 3]))
    height, width = draw(st.integers(2, 9)), draw(st.integers(2, 9))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    shape = (n, height, width) if channels is None else (n, channels, height, width)
    if dtype == "uint8":
        X = rng.integers(0, 256, shape).astype(np.uint8)
    elif dtype == "int16":
        X = rng.integers(0, 2, shape).astype(np.int16)
    else:
        X = rng.random(shape).astype(dtype)
    return X


LABEL_KINDS = ["int", "str", "float", "negative", "bool"]


def _labels(kind, codes):
    return {"int": codes.astype(np.int64) * 3 + 1,
            "str": np.array(["cat", "dog", "eel"])[codes],
            "float": codes.astype(np.float64),
            "negative": -codes.astype(np.int64),
            "bool": codes.astype(bool)}[kind]


def _pool(kind, X, tmp_path):
    if kind == "array":
        return X
    if kind == "tensor":
        return torch.from_numpy(np.ascontiguousarray(X))
    if kind == "dataset":
        return ArrayDataset(X)
    path = tmp_path / f"pool-{X.shape}-{X.dtype.str}.dat"
    mm = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)


# ------------------------------------------------------------------ properties
@PROFILE
@given(X=image_sets(min_n=2, max_n=10), label_kind=st.sampled_from(LABEL_KINDS),
       n_classes=st.integers(1, 3), data=st.data())
def test_fit_gives_a_working_model_or_a_skal_error(X, label_kind, n_classes, data):
    """Any shape / dtype / label type: fit works and predictions come from the
    labels, or fit fails with a skal error and the net stays unfitted."""
    n_classes = min(n_classes, 2) if label_kind == "bool" else n_classes
    codes = np.asarray(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=len(X),
                                          max_size=len(X))))
    y = _labels(label_kind, codes)
    clf = CNNClassifier(**NET)
    try:
        clf.fit(X, y)
    except Exception as exc:                      # noqa: BLE001 - checked below
        _assert_skal_error(exc)
        assert len(np.unique(y)) < 2, f"fit failed on valid data: {exc!r}"
        with pytest.raises(NotFittedError):
            clf.predict(X)
        return
    assert len(np.unique(y)) >= 2
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), len(np.unique(y)))
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-9)   # softmax rows
    pred = clf.predict(X)
    assert pred.shape == (len(X),) and set(pred.tolist()) <= set(y.tolist())
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])


@pytest.fixture(scope="module")
def fitted_learner():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (16, 1, 6, 6)).astype(np.uint8)
    y = np.arange(16) % 2
    learner = ActiveLearner(CNNClassifier(**NET), margin_sampling, X_training=X,
                            y_training=y)
    learner.predict(X[:1])
    return learner


def _state(learner, probe):
    return (learner.X_training_.copy(), learner.y_training_.copy(),
            learner.predict_proba(probe), len(learner.estimator_.history_))


def _assert_same_state(learner, probe, before):
    X, y, proba, n_epochs = before
    np.testing.assert_array_equal(learner.X_training_, X)
    np.testing.assert_array_equal(learner.y_training_, y)
    assert learner.X_training_.dtype == X.dtype and learner.y_training_.dtype == y.dtype
    np.testing.assert_array_equal(learner.predict_proba(probe), proba)
    assert len(learner.estimator_.history_) == n_epochs


MUTATIONS = ["none", "nan", "complex", "channels", "size", "ndim", "float255", "strings",
             "empty", "bigendian", "tensor"]


@PROFILE
@given(mutation=st.sampled_from(MUTATIONS), op=st.sampled_from(["predict", "embed",
                                                                "query", "teach"]),
       n=st.integers(-1, 6), seed=st.integers(0, 1000))
def test_any_input_to_a_fitted_learner_works_or_changes_nothing(fitted_learner, mutation,
                                                                 op, n, seed):
    learner = copy.deepcopy(fitted_learner)
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (5, 1, 6, 6)).astype(np.uint8)
    X = {"none": X, "nan": X.astype(np.float32) / 255 + np.where(
             rng.random(X.shape) < 0.1, np.nan, 0).astype(np.float32),
         "complex": X.astype(np.complex64), "channels": np.repeat(X, 3, axis=1),
         "size": np.zeros((5, 1, 7, 6), np.uint8), "ndim": X[:, 0, 0],
         "float255": X.astype(np.float32), "strings": X.astype(str),
         "empty": X[:0], "bigendian": (X / 255).astype(">f8"),
         "tensor": torch.from_numpy(X)}[mutation]
    probe = fitted_learner.X_training_[:4]
    before = _state(learner, probe)
    try:
        if op == "predict":
            out = learner.predict_proba(X)
            assert out.shape == (len(X), 2) and np.isfinite(out).all()
        elif op == "embed":
            out = learner.estimator_.embed(X)
            assert out.shape[0] == len(X) and np.isfinite(out).all()
        elif op == "query":
            idx, _ = learner.query(X, n)
            assert len(idx) == n and len(set(idx.tolist())) == n
            assert all(0 <= i < len(X) for i in idx)
        else:
            labels = np.arange(len(X)) % 2
            learner.teach(X, labels)
            assert len(learner.X_training_) == len(before[0]) + len(X)
            return
    except Exception as exc:                      # noqa: BLE001 - checked below
        _assert_skal_error(exc)
        _assert_same_state(learner, probe, before)
        assert mutation != "none" or op == "query", f"valid input failed: {exc!r}"
        return
    _assert_same_state(learner, probe, before)    # reads never change the learner
    assert mutation in ("none", "bigendian", "tensor"), f"{mutation} accepted silently"


@PROFILE
@given(kind=st.sampled_from(["array", "tensor", "dataset", "memmap"]),
       strategy=st.sampled_from([margin_sampling, coreset_sampling, random_sampling]),
       n=st.integers(1, 5), batch_size=st.integers(1, 7))
def test_every_pool_kind_gives_the_same_picks(fitted_learner, tmp_path_factory, kind,
                                              strategy, n, batch_size):
    """An array, a tensor, a Dataset and a memmap of one pool: the same queries, the
    same predictions, whatever the scoring batch size."""
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (12, 1, 6, 6)).astype(np.uint8)
    learner = copy.deepcopy(fitted_learner)
    learner.query_strategy = strategy
    kwargs = {"random_state": 0} if strategy is random_sampling else {}
    want, _ = learner.query(X, n, **kwargs)
    pool = _pool(kind, X, tmp_path_factory.mktemp("pool"))
    learner.estimator_.predict_batch_size = batch_size
    got, _ = learner.query(pool, n, **kwargs)
    # margin and core-set scores of one sample do not depend on the batch it is in,
    # up to float32 rounding: picks agree unless two scores tie within that rounding
    np.testing.assert_array_equal(np.sort(got), np.sort(want))
    np.testing.assert_allclose(learner.predict_proba(pool), learner.predict_proba(X),
                               atol=1e-6)


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(n_initial=st.sampled_from([2, 4, 10, 2.5, 0, -1, 31]),
       batch=st.sampled_from([1, 3, 0, 12]), rounds=st.sampled_from([0, 1, 2, -1]),
       multilabel=st.booleans())
@example(n_initial=4, batch=3, rounds=2, multilabel=False)     # valid budgets, always
@example(n_initial=2, batch=1, rounds=1, multilabel=True)
def test_simulate_budgets_give_curves_or_a_skal_error(n_initial, batch, rounds, multilabel):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (40, 1, 6, 6)).astype(np.uint8)
    codes = np.arange(40) % 2
    y = np.stack([codes, 1 - codes], 1) if multilabel else codes
    net = (MultiLabelCNNClassifier if multilabel else CNNClassifier)(**NET)
    try:
        result = simulate(net, ["random", "margin"], X[:30], y[:30], X[30:], y[30:],
                          n_initial=n_initial, batch_size=batch, n_rounds=rounds, seeds=1,
                          progress=False)
    except Exception as exc:                      # noqa: BLE001 - checked below
        _assert_skal_error(exc)
        valid = (isinstance(n_initial, int) and n_initial >= 1 and batch >= 1
                 and rounds >= 0 and n_initial + rounds * batch <= 30)
        assert not valid, f"valid budget failed: {exc!r}"
        return
    assert isinstance(n_initial, int)
    assert result.scores["auroc"].shape == (2, 1, rounds + 1)
    np.testing.assert_array_equal(result.n_labels, n_initial + batch * np.arange(rounds + 1))
    queried = result.queried[result.queried >= 0]
    assert queried.size == 2 * rounds * batch and (queried < 30).all()


@PROFILE
@given(ops=st.lists(st.tuples(st.sampled_from(["query", "teach", "teach_new", "fit"]),
                              st.integers(-1, 8)), min_size=1, max_size=5),
       strategy=st.sampled_from([margin_sampling, coreset_sampling]))
def test_call_sequences_keep_the_learner_consistent(fitted_learner, ops, strategy):
    """Random sequences of query / teach / fit with random budgets: every call
    works or fails with a skal error that changes nothing, and the labelled set
    always grows by exactly what was taught."""
    rng = np.random.default_rng(3)
    pool = rng.integers(0, 256, (10, 1, 6, 6)).astype(np.uint8)
    oracle = np.arange(10) % 2
    learner = copy.deepcopy(fitted_learner)
    learner.query_strategy = strategy
    probe = pool[:3]
    unlabelled = np.arange(10)
    for op, n in ops:
        before = _state(learner, probe)
        try:
            if op == "query":
                idx, _ = learner.query(pool[unlabelled], n)
                assert len(idx) == n == len(set(idx.tolist()))
                continue
            if op == "fit":
                learner.fit(pool[:max(n, 0)], oracle[:max(n, 0)])
                assert len(learner.X_training_) == max(n, 0)
                continue
            chosen = unlabelled[:max(n, 0)]
            learner.teach(pool[chosen], oracle[chosen], only_new=op == "teach_new")
            assert len(learner.X_training_) == len(before[0]) + len(chosen)
            unlabelled = unlabelled[len(chosen):]
        except Exception as exc:                  # noqa: BLE001 - checked below
            _assert_skal_error(exc)
            _assert_same_state(learner, probe, before)
