"""AIFT / ACFT (Zhou et al. CVPR 2017; MedIA 2021): the score against a per-view loop,
the paper's Table 1 ranking of patterns A-G, ACFT's randomised selection and the
strategy end to end."""

import importlib.util

import numpy as np
import pytest
import torch
from sklearn.base import clone

from conftest import TINY
from skal import ActiveLearner, CNNClassifier, MultiLabelCNNClassifier, SkalValueError
from skal.query import AIFT, acft_select, aift_scores
from skal.query.registry import get_strategy

# batch_size=32 (not 16): with 16 the fitted model is so near uniform that the reference
# loop's arg-max and view ranking flip on float32 noise
NET = dict(TINY, max_epochs=3, batch_size=32)
EPS = np.finfo(np.float64).eps


# ------------------------------------------------------------------ references
def matlab_score(p, lambda1, lambda2, alpha):
    """The official demo's ``compute_matrix`` for one binary candidate, written as a
    loop: majority selection, then the sum of the matrix R."""
    p = np.asarray(p, dtype=float)
    top = int(np.floor(len(p) * alpha + 0.5))
    p = np.sort(p)[::-1][:top] if p.mean() > 0.5 else np.sort(p)[:top]
    total = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            if i == j:
                total -= lambda1 * (p[i] * np.log(p[i] + EPS)
                                    + (1 - p[i]) * np.log(1 - p[i] + EPS))
            else:
                total += lambda2 * ((p[i] - p[j]) * np.log((p[i] + EPS) / (p[j] + EPS))
                                    + (p[j] - p[i]) * np.log((1 - p[i] + EPS) / (1 - p[j] + EPS)))
    return total


def categorical_loop_score(P, lambda1, lambda2, alpha):
    """Per-view loop for one candidate with ``m x C`` probabilities ``P``."""
    m = len(P)
    dominant = int(np.argmax(P.mean(axis=0)))
    keep = max(1, int(np.floor(m * alpha + 0.5)))
    order = sorted(range(m), key=lambda j: -P[j, dominant])[:keep]
    total = 0.0
    for i in order:
        for j in order:
            for c in range(P.shape[1]):
                if i == j:
                    total -= lambda1 * P[i, c] * np.log(P[i, c] + EPS)
                else:
                    total += lambda2 * (P[i, c] - P[j, c]) * np.log(
                        (P[i, c] + EPS) / (P[j, c] + EPS))
    return total


PATTERNS = {
    "A": [0.4, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6],
    "B": [0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.6, 0.7, 0.8, 1.0, 1.0],
    "C": [0.0, 0.0, 0.0, 0.1, 0.1, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0],
    "D": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 0.9],
    "E": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 0.1],
    "F": [0.0, 0.0, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.3, 0.9, 1.0],
    "G": [0.0, 0.1, 0.7, 0.8, 0.8, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0],
}
# (lambda1, lambda2, alpha) of the six AIFT methods of Table 1, and the first and second
# choices the table highlights (ties: mirror-image patterns score the same).
METHODS = {
    "Entropy": ((1, 0, 1.0), ["A"], ["B"]),
    "Entropy^1/4": ((1, 0, 0.25), ["A"], ["B"]),
    "Diversity": ((0, 1, 1.0), ["C"], ["B"]),
    "Diversity^1/4": ((0, 1, 0.25), ["B"], ["F", "G"]),
    "(Entropy+Diversity)": ((1, 1, 1.0), ["C"], ["B"]),
    "(Entropy+Diversity)^1/4": ((1, 1, 0.25), ["B"], ["F", "G"]),
}


# ------------------------------------------------------------------ pure score
@pytest.mark.parametrize("method", sorted(METHODS))
def test_table1_patterns_rank_as_the_paper_says(method):
    (lambda1, lambda2, alpha), first, second = METHODS[method]
    names = list(PATTERNS)
    scores = aift_scores(np.array([PATTERNS[k] for k in names]), alpha=alpha,
                         lambda1=lambda1, lambda2=lambda2)
    by_name = dict(zip(names, scores))
    # the demo's own numbers, to 1e-9 relative (float64 sums in another order)
    for name in names:
        assert by_name[name] == pytest.approx(
            matlab_score(PATTERNS[name], lambda1, lambda2, alpha), rel=1e-9, abs=1e-9)
    ranked = sorted(set(np.round(scores, 9)), reverse=True)
    assert sorted(k for k in names if np.isclose(by_name[k], ranked[0])) == first
    assert sorted(k for k in names if np.isclose(by_name[k], ranked[1])) == second


