"""AIFT / ACFT: active (continual) fine-tuning with augmented views.

Zhou, Shin, Zhang, Gurudu, Gotway and Liang, "Fine-tuning convolutional neural networks
for biomedical image analysis: actively and incrementally", CVPR 2017 (AIFT); Zhou,
Shin, Feng, Gurudu, Gotway and Liang, "Active, continual fine tuning of convolutional
neural networks for reducing annotation efforts", Medical Image Analysis 2021 (ACFT).
The official MATLAB demo (``active_select_demo.m`` in MrGiovanni/Active-Learning) fixes
the details followed here:

* each candidate is seen through ``m`` augmented views; ``P`` is the ``m x C`` matrix of
  their predicted probabilities;
* **majority selection** (Sec. 3.3): the dominant class ``y = argmax_c mean_j P[j, c]``;
  only the ``round(alpha m)`` views most confident in ``y`` are kept (binary: the top
  views when the mean is above 0.5, the bottom ones otherwise);
* the score is the sum of all entries of a matrix ``R`` (Eq. 3, Alg. 1 line 11) whose
  diagonal is ``lambda1 * entropy(view_i)`` and whose off-diagonal entries are
  ``lambda2 * symmetric KL(view_i, view_j)``, i.e.
  ``sum_c (P[i, c] - P[j, c]) log((P[i, c] + eps) / (P[j, c] + eps))``; every pair
  counts twice, as in the demo (``eps`` is double precision's, MATLAB's ``eps``);
* the binary case of the paper is the two-class case of the categorical formulas;
  multi-label models are scored label by label (each a binary task with its own
  majority selection) and the per-label scores summed;
* **ACFT randomness**: the batch is sampled from the ``omega * n_instances`` best
  candidates with probabilities proportional to their scores rescaled to [0, 1] on that
  set (``omega=1`` is plain top-k).
"""

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..data.pool import DEFAULT_BATCH_SIZE
from ..exceptions import SkalTypeError, SkalValueError
from ..utils.seeding import resolve_seed
from ..utils.validation import to_image_tensor
from .base import fitted_estimator, multi_argmax, predicts_label_sets, score_pool
from .stacked import proba_one_pass, repeat_batch, seeded_generator, split_copies

__all__ = ["AIFT", "aift_scores", "majority_views", "acft_select"]

_EPS = np.finfo(np.float64).eps     # MATLAB's eps, as in the official demo


def _n_kept(n_views, alpha):
    """``round(alpha * m)`` with MATLAB's rounding (halves away from zero), at least 1."""
    return max(1, int(math.floor(n_views * alpha + 0.5)))


def _check_alpha(alpha):
    if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
            or not 0.0 < float(alpha) <= 1.0):
        raise SkalValueError(
            f"alpha must be a fraction of the views in (0, 1] (the paper uses 0.25); "
            f"got {alpha!r}.")
    return float(alpha)


