"""Low-budget strategies: TypiClust (Hacohen et al. ICML 2022), ProbCover (Yehuda et al.
NeurIPS 2022) and strategy schedules, checked against brute-force references that
build full distance matrices on small data."""

import types

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from conftest import TINY, ArrayDataset
from skal import ActiveLearner, CNNClassifier
from skal.exceptions import NotFittedError, SkalTypeError, SkalValueError
from skal.query import (ModelQualityAbove, ProbCover, StrategySchedule, TypiClust,
                        TypiclustThenMargin, margin_sampling)
from skal.query.probcover import ball_graph, max_coverage, purity_delta
from skal.query.registry import get_strategy, strategy_name

SEEDED = dict(TINY, random_state=0)


class Flatten:
    """A fake embedder: the image's pixels are its embedding."""

    def transform(self, X):
        return np.asarray(X, dtype=np.float64).reshape(len(X), -1)


def _blobs(n_blobs=5, per_blob=20, dim=8, noise=0.1, seed=0):
    """Well-separated blobs around orthogonal directions (they stay apart after L2
    normalisation), as (images of shape (n, 1, 2, dim // 2), blob of each image)."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * np.eye(dim)[:n_blobs]
    scale = noise * (1 + np.arange(n_blobs))[:, None, None]      # blobs of unequal spread
    E = centres[:, None, :] + scale * rng.normal(size=(n_blobs, per_blob, dim))
    E = E.reshape(-1, dim)
    blob = np.repeat(np.arange(n_blobs), per_blob)
    return E.reshape(len(E), 1, 2, dim // 2).astype(np.float32), blob


def _no_labels():
    """A learner without labelled data (modAL-style object, cold start)."""
    return types.SimpleNamespace()


def _with_labels(X, y):
    return types.SimpleNamespace(X_training=X, y_training=y)


def _unit(E):
    E = np.asarray(E, dtype=np.float64).reshape(len(E), -1)
    return E / np.linalg.norm(E, axis=1, keepdims=True)


def _dist(E):
    return np.sqrt(((E[:, None, :] - E[None, :, :]) ** 2).sum(-1))       # full n x n, small n


# ----------------------------------------------------------------------- TypiClust
def test_typiclust_covers_every_blob_before_repeating_one():
    X, blob = _blobs()
    picks, _ = TypiClust(embedder=Flatten(), random_state=0)(_no_labels(), X, 5)
    assert sorted(blob[picks]) == [0, 1, 2, 3, 4]
    # labelled points of blobs 0-2: K = 3 + 2 clusters, the two unlabelled blobs are next
    lab = np.array([0, 20, 40])
    pool = np.setdiff1d(np.arange(len(X)), lab)
    picks, _ = TypiClust(embedder=Flatten(), random_state=0)(
        _with_labels(X[lab], blob[lab]), X[pool], 2)
    assert sorted(blob[pool][picks]) == [3, 4]


def test_typiclust_picks_distinct_clusters_and_unlabelled_samples():
    X, blob = _blobs()
    strategy = TypiClust(embedder=Flatten(), min_cluster_size=0, random_state=0)
    picks, _ = strategy(_no_labels(), X, 10)
    assert len(np.unique(picks)) == 10 and picks.min() >= 0 and picks.max() < len(X)
    assert strategy.n_clusters_ == 10
    # ten clusters, one pick each (no cluster gets a second before all have one)
    assert len(np.unique(strategy.pool_clusters_[picks])) == 10
    # by default clusters of <= 5 points are skipped while larger ones remain: the
    # large clusters get one pick each, then a second
    strategy = TypiClust(embedder=Flatten(), random_state=0)
    picks, _ = strategy(_no_labels(), X, 10)
    sizes = np.bincount(strategy.pool_clusters_)
    large = np.flatnonzero(sizes > 5)
    assert 0 < len(large) < 10 and set(strategy.pool_clusters_[picks]) == set(large)
    assert len(np.unique(strategy.pool_clusters_[picks[:len(large)]])) == len(large)


def test_typiclust_picks_the_most_typical_sample_of_each_cluster():
    X, blob = _blobs(n_blobs=3, per_blob=15)
    strategy = TypiClust(embedder=Flatten(), k_neighbors=4, random_state=0)
    picks, scores = strategy(_no_labels(), X, 3)
    E = _unit(X)
    for pick, score in zip(picks, scores):
        members = np.flatnonzero(blob == blob[pick])
        # k-means recovered the blob exactly
        assert set(np.flatnonzero(strategy.pool_clusters_ == strategy.pool_clusters_[pick])) \
            == set(members)
        D = _dist(E[members])
        knn = np.sort(D, axis=1)[:, 1:5]                     # 4 nearest, self excluded
        typ = 1.0 / knn.mean(axis=1)
        assert members[np.argmax(typ)] == pick
        # the score is that typicality (1e-6: the 1e-8 guard against division by zero)
        assert score == pytest.approx(typ.max(), rel=1e-6)


def test_typiclust_is_deterministic_and_accepts_datasets():
    X, _ = _blobs(seed=1)

    a = TypiClust(embedder=Flatten(), random_state=3)(_no_labels(), X, 7)[0]
    b = TypiClust(embedder=Flatten(), random_state=3)(_no_labels(), X, 7)[0]
    c = TypiClust(embedder=Flatten(), random_state=3, batch_size=16)(_no_labels(),
                                                                     ArrayDataset(X), 7)[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


# ----------------------------------------------------------------------- ProbCover
def _brute_greedy(A, covered, candidates, k):
    covered, candidates, picks = covered.copy(), candidates.copy(), []
    for _ in range(k):
        gains = np.where(candidates, (A & ~covered).sum(axis=1), -1)
        x = int(np.argmax(gains))                            # ties: lowest index
        assert gains[x] > 0                                  # still something to cover
        picks.append(x)
        covered |= A[x]
        candidates[x] = False
    return picks


def test_ball_graph_in_blocks_equals_the_dense_graph():
    E = np.random.default_rng(0).normal(size=(37, 3))
    dense = (_dist(E) < 1.1) | np.eye(37, dtype=bool)
    for block in (1, 7, 37 * 37, 10**6):
        np.testing.assert_array_equal(ball_graph(E, 1.1, block_elements=block).toarray(), dense)


def test_greedy_coverage_equals_brute_force():
    E = np.random.default_rng(1).random((40, 2))
    A = (_dist(E) < 0.15) | np.eye(40, dtype=bool)
    n_lab = 4
    covered = A[:n_lab].any(axis=0)
    candidates = np.arange(40) >= n_lab
    expected = _brute_greedy(A, covered, candidates, 6)
    picks, gains = max_coverage(ball_graph(E, 0.15), 6, covered, candidates)
    np.testing.assert_array_equal(picks, expected)
    assert gains.sum() == (covered | A[expected].any(axis=0)).sum() - covered.sum()
    # the strategy: labelled rows first, positions relative to the pool
    X = E.reshape(40, 1, 1, 2)
    strategy = ProbCover(delta=0.15, embedder=Flatten(), normalize=False)
    indices, _ = strategy(_with_labels(X[:n_lab], np.arange(n_lab) % 2), X[n_lab:], 6)
    np.testing.assert_array_equal(indices + n_lab, expected)


def test_probcover_falls_back_to_random_once_everything_is_covered():
    X, blob = _blobs()
    strategy = ProbCover(n_clusters=5, embedder=Flatten(), random_state=0)
    picks, gains = strategy(_no_labels(), X, 8)
    assert len(np.unique(picks)) == 8
    assert sorted(blob[picks[:5]]) == [0, 1, 2, 3, 4]        # one ball per pure blob
    assert (np.diff(gains) <= 0).all()                       # greedy gains never grow
    assert strategy.coverage_ == 1.0 and gains[-1] == 0       # the last picks are random
    again, _ = ProbCover(n_clusters=5, embedder=Flatten(), random_state=0)(_no_labels(), X, 8)
    np.testing.assert_array_equal(picks, again)


def _brute_purity(E, labels, delta):
    D = _dist(E)
    return np.mean([np.all(labels[D[i] < delta] == labels[i]) for i in range(len(E))])


def test_purity_delta_is_the_largest_pure_enough_radius():
    X, blob = _blobs(n_blobs=4, noise=0.3)
    E = _unit(X)
    delta = purity_delta(E, blob, alpha=0.95, sample_size=None)
    # delta is the edge: pure enough just inside it, not just outside (the relative
    # 1e-9 absorbs the rounding of the distance of the point that sits on the edge)
    assert _brute_purity(E, blob, delta * (1 - 1e-9)) >= 0.95
    assert _brute_purity(E, blob, delta * (1 + 1e-9)) < 0.95
    # well-separated blobs: the radius stays below the distance between blob centres
    # (sqrt(2) after normalisation) and above the typical neighbour distance in a blob
    D = _dist(E)
    within = np.where(blob[:, None] == blob[None, :], D, np.inf)
    np.fill_diagonal(within, np.inf)
    assert np.median(within.min(axis=1)) < delta < np.sqrt(2)


def test_probcover_purity_delta_on_blobs_and_explicit_delta():
    X, blob = _blobs()
    auto = ProbCover(n_clusters=5, embedder=Flatten(), random_state=0)
    auto(_no_labels(), X, 1)
    # k-means finds the blobs, so the radius is the one of the true blob labels, below
    # the distance between blob centres
    assert auto.delta_ == pytest.approx(purity_delta(_unit(X), blob, sample_size=None))
    assert auto.delta_ < np.sqrt(2)
    fixed = ProbCover(delta=0.05, embedder=Flatten())
    fixed(_no_labels(), X, 1)
    assert fixed.delta_ == 0.05


def test_implicit_balls_give_the_picks_of_the_sparse_graph():
    X, blob = _blobs(noise=0.4)
    learner = _with_labels(X[:3], blob[:3])
    picks = {}
    for graph in ("sparse", "implicit", "auto"):
        strategy = ProbCover(delta=0.6, embedder=Flatten(), graph=graph, max_edges=200,
                             random_state=0)
        if graph == "sparse":                       # too large for max_edges: refused
            with pytest.raises(SkalValueError, match="max_edges"):
                strategy(learner, X[3:], 12)
            strategy.set_params(max_edges=10**6)
        picks[graph] = strategy(learner, X[3:], 12)
        assert strategy.graph_ == ("sparse" if graph == "sparse" else "implicit")
    for graph in ("implicit", "auto"):
        for a, b in zip(picks["sparse"], picks[graph]):
            np.testing.assert_array_equal(a, b)


def test_seed_falls_back_to_the_learner_random_state():
    X, _ = _blobs(seed=2)
    learner = types.SimpleNamespace(random_state=5)
    a = TypiClust(embedder=Flatten(), max_clusters=3)(learner, X, 6)[0]
    b = TypiClust(embedder=Flatten(), max_clusters=3, random_state=5)(_no_labels(), X, 6)[0]
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ schedule
class Recorder:
    """A fake strategy that returns the first free positions from ``start``."""

    def __init__(self, start):
        self.start, self.calls = start, []

    def __call__(self, learner, X_pool, n_instances=1, **kw):
        self.calls.append(n_instances)
        idx = (self.start + np.arange(n_instances)) % len(X_pool)
        return idx, np.zeros(n_instances)


def _learner(n_labels):
    X, _ = _blobs()
    return _with_labels(X[:n_labels], np.arange(n_labels) % 2) if n_labels else _no_labels()


def test_schedule_switches_exactly_at_the_label_count():
    X, _ = _blobs()
    first, second = Recorder(0), Recorder(50)
    schedule = StrategySchedule([(first, 10), (second, None)])
    picks, _ = schedule(_learner(8), X, 5)                  # 8 + 2 typical, then 3 more
    np.testing.assert_array_equal(picks, [0, 1, 50, 51, 52])
    assert [h["n_picked"] for h in schedule.history_] == [2, 3]
    assert [h["n_labels"] for h in schedule.history_] == [8, 10]
    first_calls = len(first.calls)
    schedule(_learner(13), X, 2)
    assert len(first.calls) == first_calls and schedule.step_ == 1
    # three steps, the middle one skipped entirely by a large batch of labels
    a, b, c = Recorder(0), Recorder(30), Recorder(60)
    picks, _ = StrategySchedule([(a, 2), (b, 4), (c, None)])(_learner(0), X, 7)
    np.testing.assert_array_equal(picks, [0, 1, 30, 31, 60, 61, 62])
    whole = StrategySchedule([(Recorder(0), 10), (Recorder(50), None)], split_batches=False)
    np.testing.assert_array_equal(whole(_learner(8), X, 5)[0], [0, 1, 2, 3, 4])


def test_schedule_later_step_skips_earlier_picks():
    X, _ = _blobs()
    picks, _ = StrategySchedule([(Recorder(0), 3), (Recorder(1), None)])(_learner(0), X, 5)
    np.testing.assert_array_equal(picks, [0, 1, 2, 3, 4])


def test_schedule_switches_on_a_quality_signal_and_stays_switched():
    X, _ = _blobs()
    learner = _learner(5)
    learner.quality = 0.5
    rule = ModelQualityAbove(0.8, signal=lambda lrn, X_pool: lrn.quality)
    schedule = StrategySchedule([(Recorder(0), rule), (Recorder(50), None)])
    assert schedule(learner, X, 2)[0].tolist() == [0, 1] and rule.last_value_ == 0.5
    learner.quality = 0.9
    assert schedule(learner, X, 2)[0].tolist() == [50, 51]
    learner.quality = 0.1
    assert schedule(learner, X, 2)[0].tolist() == [50, 51]
    # a learner with fewer labels: a new campaign, the rule is asked again
    fresh = _learner(2)
    fresh.quality = 0.1
    assert schedule(fresh, X, 2)[0].tolist() == [0, 1]


def test_pool_confidence_signal():
    X, _ = _blobs()

    class Model:
        def __init__(self, p):
            self.p = p

        def predict_proba(self, batch):
            return np.tile([self.p, 1 - self.p], (len(batch), 1))

    rule = ModelQualityAbove(0.75, sample_size=30, random_state=0)
    assert not rule(types.SimpleNamespace(estimator=Model(0.6)), X)
    assert rule.last_value_ == pytest.approx(0.6)
    assert rule(types.SimpleNamespace(estimator=Model(0.2)), X)     # max(0.2, 0.8)


def test_cross_validated_accuracy_signal():
    X, blob = _blobs()
    model = make_pipeline(FunctionTransformer(_flatten), LogisticRegression())
    rule = ModelQualityAbove(0.9, signal="cv_accuracy", cv=3)
    separable = types.SimpleNamespace(estimator=model, X_training=X, y_training=blob)
    assert rule(separable, X) and rule.last_value_ > 0.9
    noise = np.random.default_rng(0).integers(2, size=len(X))
    assert not rule(types.SimpleNamespace(estimator=model, X_training=X, y_training=noise), X)
    # fewer labels of a class than folds: no signal yet
    assert not rule(types.SimpleNamespace(estimator=model, X_training=X[:4],
                                          y_training=np.array([0, 0, 0, 1])), X)
    assert np.isnan(rule.last_value_)
    assert not rule(_no_labels(), X)                       # a cold start


def _flatten(X):
    return np.asarray(X).reshape(len(X), -1)


# ---------------------------------------------------------- inside skal, registry
def _images(n, seed, size=16):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 1, size, size)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted_learner():
    X = _images(24, 0)
    return ActiveLearner(CNNClassifier(**SEEDED), X_training=X, y_training=np.arange(24) % 3)


@pytest.mark.parametrize("strategy", [TypiClust(random_state=0), ProbCover(random_state=0),
                                      TypiClust(embedder=Flatten(), random_state=0),
                                      ProbCover(embedder=Flatten(), random_state=0)])
def test_inside_active_learner_with_a_cnn(fitted_learner, strategy):
    pool = _images(40, 1)
    learner = clone(fitted_learner).set_params(query_strategy=strategy)
    learner.fit(fitted_learner.X_training, fitted_learner.y_training)
    indices, X_query = learner.query(pool, n_instances=4)
    assert len(np.unique(indices)) == 4 and indices.max() < 40
    np.testing.assert_array_equal(X_query, pool[indices])


def test_typiclust_then_margin_in_a_learner(fitted_learner):
    pool = _images(40, 1)
    schedule = TypiclustThenMargin(switch_at=26, random_state=0)
    learner = clone(fitted_learner).set_params(query_strategy=schedule)
    indices, _ = learner.query(pool, n_instances=5)            # 24 labels: 2 + 3
    assert len(np.unique(indices)) == 5
    assert [(h["strategy"], h["n_picked"]) for h in schedule.history_] == [
        ("TypiClust", 2), ("margin_sampling", 3)]


def test_cold_start_with_an_unfitted_learner_and_an_embedder():
    pool = _images(40, 1)
    learner = ActiveLearner(CNNClassifier(**SEEDED))            # no labels, no model
    for strategy in (TypiClust(embedder=Flatten(), random_state=0),
                     ProbCover(embedder=Flatten(), n_clusters=3, random_state=0)):
        indices, _ = strategy(learner, pool, 5)
        assert len(np.unique(indices)) == 5
    with pytest.raises(NotFittedError, match="embedder="):
        TypiClust()(learner, pool, 5)
    with pytest.raises(SkalValueError, match="n_clusters"):
        ProbCover(embedder=Flatten())(learner, pool, 5)


def test_pretrained_learner_queries_with_no_labels():
    """The real cold start: a classifier built on a pre-trained encoder, no labels; the
    strategies embed with the encoder (no embedder given)."""
    pretrain = pytest.importorskip("skal.pretrain")
    X = _images(64, 2)
    encoder = pretrain.SimCLR(encoder_widths=(8, 16), max_epochs=1, batch_size=32,
                              progress=False, random_state=0).fit(X)
    for strategy in (TypiClust(random_state=0), ProbCover(random_state=0),
                     TypiclustThenMargin(switch_at=10, random_state=0)):
        model = CNNClassifier(pretrained=encoder, classes=[0, 1], **SEEDED)
        learner = ActiveLearner(model, query_strategy=strategy)
        try:
            indices, _ = learner.query(X, n_instances=4)
        except NotFittedError:                # a learner without cold-start support
            indices, _ = strategy(learner, X, n_instances=4)
        assert len(np.unique(indices)) == 4
        # the picks are those made on the encoder's own features
        same, _ = clone(strategy).set_params(embedder=encoder)(
            types.SimpleNamespace(estimator=model), X, 4)
        np.testing.assert_array_equal(indices, same)


def test_memmap_pool(tmp_path):
    X, _ = _blobs(seed=4)
    stored = np.memmap(tmp_path / "pool.dat", dtype=X.dtype, mode="w+", shape=X.shape)
    stored[:] = X
    stored.flush()
    pool = np.memmap(tmp_path / "pool.dat", dtype=X.dtype, mode="r", shape=X.shape)
    for make in (lambda: TypiClust(embedder=Flatten(), random_state=0),
                 lambda: ProbCover(embedder=Flatten(), n_clusters=5, random_state=0)):
        np.testing.assert_array_equal(make()(_no_labels(), pool, 6)[0],
                                      make()(_no_labels(), X, 6)[0])


def test_registry_names_and_clones():
    for name, cls in (("typiclust", TypiClust), ("probcover", ProbCover),
                      ("typiclust_then_margin", TypiclustThenMargin)):
        strategy = get_strategy(name)
        assert isinstance(strategy, cls) and strategy_name(strategy) == name
        assert clone(strategy).get_params() == strategy.get_params()
    assert TypiclustThenMargin(switch_at=7).steps[0][1] == 7
    assert TypiclustThenMargin().steps[1][0] is margin_sampling


@pytest.mark.parametrize("strategy, error", [
    (TypiClust(max_clusters=0), SkalValueError),
    (TypiClust(k_neighbors=2.5), SkalValueError),
    (TypiClust(min_cluster_size=-1), SkalValueError),
    (ProbCover(delta=-1.0), SkalValueError),
    (ProbCover(alpha=1.5), SkalValueError),
    (ProbCover(n_clusters=0), SkalValueError),
    (ProbCover(max_edges=0), SkalValueError),
    (TypiClust(embedder=object()), SkalTypeError),
    (ProbCover(embedder="simclr", delta=0.5), SkalTypeError),
    (StrategySchedule([]), SkalValueError),
    (StrategySchedule([(TypiClust(), None), (margin_sampling, None)]), SkalValueError),
    (StrategySchedule([(TypiClust(), 5), (margin_sampling, 9)]), SkalValueError),
    (StrategySchedule([(TypiClust(), "50"), (margin_sampling, None)]), SkalTypeError),
    (StrategySchedule([("typiclust", 5), (margin_sampling, None)]), SkalTypeError),
    (StrategySchedule([(TypiClust(), ModelQualityAbove(0.5, signal="auc")),
                       (margin_sampling, None)]), SkalValueError),
    (StrategySchedule([(TypiClust(), ModelQualityAbove(0.5, cv=1)),
                       (margin_sampling, None)]), SkalValueError),
])
def test_clear_errors_for_bad_parameters(strategy, error):
    X, _ = _blobs()
    with pytest.raises(error):
        strategy(_no_labels(), X, 2)


def test_n_instances_larger_than_the_pool():
    X, _ = _blobs()
    for strategy in (TypiClust(embedder=Flatten()), ProbCover(embedder=Flatten(), delta=0.5),
                     StrategySchedule([(Recorder(0), None)])):
        with pytest.raises(SkalValueError, match="larger than the pool"):
            strategy(_no_labels(), X, len(X) + 1)
