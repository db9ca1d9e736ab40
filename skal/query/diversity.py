"""Diversity-based batch queries: BADGE and core-set.

* BADGE (Ash, Zhang, Krishnamurthy, Langford, Agarwal, "Deep Batch Active Learning by
  Diverse, Uncertain Gradient Lower Bounds", ICLR 2020): k-means++ seeding on the
  final-layer gradient embeddings of the pool, taken at the model's own prediction.
* Core-set (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A
  Core-Set Approach", ICLR 2018): k-center greedy on penultimate embeddings, covering the
  pool with balls centred on the labelled set and the queried samples.

Both stream the pool through :func:`skal.query.base.score_pool` and never form an
``n x n`` distance matrix; both return ``n_instances`` distinct positions of the pool
they are given (the unlabelled pool, so nothing already labelled is returned).
"""

import numpy as np
import torch

from ..data.pool import pool_length
from ..exceptions import SkalValueError
from ..grad import logit_gradient
from ..labels import pseudo_labels
from ..utils.validation import check_n_instances
from ..utils.seeding import resolve_seed
from .base import is_multilabel, labelled_data, score_pool
from .gradnorm import head_estimator

__all__ = [
    "gradient_embedding_factors",
    "badge_sampling",
    "coreset_sampling",
    "kmeans_pp_rank_one",
    "k_center_greedy",
]

_CHUNK = 2048


def _rng(random_state):
    return np.random.default_rng(resolve_seed(random_state))


# -------------------------------------------------------------------------- BADGE
def gradient_embedding_factors(classifier, X, *, bias=False, batch_size=None, n_jobs=None):
    """Factors ``(A, H)`` of BADGE's gradient embeddings ``g_i = a_i (x) h_i``.

    ``a_i = p_i - e_{y_hat_i}`` is the cross-entropy gradient at the logits for the
    predicted class (sigmoid heads: ``p - y_hat`` with ``y_hat`` the model's prediction at
    its ``threshold``, binarized one-vs-rest for a model fitted on 1-d labels, from
    :func:`skal.labels.pseudo_labels`), from the closed form of :func:`skal.grad.logit_gradient`, and
    ``h_i`` the penultimate features;
    ``g_i`` is the per-sample gradient of the final layer's weights. The ``n x (C d)``
    embeddings themselves are never formed.

    Parameters
    ----------
    bias : bool, default=False
        Append a constant 1 to ``h`` so that ``g`` also holds the bias gradient. Ash et
        al. use the weights only (the default).

    Returns
    -------
    A : ndarray of shape (n, C), H : ndarray of shape (n, d) (``d + 1`` with ``bias``)
    """
    estimator = head_estimator(classifier)
    multilabel = is_multilabel(classifier)
    n_outputs = estimator.final_layer_.out_features
    def predicted(z):
        # a sigmoid head's hard prediction at the model's threshold: label sets, or the
        # one-vs-rest class binarized as the outputs are trained
        if not multilabel:
            return "predicted"
        return torch.from_numpy(pseudo_labels(estimator, z, logits=True)).to(z.device)

    def batch_factors(batch):
        parts = []
        for _, h, z in estimator.iter_head_outputs(batch, batch_size=len(batch)):
            a = logit_gradient(z, predicted(z), multilabel=multilabel)
            parts.append(torch.cat([a, h.flatten(1).to(torch.float64)], dim=1))
        return torch.cat(parts).cpu().numpy()

    factors = score_pool(batch_factors, X,
                         batch_size or getattr(estimator, "predict_batch_size", None),
                         n_jobs=n_jobs)
    A, H = factors[:, :n_outputs], factors[:, n_outputs:]
    if bias:
        H = np.hstack([H, np.ones((len(H), 1))])
    return A, H