def _as_views(proba, multilabel):
    """``(n, m, C)`` categorical probabilities from ``(n, m)`` (binary: probability of
    the positive class), ``(n, m, C)`` or, multi-label, ``(n, m, L)`` (each label a
    binary task, flattened to ``(n * L, m, 2)``)."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 2:
        proba = proba[:, :, None]
        multilabel = True
    if proba.ndim != 3:
        raise SkalValueError(
            f"View probabilities must have shape (n, n_views) or (n, n_views, n_outputs); "
            f"got {proba.shape}.")
    if not np.isfinite(proba).all() or proba.min() < 0.0 or proba.max() > 1.0:
        raise SkalValueError("View probabilities must be finite and within [0, 1].")
    if multilabel:
        n, m, n_labels = proba.shape
        positive = proba.transpose(0, 2, 1).reshape(n * n_labels, m)
        return np.stack([1.0 - positive, positive], axis=2), n_labels
    return proba, 1


def majority_views(proba, alpha=0.25):
    """Majority selection (Zhou et al. CVPR 2017, Sec. 3.3): the ``round(alpha m)`` views
    most confident in the dominant class ``argmax_c mean_j P[j, c]``.

    Parameters
    ----------
    proba : ndarray of shape (n, m, C)
        Categorical probabilities of the ``m`` views of each of ``n`` candidates.
    alpha : float in (0, 1]

    Returns
    -------
    ndarray of shape (n, round(alpha m), C)
    """
    alpha = _check_alpha(alpha)
    proba = np.asarray(proba, dtype=np.float64)
    dominant = proba.mean(axis=1).argmax(axis=1)                       # (n,)
    confidence = np.take_along_axis(proba, dominant[:, None, None], axis=2)[:, :, 0]
    order = np.argsort(-confidence, axis=1, kind="stable")[:, :_n_kept(proba.shape[1], alpha)]
    return np.take_along_axis(proba, order[:, :, None], axis=1)


def aift_scores(proba, alpha=0.25, lambda1=1.0, lambda2=1.0, multilabel=False):
    """AIFT score of each candidate from its views' probabilities (the pure function).

    ``sum(R)`` where ``R[i, i] = lambda1 * H(P_i)`` and ``R[i, j] = lambda2 *
    sum_c (P[i, c] - P[j, c]) log((P[i, c] + eps) / (P[j, c] + eps))`` over the views
    kept by :func:`majority_views` (Zhou et al. CVPR 2017, Eq. 3 and Alg. 1). The double
    sum over pairs is computed in closed form: with ``l = log(P + eps)``,
    ``sum_{i,j} (P_i - P_j)(l_i - l_j) = 2 k sum_i P_i l_i - 2 (sum_i P_i)(sum_i l_i)``
    per class, for ``k`` kept views.

    Parameters
    ----------
    proba : ndarray
        ``(n, m)``: probability of the positive class of ``m`` views of ``n`` binary
        candidates (the paper's setting); ``(n, m, C)``: categorical probabilities
        (rows sum to 1); with ``multilabel=True``, ``(n, m, L)`` independent per-label
        probabilities, scored per label and summed.
    alpha : float in (0, 1], default=0.25
        Fraction of views kept by majority selection (1 keeps them all).
    lambda1, lambda2 : float, default=1.0
        Weights of entropy and diversity (``lambda2=0``: entropy only; ``lambda1=0``:
        diversity only).
    multilabel : bool, default=False

    Returns
    -------
    ndarray of shape (n,)
    """
    views, n_labels = _as_views(proba, multilabel)
    kept = majority_views(views, alpha)                                  # (N, k, C)
    k = kept.shape[1]
    logs = np.log(kept + _EPS)
    entropy = -(kept * logs).sum(axis=(1, 2))
    diversity = (2.0 * k * (kept * logs).sum(axis=1)
                 - 2.0 * kept.sum(axis=1) * logs.sum(axis=1)).sum(axis=1)
    scores = lambda1 * entropy + lambda2 * np.clip(diversity, 0.0, None)
    return scores.reshape(-1, n_labels).sum(axis=1)


def acft_select(scores, n_instances, omega=1.0, random_state=None):
    """ACFT's randomised selection (Zhou et al. MedIA 2021): sample ``n_instances``
    candidates, without replacement, from the ``ceil(omega * n_instances)`` best ones
    with probabilities proportional to their scores rescaled to [0, 1] on that set.

    Candidates rescaled to 0 are drawn (uniformly) only when fewer than
    ``n_instances`` candidates have a positive weight; all-equal scores are drawn
    uniformly. ``omega=1`` returns the top ``n_instances``, best first.

    Returns
    -------
    indices : ndarray of int, values : ndarray
    """
    scores = np.asarray(scores, dtype=np.float64)
    n_top = min(len(scores), int(math.ceil(omega * n_instances - 1e-9)))
    top, values = multi_argmax(scores, max(n_top, n_instances), random_state)
    if len(top) == n_instances:
        return top, values
    rng = np.random.default_rng(resolve_seed(random_state))
    span = values.max() - values.min()
    weights = (values - values.min()) / span if span > 0 else np.ones_like(values)
    positive = np.flatnonzero(weights > 0)
    if len(positive) >= n_instances:
        picked = rng.choice(positive, size=n_instances, replace=False,
                            p=weights[positive] / weights[positive].sum())
    else:
        zero = np.flatnonzero(weights <= 0)
        picked = np.concatenate([rng.permutation(positive),
                                 rng.choice(zero, size=n_instances - len(positive),
                                            replace=False)])
    return top[picked], values[picked]


def _default_augmenter():
    from ..pretrain.augment import ImageAugmenter
    return ImageAugmenter()


def view_probabilities(model, x, n_views, augmenter, generator):
    """``(n, n_views, n_outputs)`` probabilities of ``n_views`` augmented views of the
    images ``x``, from one batched forward pass over the ``n * n_views`` views."""
    stacked = repeat_batch(x, n_views)                                      # view-major
    views = augmenter(stacked, generator=generator)
    if not isinstance(views, torch.Tensor) or views.shape != stacked.shape:
        raise SkalValueError(
            f"The augmenter returned {type(views).__name__} of shape "
            f"{tuple(getattr(views, 'shape', ()))} for a batch of shape "
            f"{tuple(stacked.shape)}; it must return a tensor of the same shape.")
    # intensity jitter and noise may step outside the images' value range; keep the
    # views in it (as torchvision's colour ops clamp), so they stay on the scale the
    # model was fitted on and pass its input-scale check
    views = views.clamp(float(stacked.min()), float(stacked.max()))
    return split_copies(proba_one_pass(model, views), n_views)


class AIFT(BaseEstimator):
    """AIFT / ACFT query strategy (Zhou et al. CVPR 2017; MedIA 2021), a callable
    strategy class.

    Each pool batch is repeated ``n_views`` times, augmented (each copy its own random
    transform) and scored in one forward pass; :func:`aift_scores` turns the views'
    probabilities into the score; :func:`acft_select` draws the batch.

    Parameters
    ----------
    n_views : int, default=10
        Augmented views per candidate (the paper's patches per candidate), at least 2.
    alpha : float in (0, 1], default=0.25
        Majority selection: fraction of the views kept (the paper's 1/4).
    lambda1, lambda2 : float, default=1.0
        Weights of the entropy (diagonal) and diversity (off-diagonal) terms.
    omega : float >= 1, default=5.0
        ACFT randomness: sample from the ``omega * n_instances`` best candidates
        *(choice: 5)*; ``1`` is deterministic top-k.
    augmenter : callable or None
        ``augmenter(x, generator=...) -> x'`` on float ``(B, C, H, W)`` tensors in the
        model's input scale; ``None`` uses :class:`skal.pretrain.augment.ImageAugmenter`
        with its defaults (the pre-training augmentations).
    random_state : int, RandomState or None
        Seeds the views (an explicit ``torch.Generator``) and the ACFT draw; a
        strategy-level seed takes precedence over the ``random_state`` of ``query``.
    batch_size : int or None
        Pool samples per forward pass (each pass sees ``batch_size * n_views`` images);
        ``None``: ``256 // n_views``.

    Attributes
    ----------
    last_scores_ : ndarray of shape (n_pool,)
        Scores of the last query.
    """

    def __init__(self, n_views=10, alpha=0.25, lambda1=1.0, lambda2=1.0, omega=5.0,
                 augmenter=None, random_state=None, batch_size=None):
        self.n_views = n_views
        self.alpha = alpha
        self.lambda1 = lambda1
        self.lambda2 = lambda2
        self.omega = omega
        self.augmenter = augmenter
        self.random_state = random_state
        self.batch_size = batch_size

    def _validate(self):
        if (isinstance(self.n_views, bool) or not isinstance(self.n_views, numbers.Integral)
                or self.n_views < 2):
            raise SkalValueError(
                f"n_views must be an integer >= 2 (views are compared with each other); "
                f"got {self.n_views!r}.")
        _check_alpha(self.alpha)
        for name in ("lambda1", "lambda2"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not np.isfinite(value) or value < 0):
                raise SkalValueError(f"{name} must be a non-negative number; got {value!r}.")
        if self.lambda1 == 0 and self.lambda2 == 0:
            raise SkalValueError("lambda1 and lambda2 are both 0: every score would be 0.")
        if (isinstance(self.omega, bool) or not isinstance(self.omega, numbers.Real)
                or not np.isfinite(self.omega) or self.omega < 1):
            raise SkalValueError(
                f"omega must be a number >= 1 (1 = deterministic top-k); got {self.omega!r}.")
        if self.augmenter is not None and not callable(self.augmenter):
            raise SkalTypeError(
                f"augmenter must be callable as augmenter(x, generator=...); got "
                f"{self.augmenter!r}.")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(
                self.batch_size, numbers.Integral) or self.batch_size < 1):
            raise SkalValueError(f"batch_size must be a positive integer or None; got "
                                 f"{self.batch_size!r}.")

    def __call__(self, learner, X_pool, n_instances=1, *, random_state=None, **_):
        """Select ``n_instances`` pool samples; returns ``(indices, scores)``."""
        self._validate()
        model = fitted_estimator(learner)
        if not hasattr(model, "predict_proba"):
            raise SkalTypeError("AIFT needs a model with predict_proba.")
        multilabel = predicts_label_sets(learner)
        augmenter = _default_augmenter() if self.augmenter is None else self.augmenter
        seed = resolve_seed(self.random_state if self.random_state is not None
                            else random_state)
        generator = seeded_generator(seed)

        def score_batch(batch):
            if getattr(batch, "ndim", 4) == 2:
                raise SkalValueError("AIFT augments images; tabular rows cannot be viewed.")
            x = to_image_tensor(batch, name="X_pool")
            proba = view_probabilities(model, x, self.n_views, augmenter, generator)
            return aift_scores(proba, self.alpha, self.lambda1, self.lambda2, multilabel)

        batch_size = self.batch_size or max(1, DEFAULT_BATCH_SIZE // self.n_views)
        scores = score_pool(score_batch, X_pool, batch_size)
        self.last_scores_ = scores
        return acft_select(scores, n_instances, self.omega, seed)
