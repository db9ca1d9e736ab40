"""Bayesian uncertainty from Monte-Carlo dropout, and BALD over committee members.

Gal, Islam and Ghahramani, "Deep Bayesian Active Learning with Image Data", ICML 2017
(MC dropout; BALD from Houlsby et al. 2011, "Bayesian Active Learning for Classification
and Preference Learning"); Beluch, Genewein, Nurnberger and Kohler, "The power of
ensembles for active learning in image classification", CVPR 2018 (the same acquisition
functions over the members of an ensemble).

``T = n_samples`` stochastic passes: each pool batch is repeated ``T`` times and run in
*one* forward pass with the network in eval mode (BatchNorm keeps its running
statistics) while only the dropout layers drop: every ``nn.Dropout``, ``Dropout1d``,
``Dropout2d`` and ``Dropout3d`` gets a forward pre-hook that multiplies its input by a
mask drawn from an explicit ``torch.Generator`` (element-wise for ``nn.Dropout``,
channel-wise for the feature variants), scaled by ``1 / (1 - p)`` as in training. The
same ``random_state`` therefore gives the same masks, without touching torch's global
generator. With ``P[t, c]`` the probabilities of pass ``t``:

* BALD (mutual information) ``= H[mean_t P_t] - mean_t H[P_t]``;
* max-entropy ``= H[mean_t P_t]``;
* variation ratio ``= 1 - (count of the modal predicted class) / T``.

skal's own networks (``SmallCNN``, ``ResNet18``, a pre-trained ``EncoderClassifierNet``)
drop out only right before their final layer ``fc`` (they declare ``head_dropout =
True``): for them the features are computed once per pool batch and only ``fc`` sees the
``T`` masks, which are the same masks, drawn in the same order, as a pass over ``T``
stacked copies would draw, for a ``T``-fold cheaper query.

Multi-label (sigmoid) models are scored label by label as Bernoulli variables and the
per-label scores summed.
"""

import contextlib
import numbers

import numpy as np
import torch
from scipy.special import entr
from torch import nn

from ..data.pool import DEFAULT_BATCH_SIZE
from ..exceptions import SkalTypeError, SkalValueError
from .base import fitted_estimator, multi_argmax, predicts_label_sets, score_pool
from .stacked import proba_one_pass, repeat_batch, seeded_generator, split_copies

__all__ = [
    "mc_dropout",
    "mc_dropout_proba",
    "bald",
    "max_entropy",
    "variation_ratio",
    "bald_sampling",
    "max_entropy_mc",
    "variation_ratios",
    "committee_bald",
    "bald_committee_sampling",
]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_UNSUPPORTED = (nn.AlphaDropout, nn.FeatureAlphaDropout)


# ------------------------------------------------------------ pure measures
def _bernoulli(proba):
    """``(..., L)`` per-label probabilities as ``(..., L, 2)`` distributions."""
    return np.stack([1.0 - proba, proba], axis=-1)


def _entropy(proba):
    """Entropy over the last axis (nats)."""
    return entr(proba).sum(axis=-1)


def _as_categorical(samples, multilabel):
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 3:
        raise SkalValueError(
            f"Sampled probabilities must have shape (n, n_samples, n_outputs); got "
            f"{samples.shape}.")
    return _bernoulli(samples) if multilabel else samples[:, :, None, :]


def bald(samples, multilabel=False):
    """BALD ``H[mean_t p_t] - mean_t H[p_t]`` from ``(n, T, C)`` sampled probabilities
    (multi-label ``(n, T, L)``: per-label Bernoulli BALD, summed)."""
    p = _as_categorical(samples, multilabel)                 # (n, T, L, K)
    mutual = _entropy(p.mean(axis=1)) - _entropy(p).mean(axis=1)
    return np.clip(mutual, 0.0, None).sum(axis=1)


def max_entropy(samples, multilabel=False):
    """Entropy of the mean prediction ``H[mean_t p_t]`` (multi-label: summed over
    labels)."""
    return _entropy(_as_categorical(samples, multilabel).mean(axis=1)).sum(axis=1)


def variation_ratio(samples, multilabel=False, threshold=0.5):
    """``1 - mode_count / T``: how often the passes disagree with their most frequent
    prediction (multi-label: per label, decisions ``p >= threshold``, summed)."""
    samples = np.asarray(samples, dtype=np.float64)
    _as_categorical(samples, multilabel)                     # shape check
    n_samples = samples.shape[1]
    if multilabel:
        positive = (samples >= np.asarray(threshold)).sum(axis=1)          # (n, L)
        return (1.0 - np.maximum(positive, n_samples - positive) / n_samples).sum(axis=1)
    votes = samples.argmax(axis=2)                                           # (n, T)
    counts = np.stack([(votes == c).sum(axis=1) for c in range(samples.shape[2])], axis=1)
    return 1.0 - counts.max(axis=1) / n_samples