def kmeans_pp_rank_one(A, H, n_instances, random_state=None):
    """k-means++ seeding (D^2 sampling) on rank-one embeddings ``g_i = a_i (x) h_i``.

    Distances come from the factors, ``||g_i - g_j||^2 = ||a_i||^2 ||h_i||^2 +
    ||a_j||^2 ||h_j||^2 - 2 (a_i . a_j)(h_i . h_j)``, so each step costs ``O(n (C + d))``
    and memory is ``O(n (C + d))``. As in Ash et al.'s code, the first centre is the
    embedding of largest norm; each next one is drawn with probability proportional to
    its squared distance to the nearest centre chosen so far (chosen points have
    distance 0 and are never drawn again; if every remaining distance is 0, the next
    centre is drawn uniformly from the points not chosen yet).

    Returns
    -------
    indices : ndarray of int, d2 : ndarray
        The chosen rows in order, and their squared distance to the nearest earlier
        centre when chosen (the first one: its squared norm).
    """
    A = np.asarray(A, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    n = len(A)
    n_instances = check_n_instances(n_instances, n)
    rng = _rng(random_state)
    a_sq = np.einsum("ij,ij->i", A, A)
    h_sq = np.einsum("ij,ij->i", H, H)
    g_sq = a_sq * h_sq

    def sqdist_to(j):
        d2 = g_sq + g_sq[j] - 2.0 * (A @ A[j]) * (H @ H[j])
        return np.maximum(d2, 0.0)

    chosen = np.zeros(n, dtype=bool)
    first = int(np.argmax(g_sq))
    picked, gains = [first], [g_sq[first]]
    chosen[first] = True
    min_d2 = sqdist_to(first)
    min_d2[chosen] = 0.0
    for _ in range(1, n_instances):
        total = min_d2.sum()
        if total > 0 and np.isfinite(total):
            j = int(rng.choice(n, p=min_d2 / total))
        else:
            j = int(rng.choice(np.flatnonzero(~chosen)))
        picked.append(j)
        gains.append(min_d2[j])
        chosen[j] = True
        np.minimum(min_d2, sqdist_to(j), out=min_d2)
        min_d2[chosen] = 0.0
    return np.asarray(picked, dtype=np.intp), np.asarray(gains)


def badge_sampling(classifier, X_pool, n_instances=1, *, random_state=None, bias=False,
                   batch_size=None, n_jobs=None):
    """BADGE: diverse and uncertain samples by k-means++ on gradient embeddings.

    Ash et al., "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds",
    ICLR 2020. Each pool sample is embedded as the final-layer gradient of the
    cross-entropy at its predicted label, ``g = (p - e_y_hat) (x) h``: its norm reflects
    uncertainty (it is small when the model is confident) and its direction the sample's
    features. k-means++ seeding picks a batch that is both high-magnitude and diverse.
    Here the seeding runs on the factors ``(a, h)`` (see :func:`kmeans_pp_rank_one`), so
    the ``n x (C d)`` embedding matrix is never built.

    Parameters
    ----------
    classifier : learner or fitted skal classifier
        Its predicted probabilities and the input of its final linear layer form the
        gradient embeddings (``iter_head_outputs``).
    X_pool : array, np.memmap, torch.Tensor or torch Dataset
        The unlabelled pool.
    n_instances : int, default=1
    random_state : int, RandomState or None
        Seeds the D^2 sampling; an int gives the same batch every time.
    bias : bool, default=False
        Include the final layer's bias gradient in the embedding.
    batch_size : int or None
        Batch size of the scoring loop.

    Returns
    -------
    indices : ndarray of int
        ``n_instances`` distinct positions in ``X_pool``, in the order chosen.
    d2 : ndarray
        Squared distance of each to the nearest earlier choice (first: squared norm).
    """
    n_instances = check_n_instances(n_instances, pool_length(X_pool))
    A, H = gradient_embedding_factors(classifier, X_pool, bias=bias, batch_size=batch_size,
                                      n_jobs=n_jobs)
    return kmeans_pp_rank_one(A, H, n_instances, random_state)


# ------------------------------------------------------------------------ core-set
def _sqnorms(E):
    return np.einsum("ij,ij->i", E, E)


def _min_sqdist(E, centres, chunk=_CHUNK):
    """Squared distance from each row of ``E`` to its nearest row of ``centres``, with
    ``chunk x chunk`` blocks (never ``len(E) x len(centres)``)."""
    e_sq, c_sq = _sqnorms(E), _sqnorms(centres)
    out = np.full(len(E), np.inf)
    for i in range(0, len(E), chunk):
        block = out[i:i + chunk]
        for j in range(0, len(centres), chunk):
            d2 = (e_sq[i:i + chunk, None] + c_sq[None, j:j + chunk]
                  - 2.0 * E[i:i + chunk] @ centres[j:j + chunk].T)
            np.minimum(block, d2.min(axis=1), out=block)
    return np.maximum(out, 0.0)


def k_center_greedy(E, n_instances, centres=None, random_state=None):
    """Greedy k-center: repeatedly pick the point farthest from every centre so far.

    Sener & Savarese (ICLR 2018), algorithm 1. ``centres`` are the embeddings of the
    labelled set (none: the first point is drawn at random with ``random_state``). The
    distance of every point to its nearest centre is kept as a running minimum, updated
    with one ``O(n d)`` pass per pick.

    Returns
    -------
    indices : ndarray of int, radii : ndarray
        The chosen rows in order and their distance to the nearest centre when chosen.
    """
    E = np.asarray(E, dtype=np.float64)
    n = len(E)
    n_instances = check_n_instances(n_instances, n)
    e_sq = _sqnorms(E)
    chosen = np.zeros(n, dtype=bool)
    picked, radii = [], []
    if centres is not None and len(centres):
        min_d2 = _min_sqdist(E, np.asarray(centres, dtype=np.float64))
    else:
        first = int(_rng(random_state).integers(n))
        picked.append(first)
        radii.append(np.inf)
        chosen[first] = True
        min_d2 = np.maximum(e_sq + e_sq[first] - 2.0 * E @ E[first], 0.0)
    while len(picked) < n_instances:
        j = int(np.argmax(np.where(chosen, -1.0, min_d2)))
        picked.append(j)
        radii.append(np.sqrt(min_d2[j]))
        chosen[j] = True
        np.minimum(min_d2, np.maximum(e_sq + e_sq[j] - 2.0 * E @ E[j], 0.0), out=min_d2)
    return np.asarray(picked, dtype=np.intp), np.asarray(radii)


def _labelled_images(learner):
    """The labelled images of a skal or modAL learner (see ``labelled_data``), or None
    for a bare classifier."""
    try:
        return labelled_data(learner)[0]
    except (SkalValueError, AttributeError):
        return None


def coreset_sampling(classifier, X_pool, n_instances=1, *, X_labelled=None,
                     random_state=None, batch_size=None, n_jobs=None):
    """Core-set: k-center greedy on penultimate embeddings (Sener & Savarese, ICLR 2018).

    The pool and the labelled set are embedded with the classifier's ``embed`` (the input
    of the final linear layer), batch by batch through :func:`score_pool`; the query is
    the greedy 2-approximation of the k-center problem: each pick is the pool sample
    farthest from the labelled set and the samples picked before it. Distances to the
    centres are kept as a running minimum and computed in blocks, never as an ``n x n``
    matrix.

    Parameters
    ----------
    classifier : learner or fitted skal classifier
        Its ``embed`` (the input of the final linear layer) gives the features.
    X_pool : array, np.memmap, torch.Tensor or torch Dataset
        The unlabelled pool.
    n_instances : int, default=1
    X_labelled : images or None
        The labelled set; default: the learner's ``X_training_`` (skal) or
        ``X_training`` (modAL). Without any, the first centre is drawn at random.
    random_state : int, RandomState or None
        Only used when there is no labelled set (the first centre).
    batch_size : int or None
        Batch size of the embedding loop.

    Returns
    -------
    indices : ndarray of int
        ``n_instances`` distinct positions in ``X_pool``, in the order chosen.
    radii : ndarray
        Distance of each to its nearest centre when it was chosen.
    """
    n_instances = check_n_instances(n_instances, pool_length(X_pool))
    estimator = head_estimator(classifier)
    batch_size = batch_size or getattr(estimator, "predict_batch_size", None)

    def embed(batch):
        return estimator.embed(batch, batch_size=len(batch))

    E = score_pool(embed, X_pool, batch_size, n_jobs=n_jobs)     # n_jobs: joblib workers
    if X_labelled is None:
        X_labelled = _labelled_images(classifier)
    centres = None
    if X_labelled is not None and pool_length(X_labelled):
        centres = score_pool(embed, X_labelled, batch_size)
    return k_center_greedy(E, n_instances, centres, random_state)