def test_majority_selection_discards_noisy_views():
    # pattern C: diversity alone prefers it (views split 5/6 between two confident
    # answers, i.e. label noise); majority selection makes its diversity vanish
    c = np.array([PATTERNS["C"]])
    assert aift_scores(c, alpha=1.0, lambda1=0, lambda2=1)[0] > 1000
    assert aift_scores(c, alpha=0.25, lambda1=0, lambda2=1)[0] == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0])
def test_scores_match_per_view_loop(n_classes, alpha):
    rng = np.random.default_rng(n_classes)
    P = rng.dirichlet(np.full(n_classes, 0.7), size=(6, 9))        # (n, m, C)
    P[0, :4] = np.eye(n_classes)[0]                                 # exact zeros and ones
    for lambda1, lambda2 in [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.3, 2.0)]:
        expected = [categorical_loop_score(p, lambda1, lambda2, alpha) for p in P]
        # closed-form pair sum vs the double loop: float64 round-off only
        np.testing.assert_allclose(aift_scores(P, alpha, lambda1, lambda2), expected,
                                   rtol=1e-9, atol=1e-9)


def test_binary_vector_is_the_two_class_case_and_multilabel_sums_labels():
    rng = np.random.default_rng(0)
    p = rng.random((5, 8))
    two = np.stack([1 - p, p], axis=2)
    np.testing.assert_allclose(aift_scores(p), aift_scores(two), rtol=1e-12)
    labels = rng.random((5, 8, 3))
    per_label = sum(aift_scores(labels[:, :, k]) for k in range(3))
    np.testing.assert_allclose(aift_scores(labels, multilabel=True), per_label, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0, -0.1, 1.5, True, "1/4"])
def test_alpha_outside_unit_interval_is_rejected(alpha):
    with pytest.raises(SkalValueError, match="alpha"):
        aift_scores(np.full((2, 4), 0.5), alpha=alpha)


# ------------------------------------------------------------- ACFT selection
def test_acft_select_omega_one_is_top_k():
    scores = np.array([0.1, 5.0, 3.0, 4.0, 0.2])
    idx, values = acft_select(scores, 3, omega=1, random_state=0)
    assert idx.tolist() == [1, 3, 2] and values.tolist() == [5.0, 4.0, 3.0]


def test_acft_select_samples_proportionally_to_rescaled_scores():
    scores = np.array([4.0, 3.0, 2.0, 1.0, 0.0, -5.0])
    counts = np.zeros(len(scores))
    draws = 4000
    for seed in range(draws):
        idx, _ = acft_select(scores, 1, omega=5, random_state=seed)
        counts[idx] += 1
    # top 5 rescaled to [0, 1]: 1, .75, .5, .25, 0 -> probabilities .4 .3 .2 .1 0; the
    # binomial standard error of each frequency is below 0.008, so 0.03 is ~4 sigma
    np.testing.assert_allclose(counts / draws, [0.4, 0.3, 0.2, 0.1, 0, 0], atol=0.03)


def test_acft_select_distinct_and_fills_zero_weights():
    scores = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    idx, _ = acft_select(scores, 3, omega=2, random_state=1)
    assert len(set(idx.tolist())) == 3 and 0 in idx
    assert set(idx.tolist()) <= {0, 1, 2, 3, 4, 5}


# -------------------------------------------------------------- the strategy
@pytest.fixture(scope="module")
def images(tiny_images):
    return tiny_images


class RecordingAugmenter:
    """Noise and a brightness shift drawn from the generator; keeps what it returned."""

    def __init__(self):
        self.outputs = []

    def __call__(self, x, generator=None):
        out = x * (0.8 + 0.4 * torch.rand(x.shape[0], 1, 1, 1, generator=generator)) \
            + 0.05 * torch.randn(x.shape, generator=generator)
        self.outputs.append(out.clone())
        return out


