"""Query by committee: disagreement between the members of a :class:`skal.Committee`.

Vote entropy (Dagan & Engelson, ICML 1995), consensus entropy and maximum
disagreement (McCallum & Nigam, ICML 1998), as in modAL's ``modAL.disagreement``.
Each measure streams the pool through :func:`skal.query.base.score_pool`.
"""

import numpy as np
from scipy.special import entr

from .base import multi_argmax, predicts_label_sets, score_pool

__all__ = [
    "vote_entropy",
    "consensus_entropy",
    "KL_max_disagreement",
    "vote_entropy_sampling",
    "consensus_entropy_sampling",
    "max_disagreement_sampling",
]

_EPS = 1e-12


def _committee_multilabel(committee):
    members = getattr(committee, "learner_list", [])
    return bool(members) and predicts_label_sets(members[0])


def _vote_entropy_batch(committee, batch, multilabel):
    votes = np.asarray(committee.vote(batch))              # (n, L) or (n, L, labels)
    if multilabel:
        share = votes.mean(axis=1)                          # fraction voting "present"
        return (entr(share) + entr(1.0 - share)).sum(axis=1)
    classes = committee.classes_
    shares = np.stack([(votes == c).mean(axis=1) for c in classes], axis=1)
    return entr(shares).sum(axis=1)


def vote_entropy(committee, X, *, batch_size=None, n_jobs=None):
    """Entropy of the members' hard votes for each sample (``n_jobs``: joblib workers)."""
    multilabel = _committee_multilabel(committee)
    return score_pool(lambda b: _vote_entropy_batch(committee, b, multilabel), X, batch_size,
                      n_jobs=n_jobs)


def _consensus_entropy_batch(committee, batch, multilabel):
    proba = np.asarray(committee.predict_proba(batch), dtype=np.float64)
    if multilabel:
        return (entr(proba) + entr(1.0 - proba)).sum(axis=1)
    return entr(proba).sum(axis=1)


def consensus_entropy(committee, X, *, batch_size=None, n_jobs=None):
    """Entropy of the committee's averaged (consensus) probabilities."""
    multilabel = _committee_multilabel(committee)
    return score_pool(lambda b: _consensus_entropy_batch(committee, b, multilabel), X,
                      batch_size, n_jobs=n_jobs)


def _max_disagreement_batch(committee, batch, multilabel):
    member = np.asarray(committee.vote_proba(batch), dtype=np.float64)   # (n, L, C)
    consensus = member.mean(axis=1, keepdims=True)
    if multilabel:
        member = np.stack([member, 1.0 - member], axis=-1)
        consensus = np.stack([consensus, 1.0 - consensus], axis=-1)
        kl = (member * (np.log(member + _EPS) - np.log(consensus + _EPS))).sum(axis=(-1, -2))
    else:
        kl = (member * (np.log(member + _EPS) - np.log(consensus + _EPS))).sum(axis=-1)
    return kl.max(axis=1)


def KL_max_disagreement(committee, X, *, batch_size=None, n_jobs=None):  # noqa: N802
    """Largest Kullback-Leibler divergence of a member from the consensus (modAL's
    name)."""
    multilabel = _committee_multilabel(committee)
    return score_pool(lambda b: _max_disagreement_batch(committee, b, multilabel), X,
                      batch_size, n_jobs=n_jobs)


def vote_entropy_sampling(committee, X_pool, n_instances=1, *, random_state=None, **kw):
    """Query the samples whose members' votes are most spread."""
    return multi_argmax(vote_entropy(committee, X_pool, **kw), n_instances, random_state)


def consensus_entropy_sampling(committee, X_pool, n_instances=1, *, random_state=None, **kw):
    """Query the samples with the most uncertain consensus prediction."""
    return multi_argmax(consensus_entropy(committee, X_pool, **kw), n_instances, random_state)


def max_disagreement_sampling(committee, X_pool, n_instances=1, *, random_state=None, **kw):
    """Query the samples on which some member disagrees most with the consensus."""
    return multi_argmax(KL_max_disagreement(committee, X_pool, **kw), n_instances,
                        random_state)
