"""Temporal Difference of Gradient Flow (TDGF) sampling.

Chen, Ma, Cui, Zhang and Xia, "Active Learning based on Temporal Difference of Gradient
Flow in Thoracic Disease Diagnosis", IEEE JBHI 2025. Only the abstract is public, so
skal defines the method as follows (its own decisions marked *(choice)*):

* each round a cheap *proxy* model and a *historical proxy* are trained on the labelled
  set; the historical proxy is the proxy at an earlier point of training that is a real
  stretch of it *(choice)*: its snapshot after ``history_fraction`` of this round's
  epochs (``history="fraction"``), or the previous round's proxy
  (``history="previous_round"``, default: see the class docstring). ``history="lag"``
  (a snapshot ``lag`` epochs before the end) is kept for compatibility: with a handful
  of labels an epoch is one optimizer step, so its "temporal difference" is one step;
* the surrogate gradient flow of a sample is the closed-form gradient of the loss with
  respect to the final fully-connected layer, ``G(x) = [a h^T, a]`` with
  ``a = p - y_hat`` (:func:`skal.grad.logit_gradient`), where ``y_hat`` is the *target*
  model's hard prediction (multi-label: thresholded at the target's ``threshold``; a
  one-vs-rest model fitted on 1-d labels: its predicted class, binarized as the model's
  targets);
* the score is ``TDGF(x) = ||G_proxy(x) - G_hist(x)||_F``, computed without forming
  matrices: ``||a1||^2 ||h1||^2 + ||a2||^2 ||h2||^2 - 2 (a1.a2)(h1.h2) + ||a1 - a2||^2``,
  the last (bias) term only when the final layer has a bias.

Cost per unlabelled sample: two proxy forward passes (plus the target's, for the pseudo
label) and O(C d); no backward pass.
"""

import copy
import inspect
import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone

from ..data.pool import pool_length, take
from ..exceptions import NotFittedError, SkalTypeError, SkalValueError
from ..grad import logit_gradient
from ..labels import pseudo_labels
from ..utils.seeding import resolve_seed
from .base import (fitted_estimator, is_multilabel, labelled_data, multi_argmax, score_pool,
                   subset_positions)

__all__ = ["TDGF", "tdgf_scores", "tdgf_statistics", "derive_proxy"]

_HISTORIES = ("fraction", "previous_round", "lag")
_DEFAULT_HISTORY = "previous_round"


def _head_outputs(model, batch):
    """``(h, z)`` of one batch from a fitted skal classifier."""
    (_, h, z), = list(model.iter_head_outputs(batch, batch_size=len(batch)))
    return h.flatten(1).to(torch.float64), z


def _check_pair(proxy, history):
    for name, model in (("proxy", proxy), ("history", history)):
        if not hasattr(model, "iter_head_outputs"):
            raise SkalTypeError(
                f"{name} must be a fitted skal classifier (CNNClassifier or "
                f"MultiLabelCNNClassifier); got {type(model).__name__}."
            )
        if not hasattr(model, "final_layer_"):     # NotFittedError is an AttributeError
            raise NotFittedError(f"The {name} model is not fitted.")
    if proxy.n_outputs_ != history.n_outputs_:
        raise SkalValueError(
            f"proxy has {proxy.n_outputs_} outputs but history has {history.n_outputs_}."
        )
    return is_multilabel(proxy)


