"""Embeddings of the pool and of the labelled set for representation-based strategies.

TypiClust and ProbCover (Hacohen et al. ICML 2022; Yehuda et al. NeurIPS 2022) select
in an embedding space, ideally one learnt without labels. The embeddings come from

* an explicit ``embedder``: any fitted object with ``transform(X)`` (e.g. a fitted
  :class:`skal.pretrain.SimCLR`, or any scikit-learn transformer) or ``embed(X)``;
* otherwise the learner's model, ``fitted_estimator(learner).embed(X)``: a skal
  classifier built with ``pretrained=`` embeds with its pre-trained encoder even
  before it is fitted; a fitted skal classifier embeds its penultimate features.

Both the pool and the labelled images are embedded batch by batch through
:func:`skal.query.base.score_pool` (arrays, memmaps and torch Datasets alike), and the
rows are L2-normalised, as both papers do with self-supervised features: distances
are then chordal distances on the unit sphere, in ``[0, 2]``.
"""

import numpy as np
from sklearn.exceptions import NotFittedError as AnyNotFittedError

from ..data.pool import pool_length
from ..exceptions import NotFittedError, SkalTypeError, SkalValueError
from .base import _seed_of, fitted_estimator, labelled_data, score_pool

__all__ = ["embedding_function", "labelled_images", "embed_pool_and_labelled",
           "l2_normalize", "kmeans_labels", "strategy_seed"]

# above this many clusters (or samples), k-means runs in mini-batches, as the TypiClust
# reference code does
_FULL_KMEANS_MAX_CLUSTERS = 50
_FULL_KMEANS_MAX_SAMPLES = 20000


def l2_normalize(E):
    """Rows of ``E`` scaled to unit Euclidean norm (zero rows stay zero)."""
    E = np.asarray(E, dtype=np.float64)
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    return E / np.where(norms > 0, norms, 1.0)


def kmeans_labels(E, n_clusters, random_state=None):
    """Cluster labels of the rows of ``E`` by k-means, seeded with ``random_state``.

    Full k-means (k-means++ initialisation) for up to 50 clusters on up to 20,000
    points, else :class:`sklearn.cluster.MiniBatchKMeans` (batches of 4,096, 3 inits),
    as Hacohen et al.'s code does for many clusters.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n_clusters = int(min(n_clusters, len(E)))
    if n_clusters <= 1:
        return np.zeros(len(E), dtype=np.intp)
    seed = None if random_state is None else _seed(random_state)
    if n_clusters <= _FULL_KMEANS_MAX_CLUSTERS and len(E) <= _FULL_KMEANS_MAX_SAMPLES:
        model = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed)
    else:
        model = MiniBatchKMeans(n_clusters=n_clusters, batch_size=4096, n_init=3,
                                random_state=seed)
    return model.fit_predict(E).astype(np.intp)


def strategy_seed(own, given, learner):
    """The random state of a strategy's query: its own ``random_state`` parameter, else
    the one passed to the call, else the learner's ``random_state`` (if it has one)."""
    for random_state in (own, given, getattr(learner, "random_state", None)):
        if random_state is not None:
            return random_state
    return None


def _seed(random_state):
    return int(_seed_of(random_state)) % (2**32 - 1)


def _method(obj):
    for name in ("transform", "embed"):
        method = getattr(obj, name, None)
        if callable(method):
            return method
    return None


def embedding_function(learner, embedder=None):
    """``batch -> (len(batch), d)`` embeddings: ``embedder.transform`` / ``embedder.embed``
    when an embedder is given, else the learner's model's ``embed``.

    Raises
    ------
    SkalTypeError
        ``embedder`` has neither ``transform`` nor ``embed``, or (without an embedder)
        the learner's model has no ``embed``.
    """
    if embedder is not None:
        method = _method(embedder)
        if method is None:
            raise SkalTypeError(
                f"embedder must be a fitted object with transform(X) or embed(X) (e.g. a "
                f"fitted skal.pretrain.SimCLR); got {type(embedder).__name__}."
            )
        return method
    ensure_fitted = getattr(learner, "_ensure_fitted", None)
    if callable(ensure_fitted):         # a skal learner given X_training fits on first use
        try:
            ensure_fitted()
        except AnyNotFittedError:          # cold start: no labels yet
            pass
    model = fitted_estimator(learner)
    method = getattr(model, "embed", None)
    if not callable(method):
        raise SkalTypeError(
            f"This strategy needs embeddings, but the learner's model "
            f"({type(model).__name__}) has no embed(X); pass embedder= (a fitted "
            "skal.pretrain.SimCLR or any fitted transformer) or use a skal classifier."
        )

    def embed(batch):
        try:
            return method(batch)
        except AnyNotFittedError as exc:
            raise NotFittedError(
                f"The learner's {type(model).__name__} cannot embed yet: it is neither "
                "fitted nor pre-trained. Pass embedder= (e.g. a fitted "
                "skal.pretrain.SimCLR), build the classifier with pretrained=..., or "
                "teach some labels first."
            ) from exc

    return embed


def labelled_images(learner):
    """The learner's labelled images, or None when there are none yet (cold start: no
    labels, an unfitted learner, or a bare model without training data)."""
    try:
        X = labelled_data(learner)[0]
    except (AnyNotFittedError, SkalValueError, AttributeError):
        return None
    if X is None or pool_length(X) == 0:
        return None
    return X


def _embed(embed, X, batch_size, n_jobs):
    E = score_pool(embed, X, batch_size, n_jobs=n_jobs)
    if E.ndim != 2:
        E = E.reshape(len(E), -1)
    if not np.isfinite(E).all():
        raise SkalValueError(
            "The embeddings contain NaN or infinite values; check the embedder or model.")
    return E


def embed_pool_and_labelled(learner, X_pool, *, embedder=None, X_labelled=None,
                            normalize=True, batch_size=None, n_jobs=None):
    """Embed the pool and the labelled set (same embedder), batch by batch.

    Parameters
    ----------
    learner : learner or model
    X_pool : array, np.memmap, torch.Tensor or torch Dataset
    embedder : fitted object with ``transform`` or ``embed``, or None
        None: the learner's model (see the module docstring).
    X_labelled : images or None
        The labelled images; default the learner's (none at a cold start).
    normalize : bool, default=True
        L2-normalise every embedding.
    batch_size, n_jobs : see :func:`skal.query.base.score_pool`.

    Returns
    -------
    E_pool : ndarray of shape (n_pool, d), float64
    E_labelled : ndarray of shape (n_labelled, d), float64 (zero rows at a cold start)
    """
    embed = embedding_function(learner, embedder)
    E_pool = _embed(embed, X_pool, batch_size, n_jobs)
    if X_labelled is None:
        X_labelled = labelled_images(learner)
    if X_labelled is not None and pool_length(X_labelled):
        E_lab = _embed(embed, X_labelled, batch_size, n_jobs)
        if E_lab.shape[1] != E_pool.shape[1]:
            raise SkalValueError(
                f"The labelled images embed to {E_lab.shape[1]} dimensions but the pool "
                f"to {E_pool.shape[1]}; they must come from the same kind of images.")
    else:
        E_lab = np.empty((0, E_pool.shape[1]))
    if normalize:
        E_pool, E_lab = l2_normalize(E_pool), l2_normalize(E_lab)
    return E_pool, E_lab
