"""Uncertainty sampling (Settles, "Active Learning Literature Survey", 2009): least
confidence, margin and entropy, for single-label and multi-label classifiers.

The measures (``classifier_*``) are separate from the strategies (``*_sampling``), as
in modAL, and accept a skal learner, a modAL learner or a bare classifier. Multi-label
models (independent sigmoid outputs) are scored per label, then the per-label scores
are aggregated (``aggregate="sum"`` by default, ``"mean"`` or ``"max"`` as options).
"""

import numpy as np
from scipy.special import entr

from .base import aggregate_labels, multi_argmax, predict_proba_pool, resolve_multilabel

__all__ = [
    "classifier_uncertainty",
    "classifier_margin",
    "classifier_entropy",
    "uncertainty_sampling",
    "margin_sampling",
    "entropy_sampling",
    "least_confidence",
    "margin",
    "entropy",
]


def least_confidence(proba, multilabel=False, aggregate="sum"):
    """``1 - max_c p_c``; per label ``min(p, 1 - p)`` when multi-label."""
    proba = np.asarray(proba, dtype=np.float64)
    if multilabel:
        return aggregate_labels(np.minimum(proba, 1.0 - proba), aggregate)
    return 1.0 - proba.max(axis=1)


def margin(proba, multilabel=False, aggregate="sum"):
    """Gap between the two most probable classes ``p_(1) - p_(2)`` (small = uncertain);
    per label ``|2p - 1|`` when multi-label."""
    proba = np.asarray(proba, dtype=np.float64)
    if multilabel:
        return aggregate_labels(np.abs(2.0 * proba - 1.0), aggregate)
    if proba.shape[1] == 1:
        return np.abs(2.0 * proba[:, 0] - 1.0)
    top2 = np.partition(proba, proba.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def entropy(proba, multilabel=False, aggregate="sum"):
    """Shannon entropy ``-sum_c p_c log p_c`` (nats); the sum (or mean) of per-label
    binary entropies ``-(p log p + (1-p) log(1-p))`` when multi-label."""
    proba = np.asarray(proba, dtype=np.float64)
    if multilabel:
        return aggregate_labels(entr(proba) + entr(1.0 - proba), aggregate)
    return entr(proba).sum(axis=1)


def _measure(function, classifier, X, multilabel, aggregate, batch_size, n_jobs=None):
    multilabel = resolve_multilabel(classifier, multilabel)
    return function(predict_proba_pool(classifier, X, batch_size, n_jobs=n_jobs), multilabel,
                    aggregate)


def classifier_uncertainty(classifier, X, *, multilabel=None, aggregate="sum",
                           batch_size=None, n_jobs=None):
    """Least-confidence uncertainty ``1 - max_c p_c`` of each sample in ``X``.

    Parameters
    ----------
    classifier : learner or classifier with ``predict_proba``
    X : pool (array, memmap or torch Dataset), scored batch by batch
    multilabel : bool or None
        ``None`` detects models that predict label sets (multi-hot targets; a
        one-vs-rest model fitted on 1-d labels is scored as a single-label one).
    aggregate : {"sum", "mean", "max"}
        How per-label scores combine (multi-label only).
    batch_size : int or None
        Batch size of the scoring loop.
    n_jobs : int or None
        joblib workers scoring the pool (see :func:`skal.query.base.score_pool`; a Dask
        cluster inside ``joblib.parallel_backend("dask")``). Same scores as 1 worker.
    """
    return _measure(least_confidence, classifier, X, multilabel, aggregate, batch_size,
                    n_jobs)


def classifier_margin(classifier, X, *, multilabel=None, aggregate="sum", batch_size=None,
                      n_jobs=None):
    """Margin ``p_(1) - p_(2)`` of each sample (lower = more uncertain)."""
    return _measure(margin, classifier, X, multilabel, aggregate, batch_size, n_jobs)


def classifier_entropy(classifier, X, *, multilabel=None, aggregate="sum", batch_size=None,
                       n_jobs=None):
    """Predictive entropy of each sample (higher = more uncertain)."""
    return _measure(entropy, classifier, X, multilabel, aggregate, batch_size, n_jobs)


def uncertainty_sampling(classifier, X_pool, n_instances=1, *, random_state=None,
                         **measure_kwargs):
    """Query the samples with the lowest top-class probability (least confidence).

    Returns
    -------
    indices : ndarray of int
        Positions in ``X_pool`` of the selected samples, most uncertain first.
    scores : ndarray
        Their uncertainty.
    """
    scores = classifier_uncertainty(classifier, X_pool, **measure_kwargs)
    return multi_argmax(scores, n_instances, random_state)


def margin_sampling(classifier, X_pool, n_instances=1, *, random_state=None,
                    **measure_kwargs):
    """Query the samples with the smallest margin between the two top classes.

    Returns ``(indices, margins)``; the score maximised is ``-margin``.
    """
    margins = classifier_margin(classifier, X_pool, **measure_kwargs)
    indices, _ = multi_argmax(-margins, n_instances, random_state)
    return indices, margins[indices]


def entropy_sampling(classifier, X_pool, n_instances=1, *, random_state=None,
                     **measure_kwargs):
    """Query the samples with the largest predictive entropy."""
    scores = classifier_entropy(classifier, X_pool, **measure_kwargs)
    return multi_argmax(scores, n_instances, random_state)