def tdgf_statistics(proxy, history, batch):
    """Per-sample statistics of one batch from which the TDGF score of *any* pseudo-label
    follows (so the pool is scored once, whatever the labels).

    Returns a float64 array ``(n, 3 + 3 K)``: ``||h1||^2, ||h2||^2, h1.h2``, then for each
    of the ``K`` label hypotheses ``||a1||^2``, ``||a2||^2`` and ``a1.a2`` (``a`` from
    :func:`skal.grad.logit_gradient`). Single-label: ``K = C`` classes. Multi-label:
    ``K = 2 L``, the per-label contributions for outcome 0 then outcome 1.
    """
    multilabel = _check_pair(proxy, history)
    h1, z1 = _head_outputs(proxy, batch)
    h2, z2 = _head_outputs(history, batch)
    n, n_out = z1.shape
    parts = [(h1 * h1).sum(1, keepdim=True), (h2 * h2).sum(1, keepdim=True),
             (h1 * h2).sum(1, keepdim=True)]
    if multilabel:
        sq1, sq2, dot = [], [], []
        for outcome in (0.0, 1.0):
            target = torch.full_like(z1, outcome)
            a1 = logit_gradient(z1, target, multilabel=True)
            a2 = logit_gradient(z2, target, multilabel=True)
            sq1.append(a1 * a1), sq2.append(a2 * a2), dot.append(a1 * a2)
        parts += [torch.cat(sq1, 1), torch.cat(sq2, 1), torch.cat(dot, 1)]
    else:
        sq1, sq2, dot = (torch.empty(n, n_out, dtype=torch.float64) for _ in range(3))
        for k in range(n_out):
            target = torch.full((n,), k, dtype=torch.long)
            a1 = logit_gradient(z1, target)
            a2 = logit_gradient(z2, target)
            sq1[:, k], sq2[:, k], dot[:, k] = (a1 * a1).sum(1), (a2 * a2).sum(1), (a1 * a2).sum(1)
        parts += [sq1, sq2, dot]
    return torch.cat(parts, 1).cpu().numpy()


def _combine(stats, y_hat, multilabel, bias=True):
    """TDGF scores from :func:`tdgf_statistics` and pseudo-labels."""
    hh1, hh2, h12 = stats[:, 0], stats[:, 1], stats[:, 2]
    rest = stats[:, 3:]
    k = rest.shape[1] // 3
    sq1, sq2, dot = rest[:, :k], rest[:, k:2 * k], rest[:, 2 * k:]
    rows = np.arange(len(stats))
    if multilabel:
        y_hat = np.asarray(y_hat, dtype=np.int64)
        n_labels = k // 2
        cols = np.arange(n_labels)[None, :] + n_labels * y_hat      # outcome-0 or -1 block
        A1 = np.take_along_axis(sq1, cols, 1).sum(1)
        A2 = np.take_along_axis(sq2, cols, 1).sum(1)
        D = np.take_along_axis(dot, cols, 1).sum(1)
    else:
        y_hat = np.asarray(y_hat, dtype=np.int64)
        A1, A2, D = sq1[rows, y_hat], sq2[rows, y_hat], dot[rows, y_hat]
    # ||G1 - G2||^2 = ||a1||^2||h1||^2 + ||a2||^2||h2||^2 - 2(a1.a2)(h1.h2) + ||a1 - a2||^2
    squared = A1 * hh1 + A2 * hh2 - 2.0 * D * h12
    if bias:                                 # the bias gradient a1 - a2
        squared = squared + (A1 + A2 - 2.0 * D)
    return np.sqrt(np.clip(squared, 0.0, None))


def _has_bias(model):
    return getattr(model.final_layer_, "bias", None) is not None


def tdgf_scores(proxy, history, X, y_hat, batch_size=None):
    """TDGF score of every sample: ``||G_proxy(x) - G_hist(x)||_F``.

    Parameters
    ----------
    proxy, history : fitted skal classifiers with the same outputs
    X : pool (array, memmap or torch Dataset), scored batch by batch
    y_hat : ndarray
        Pseudo-labels as output positions ``(n,)`` (single-label) or 0/1 targets
        ``(n, n_outputs)`` (sigmoid heads: multi-hot labels, or for a model fitted
        one-vs-rest on 1-d labels the classes binarized by
        :func:`skal.labels.one_vs_rest_targets`).
    batch_size : int or None

    Returns
    -------
    ndarray of shape (n,)
    """
    multilabel = _check_pair(proxy, history)
    stats = score_pool(lambda batch: tdgf_statistics(proxy, history, batch), X, batch_size)
    y_hat = np.asarray(y_hat)
    expected = (len(stats), proxy.n_outputs_) if multilabel else (len(stats),)
    if y_hat.shape != expected:
        raise SkalValueError(f"y_hat has shape {y_hat.shape}; expected {expected}.")
    if not multilabel and (y_hat.min() < 0 or y_hat.max() >= proxy.n_outputs_):
        raise SkalValueError("y_hat holds class positions outside the proxy's outputs.")
    return _combine(stats, y_hat, multilabel, _has_bias(proxy))