# ---------------------------------------------------------- MC-dropout passes
def _torch_module(model):
    module = getattr(model, "module_", model)
    if not isinstance(module, nn.Module):
        raise SkalTypeError(
            f"MC dropout needs a torch network (a skal or skorch classifier with a "
            f"fitted module_); got {type(model).__name__}.")
    return module


def _mask_shape(module, x):
    if isinstance(module, nn.Dropout):
        return x.shape
    return x.shape[:2] + (1,) * (x.ndim - 2)       # one draw per sample and channel


def _dropout_mask(layer, x, generator):
    """A training-time dropout mask for ``layer``'s input ``x``: kept entries scaled by
    ``1 / (1 - p)`` (element-wise for ``nn.Dropout``, per sample and channel for the
    feature variants), drawn from ``generator``."""
    p = float(layer.p)
    if p >= 1:
        return torch.zeros(_mask_shape(layer, x), device=x.device, dtype=x.dtype)
    keep = torch.rand(_mask_shape(layer, x), generator=generator) >= p
    return keep.to(device=x.device, dtype=x.dtype) / (1.0 - p)


def _dropout_layers(module):
    """The dropout layers MC dropout switches on; a clear error when there is none with
    ``p > 0``."""
    layers = [m for m in module.modules() if isinstance(m, _DROPOUT)]
    if not layers:
        alpha = any(isinstance(m, _UNSUPPORTED) for m in module.modules())
        raise SkalValueError(
            f"{type(module).__name__} has no "
            + ("supported dropout layer (AlphaDropout is not supported)" if alpha else
               "dropout layer")
            + "; MC-dropout strategies need nn.Dropout / Dropout1d / Dropout2d / Dropout3d "
            "in the network (skal's SmallCNN has one: module__dropout=0.25). Use "
            "entropy_sampling, or a Committee for ensemble uncertainty.")
    if all(float(m.p) == 0.0 for m in layers):
        raise SkalValueError(
            f"Every dropout layer of {type(module).__name__} has p=0, so MC-dropout "
            "passes would all be the plain prediction; build the network with dropout "
            "(e.g. module__dropout=0.25 for skal's SmallCNN and ResNet18).")
    return layers


@contextlib.contextmanager
def mc_dropout(module, generator):
    """Within this block, the dropout layers of ``module`` drop (with masks drawn from
    ``generator``) even in eval mode; nothing else changes (BatchNorm stays as set).

    Raises
    ------
    SkalValueError
        When the module has no dropout layer, or only layers with ``p=0`` (MC dropout
        would return the plain prediction ``T`` times), or only alpha-dropout layers
        (not supported).
    """
    layers = _dropout_layers(module)

    def hook(layer, args):
        x, *rest = args
        if float(layer.p) == 0.0:
            return None
        return (x * _dropout_mask(layer, x, generator), *rest)

    handles = [layer.register_forward_pre_hook(hook) for layer in layers]
    try:
        yield layers
    finally:
        for handle in handles:
            handle.remove()


def _head_dropout_only(model, module):
    """True for a skal classifier on one of skal's networks whose only dropout layer
    ``dropout`` feeds the final layer ``fc`` (``head_dropout = True``)."""
    dropout, fc = getattr(module, "dropout", None), getattr(module, "fc", None)
    return (getattr(module, "head_dropout", False) is True
            and hasattr(model, "iter_head_outputs") and isinstance(dropout, nn.Dropout)
            and isinstance(fc, nn.Linear) and getattr(model, "final_layer_", None) is fc
            and [m for m in module.modules() if isinstance(m, _DROPOUT)] == [dropout])


def _sampled_batch(model, batch, n_samples, generator, head_only):
    """``(n, T, C)`` probabilities of one batch under ``T`` dropout masks: one forward
    pass over the ``T`` stacked copies, or with ``head_only`` (skal's networks, see
    :func:`_head_dropout_only`) one pass for the features and ``T`` masked passes
    through ``fc`` (the same masks)."""
    if not head_only:
        with mc_dropout(_torch_module(model), generator):
            proba = proba_one_pass(model, repeat_batch(batch, n_samples))
        return split_copies(proba, n_samples)
    module = model.module_
    (_, h, _), = list(model.iter_head_outputs(batch, batch_size=len(batch)))
    h = repeat_batch(h, n_samples)
    with torch.no_grad():
        z = module.fc(h * _dropout_mask(module.dropout, h, generator))
    proba = model.logits_to_proba(z.to(torch.float64)).cpu().numpy()
    return split_copies(proba, n_samples)


