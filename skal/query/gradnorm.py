"""GradNorm: query the samples whose loss gradient is largest (Wang et al., AAAI 2022).

T. Wang et al., "Boosting Active Learning via Improving
Test Performance", AAAI 2022 (reference code: xulabs/aitom,
``aitom/ml/active_learning/al_gradnorm``). With the influence function, the authors show
that labelling an unlabelled sample helps the test loss most when its loss gradient is
large; since the label is unknown, the loss is replaced by an expectation over the
model's own predictive distribution (*expected-gradnorm*) or by the predictive entropy
(*entropy-gradnorm*), and the score is the norm of that gradient.

Two scopes:

* ``scope="all"``: gradients with respect to every trainable parameter (the paper), per
  sample, from :func:`skal.grad.per_sample_grad_norms` (``torch.func``, chunked).
* ``scope="last"``: gradients with respect to the final linear layer only, in closed form
  from one forward pass (no backward pass): ``||a h^T||_F = ||a|| ||h||``.

The reference code scores one sample at a time (batch size 1, a forward and a backward
pass each); here the pool is streamed in batches by :func:`skal.query.base.score_pool`
and every number matches the per-sample loop (see ``benchmarks/query_speed.py``).

The measures (``classifier_*_gradnorm``) are separate from the strategies, as in modAL;
they accept a skal learner, a modAL learner wrapping a skal classifier, or a fitted skal
classifier (anything exposing ``iter_head_outputs``).
"""

import torch

from ..data.pool import pool_length, take
from ..exceptions import SkalTypeError, SkalValueError
from ..grad import (DEFAULT_CHUNK_SIZE, NORMS, class_gradient_sqnorms,
                    class_logit_gradients, last_layer_norm, logit_gradient,
                    per_sample_grad_norms)
from ..utils.validation import check_n_instances, to_image_tensor
from ..utils.seeding import resolve_seed
from .base import (fitted_estimator, multi_argmax, resolve_multilabel, score_pool,
                   subset_positions)

__all__ = [
    "classifier_expected_gradnorm",
    "classifier_entropy_gradnorm",
    "expected_gradnorm",
    "entropy_gradnorm",
    "SCOPES",
]

SCOPES = ("last", "all")


# ------------------------------------------------------------------------ helpers
def head_estimator(classifier):
    """The fitted skal classifier behind a learner; it must expose ``(h, z)``."""
    estimator = fitted_estimator(classifier)   # a skal learner fits its initial data here
    if not hasattr(estimator, "iter_head_outputs"):
        raise SkalTypeError(
            f"Gradient-based strategies need a skal image classifier (CNNClassifier, "
            f"MultiLabelCNNClassifier or another ImageClassifierMixin net) that exposes "
            f"penultimate features and logits; got {type(estimator).__name__}."
        )
    return estimator


def _check_options(scope, norm):
    if scope not in SCOPES:
        raise SkalValueError(f"scope must be 'last' or 'all'; got {scope!r}.")
    if norm not in NORMS:
        raise SkalValueError(f"norm must be 'reference' or 'l2'; got {norm!r}.")


def _label_basis(z):
    """One cotangent ``e_l`` per label: rows of the logit Jacobian."""
    eye = torch.eye(z.shape[1], dtype=torch.float64, device=z.device)
    return eye.expand(z.shape[0], -1, -1)


def _bernoulli_abs_gradient(z):
    """``E_{y ~ Bern(p)} |p - y| = 2 p (1 - p)`` per label, with ``1 - p = sigmoid(-z)``."""
    z64 = z.detach().to(torch.float64)
    return 2.0 * torch.sigmoid(z64) * torch.sigmoid(-z64)


def _softmax_weights(z):
    return torch.softmax(z.detach().to(torch.float64), dim=1)


