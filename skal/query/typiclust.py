"""TypiClust: typical and diverse samples for low labelling budgets.

Hacohen, Dekel and Weinshall, "Active Learning on a Budget: Opposite Strategies Suit
High and Low Budgets", ICML 2022 (TPC_RP in the paper). At small budgets the most
useful labels are *typical* samples (in dense regions of a good representation) that
are also *diverse* (spread over the data's modes). The algorithm:

1. embed the labelled set ``L`` and the pool (L2-normalised, see
   :mod:`skal.query.embeddings`) and cluster them by k-means into
   ``K = min(|L| + B, max_clusters)`` clusters (``B`` the query size);
2. repeat ``B`` times: among clusters with more than ``min_cluster_size`` points, take
   the one with the fewest labelled points (counting the points picked earlier in this
   query; ties: the largest cluster, then the lowest cluster number) and pick its
   unlabelled point of highest *typicality*
   ``1 / mean distance to its k nearest neighbours within the cluster``
   (``k = min(k_neighbors, cluster size - 1)``).

Density is a property of the data, so the neighbours are all points of the cluster,
labelled or not (Hacohen et al.'s code drops the labelled points first; with a few
labels the two agree on almost every pick). The nearest neighbours are found by
scikit-learn's chunked brute-force search, one cluster at a time and only for the
clusters a pick is taken from: no ``n x n`` matrix is formed.
"""

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.neighbors import NearestNeighbors

from ..data.pool import pool_length
from ..utils.validation import check_n_instances
from .embeddings import embed_pool_and_labelled, kmeans_labels, strategy_seed
from .latent import _check_positive_int

__all__ = ["TypiClust", "typicality"]

# added to the mean distance, as in the reference code, so duplicates do not divide by 0
_EPS = 1e-8


def typicality(E, k_neighbors=20, n_jobs=None):
    """Typicality of each row of ``E``: ``1 / mean distance to its k nearest other rows``.

    ``k = min(k_neighbors, len(E) - 1)``; a single row has typicality 0. Neighbours come
    from a chunked brute-force search (memory bounded, never ``len(E)^2`` at once).

    Returns
    -------
    ndarray of shape (len(E),)
    """
    E = np.asarray(E, dtype=np.float64)
    k = min(int(k_neighbors), len(E) - 1)
    if k < 1:
        return np.zeros(len(E))
    search = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=n_jobs).fit(E)
    distances, _ = search.kneighbors()          # X=None: each row's neighbours but itself
    return 1.0 / (distances.mean(axis=1) + _EPS)


