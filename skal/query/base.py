"""The one scoring loop and the selection helpers every strategy shares.

A strategy is a *score* (higher = more worth a label) computed batch by batch over
the pool by :func:`score_pool`, then a *selection* (:func:`multi_argmax` for top-k).
Strategies return ``(indices, scores)``, as modAL >= 0.4 does, so they also run in
``modAL.models.ActiveLearner.query``.
"""

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from torch.utils.data import Subset

from ..data.pool import DEFAULT_BATCH_SIZE, is_dataset, iter_pool, pool_length
from ..exceptions import NotFittedError, SkalTypeError, SkalValueError
from .. import labels as _labels
from ..utils.seeding import resolve_seed
from ..utils.validation import check_n_instances

__all__ = ["labelled_data", "random_state_of", "subset_positions", "score_pool", "predict_proba_pool", "multi_argmax", "fitted_estimator",
           "is_multilabel", "predicts_label_sets", "resolve_multilabel", "aggregate_labels"]


def fitted_estimator(learner):
    """The model behind a learner (protocol, see ``docs/design.md``): ``estimator_``
    when set, else ``estimator`` (modAL's fitted model; a skal learner fits its initial
    data when it is read, and gives the estimator it was given, maybe unfitted or
    pre-trained, when it has no model yet), else the object itself (a bare classifier
    passed as the learner)."""
    estimator = getattr(learner, "estimator_", None)
    if estimator is None:
        estimator = getattr(learner, "estimator", learner)
    return estimator


def labelled_data(learner):
    """``(X, y)``: all data labelled so far (protocol, see ``docs/design.md``): the
    learner's ``X_training`` / ``y_training``, read after :func:`fitted_estimator` has
    brought a skal learner up to date.

    Raises
    ------
    NotFittedError
        When the learner has no labelled data yet (a cold start from a fitted or
        pre-trained model); strategies treat that as "no labels".
    """
    fitted_estimator(learner)
    X, y = getattr(learner, "X_training", None), getattr(learner, "y_training", None)
    if X is None or y is None:
        raise NotFittedError(
            "This strategy needs the learner's labelled data (X_training / y_training), "
            "and it has none yet; teach it some labelled samples first."
        )
    return X, y


def random_state_of(learner, random_state=None):
    """The random state a strategy should use (protocol): its own ``random_state``
    argument when given, else the learner's ``random_state`` (``None`` if it has
    none)."""
    if random_state is not None:
        return random_state
    return getattr(learner, "random_state", None)


def is_multilabel(learner):
    """Whether the learner's model has a sigmoid head (output kind ``"multilabel"`` or
    ``"one-vs-rest"``): independent binary outputs read output by output, as gradient
    strategies do. Kept for compatibility; see :func:`skal.labels.has_sigmoid_head`."""
    return _labels.has_sigmoid_head(fitted_estimator(learner))


def predicts_label_sets(learner):
    """Whether the learner's model predicts label sets (output kind ``"multilabel"``),
    as uncertainty and committee measures read ``predict_proba``. Kept for
    compatibility; see :func:`skal.labels.predicts_label_sets`."""
    return _labels.predicts_label_sets(fitted_estimator(learner))


def resolve_multilabel(learner, multilabel=None, *, read="proba"):
    """A strategy's ``multilabel`` option for the learner's model
    (:func:`skal.labels.resolve_multilabel`)."""
    if multilabel is not None:
        return bool(multilabel)
    return _labels.resolve_multilabel(fitted_estimator(learner), read=read)


