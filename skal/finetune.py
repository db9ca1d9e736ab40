"""Continual fine-tuning policies: how an :class:`skal.ActiveLearner` retrains after
each ``teach``.

Zhou, Shin, Feng, Gurudu, Gotway and Liang, "Active, continual fine tuning of
convolutional neural networks for reducing annotation efforts", Medical Image Analysis
2021 (ACFT), compare fine-tuning the previous model on the newly labelled samples ``Q``
plus the labelled samples it currently misclassifies ``H`` ("HQ"), fine-tuning it on
all labelled data ("LQ") and retraining from the initial (pre-trained) weights. Three
learner parameters choose among them:

* ``finetune_from``: ``"start"`` trains a fresh clone of the learner's ``estimator``
  (from scratch, or from the pre-trained weights it is built with); ``"current"``
  continues from the current model's weights (``partial_fit``, or ``fit`` for
  ``warm_start`` estimators); ``None`` keeps skal's earlier behaviour (continue only
  for ``warm_start`` estimators or ``teach(only_new=True)``);
* ``finetune_on``: ``"all"`` labelled data, ``"new"`` samples only, or ``"hq"``: the
  new samples plus the previously labelled samples the current model misclassifies
  (multi-label: any label wrong);
* ``finetune_epochs``: epochs per round for skorch / skal nets (``None``: the
  estimator's own ``max_epochs`` / ``min_steps``).
"""

import copy
import numbers

import numpy as np
from sklearn.base import clone

from .exceptions import SkalValueError
from .labels import output_kind

__all__ = ["FINETUNE_FROM", "FINETUNE_ON", "check_policy", "training_set", "retrain"]

FINETUNE_FROM = (None, "start", "current")
FINETUNE_ON = ("all", "new", "hq")


def check_policy(finetune_from, finetune_on, finetune_epochs, estimator=None):
    """Validate the three policy parameters; returns them."""
    if finetune_from not in FINETUNE_FROM:
        raise SkalValueError(
            f"finetune_from must be one of {FINETUNE_FROM}; got {finetune_from!r}.")
    if finetune_on not in FINETUNE_ON:
        raise SkalValueError(
            f"finetune_on must be one of {FINETUNE_ON}; got {finetune_on!r}.")
    if finetune_epochs is not None:
        if (isinstance(finetune_epochs, bool)
                or not isinstance(finetune_epochs, numbers.Integral) or finetune_epochs < 1):
            raise SkalValueError(
                f"finetune_epochs must be a positive integer or None; got {finetune_epochs!r}.")
        if estimator is not None and "max_epochs" not in estimator.get_params(deep=False):
            raise SkalValueError(
                f"finetune_epochs needs a skorch / skal network (an estimator with "
                f"max_epochs); {type(estimator).__name__} has none. Leave it None.")
    return finetune_from, finetune_on, finetune_epochs


def _misclassified(model, X, y):
    """Boolean mask of the samples ``model`` gets wrong (multi-label: any label)."""
    predicted = np.asarray(model.predict(X))
    y = np.asarray(y)
    wrong = predicted != y
    return wrong.any(axis=1) if wrong.ndim > 1 else wrong


def training_set(learner, X_new, y_new, finetune_on):
    """The data of this round's training under ``finetune_on``.

    The learner's labelled data already include ``(X_new, y_new)`` at their end;
    ``"hq"`` asks the current model (before this round's training) which earlier
    samples it misclassifies.
    """
    X_all, y_all = learner.X_training_, learner.y_training_
    if finetune_on == "all":
        return X_all, y_all
    if finetune_on == "new":
        return X_new, y_new
    n_old = len(y_all) - len(y_new)
    if n_old == 0:
        return X_new, y_new
    wrong = np.flatnonzero(_misclassified(learner.estimator_, X_all[:n_old], y_all[:n_old]))
    keep = np.concatenate([wrong, np.arange(n_old, len(y_all))])
    return X_all[keep], y_all[keep]


def _check_classes(model, y):
    classes = getattr(model, "classes_", None)
    y = np.asarray(y)
    if classes is None or y.ndim != 1 or output_kind(model) == "multilabel":
        return
    unseen = np.setdiff1d(np.unique(y), classes)
    if unseen.size:
        raise SkalValueError(
            f"teach received labels {unseen.tolist()} never seen before, but training "
            "continues from the current model (finetune_from='current'), whose output "
            "layer cannot grow. Declare every class up front with classes=[...], or use "
            "finetune_from='start'.")


def retrain(learner, X_new, y_new, only_new, fit_kwargs):
    """Train this round's model under the learner's policy; returns it (the learner's
    current model is not modified).

    ``only_new=True`` (``teach``'s argument) means ``finetune_on="new"`` and, unless
    ``finetune_from`` says otherwise, continuing from the current weights.
    """
    # the template as given (``learner.estimator`` reads the fitted model, as in modAL)
    template = learner.get_params(deep=False)["estimator"]
    finetune_from, finetune_on, epochs = check_policy(
        learner.finetune_from, learner.finetune_on, learner.finetune_epochs, template)
    current = learner.estimator_
    if only_new:
        finetune_on = "new"
    if finetune_from is None:
        continuing = only_new or bool(getattr(current, "warm_start", False))
    else:
        continuing = finetune_from == "current"
    X, y = training_set(learner, X_new, y_new, finetune_on)
    if epochs is not None:
        fit_kwargs = {**fit_kwargs, "epochs": int(epochs)}
    if not continuing:
        return clone(template, safe=False).fit(X, y, **fit_kwargs)
    _check_classes(current, y)
    model = copy.deepcopy(current)
    if getattr(model, "warm_start", False) or not hasattr(model, "partial_fit"):
        return model.fit(X, y, **fit_kwargs)
    return model.partial_fit(X, y, **fit_kwargs)
