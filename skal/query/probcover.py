"""ProbCover: greedy maximum coverage of delta-balls in an embedding space.

Yehuda, Dekel, Hacohen and Weinshall, "Active Learning Through a Covering Lens",
NeurIPS 2022. In a good (self-supervised) embedding, a ball of radius ``delta`` around
a labelled point mostly holds points of its class, so labelling a set whose balls
cover as much of the data as possible is a good low-budget choice. The algorithm:

1. a directed graph with an edge ``x -> y`` whenever ``||e(x) - e(y)|| < delta``
   (every point covers itself), over the labelled set and the pool;
2. the points covered by the labelled set's balls are covered from the start;
3. repeat ``B`` times: pick the pool point whose ball covers the most points not yet
   covered (ties: the lowest pool position), and mark them covered.

``delta`` is chosen from the embeddings as in the paper: cluster them by k-means into
``k`` pseudo-classes (``k`` the number of classes) and take the largest ``delta`` whose
*purity* (the share of balls whose points all share one pseudo-label) is at least
``alpha = 0.95``. A ball around ``x`` is pure exactly when ``delta`` is at most the
distance from ``x`` to the nearest point of another pseudo-label, ``r(x)``, so the
purity of every ``delta`` follows from ``r`` on a seeded sample of ball centres, and
the largest pure-enough ``delta`` is an order statistic of ``r`` (no grid search).

The graph is built block by block into a :mod:`scipy.sparse` matrix (never a dense
``n x n`` matrix), and each pick updates the coverage gains through the reversed
edges, ``O(edges)`` in all.
"""

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ..data.pool import pool_length
from ..exceptions import SkalTypeError, SkalValueError
from ..utils.validation import check_n_instances
from .base import _seed_of, fitted_estimator, labelled_data
from .embeddings import embed_pool_and_labelled, kmeans_labels
from .latent import _check_positive_int

__all__ = ["ProbCover", "ball_graph", "max_coverage", "purity_delta", "ball_purity"]

# rows of a distance block; a block holds at most _BLOCK_ELEMENTS distances
_BLOCK_ELEMENTS = 1 << 22