def score_pool(score_batch, X, batch_size=None, n_jobs=None):
    """Apply ``score_batch`` to each batch of the pool and gather one score per sample.

    This is the single batched loop behind every pool-scoring strategy in skal. Only one
    batch of the pool is in memory at a time (arrays and memmaps are sliced; torch
    Datasets are read through a DataLoader).

    Parameters
    ----------
    score_batch : callable
        ``batch -> array of shape (len(batch),)`` or ``(len(batch), k)``.
    X : ndarray, np.memmap, torch.Tensor or torch Dataset
        The pool.
    batch_size : int or None
        Samples per batch (default 256).
    n_jobs : int or None
        ``None`` or 1: score in this process. Otherwise split the pool into contiguous
        chunks (on batch boundaries, so every batch is the one of the sequential loop)
        and score each chunk in a joblib worker with the same per-batch loop, on the
        active joblib backend (``loky`` processes by default; a Dask cluster inside
        ``joblib.parallel_backend("dask")``). The scores are those of ``n_jobs=1``.
        ``score_batch`` and the pool are sent to the workers, so they must pickle
        (memmaps travel as file references, torch Datasets as objects).

    Returns
    -------
    scores : ndarray of shape (n_samples,) or (n_samples, k), float64
    """
    n = pool_length(X)
    if n == 0:
        raise SkalValueError("The pool is empty: there is nothing to score.")
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
    n_batches = -(-n // max(batch_size, 1))
    workers = 1 if n_jobs in (None, 1) else min(effective_n_jobs(n_jobs), n_batches)
    if workers <= 1:
        return _score_chunk(score_batch, X, batch_size)
    bounds = [round(k * n_batches / workers) * batch_size for k in range(workers + 1)]
    bounds[-1] = n
    parts = Parallel(n_jobs=workers)(
        delayed(_score_chunk)(score_batch, _chunk(X, start, stop), batch_size)
        for start, stop in zip(bounds[:-1], bounds[1:]) if stop > start)
    return np.concatenate(parts)


def _chunk(X, start, stop):
    """Samples ``start:stop`` of the pool: a slice (view) of an array, a ``Subset`` of a
    torch Dataset."""
    if is_dataset(X):
        return Subset(X, range(start, stop))
    return X[start:stop]


def _score_chunk(score_batch, X, batch_size):
    """The sequential loop of :func:`score_pool` over one pool (or chunk)."""
    n = pool_length(X)
    out = None
    for start, batch in iter_pool(X, batch_size):
        values = np.asarray(score_batch(batch), dtype=np.float64)
        if values.shape[0] != len(batch):
            raise SkalValueError(
                f"The scoring function returned {values.shape[0]} values for a batch of "
                f"{len(batch)} samples."
            )
        if out is None:
            out = np.empty((n,) + values.shape[1:], dtype=np.float64)
        out[start:start + len(values)] = values
    return out


def predict_proba_pool(classifier, X, batch_size=None, n_jobs=None):
    """``classifier.predict_proba`` over the pool, batch by batch (in ``n_jobs`` joblib
    workers when given, see :func:`score_pool`)."""
    return score_pool(classifier.predict_proba, X, batch_size, n_jobs=n_jobs)


def aggregate_labels(per_label, aggregate):
    """Combine per-label scores ``(n, n_labels)`` into one score per sample."""
    if aggregate == "sum":
        return per_label.sum(axis=1)
    if aggregate == "mean":
        return per_label.mean(axis=1)
    if aggregate == "max":
        return per_label.max(axis=1)
    raise SkalValueError(f"aggregate must be 'sum', 'mean' or 'max'; got {aggregate!r}.")


def multi_argmax(values, n_instances=1, random_state=None):
    """Indices of the ``n_instances`` largest values, largest first.

    Ties are broken by a random permutation seeded with ``random_state`` (an int gives
    the same choice every time); with ``random_state=None`` the lower index wins, which
    is also deterministic.

    Returns
    -------
    indices : ndarray of int, values : ndarray
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise SkalValueError(f"Scores must be 1-d; got shape {values.shape}.")
    n_instances = check_n_instances(n_instances, len(values))
    if np.isnan(values).any():
        raise SkalValueError(
            "The strategy produced NaN scores; check the model's outputs for NaN."
        )
    if random_state is None:
        tie_break = np.arange(len(values))
    else:
        tie_break = np.random.default_rng(resolve_seed(random_state)).permutation(len(values))
    if n_instances < len(values):
        # Keep every candidate tied with the k-th largest value, then sort those only.
        threshold = np.partition(values, len(values) - n_instances)[len(values) - n_instances]
        candidates = np.flatnonzero(values >= threshold)
    else:
        candidates = np.arange(len(values))
    order = np.lexsort((tie_break[candidates], -values[candidates]))[:n_instances]
    indices = candidates[order]
    return indices, values[indices]


def subset_positions(n_pool, subset, n_instances, random_state):
    """Sorted random positions of the pool to score (``subset`` of them, drawn with
    ``random_state``), or None for the whole pool: the reference GradNorm code scores a
    random subset of the pool each cycle, and TDGF offers the same."""
    if subset is None:
        return None
    if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)):
        raise SkalTypeError(f"subset must be an integer or None; got {subset!r}.")
    if subset < n_instances:
        raise SkalValueError(
            f"subset={subset} is smaller than n_instances={n_instances}; score at least as "
            "many samples as you query."
        )
    if subset >= n_pool:
        return None
    rng = np.random.default_rng(resolve_seed(random_state))
    return np.sort(rng.choice(n_pool, size=int(subset), replace=False))