def _expected_last(h, z, norm, bias, multilabel):
    h_sq = h.flatten(1).to(torch.float64).pow(2).sum(dim=1)
    if multilabel:
        # Every label's logit gradient has the same final-layer norm: ||e_l h^T|| = ||h||.
        return _bernoulli_abs_gradient(z).sum(dim=1) * last_layer_norm(
            1.0, h_sq, norm=norm, bias=bias)
    norms = last_layer_norm(class_gradient_sqnorms(z), h_sq.unsqueeze(1), norm=norm,
                            bias=bias)
    return (_softmax_weights(z) * norms).sum(dim=1)


def _entropy_last(h, z, norm, bias, multilabel):
    h_sq = h.flatten(1).to(torch.float64).pow(2).sum(dim=1)
    a = logit_gradient(z, loss="entropy", multilabel=multilabel)
    return last_layer_norm(a.pow(2).sum(dim=1), h_sq, norm=norm, bias=bias)


def _class_cotangents(z):
    """Cotangents of expected GradNorm (softmax): ``p - e_c`` for every class. With two
    classes both are multiples of ``v = e_1 - e_0`` (``p - e_0 = p_1 v``,
    ``p - e_1 = -p_0 v``), so one backward pass per sample suffices."""
    if z.shape[1] == 2:
        v = torch.tensor([-1.0, 1.0], dtype=torch.float64, device=z.device)
        return v.expand(z.shape[0], 1, 2)
    return class_logit_gradients(z)


def _class_weights(z):
    """Weights of the norms of :func:`_class_cotangents`: ``p_c``; with two classes,
    ``p_0 p_1 + p_1 p_0 = 2 p_0 p_1`` on the single norm ``||J^T v||``."""
    if z.shape[1] == 2:
        d = z.detach().to(torch.float64)
        d = d[:, 1:] - d[:, :1]
        return 2.0 * torch.sigmoid(d) * torch.sigmoid(-d)
    return _softmax_weights(z)


def _expected_all_parts(multilabel):
    if multilabel:
        return _label_basis, _bernoulli_abs_gradient
    return _class_cotangents, _class_weights


def _entropy_all_parts(multilabel):
    def cotangent(z):
        return logit_gradient(z, loss="entropy", multilabel=multilabel)

    return cotangent, lambda z: torch.ones(z.shape[0], 1, dtype=torch.float64,
                                           device=z.device)


def _gradnorm_scores(classifier, X, kind, scope, norm, multilabel, batch_size, chunk_size,
                     n_jobs=None):
    """Score the pool with :func:`score_pool`; ``kind`` is "expected" or "entropy"."""
    _check_options(scope, norm)
    estimator = head_estimator(classifier)
    multilabel = resolve_multilabel(classifier, multilabel, read="logits")
    batch_size = batch_size or getattr(estimator, "predict_batch_size", None)

    if scope == "last":
        last_fn = _expected_last if kind == "expected" else _entropy_last
        bias = estimator.final_layer_.bias is not None

        def score_batch(batch):
            parts = [last_fn(h, z, norm, bias, multilabel)
                     for _, h, z in estimator.iter_head_outputs(batch, batch_size=len(batch))]
            return torch.cat(parts).cpu().numpy()
    else:
        parts_fn = _expected_all_parts if kind == "expected" else _entropy_all_parts
        cotangent, weights = parts_fn(multilabel)
        estimator._check_fitted()
        module, device = estimator.module_, getattr(estimator, "device", "cpu")

        def score_batch(batch):
            x = to_image_tensor(batch).to(device)
            norms, z = per_sample_grad_norms(module, x, cotangent, norm=norm,
                                             chunk_size=chunk_size)
            return (weights(z) * norms).sum(dim=1).cpu().numpy()

    return score_pool(score_batch, X, batch_size, n_jobs=n_jobs)