@pytest.mark.parametrize("multilabel", [False, True])
def test_strategy_scores_equal_a_per_view_loop(images, multilabel):
    X, y, Y = images
    cls, target = (MultiLabelCNNClassifier, Y) if multilabel else (CNNClassifier, y)
    model = cls(random_state=0, **NET).fit(X[:24], target[:24])
    augmenter = RecordingAugmenter()
    strategy = AIFT(n_views=5, alpha=0.4, omega=1, augmenter=augmenter, random_state=0,
                    batch_size=7)
    pool = X[24:]
    idx, values = strategy(model, pool, n_instances=4)
    # reference: each view of each candidate predicted on its own, then the loop score
    views = torch.cat(augmenter.outputs)                   # batches of (5 * b) views
    expected = []
    for out in augmenter.outputs:
        b = out.shape[0] // 5
        for i in range(b):
            P = np.stack([model.predict_proba(out[v * b + i][None].numpy())[0]
                          for v in range(5)])
            if multilabel:
                expected.append(sum(categorical_loop_score(
                    np.stack([1 - P[:, k], P[:, k]], 1), 1.0, 1.0, 0.4) for k in range(3)))
            else:
                expected.append(categorical_loop_score(P, 1.0, 1.0, 0.4))
    assert views.shape[0] == 5 * len(pool)
    # batched vs single-image forward passes: float32 convolutions, 1e-4 relative
    np.testing.assert_allclose(strategy.last_scores_, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(idx, np.argsort(-strategy.last_scores_, kind="stable")[:4])


def test_strategy_is_seeded_and_returns_distinct_valid_indices(images):
    X, y, _ = images
    learner = ActiveLearner(CNNClassifier(random_state=0, **NET), X_training=X[:24],
                            y_training=y[:24])

    def run(seed):
        strategy = AIFT(n_views=4, omega=3, augmenter=RecordingAugmenter(), random_state=seed)
        learner.set_params(query_strategy=strategy)
        idx, _ = learner.query(X[24:], n_instances=5)
        return idx, strategy.last_scores_

    (i1, s1), (i2, s2), (_, s3) = run(0), run(0), run(1)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)                  # other views, other scores
    assert len(np.unique(i1)) == 5 and i1.min() >= 0 and i1.max() < 24
    # ACFT draws from the 15 best candidates
    assert set(i1.tolist()) <= set(np.argsort(-s1, kind="stable")[:15].tolist())


@pytest.mark.parametrize("params, match", [
    (dict(n_views=1), "n_views"), (dict(n_views=2.5), "n_views"), (dict(alpha=0.0), "alpha"),
    (dict(alpha=1.01), "alpha"), (dict(omega=0.5), "omega"),
    (dict(lambda1=0, lambda2=0), "lambda"), (dict(lambda1=-1), "lambda1")])
def test_bad_parameters_are_rejected_at_query_time(images, params, match):
    X, y, _ = images
    model = CNNClassifier(random_state=0, **NET).fit(X[:24], y[:24])
    strategy = AIFT(augmenter=RecordingAugmenter(), **params)     # __init__ only stores
    with pytest.raises(SkalValueError, match=match):
        strategy(model, X[24:], n_instances=2)


def test_augmenter_changing_the_shape_is_rejected(images):
    X, y, _ = images
    model = CNNClassifier(random_state=0, **NET).fit(X[:24], y[:24])
    crop = AIFT(augmenter=lambda x, generator=None: x[:, :, 2:, 2:])
    with pytest.raises(SkalValueError, match="same shape"):
        crop(model, X[24:], n_instances=2)


def test_registered_and_clonable():
    strategy = get_strategy("aift")
    assert isinstance(strategy, AIFT)
    custom = AIFT(n_views=6, alpha=0.5, omega=2, random_state=3)
    assert clone(custom).get_params() == custom.get_params()


@pytest.mark.skipif(importlib.util.find_spec("skal.pretrain") is None,
                    reason="skal.pretrain (the shared augmentations) not on this branch yet")
def test_default_augmenter_is_the_pretraining_one(images):
    X, y, _ = images
    model = CNNClassifier(random_state=0, **NET).fit(X[:24], y[:24])
    first = AIFT(n_views=3, random_state=0)(model, X[24:], n_instances=3)
    second = AIFT(n_views=3, random_state=0)(model, X[24:], n_instances=3)
    np.testing.assert_array_equal(first[0], second[0])


def test_views_stay_on_the_scale_of_a_uint8_fitted_model(images):
    # the augmenter's noise and brightness jitter step outside [0, 1]; a model fitted on
    # uint8 images (scaled to [0, 1]) rejects such input, so AIFT must keep its views
    # in the images' range (this raised SkalValueError before)
    X, y, _ = images
    X8 = np.clip(np.asarray(X) * 255, 0, 255).astype(np.uint8)
    model = CNNClassifier(random_state=0, **NET).fit(X8[:24], y[:24])
    idx, _ = AIFT(n_views=3, augmenter=RecordingAugmenter(), random_state=0)(
        model, X8[24:], n_instances=3)
    assert len(set(np.asarray(idx).tolist())) == 3