def _check_n_samples(n_samples):
    if (isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral)
            or n_samples < 2):
        raise SkalValueError(
            f"n_samples must be an integer >= 2 (stochastic passes); got {n_samples!r}.")
    return int(n_samples)


def _pool_batch_size(batch_size, n_samples):
    return batch_size or max(1, DEFAULT_BATCH_SIZE // n_samples)


def mc_dropout_proba(classifier, X, n_samples=20, *, random_state=None, batch_size=None):
    """Probabilities of ``n_samples`` MC-dropout passes over the pool, ``(n, T, C)``.

    Parameters
    ----------
    classifier : learner or fitted skal / skorch classifier containing dropout
    X : pool (array, memmap or torch Dataset), scored batch by batch
    n_samples : int, default=20
        Stochastic passes ``T`` (Gal et al. used 100).
    random_state : int, RandomState or None
        Seeds the dropout masks (an explicit ``torch.Generator``).
    batch_size : int or None
        Pool samples per forward pass (each pass sees ``batch_size * T`` inputs);
        ``None``: ``256 // T``.
    """
    flat = _mc_scores(lambda samples, _: samples.reshape(len(samples), -1), classifier, X,
                      n_samples, random_state, batch_size)
    return flat.reshape(len(flat), n_samples, -1)


def _mc_scores(measure, classifier, X, n_samples, random_state, batch_size, **kw):
    """Score the pool with ``measure(samples (n, T, C), multilabel)`` batch by batch."""
    model = fitted_estimator(classifier)
    n_samples = _check_n_samples(n_samples)
    module = _torch_module(model)
    _dropout_layers(module)                 # a clear error before any pass
    head_only = _head_dropout_only(model, module)
    multilabel = predicts_label_sets(classifier)
    generator = seeded_generator(random_state)
    return score_pool(
        lambda b: measure(_sampled_batch(model, b, n_samples, generator, head_only),
                          multilabel, **kw),
        X, _pool_batch_size(batch_size, n_samples))


def bald_sampling(classifier, X_pool, n_instances=1, *, n_samples=20, random_state=None,
                  batch_size=None):
    """Query the samples of largest BALD (mutual information between the prediction and
    the weights, estimated with ``n_samples`` MC-dropout passes; Gal et al. ICML 2017).

    ``random_state`` seeds the dropout masks and the tie-breaking. Returns
    ``(indices, scores)``.
    """
    scores = _mc_scores(bald, classifier, X_pool, n_samples, random_state, batch_size)
    return multi_argmax(scores, n_instances, random_state)


def max_entropy_mc(classifier, X_pool, n_instances=1, *, n_samples=20, random_state=None,
                   batch_size=None):
    """Query the samples whose mean MC-dropout prediction has the largest entropy."""
    scores = _mc_scores(max_entropy, classifier, X_pool, n_samples, random_state, batch_size)
    return multi_argmax(scores, n_instances, random_state)


def variation_ratios(classifier, X_pool, n_instances=1, *, n_samples=20, random_state=None,
                     batch_size=None):
    """Query the samples whose MC-dropout passes disagree most with their modal
    prediction (variation ratio; multi-label decisions at the model's ``threshold``)."""
    threshold = getattr(fitted_estimator(classifier), "threshold", 0.5)
    scores = _mc_scores(variation_ratio, classifier, X_pool, n_samples, random_state,
                        batch_size, threshold=threshold)
    return multi_argmax(scores, n_instances, random_state)


# ------------------------------------------------------------- committees
def committee_bald(committee, X, *, batch_size=None):
    """BALD over the members of a committee (an ensemble, Beluch et al. CVPR 2018):
    ``H[mean_m p_m] - mean_m H[p_m]`` from the members' probabilities."""
    members = getattr(committee, "learner_list", None)
    if not members:
        raise SkalTypeError("committee_bald needs a Committee (learner_list of members).")
    multilabel = predicts_label_sets(members[0])
    return score_pool(lambda b: bald(committee.vote_proba(b), multilabel), X, batch_size)


def bald_committee_sampling(committee, X_pool, n_instances=1, *, random_state=None,
                            batch_size=None):
    """Query the samples of largest BALD over the committee's members."""
    return multi_argmax(committee_bald(committee, X_pool, batch_size=batch_size),
                        n_instances, random_state)
