"""Evaluation and learning-curve metrics for active-learning reports.

Test metrics: accuracy and AUROC (binary: AUROC of the positive class; multi-class:
macro one-vs-rest AUROC; multi-label: macro AUROC over labels that have both classes in
the test set). Curve metrics: normalised area under the learning curve, labels from
which the curve *stays* at or above a target, and the label-efficiency ratio.
"""

import warnings

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

__all__ = [
    "evaluate_classifier",
    "area_under_learning_curve",
    "labels_to_target",
    "label_efficiency_ratio",
]


def _aligned_proba(proba, model_classes, classes):
    """Columns of ``proba`` placed at the positions of ``classes`` (zeros elsewhere)."""
    out = np.zeros((proba.shape[0], len(classes)))
    out[:, np.searchsorted(classes, model_classes)] = proba
    return out


def evaluate_classifier(model, X, y, *, classes=None, multilabel=None):
    """Accuracy and AUROC of a fitted model (or learner) on labelled data.

    Parameters
    ----------
    model : object with ``predict_proba`` and ``classes_`` (or an ``estimator_``)
    X, y : test images and labels
    classes : array-like, optional
        All classes of the task (so AUROC is defined even if the model has not yet seen
        every class); defaults to the union of ``y`` and the model's classes.
    multilabel : bool or None
        ``None`` treats 2-d ``y`` as multi-label.

    Returns
    -------
    dict with ``"accuracy"`` and ``"auroc"`` (``nan`` when undefined).
    """
    y = np.asarray(y)
    multilabel = (y.ndim == 2 and y.shape[1] > 1) if multilabel is None else multilabel
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    if multilabel:
        accuracy = accuracy_score(y, (proba >= 0.5).astype(y.dtype))
        usable = [j for j in range(y.shape[1]) if len(np.unique(y[:, j])) == 2]
        auroc = (roc_auc_score(y[:, usable], proba[:, usable], average="macro")
                 if usable else float("nan"))
        return {"accuracy": float(accuracy), "auroc": float(auroc)}
    estimator = getattr(model, "estimator_", model)
    model_classes = np.asarray(getattr(estimator, "classes_", np.arange(proba.shape[1])))
    classes = np.unique(np.concatenate([y, model_classes])) if classes is None else np.asarray(classes)
    full = _aligned_proba(proba, model_classes, classes)
    accuracy = accuracy_score(y, classes[full.argmax(axis=1)])
    present = np.unique(y)
    if len(present) < 2:
        auroc = float("nan")
    elif len(classes) == 2:
        auroc = roc_auc_score(y == classes[1], full[:, 1])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cols = np.searchsorted(classes, present)
            sub = full[:, cols]
            sums = sub.sum(axis=1, keepdims=True)
            sub = np.divide(sub, sums, out=np.full_like(sub, 1.0 / len(present)), where=sums > 0)
            auroc = roc_auc_score(y, sub, multi_class="ovr", average="macro", labels=present)
    return {"accuracy": float(accuracy), "auroc": float(auroc)}


def area_under_learning_curve(n_labels, values):
    """Normalised area under a learning curve: the trapezoidal area divided by the label
    range, i.e. the curve's mean level (same units as the metric).

    ``values`` may be ``(n_points,)`` or ``(..., n_points)``; the area is taken along
    the last axis.
    """
    n_labels = np.asarray(n_labels, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(n_labels) < 2:
        return values[..., 0]
    return np.trapezoid(values, n_labels, axis=-1) / (n_labels[-1] - n_labels[0])


def labels_to_target(n_labels, curve, target):
    """Fewest labels from which ``curve`` stays at or above ``target`` until the end.

    Unlike the first crossing, a noisy spike above the target followed by a dip does not
    count. Returns ``None`` when the curve does not end at or above the target.
    """
    curve = np.asarray(curve, dtype=np.float64)
    below = np.flatnonzero(~(curve >= target))
    if below.size == 0:
        return int(n_labels[0])
    last_below = below[-1]
    if last_below == len(curve) - 1:
        return None
    return int(n_labels[last_below + 1])


def label_efficiency_ratio(labels_baseline, labels_strategy):
    """``labels_baseline / labels_strategy`` (> 1: the strategy needs fewer labels).

    ``None`` when either never reaches the target."""
    if labels_baseline is None or labels_strategy is None:
        return None
    return float(labels_baseline) / float(labels_strategy)
