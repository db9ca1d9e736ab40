"""n_jobs reaches every pool-scoring strategy and a campaign's next batch.

joblib's threading backend keeps these tests cheap (no worker processes); the split of
the pool into chunks and their reassembly are the same on every backend (loky
processes, a Dask cluster).
"""

import numpy as np
import pytest
from joblib import parallel_config

from skal import CNNClassifier
from skal.campaign import Campaign
from skal.data import load_digits_images
from skal.query.registry import get_strategy

SCORING = ["uncertainty", "margin", "entropy", "badge", "coreset", "expected_gradnorm",
           "entropy_gradnorm"]


@pytest.fixture(scope="module")
def fitted():
    X, y = load_digits_images()
    model = CNNClassifier(module__widths=(4,), module__hidden=8, max_epochs=1, min_steps=4,
                          random_state=0).fit(X[:40], y[:40] % 2)
    return model, X[40:200]


@pytest.mark.parametrize("name", SCORING)
def test_strategy_scores_in_workers_equal_one_process(name, fitted):
    model, pool = fitted
    strategy = get_strategy(name)
    one = strategy(model, pool, 5, random_state=0, batch_size=16)
    with parallel_config(backend="threading"):
        two = strategy(model, pool, 5, random_state=0, batch_size=16, n_jobs=2)
        # n_jobs=0 is rejected by joblib itself: proof that the argument reaches it
        with pytest.raises(ValueError, match="n_jobs"):
            strategy(model, pool, 5, random_state=0, batch_size=16, n_jobs=0)
    assert np.array_equal(one[0], two[0])
    # scores of the same batches, gathered in a different order: equal to float rounding
    np.testing.assert_allclose(one[1], two[1], rtol=1e-9, atol=1e-12)


def test_campaign_next_batch_uses_n_jobs(tmp_path):
    X, y = load_digits_images()
    X = (X[:150] * 255).astype(np.uint8)
    names = np.where(y[:150] % 2, "odd", "even")
    np.save(tmp_path / "pool.npy", X)
    camp = Campaign.create(tmp_path / "c", tmp_path / "pool.npy",
                           CNNClassifier(module__widths=(4,), module__hidden=8, max_epochs=1,
                                         min_steps=4),
                           "entropy", classes=["even", "odd"], cv=0, progress=False,
                           query_kwargs={"batch_size": 16})
    camp.add_labels(camp.ids[:20], names[:20])
    camp.train(progress=False)
    with parallel_config(backend="threading"):
        with pytest.raises(ValueError, match="n_jobs"):
            Campaign.open(camp.path, n_jobs=0).next_batch(5)
        assert camp.pending_batch() == []            # the failed call proposed nothing
        parallel = Campaign.open(camp.path, n_jobs=2).next_batch(5)
    camp.close()
    # the same batch as a one-process query of a copy of the campaign
    other = Campaign.create(tmp_path / "d", tmp_path / "pool.npy",
                            CNNClassifier(module__widths=(4,), module__hidden=8,
                                          max_epochs=1, min_steps=4),
                            "entropy", classes=["even", "odd"], cv=0, progress=False,
                            query_kwargs={"batch_size": 16})
    other.add_labels(other.ids[:20], names[:20])
    other.train(progress=False)
    assert other.next_batch(5) == parallel