def _module_accepts(module, name):
    try:
        return name in inspect.signature(module).parameters
    except (TypeError, ValueError):
        return False


def derive_proxy(target):
    """A cheaper, unfitted copy of ``target``: half the epochs and training steps and, for
    module classes with a ``widths`` parameter (skal's ``SmallCNN``, ``ResNet18``), half
    the channel widths."""
    proxy = clone(target)
    params = proxy.get_params(deep=False)
    updates = {"max_epochs": max(2, int(params.get("max_epochs") or 2) // 2)}
    if params.get("min_steps"):
        updates["min_steps"] = max(1, int(params["min_steps"]) // 2)
    module = params.get("module")
    if inspect.isclass(module) and _module_accepts(module, "widths"):
        widths = params.get("module__widths")
        if widths is None:
            widths = inspect.signature(module).parameters["widths"].default
        updates["module__widths"] = tuple(max(4, int(w) // 2) for w in widths)
    return proxy.set_params(**updates)


class TDGF(BaseEstimator):
    """TDGF query strategy (Chen et al., IEEE JBHI 2025): a callable strategy class.

    Each query fits the proxy on the learner's labelled data, keeps its historical
    snapshot, takes pseudo-labels from the target model, scores the pool with the closed
    form in one pass and selects the ``n_instances`` highest scores.

    Parameters
    ----------
    proxy : skal classifier or None
        The proxy model (cloned before each fit). ``None`` derives a cheaper one from the
        target (:func:`derive_proxy`).
    history : {"fraction", "previous_round", "lag"} or None, default=None
        The historical proxy, an earlier point of the proxy's training. ``None``: the
        default variant, ``"previous_round"`` (or ``"lag"`` when ``lag`` is given, as
        before; deprecated).
        ``"fraction"``: its snapshot after ``history_fraction`` of this round's epochs.
        ``"previous_round"``: the proxy of the previous query (the first query, having
        none, uses the ``"fraction"`` snapshot). ``"lag"`` (kept for compatibility, not
        recommended): the snapshot ``lag`` epochs before the end; with a few labels an
        epoch is a single optimizer step, so the difference measured is one step's.
        The default is the variant measured best on PneumoniaMNIST
        (``benchmarks/tdgf_history.py``, ``docs/aift_bald.md``).
    lag : int or None, default=None
        Epochs between the snapshot and the final proxy (``history="lag"`` only; ``None``
        means 1). Deprecated: passing it without ``history`` selects ``"lag"`` with a
        ``FutureWarning``.
    history_fraction : float in (0, 1), default=0.5
        Fraction of the proxy's epochs after which the snapshot is taken
        (``history="fraction"``, and the first query of ``"previous_round"``).
    subset : int or None
        Score only a random subset of the pool of this size (``None``: the whole pool).
    random_state : int or None
        Seeds the proxy's training and the subset.
    batch_size : int or None
        Batch size of the scoring loop.

    Attributes
    ----------
    proxy_, history_ : fitted classifiers of the last query.
    last_scores_ : ndarray, the scores of the last query (of the scored candidates).
    """

    def __init__(self, proxy=None, history=None, lag=None, history_fraction=0.5,
                 subset=None, random_state=None, batch_size=None):
        self.proxy = proxy
        self.history = history
        self.lag = lag
        self.history_fraction = history_fraction
        self.subset = subset
        self.random_state = random_state
        self.batch_size = batch_size

    def _validate(self):
        """Check the parameters; returns ``(history, lag)`` resolved."""
        history, lag = self.history, self.lag
        if history is None:
            if lag is not None:
                warnings.warn(
                    "TDGF(lag=...) without history= selects the 'lag' history, whose "
                    "temporal difference is a single optimizer step with few labels; it "
                    "is deprecated. Pass history='lag' explicitly to keep it, or use the "
                    f"default ({_DEFAULT_HISTORY!r}).", FutureWarning, stacklevel=3)
            history = "lag" if lag is not None else _DEFAULT_HISTORY
        if history not in _HISTORIES:
            raise SkalValueError(
                f"history must be one of {_HISTORIES} or None; got {history!r}.")
        lag = 1 if lag is None else lag
        if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 1:
            raise SkalValueError(f"lag must be a positive integer; got {lag!r}.")
        fraction = self.history_fraction
        if (isinstance(fraction, bool) or not isinstance(fraction, numbers.Real)
                or not 0.0 < float(fraction) < 1.0):
            raise SkalValueError(
                f"history_fraction must be a fraction of the proxy's training in (0, 1); "
                f"got {fraction!r}.")
        return history, lag

    def _snapshot_epochs(self, epochs, history, lag):
        """Epochs of the proxy's training before the historical snapshot."""
        if history == "lag":
            if lag >= epochs:
                raise SkalValueError(
                    f"lag={lag} must be smaller than the proxy's {epochs} training epochs.")
            return epochs - lag
        if epochs < 2:
            raise SkalValueError(
                f"The proxy trains {epochs} epoch; a historical snapshot needs at least 2 "
                "(raise the proxy's max_epochs).")
        return min(epochs - 1, max(1, int(round(self.history_fraction * epochs))))

    def _fit_proxies(self, target, X, y, seed, history_kind, lag):
        proxy = derive_proxy(target) if self.proxy is None else clone(self.proxy)
        if "random_state" in proxy.get_params(deep=False) and seed is not None:
            proxy.set_params(random_state=seed)
        epochs = proxy.epochs_for(len(y))
        before = self._snapshot_epochs(epochs, history_kind, lag)
        proxy.fit(X, y, epochs=before)
        snapshot = copy.deepcopy(proxy)
        proxy.partial_fit(X, y, epochs=epochs - before)
        history = snapshot
        if history_kind == "previous_round" and getattr(self, "proxy_", None) is not None:
            if self.proxy_.n_outputs_ == proxy.n_outputs_:
                history = self.proxy_
        return proxy, history

    def __call__(self, learner, X_pool, n_instances=1, *, random_state=None, **_):
        """Select ``n_instances`` pool samples; returns ``(indices, scores)``."""
        history_kind, lag = self._validate()
        target = fitted_estimator(learner)
        if not hasattr(target, "iter_head_outputs"):
            raise SkalTypeError("TDGF needs a skal classifier as the learner's estimator.")
        X_lab, y_lab = labelled_data(learner)
        seed_source = self.random_state if self.random_state is not None else random_state
        proxy, history = self._fit_proxies(target, X_lab, y_lab, resolve_seed(seed_source),
                                           history_kind, lag)
        multilabel = _check_pair(proxy, history)
        if proxy.n_outputs_ != target.n_outputs_:
            raise SkalValueError(
                f"The proxy has {proxy.n_outputs_} outputs but the target model has "
                f"{target.n_outputs_}; they must predict the same classes or labels."
            )
        if not np.array_equal(proxy.classes_, target.classes_):
            raise SkalValueError("The proxy and the target model have different classes_.")

        n_pool = pool_length(X_pool)
        positions = subset_positions(n_pool, self.subset, n_instances,
                                     resolve_seed(seed_source))
        candidates = np.arange(n_pool) if positions is None else positions
        pool = X_pool if positions is None else take(X_pool, positions)

        def score_batch(batch):
            stats = tdgf_statistics(proxy, history, batch)
            y_hat = pseudo_labels(target, target.predict_proba(batch))
            return _combine(stats, y_hat, multilabel, bias)

        bias = _has_bias(proxy)
        scores = score_pool(score_batch, pool, self.batch_size)
        picked, values = multi_argmax(scores, min(n_instances, len(candidates)), random_state)
        self.proxy_, self.history_, self.last_scores_ = proxy, history, scores
        return candidates[picked], values
