"""Labels: what a model's head predicts, how labels are encoded for it, and the hard
pseudo-labels it gives.

The one place where skal decides how a model's outputs are read. A fitted model has one
of three *output kinds* (``output_kind_`` on skal's classifiers):

``"softmax"``
    One distribution over ``classes_`` (cross-entropy training); the pseudo-label is the
    most probable class position.
``"multilabel"``
    One sigmoid per label (binary cross-entropy on multi-hot targets); ``predict`` gives
    label sets ``proba >= threshold``.
``"one-vs-rest"``
    Sigmoid outputs fitted on 1-d labels: binary cross-entropy on the classes encoded
    as scikit-learn's ``LabelBinarizer`` does (:func:`one_vs_rest_targets`), while
    ``predict`` gives one class per sample (``classes_[1]`` where its probability is
    ``>= threshold`` for two classes, the most probable class otherwise).

Gradient strategies read a sigmoid head output by output (:func:`has_sigmoid_head`);
uncertainty and committee measures read ``predict_proba`` as label sets only for
``"multilabel"`` (:func:`predicts_label_sets`).
"""

import numpy as np

from .exceptions import SkalValueError

__all__ = ["OUTPUT_KINDS", "output_kind", "predicts_label_sets", "has_sigmoid_head",
           "resolve_multilabel", "encode_labels", "one_vs_rest_targets", "pseudo_labels"]

OUTPUT_KINDS = ("softmax", "multilabel", "one-vs-rest")


def output_kind(model):
    """The output kind of a model: its ``output_kind_`` when it has a valid one (skal's
    fitted classifiers), else inferred from the attributes skal's classifiers carry (a
    sigmoid head ``_multilabel``; ``multilabel_`` telling whether it predicts label sets,
    assumed when absent). A model without them (scikit-learn, modAL or duck-typed) is
    ``"softmax"``.

    Parameters
    ----------
    model : estimator
        The model itself (a learner's model is ``skal.query.base.fitted_estimator``).

    Returns
    -------
    {"softmax", "multilabel", "one-vs-rest"}
    """
    kind = getattr(model, "output_kind_", None)     # None too while unfitted
    if kind in OUTPUT_KINDS:
        return kind
    if not getattr(model, "_multilabel", False):
        return "softmax"
    return "multilabel" if getattr(model, "multilabel_", True) else "one-vs-rest"


def predicts_label_sets(model):
    """Whether ``predict`` gives multi-hot label sets and ``predict_proba`` one probability
    per label (``output_kind(model) == "multilabel"``)."""
    return output_kind(model) == "multilabel"


def has_sigmoid_head(model):
    """Whether the logits are independent sigmoid outputs trained with binary
    cross-entropy (``"multilabel"`` or ``"one-vs-rest"``)."""
    return output_kind(model) != "softmax"


def resolve_multilabel(model, multilabel=None, *, read="proba"):
    """A strategy's ``multilabel`` option: the given value, or when ``None`` what the
    model's output kind implies for what the strategy reads: ``read="proba"``
    (probabilities, :func:`predicts_label_sets`) or ``read="logits"`` (the head's
    outputs one by one, :func:`has_sigmoid_head`)."""
    if multilabel is not None:
        return bool(multilabel)
    if read == "proba":
        return predicts_label_sets(model)
    if read == "logits":
        return has_sigmoid_head(model)
    raise SkalValueError(f"read must be 'proba' or 'logits'; got {read!r}.")


def encode_labels(y, classes):
    """Map labels to positions in ``classes``; raise on labels outside ``classes``."""
    classes = np.asarray(classes)
    sorter = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes, y, sorter=sorter)
    pos = np.clip(pos, 0, len(classes) - 1)
    idx = sorter[pos]
    unknown = classes[idx] != y
    if np.any(unknown):
        raise SkalValueError(
            f"y contains labels {np.unique(np.asarray(y)[unknown])[:10].tolist()} that are "
            f"not among the classes {classes.tolist()}; set `classes` to every class the "
            "task has, or refit from scratch."
        )
    return idx.astype(np.int64)


def one_vs_rest_targets(positions, n_classes):
    """0/1 targets of one-vs-rest sigmoid outputs for class positions ``0..n_classes-1``.

    Encoded as scikit-learn's ``LabelBinarizer`` encodes labels: two classes give one
    column (``1`` for the second class), more give one-hot columns. Returns float32 of
    shape ``(n, 1)`` or ``(n, n_classes)``.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if n_classes == 2:
        return (positions == 1).astype(np.float32)[:, None]
    return np.eye(n_classes, dtype=np.float32)[positions]


def _threshold(model):
    threshold = np.asarray(getattr(model, "threshold", 0.5), dtype=np.float64)
    if threshold.ndim > 1 or not np.all((threshold >= 0) & (threshold <= 1)):
        raise SkalValueError(
            f"The model's threshold must be a probability in [0, 1], or one per output; "
            f"got {getattr(model, 'threshold', None)!r}.")
    return threshold


def pseudo_labels(model, scores, *, logits=False):
    """The model's own hard predictions, encoded as its head is trained.

    ``"softmax"``: class positions ``(n,)`` (the arg-max). ``"multilabel"``: multi-hot
    ``(n, L)`` decisions ``p >= threshold``. ``"one-vs-rest"``: the predicted class
    (``p(classes_[1]) >= threshold`` for two classes, the most probable class otherwise,
    as ``predict`` decides) binarized by :func:`one_vs_rest_targets`. ``threshold`` is
    the model's (0.5 when it has none), as in BADGE's and TDGF's "predicted label" for
    a multi-label head (Ash et al., 2020).

    Parameters
    ----------
    model : estimator
        Gives the output kind and the threshold.
    scores : array-like or torch.Tensor of shape (n, n_outputs)
        ``predict_proba`` of the model (``logits=False``), or the head's raw outputs
        (``logits=True``; a two-class one-vs-rest head has a single output). With
        ``logits``, 1-d scores are a binary ``decision_function``.
    logits : bool, default=False

    Returns
    -------
    ndarray of int64, shape (n,) or (n, n_outputs)
    """
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64)
    if logits and scores.ndim == 1:  # a binary decision_function: one column
        scores = scores[:, None]
        if output_kind(model) == "softmax":
            return (scores[:, 0] > 0).astype(np.int64)
    if scores.ndim != 2:
        raise SkalValueError(f"scores must be 2-d (n, n_outputs); got shape {scores.shape}.")
    kind = output_kind(model)
    if kind == "softmax":
        return scores.argmax(axis=1).astype(np.int64)
    if logits:                       # sigmoid outputs, one per column
        outputs = 0.5 * (1.0 + np.tanh(0.5 * scores))
    elif kind == "one-vs-rest" and scores.shape[1] == 2:
        outputs = scores[:, 1:]      # predict_proba over two classes: p(classes_[1])
    else:
        outputs = scores
    threshold = _threshold(model)
    if kind == "multilabel":
        return (outputs >= threshold).astype(np.int64)
    if outputs.shape[1] == 1:
        positions = (outputs[:, 0] >= threshold.reshape(-1)[0]).astype(np.int64)
        return one_vs_rest_targets(positions, 2).astype(np.int64)
    return one_vs_rest_targets(outputs.argmax(axis=1), outputs.shape[1]).astype(np.int64)