def _blocks(A, B, block_elements=_BLOCK_ELEMENTS):
    """Yield ``(start, squared distances of A[start:stop] to every row of B)`` in row
    blocks holding at most ``block_elements`` distances each."""
    a_sq = np.einsum("ij,ij->i", A, A)
    b_sq = np.einsum("ij,ij->i", B, B)
    rows = max(1, int(block_elements) // max(len(B), 1))
    for start in range(0, len(A), rows):
        d2 = a_sq[start:start + rows, None] + b_sq[None, :] - 2.0 * (A[start:start + rows] @ B.T)
        yield start, np.maximum(d2, 0.0)


def ball_graph(E, delta, block_elements=_BLOCK_ELEMENTS):
    """The delta-ball graph: a CSR matrix with ``G[x, y] = 1`` iff
    ``||E[x] - E[y]|| < delta`` (the diagonal included), built block by block.

    Parameters
    ----------
    E : ndarray of shape (n, d)
    delta : float > 0
    block_elements : int
        Distances computed at once (memory is ``O(block_elements + edges)``).

    Returns
    -------
    scipy.sparse.csr_matrix of shape (n, n), dtype bool
    """
    E = np.asarray(E, dtype=np.float64)
    n = len(E)
    delta_sq = float(delta) ** 2
    indptr = [np.zeros(1, dtype=np.int64)]
    indices = []
    offset = 0
    for start, d2 in _blocks(E, E, block_elements):
        inside = d2 < delta_sq
        rows = np.arange(start, start + len(d2))
        inside[rows - start, rows] = True            # a point always covers itself
        counts = inside.sum(axis=1)
        indices.append(np.flatnonzero(inside) % n)   # row-major: column of each edge
        indptr.append(offset + np.cumsum(counts))
        offset += int(counts.sum())
    indices = np.concatenate(indices) if indices else np.empty(0, dtype=np.int64)
    data = np.ones(len(indices), dtype=bool)
    return sp.csr_matrix((data, indices, np.concatenate(indptr)), shape=(n, n))


def max_coverage(graph, n_instances, covered=None, candidates=None, random_state=None):
    """Greedy maximum coverage on a ball graph (ProbCover's selection).

    Parameters
    ----------
    graph : scipy.sparse matrix (n, n)
        ``graph[x, y]`` nonzero when ``x``'s ball covers ``y``.
    n_instances : int
    covered : bool ndarray (n,) or None
        Points already covered (by the labelled set's balls).
    candidates : bool ndarray (n,) or None
        Points that may be picked (default: all).
    random_state : int, RandomState or None
        Draws the picks made once every candidate's gain is 0 (everything reachable is
        covered): uniformly among the candidates not picked yet, uncovered ones first.

    Returns
    -------
    indices : ndarray of int
        Distinct candidates in the order picked; each, while anything is left to
        cover, the one covering the most uncovered points (ties: the lowest index).
    gains : ndarray of int
        Points newly covered by each pick (0 for the random fall-back picks).
    """
    G = sp.csr_matrix(graph, dtype=bool)
    n = G.shape[0]
    covered = np.zeros(n, dtype=bool) if covered is None else np.array(covered, dtype=bool)
    allowed = np.ones(n, dtype=bool) if candidates is None else np.array(candidates, dtype=bool)
    n_instances = check_n_instances(n_instances, int(allowed.sum()))
    reverse = G.T.tocsr()
    # gain[x]: uncovered points in x's ball
    gain = np.asarray(G[:, ~covered].sum(axis=1)).ravel().astype(np.int64)
    rng = np.random.default_rng(_seed_of(random_state))
    picked, gains = [], []
    for _ in range(n_instances):
        masked = np.where(allowed, gain, -1)
        x = int(np.argmax(masked))
        if masked[x] <= 0:
            x = _fallback(allowed, covered, rng)
            picked.append(x)
            gains.append(0)
            allowed[x] = False
            continue
        ball = G.indices[G.indptr[x]:G.indptr[x + 1]]
        new = ball[~covered[ball]]
        covered[new] = True
        # every point whose ball holds a newly covered point loses that point's gain
        gain -= np.bincount(reverse[new].indices, minlength=n)
        picked.append(x)
        gains.append(len(new))
        allowed[x] = False
    return np.asarray(picked, dtype=np.intp), np.asarray(gains, dtype=np.int64)


def _fallback(allowed, covered, rng):
    """A random allowed point, uncovered ones first."""
    pool = np.flatnonzero(allowed & ~covered)
    if not len(pool):
        pool = np.flatnonzero(allowed)
    return int(rng.choice(pool))


def _nearest_other_label(E, labels, centres, block_elements=_BLOCK_ELEMENTS):
    """For each row index in ``centres``: the distance to the nearest row of ``E`` with a
    different label (inf when every row shares its label)."""
    out = np.full(len(centres), np.inf)
    for start, d2 in _blocks(E[centres], E, block_elements):
        same = labels[centres[start:start + len(d2)], None] == labels[None, :]
        d2[same] = np.inf
        out[start:start + len(d2)] = d2.min(axis=1)
    return np.sqrt(out)


def ball_purity(E, labels, delta, centres=None, block_elements=_BLOCK_ELEMENTS):
    """Share of the balls ``B(E[c], delta)`` (c in ``centres``, default all rows) whose
    points all share ``labels[c]``."""
    E = np.asarray(E, dtype=np.float64)
    labels = np.asarray(labels)
    centres = np.arange(len(E)) if centres is None else np.asarray(centres)
    radius = _nearest_other_label(E, labels, centres, block_elements)
    return float(np.mean(radius >= delta))


def purity_delta(E, labels, alpha=0.95, sample_size=2000, random_state=None,
                 block_elements=_BLOCK_ELEMENTS):
    """The largest ``delta`` whose ball purity is at least ``alpha`` (Yehuda et al.).

    A ball ``B(x, delta) = {y : ||x - y|| < delta}`` is pure iff ``delta <= r(x)``, the
    distance from ``x`` to the nearest point of another label. Over ``m`` sampled
    centres, purity(``delta``) = share of ``r >= delta``, so the answer is the
    ``(floor(m (1 - alpha)) + 1)``-th smallest ``r``.

    Parameters
    ----------
    E : ndarray of shape (n, d)
    labels : ndarray of shape (n,)
        Pseudo-labels (k-means clusters in ProbCover).
    alpha : float in (0, 1]
    sample_size : int or None
        Ball centres drawn (seeded) to estimate purity; None: every point.
    random_state : int, RandomState or None

    Returns
    -------
    delta : float
        ``inf`` when there is a single label (every ball is pure).
    """
    E = np.asarray(E, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(E)
    if sample_size is None or sample_size >= n:
        centres = np.arange(n)
    else:
        rng = np.random.default_rng(_seed_of(random_state))
        centres = np.sort(rng.choice(n, size=int(sample_size), replace=False))
    radius = np.sort(_nearest_other_label(E, labels, centres, block_elements))
    j = int(np.floor(len(radius) * (1.0 - alpha) + 1e-9))
    return float(radius[min(j, len(radius) - 1)])


class ProbCover(BaseEstimator):
    """ProbCover query strategy (Yehuda et al., NeurIPS 2022): a callable strategy class.

    ``ProbCover()(learner, X_pool, n_instances)`` returns ``(indices, gains)``, the
    gain being the number of points each pick newly covers. See the module docstring.
    When every pool point is already covered, the remaining picks are drawn at random
    (seeded) among the unlabelled pool points not picked yet (uncovered ones first,
    when the pool has any), with gain 0: with ``delta`` this large, coverage no longer
    tells points apart (the paper lowers ``delta`` instead; pass a smaller ``delta``).

    Parameters
    ----------
    delta : float or None, default=None
        Ball radius in the (L2-normalised) embedding space. None: the largest radius
        whose purity is at least ``alpha`` (:func:`purity_delta`), estimated each query.
    alpha : float, default=0.95
        Purity target of the automatic ``delta``.
    n_clusters : int or None, default=None
        k-means pseudo-classes of the purity estimate. None: the number of classes the
        learner's model knows (``classes_`` or its ``classes`` parameter), else the
        distinct labels seen so far; at a cold start with none of these, pass it.
    purity_sample_size : int or None, default=2000
        Ball centres sampled (seeded) to estimate purity; None: all points.
    embedder : fitted object with ``transform(X)`` or ``embed(X)``, or None
        E.g. a fitted :class:`skal.pretrain.SimCLR`; None: the learner's model's
        ``embed``.
    normalize : bool, default=True
        L2-normalise the embeddings.
    random_state : int, RandomState or None
        Seeds k-means, the purity sample and the fall-back picks. None: the
        ``random_state`` passed to the call.
    n_jobs : int or None
        Workers of the embedding loop.
    batch_size : int or None
        Batch size of the embedding loop.

    Attributes
    ----------
    delta_ : float
        The radius used by the last query.
    n_edges_ : int
        Edges of the last query's graph.
    coverage_ : float
        Share of all points (labelled and pool) covered after the last query.
    """

    def __init__(self, delta=None, alpha=0.95, n_clusters=None, purity_sample_size=2000,
                 embedder=None, normalize=True, random_state=None, n_jobs=None,
                 batch_size=None):
        self.delta = delta
        self.alpha = alpha
        self.n_clusters = n_clusters
        self.purity_sample_size = purity_sample_size
        self.embedder = embedder
        self.normalize = normalize
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.batch_size = batch_size

    def _validate(self):
        if self.delta is not None:
            if isinstance(self.delta, bool) or not isinstance(self.delta, numbers.Real) \
                    or not np.isfinite(self.delta) or self.delta <= 0:
                raise SkalValueError(
                    f"delta must be a positive number or None (chosen by purity); got "
                    f"{self.delta!r}.")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real) \
                or not 0 < self.alpha <= 1:
            raise SkalValueError(f"alpha must be a number in (0, 1]; got {self.alpha!r}.")
        _check_positive_int(self.n_clusters, "n_clusters", allow_none=True)
        _check_positive_int(self.purity_sample_size, "purity_sample_size", allow_none=True)

    def _pseudo_classes(self, learner):
        if self.n_clusters is not None:
            return int(self.n_clusters)
        model = fitted_estimator(learner)
        classes = getattr(model, "classes_", None)
        if classes is None and hasattr(model, "get_params"):
            classes = model.get_params(deep=False).get("classes")
        if classes is not None and len(classes) >= 2:
            return len(classes)
        try:
            y = labelled_data(learner)[1]
        except (SkalValueError, AttributeError, ValueError):
            y = None
        if y is not None and len(y):
            y = np.asarray(y)
            k = y.shape[1] if y.ndim == 2 else len(np.unique(y))
            if k >= 2:
                return int(k)
        raise SkalValueError(
            "ProbCover chooses delta with k-means on as many pseudo-classes as there are "
            "classes, but the number of classes is unknown (no labels yet and the model "
            "declares no classes). Pass n_clusters=<number of classes>, or delta=.")

    def __call__(self, learner, X_pool, n_instances=1, *, random_state=None, **_):
        """Select ``n_instances`` distinct pool positions; returns ``(indices, gains)``."""
        self._validate()
        n_pool = pool_length(X_pool)
        n_instances = check_n_instances(n_instances, n_pool)
        seed = self.random_state if self.random_state is not None else random_state
        n_classes = None if self.delta is not None else self._pseudo_classes(learner)
        E_pool, E_lab = embed_pool_and_labelled(
            learner, X_pool, embedder=self.embedder, normalize=self.normalize,
            batch_size=self.batch_size, n_jobs=self.n_jobs)
        E = np.vstack([E_lab, E_pool])
        n_lab = len(E_lab)
        delta = self.delta
        if delta is None:
            pseudo = kmeans_labels(E, n_classes, seed)
            delta = purity_delta(E, pseudo, self.alpha, self.purity_sample_size, seed)
            if not np.isfinite(delta):
                raise SkalValueError(
                    "ProbCover could not choose delta: k-means found a single "
                    "pseudo-class. Pass delta= or a larger n_clusters.")
            if delta <= 0:
                raise SkalValueError(
                    "ProbCover's purity-chosen delta is 0 (duplicate embeddings across "
                    "pseudo-classes); pass delta= or lower alpha.")
        graph = ball_graph(E, delta)
        covered = np.zeros(len(E), dtype=bool)
        if n_lab:
            covered[graph[:n_lab].indices] = True
        candidates = np.zeros(len(E), dtype=bool)
        candidates[n_lab:] = True
        picked, gains = max_coverage(graph, n_instances, covered, candidates, seed)
        covered_after = covered.copy()
        covered_after[graph[picked].indices] = True
        self.delta_ = float(delta)
        self.n_edges_ = int(graph.nnz)
        self.coverage_ = float(covered_after.mean())
        return picked - n_lab, gains
