"""Parallel and distributed runs: GridSearchCV over strategies with joblib's default
backend and on a local Dask cluster, and chunked pool scoring (``score_pool(n_jobs=)``).

The Dask tests start their own ``distributed.LocalCluster`` (2 workers, 1 thread each)
and skip when dask / distributed are not installed (``pip install "skal[dask]"``).
"""

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV
from torch.utils.data import TensorDataset

from conftest import TINY
from skal import ActiveLearningClassifier, CNNClassifier
from skal.data import load_digits_images
from skal.query.base import predict_proba_pool, score_pool

NET = dict(TINY, max_epochs=3)
STRATEGIES = ["random", "uncertainty", "margin", "entropy"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits_images()
    return X[:120], y[:120] % 3


@pytest.fixture(scope="module")
def fitted_net(digits):
    X, y = digits
    return CNNClassifier(**NET, random_state=0).fit(X, y)


def _search(n_jobs):
    model = ActiveLearningClassifier(CNNClassifier(**NET), n_initial=12, n_queries=2,
                                     batch_size=6, random_state=0)
    return GridSearchCV(model, {"query_strategy": STRATEGIES}, cv=2, n_jobs=n_jobs)


@pytest.fixture(scope="module")
def sequential(digits):
    return _search(n_jobs=1).fit(*digits)


def _assert_same_search(a, b):
    np.testing.assert_allclose(a.cv_results_["mean_test_score"],
                               b.cv_results_["mean_test_score"])
    assert a.best_params_ == b.best_params_
    np.testing.assert_array_equal(a.best_estimator_.labeled_indices_,
                                  b.best_estimator_.labeled_indices_)


def test_grid_search_n_jobs_2_default_backend(digits, sequential):
    parallel = _search(n_jobs=2).fit(*digits)
    _assert_same_search(sequential, parallel)


# ------------------------------------------------------------------ pool scoring
def _row_sums(batch):
    return np.asarray(batch).reshape(len(batch), -1).sum(axis=1)


@pytest.mark.parametrize("n, batch_size, n_jobs", [(120, 32, 2), (7, 2, 3), (5, 256, 2)])
def test_score_pool_chunks_match_sequential(n, batch_size, n_jobs):
    X = np.random.default_rng(0).random((n, 1, 4, 4), dtype=np.float32)
    expected = score_pool(_row_sums, X, batch_size)
    with parallel_backend("threading"):
        np.testing.assert_array_equal(score_pool(_row_sums, X, batch_size, n_jobs=n_jobs),
                                      expected)


def _assert_same_proba(got, expected):
    """Same chunks, but computed in other processes (or Dask workers) whose torch may
    use other thread counts, hence other float32 reduction orders: equal up to
    rounding; a wrong chunk order, a missing chunk or another model differs by far
    more than 1e-6."""
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_predict_proba_pool_in_processes_is_identical(digits, fitted_net, tmp_path):
    X, _ = digits
    expected = predict_proba_pool(fitted_net, X, batch_size=25)
    _assert_same_proba(predict_proba_pool(fitted_net, X, 25, n_jobs=2), expected)
    # a memmap pool and a torch Dataset pool, chunked the same way
    path = tmp_path / "pool.npy"
    np.save(path, X)
    memmap = np.load(path, mmap_mode="r")
    _assert_same_proba(predict_proba_pool(fitted_net, memmap, 25, n_jobs=2),
                                  expected)
    dataset = TensorDataset(torch.from_numpy(X))
    _assert_same_proba(predict_proba_pool(fitted_net, dataset, 25, n_jobs=2),
                                  expected)


# ------------------------------------------------------------------------ Dask
@pytest.fixture(scope="module", params=[False, True], ids=["threads", "processes"])
def dask_client(request):
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                       processes=request.param, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_grid_search_on_dask(digits, sequential, dask_client):
    with parallel_backend("dask"):
        distributed = _search(n_jobs=2).fit(*digits)
    _assert_same_search(sequential, distributed)


def test_score_pool_on_dask(digits, fitted_net, dask_client):
    X, _ = digits
    expected = predict_proba_pool(fitted_net, X, batch_size=25)
    with parallel_backend("dask"):
        _assert_same_proba(predict_proba_pool(fitted_net, X, 25, n_jobs=2), expected)
