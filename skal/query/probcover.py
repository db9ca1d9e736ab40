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
edges, ``O(edges)`` in all. When the radius puts so many points in each ball that the
graph would not fit (``max_edges``), the balls are recomputed in distance blocks
instead (``O(n)`` memory, the same picks): a pick's newly covered points ``N`` lower
the gain of every point within ``delta`` of them, ``O(n |N|)`` distances, ``O(n^2)``
over a whole query.
"""

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from ..data.pool import pool_length
from ..exceptions import SkalTypeError, SkalValueError
from ..utils.validation import check_n_instances
from .base import _seed_of, fitted_estimator, labelled_data
from .embeddings import embed_pool_and_labelled, kmeans_labels, strategy_seed
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
    index_type = np.int32 if n < 2**31 - 1 else np.int64
    counts, indices = [], []
    for start, d2 in _blocks(E, E, block_elements):
        inside = d2 < delta_sq
        rows = np.arange(start, start + len(d2))
        inside[rows - start, rows] = True            # a point always covers itself
        counts.append(inside.sum(axis=1))
        # row-major nonzeros: the column of each edge, row by row
        indices.append(np.nonzero(inside)[1].astype(index_type))
    indices = np.concatenate(indices) if indices else np.empty(0, dtype=index_type)
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    if indptr[-1] < 2**31 - 1:
        indptr = indptr.astype(index_type)
    data = np.ones(len(indices), dtype=bool)
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


class _SparseBalls:
    """The balls of a sparse graph: ``graph[x, y]`` nonzero when ``x`` covers ``y``."""

    def __init__(self, graph):
        self.graph = sp.csr_matrix(graph, dtype=bool)
        self.reverse = self.graph.T.tocsr()
        self.n = self.graph.shape[0]

    def ball(self, x):
        return self.graph.indices[self.graph.indptr[x]:self.graph.indptr[x + 1]]

    def covering_counts(self, points):
        """For every point, how many of ``points`` its ball holds."""
        return np.bincount(self.reverse[points].indices, minlength=self.n)

    def covered_by(self, points):
        covered = np.zeros(self.n, dtype=bool)
        covered[self.graph[points].indices] = True
        return covered


class _ImplicitBalls:
    """The balls ``||E[x] - E[y]|| < delta`` recomputed in distance blocks: ``O(n)``
    memory whatever the number of edges, the same answers as :func:`ball_graph`."""

    def __init__(self, E, delta, block_elements=_BLOCK_ELEMENTS):
        self.E, self.delta_sq, self.block_elements = E, float(delta) ** 2, block_elements
        self.n = len(E)

    def ball(self, x):
        (_, d2), = list(_blocks(self.E[x:x + 1], self.E, self.block_elements))
        inside = d2[0] < self.delta_sq
        inside[x] = True
        return np.flatnonzero(inside)

    def covering_counts(self, points):
        points = np.asarray(points, dtype=np.intp)
        counts = np.zeros(self.n, dtype=np.int64)
        if not len(points):
            return counts
        for start, d2 in _blocks(self.E, self.E[points], self.block_elements):
            inside = d2 < self.delta_sq
            rows = np.arange(start, start + len(d2))
            own = np.flatnonzero(np.isin(points, rows))       # a point covers itself
            inside[points[own] - start, own] = True
            counts[start:start + len(d2)] = inside.sum(axis=1)
        return counts

    def covered_by(self, points):
        return self.covering_counts(points) > 0             # balls are symmetric


def max_coverage(graph, n_instances, covered=None, candidates=None, random_state=None):
    """Greedy maximum coverage on a ball graph (ProbCover's selection).

    Parameters
    ----------
    graph : scipy.sparse matrix (n, n), or ``(E, delta)``
        ``graph[x, y]`` nonzero when ``x``'s ball covers ``y``; or embeddings and a
        radius, whose balls are then recomputed in distance blocks instead of being
        stored (``O(n)`` memory, about twice the time of building the graph, the same
        picks).
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
    balls = _balls(graph)
    n = balls.n
    covered = np.zeros(n, dtype=bool) if covered is None else np.array(covered, dtype=bool)
    allowed = np.ones(n, dtype=bool) if candidates is None else np.array(candidates, dtype=bool)
    n_instances = check_n_instances(n_instances, int(allowed.sum()))
    gain = balls.covering_counts(np.flatnonzero(~covered))   # uncovered points per ball
    rng = np.random.default_rng(_seed_of(random_state))
    picked, gains = [], []
    for _ in range(n_instances):
        masked = np.where(allowed, gain, -1)
        x = int(np.argmax(masked))
        if masked[x] <= 0:
            x = _fallback(allowed, covered, rng)
            new = np.empty(0, dtype=np.intp)
        else:
            ball = balls.ball(x)
            new = ball[~covered[ball]]
            covered[new] = True
            # every point whose ball holds a newly covered point loses that point's gain
            gain -= balls.covering_counts(new)
        picked.append(x)
        gains.append(len(new))
        allowed[x] = False
    return np.asarray(picked, dtype=np.intp), np.asarray(gains, dtype=np.int64)


def _balls(graph):
    if isinstance(graph, tuple):
        E, delta = graph
        return _ImplicitBalls(np.asarray(E, dtype=np.float64), delta)
    return _SparseBalls(graph)


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
        ``random_state`` passed to the call, else the learner's ``random_state``.
    graph : {"auto", "sparse", "implicit"}, default="auto"
        ``"sparse"``: store the ball graph as a :mod:`scipy.sparse` matrix (about 10
        bytes per edge: the graph and its reverse). ``"implicit"``: store nothing and
        recompute distances in blocks at each pick (``O(n)`` memory, about twice the
        time, the same picks). ``"auto"``: sparse unless the graph would exceed
        ``max_edges``.
    max_edges : int, default=20_000_000
        Largest graph stored, estimated from 256 seeded balls before it is built;
        ``graph="sparse"`` refuses (with advice) a larger one.
    n_jobs : int or None
        Workers of the embedding loop.
    batch_size : int or None
        Batch size of the embedding loop.

    Attributes
    ----------
    delta_ : float
        The radius used by the last query.
    n_edges_ : int
        Edges of the last query's graph (estimated when it was not stored).
    graph_ : str
        ``"sparse"`` or ``"implicit"``: how the last query's balls were held.
    coverage_ : float
        Share of all points (labelled and pool) covered after the last query.
    """

    def __init__(self, delta=None, alpha=0.95, n_clusters=None, purity_sample_size=2000,
                 embedder=None, normalize=True, random_state=None, n_jobs=None,
                 batch_size=None, graph="auto", max_edges=20_000_000):
        self.delta = delta
        self.alpha = alpha
        self.n_clusters = n_clusters
        self.purity_sample_size = purity_sample_size
        self.embedder = embedder
        self.normalize = normalize
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.batch_size = batch_size
        self.graph = graph
        self.max_edges = max_edges

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
        _check_positive_int(self.max_edges, "max_edges")
        if self.graph not in ("auto", "sparse", "implicit"):
            raise SkalValueError(
                f"graph must be 'auto', 'sparse' or 'implicit'; got {self.graph!r}.")

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

    def _estimated_edges(self, E, delta, seed, sample=256):
        """Graph edges estimated from ``sample`` seeded balls."""
        rng = np.random.default_rng(_seed_of(seed))
        rows = rng.choice(len(E), size=min(sample, len(E)), replace=False)
        inside = sum(int((d2 < delta ** 2).sum()) for _, d2 in _blocks(E[rows], E))
        return inside / len(rows) * len(E)

    def _graph(self, E, delta, seed):
        """The sparse graph, or ``(E, delta)`` for balls recomputed in blocks; and the
        (estimated, for the latter) number of edges."""
        estimate = self._estimated_edges(E, delta, seed)
        if self.graph == "implicit" or (self.graph == "auto" and estimate > self.max_edges):
            return (E, delta), int(round(estimate))
        if estimate > self.max_edges:
            raise SkalValueError(
                f"ProbCover's delta={delta:.4g} puts about {estimate / len(E):.0f} points "
                f"in each ball, about {estimate:.3g} graph edges (max_edges="
                f"{self.max_edges}). Use graph='auto' or 'implicit' (no stored graph), "
                "a smaller delta=, a higher alpha or n_clusters, or raise max_edges.")
        graph = ball_graph(E, delta)
        return graph, int(graph.nnz)

    def __call__(self, learner, X_pool, n_instances=1, *, random_state=None, **_):
        """Select ``n_instances`` distinct pool positions; returns ``(indices, gains)``."""
        self._validate()
        n_pool = pool_length(X_pool)
        n_instances = check_n_instances(n_instances, n_pool)
        seed = strategy_seed(self.random_state, random_state, learner)
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
        graph, n_edges = self._graph(E, delta, seed)
        balls = _balls(graph)
        covered = balls.covered_by(np.arange(n_lab)) if n_lab else np.zeros(len(E), bool)
        candidates = np.zeros(len(E), dtype=bool)
        candidates[n_lab:] = True
        picked, gains = max_coverage(graph, n_instances, covered, candidates, seed)
        self.delta_ = float(delta)
        self.n_edges_ = n_edges
        self.graph_ = "implicit" if isinstance(graph, tuple) else "sparse"
        self.coverage_ = float((covered.sum() + gains.sum()) / len(E))
        return picked - n_lab, gains