# ----------------------------------------------------------------------- measures
def classifier_expected_gradnorm(classifier, X, *, scope="last", norm="reference",
                                 multilabel=None, batch_size=None,
                                 chunk_size=DEFAULT_CHUNK_SIZE, n_jobs=None):
    r"""Expected gradient norm of each sample: ``sum_c p_c ||grad CE(f(x), c)||``.

    The expectation, under the model's predictive distribution, of the norm of the loss
    gradient the sample would produce once labelled (Wang et al., AAAI 2022, section
    "expected-gradnorm"; also the *expected gradient length* of Settles et al., 2008).

    Parameters
    ----------
    classifier : learner or fitted skal classifier
        skal's ``ActiveLearner``, modAL's ``ActiveLearner`` wrapping a skal net, or the
        net itself.
    X : array, np.memmap, torch.Tensor or torch Dataset
        The pool, scored batch by batch by :func:`skal.query.base.score_pool`.
    scope : {"last", "all"}, default="last"
        ``"last"``: the final linear layer, in closed form (one forward pass, no
        backward): for class ``c`` the gradient is ``[(p - e_c) h^T, p - e_c]``, so its
        norm follows from ``||p - e_c||`` (computed for every class at once, in float64,
        without cancellation) and ``||h||``. ``"all"``: every trainable parameter, as in
        the paper, via :func:`skal.grad.per_sample_grad_norms` (one backward per class
        and sample, batched with ``torch.func``; one in all for two classes, whose two
        cotangents ``p - e_c`` are parallel).
    norm : {"reference", "l2"}, default="reference"
        ``"reference"``: the sum of per-tensor Frobenius norms, as in the reference code;
        ``"l2"``: the global Euclidean norm.
    multilabel : bool or None
        ``None`` detects multi-label (sigmoid) models.
    batch_size : int or None
        Batch size of the scoring loop (default: the net's ``predict_batch_size``).
    chunk_size : int or None, default=None
        ``scope="all"`` only: most per-sample gradients held in memory at once (samples
        x classes), which bounds memory whatever the pool and batch sizes; ``None``
        sizes it automatically (see :func:`skal.grad.per_sample_grad_norms`).

    Returns
    -------
    scores : ndarray of shape (n_samples,)

    Notes
    -----
    **Why an expectation of norms.** The paper writes the loss as
    ``L(x) = sum_c p_c CE(f(x), c)``. Two facts make that literal loss unusable as a
    distinct score:

    (a) With ``p`` *not* detached (as in the reference code), ``CE(f(x), c) = -log p_c``
    so ``L(x) = -sum_c p_c log p_c = H(p)``: the gradient of ``L`` is the gradient of the
    entropy, and expected-gradnorm is identical to entropy-gradnorm
    (:func:`classifier_entropy_gradnorm`), number for number.

    (b) With ``p`` detached, ``dL/dz = sum_c p_c (p - e_c) = p - p = 0``: the gradient
    vanishes at the logits, hence everywhere.

    The useful, distinct quantity is the expectation of the *norms*,
    ``sum_c p_c ||grad CE(f(x), c)||``, which is what this function computes. To
    reproduce the reference code's numbers, use :func:`classifier_entropy_gradnorm`.

    **Multi-label models** *(choice)*. The loss is the sum of per-label binary
    cross-entropies, and the score is the sum over labels of the expected norm of each
    label's own BCE gradient, each label ``y_l ~ Bernoulli(p_l)`` independently:
    ``sum_l E_{y_l}||grad BCE(z_l, y_l)|| = sum_l 2 p_l (1 - p_l) ||grad z_l||`` (the
    label's gradient is ``(p_l - y_l) grad z_l`` and ``E|p_l - y_l| = 2 p_l (1 - p_l)``).
    It is exact and costs one Jacobian row per label (``scope="all"``) or nothing beyond
    the forward pass (``scope="last"``, where ``||grad z_l||`` is the same for every
    label). The expectation of the norm of the *whole* gradient under independent labels
    would need ``2^L`` outcomes.
    """
    return _gradnorm_scores(classifier, X, "expected", scope, norm, multilabel,
                            batch_size, chunk_size, n_jobs)