class TypiClust(BaseEstimator):
    """TypiClust query strategy (Hacohen et al., ICML 2022): a callable strategy class.

    ``TypiClust()(learner, X_pool, n_instances)`` returns ``(indices, typicality)``.
    See the module docstring for the algorithm.

    Parameters
    ----------
    max_clusters : int, default=500
        Cap on the number of k-means clusters ``K = min(|L| + B, max_clusters)``.
    min_cluster_size : int, default=5
        Clusters of at most this many points (labelled and pool) are not picked from,
        as in the paper. When no larger cluster has unlabelled points left, the
        smaller ones are used.
    k_neighbors : int, default=20
        Neighbours of the typicality measure.
    embedder : fitted object with ``transform(X)`` or ``embed(X)``, or None
        E.g. a fitted :class:`skal.pretrain.SimCLR`. None: the learner's model's
        ``embed`` (a pre-trained skal classifier embeds before it is fitted).
    normalize : bool, default=True
        L2-normalise the embeddings (as the papers do with self-supervised features).
    random_state : int, RandomState or None
        Seeds k-means; an int gives the same query every time. None: the
        ``random_state`` passed to the call (``learner.query(..., random_state=0)``),
        else the learner's ``random_state``.
    n_jobs : int or None
        Workers of the embedding loop and the neighbour search.
    batch_size : int or None
        Batch size of the embedding loop.

    Attributes
    ----------
    n_clusters_ : int
        Clusters of the last query.
    pool_clusters_ : ndarray of shape (n_pool,)
        Cluster of each pool sample in the last query.
    labelled_clusters_ : ndarray of shape (n_labelled,)
        Cluster of each labelled sample in the last query.
    """

    def __init__(self, max_clusters=500, min_cluster_size=5, k_neighbors=20, embedder=None,
                 normalize=True, random_state=None, n_jobs=None, batch_size=None):
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.k_neighbors = k_neighbors
        self.embedder = embedder
        self.normalize = normalize
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.batch_size = batch_size

    def _validate(self):
        _check_positive_int(self.max_clusters, "max_clusters")
        _check_positive_int(self.min_cluster_size, "min_cluster_size", allow_zero=True)
        _check_positive_int(self.k_neighbors, "k_neighbors")

    def __call__(self, learner, X_pool, n_instances=1, *, random_state=None, **_):
        """Select ``n_instances`` distinct pool positions; returns ``(indices, scores)``
        with the typicality of each pick."""
        self._validate()
        n_pool = pool_length(X_pool)
        n_instances = check_n_instances(n_instances, n_pool)
        E_pool, E_lab = embed_pool_and_labelled(
            learner, X_pool, embedder=self.embedder, normalize=self.normalize,
            batch_size=self.batch_size, n_jobs=self.n_jobs)
        n_lab = len(E_lab)
        seed = strategy_seed(self.random_state, random_state, learner)
        n_clusters = min(n_lab + n_instances, self.max_clusters)
        clusters = kmeans_labels(np.vstack([E_lab, E_pool]), n_clusters, seed)
        picked, scores = self.select(np.vstack([E_lab, E_pool]), clusters, n_lab,
                                     n_instances)
        self.n_clusters_ = int(clusters.max()) + 1
        self.labelled_clusters_, self.pool_clusters_ = clusters[:n_lab], clusters[n_lab:]
        return picked - n_lab, scores

    def select(self, E, clusters, n_labelled, n_instances):
        """TypiClust's selection on given embeddings and clusters.

        Parameters
        ----------
        E : ndarray of shape (n, d)
            Embeddings, the ``n_labelled`` labelled points first.
        clusters : ndarray of int, shape (n,)
            Cluster of each point.
        n_labelled : int
        n_instances : int

        Returns
        -------
        indices : ndarray of int
            Rows of ``E`` (all ``>= n_labelled``), distinct, in the order picked.
        typicality : ndarray
        """
        clusters = np.asarray(clusters, dtype=np.intp)
        n_clusters = int(clusters.max()) + 1
        sizes = np.bincount(clusters, minlength=n_clusters)
        labelled = np.bincount(clusters[:n_labelled], minlength=n_clusters)
        available = np.bincount(clusters[n_labelled:], minlength=n_clusters)
        taken = np.zeros(len(E), dtype=bool)
        taken[:n_labelled] = True
        cache = {}
        picked, scores = [], []
        for _ in range(n_instances):
            cluster = self._next_cluster(sizes, labelled, available)
            if cluster not in cache:
                members = np.flatnonzero(clusters == cluster)
                cache[cluster] = (members, typicality(E[members], self.k_neighbors,
                                                      self.n_jobs))
            members, typ = cache[cluster]
            candidate = np.where(taken[members], -np.inf, typ)
            best = int(np.argmax(candidate))
            row = int(members[best])
            picked.append(row)
            scores.append(typ[best])
            taken[row] = True
            labelled[cluster] += 1
            available[cluster] -= 1
        return np.asarray(picked, dtype=np.intp), np.asarray(scores)

    def _next_cluster(self, sizes, labelled, available):
        """Fewest labelled points first; ties: the largest, then the lowest number."""
        open_ = available > 0
        eligible = open_ & (sizes > self.min_cluster_size)
        if not eligible.any():          # only small clusters have unlabelled points left
            eligible = open_
        candidates = np.flatnonzero(eligible)
        order = np.lexsort((candidates, -sizes[candidates], labelled[candidates]))
        return int(candidates[order[0]])