def classifier_entropy_gradnorm(classifier, X, *, scope="last", norm="reference",
                                multilabel=None, batch_size=None,
                                chunk_size=DEFAULT_CHUNK_SIZE, n_jobs=None):
    """Norm of the gradient of the predictive entropy ``H(p(x))`` for each sample.

    Wang et al. (AAAI 2022), "entropy-gradnorm". The entropy's logit gradient is
    ``dH/dz_j = -p_j (log p_j + H)`` (multi-label: the sum of binary entropies, with
    ``dH/dz_l = -p_l (1 - p_l) z_l``); with ``scope="last"`` the final-layer gradient is
    ``[a h^T, a]`` in closed form, with ``scope="all"`` it is back-propagated through the
    whole network per sample. This is also exactly what the reference code computes for
    its "expected" scheme (see :func:`classifier_expected_gradnorm`, note (a)).

    Parameters are those of :func:`classifier_expected_gradnorm`.

    Returns
    -------
    scores : ndarray of shape (n_samples,)
    """
    return _gradnorm_scores(classifier, X, "entropy", scope, norm, multilabel,
                            batch_size, chunk_size, n_jobs)


# ----------------------------------------------------------------------- strategies
def _query(measure, classifier, X_pool, n_instances, subset, random_state, measure_kwargs):
    n_pool = pool_length(X_pool)
    n_instances = check_n_instances(n_instances, n_pool)
    random_state = resolve_seed(random_state)     # one draw for the subset and the ties
    positions = subset_positions(n_pool, subset, n_instances, random_state)
    X = X_pool if positions is None else take(X_pool, positions)
    scores = measure(classifier, X, **measure_kwargs)
    picked, values = multi_argmax(scores, n_instances, random_state)
    return (picked if positions is None else positions[picked]), values


def expected_gradnorm(classifier, X_pool, n_instances=1, *, scope="last",
                      norm="reference", subset=None, random_state=None, **measure_kwargs):
    """Query the samples of largest expected gradient norm (Wang et al., AAAI 2022).

    Parameters
    ----------
    classifier : learner or fitted skal classifier
        As for :func:`classifier_expected_gradnorm`.
    X_pool : array, np.memmap, torch.Tensor or torch Dataset
        The unlabelled pool.
    n_instances : int, default=1
    scope : {"last", "all"}, default="last"
        Final layer in closed form, or every parameter (the paper); see
        :func:`classifier_expected_gradnorm`. The default follows
        ``benchmarks/label_efficiency.py`` on PneumoniaMNIST: ``"last"`` did at least as
        well as random sampling, while ``"all"`` was below random on every seed. The
        convolution weights' gradients scale with the input intensity, and ``"all"``
        queried brighter images. ``"last"`` also costs one forward pass; ``"all"`` costs
        several, more with more classes (``benchmarks/query_speed.py``). Figures:
        ``benchmarks/README.md``, "PneumoniaMNIST: gradient strategies" and "Query speed".
    norm : {"reference", "l2"}, default="reference"
    subset : int or None, default=None
        Score only a random subset of this many pool samples, drawn with
        ``random_state``, as the reference code does (``SUBSET``); ``None`` scores the
        whole pool.
    random_state : int, RandomState or None
        Seeds the subset and the tie-breaking.
    **measure_kwargs
        ``multilabel``, ``batch_size``, ``chunk_size``, ``n_jobs`` (joblib workers).

    Returns
    -------
    indices : ndarray of int
        Positions in the full ``X_pool``, largest score first.
    scores : ndarray
        Their expected gradient norms.
    """
    return _query(classifier_expected_gradnorm, classifier, X_pool, n_instances, subset,
                  random_state, dict(scope=scope, norm=norm, **measure_kwargs))


def entropy_gradnorm(classifier, X_pool, n_instances=1, *, scope="last",
                     norm="reference", subset=None, random_state=None, **measure_kwargs):
    """Query the samples whose predictive-entropy gradient has the largest norm (Wang et
    al., AAAI 2022, entropy-gradnorm). Parameters and returns as in
    :func:`expected_gradnorm`."""
    return _query(classifier_entropy_gradnorm, classifier, X_pool, n_instances, subset,
                  random_state, dict(scope=scope, norm=norm, **measure_kwargs))
