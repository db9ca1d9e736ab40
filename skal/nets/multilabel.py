"""``MultiLabelCNNClassifier``: several independent findings per image (e.g. the 14
thoracic findings of ChestX-ray14), sigmoid outputs and ``BCEWithLogitsLoss``; 1-d
class labels are learned one-vs-rest, as scikit-learn's ``OneVsRestClassifier`` does."""

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from skorch import NeuralNet
from torch import nn
from torch.nn import functional as F

from ..exceptions import SkalValueError
from ..labels import encode_labels, one_vs_rest_targets
from ..utils.validation import check_labels
from .base import ImageClassifierMixin
from .pretrained import PretrainedStartMixin
from .classifier import task_classes
from .small_cnn import SmallCNN

__all__ = ["MultiLabelCNNClassifier", "one_vs_rest_targets"]


def _is_zero_one(y):
    if y.dtype.kind not in "biufO":
        return False
    try:
        return bool(np.isin(y.astype(np.float64), (0, 1)).all())
    except (TypeError, ValueError):
        return False


class MultiLabelCNNClassifier(PretrainedStartMixin, ImageClassifierMixin, ClassifierMixin, NeuralNet):
    """Multi-label convolutional classifier: one sigmoid probability per label.

    ``fit(X, Y)`` with multi-hot targets ``Y`` of shape ``(n, n_labels)`` (an
    ``(n, 1)`` 0/1 column is one label) trains one sigmoid output per label;
    ``predict_proba`` returns the ``(n, n_labels)`` per-label probabilities,
    ``decision_function`` the logits and ``predict`` the multi-hot decisions
    ``proba >= threshold``.

    ``fit(X, y)`` with 1-d class labels (any dtype, at least two classes; an ``(n, 1)``
    column that is not 0/1 is read as labels, with scikit-learn's
    ``DataConversionWarning``) learns them one-vs-rest, with the semantics of
    scikit-learn's ``OneVsRestClassifier``: the labels are binarized as
    ``LabelBinarizer`` does and each output is a sigmoid trained with BCE.

    * Two classes: one output, the probability ``p`` of ``classes_[1]``;
      ``predict_proba`` is ``[1 - p, p]``, ``decision_function`` the logit, shape
      ``(n,)``, and ``predict`` gives ``classes_[1]`` where ``p >= threshold``.
    * ``K > 2`` classes: ``K`` outputs; ``predict`` gives the class of the largest
      probability, ``predict_proba`` the ``K`` sigmoid probabilities normalised to
      sum to 1 per row and ``decision_function`` the ``(n, K)`` logits.

    Continued training (``partial_fit``, ``warm_start``) keeps the kind of target of
    the first fit and rejects labels it has not seen. Images and tabular rows are
    handled as in :class:`skal.CNNClassifier` (use that one for softmax multi-class).

    Parameters
    ----------
    module, optimizer, lr, max_epochs, batch_size, train_split, random_state,
    final_layer, predict_batch_size, min_steps, augment, memory_format, pretrained, finetune
        As in :class:`skal.CNNClassifier`.
    criterion : default=torch.nn.BCEWithLogitsLoss
    threshold : float or array-like of shape (n_outputs,), default=0.5
        Decision threshold on each output's probability: each label's (multi-hot
        targets) or ``classes_[1]``'s (two classes). Not used with ``K > 2`` classes
        (the most probable class is predicted), but validated all the same.

    Attributes
    ----------
    classes_ : ndarray
        Multi-hot targets: the label indices ``0..n_labels-1``. 1-d targets: the class
        labels; ``predict`` returns values from it.
    multilabel_ : bool
        Whether the model was fitted on multi-hot targets (``False``: one-vs-rest on
        1-d labels).
    n_outputs_ : int
        Number of sigmoid outputs: labels, ``1`` for two classes, or ``K`` classes.
    """

    # A sigmoid/BCE head, whatever the targets: skal's gradient strategies read the
    # logits output by output. ``multilabel_`` tells what predict/predict_proba return.
    _multilabel = True

    def __init__(self, module=SmallCNN, *args, criterion=nn.BCEWithLogitsLoss,
                 optimizer=torch.optim.AdamW, lr="auto", max_epochs=30, batch_size=32,
                 train_split=None, verbose=0, threshold=0.5, random_state=None,
                 final_layer=None, predict_batch_size=256, min_steps=200, augment=0.1,
                 memory_format="auto", pretrained=None, finetune="auto", **kwargs):
        self._init_net(locals())    # skorch's parameters to skorch, skal's stored

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # multi-hot (n, n_labels) targets, and 1-d labels one-vs-rest
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.classifier_tags.multi_label = True
        tags.classifier_tags.multi_class = True
        return tags

    # ---------------------------------------------------------------- targets
    def _fitted_multilabel(self):
        return bool(getattr(self, "multilabel_", True))

    @staticmethod
    def _is_label_vector(y):
        """1-d labels, or an ``(n, 1)`` column that is not 0/1 (a 0/1 column is a
        multi-hot target with one label)."""
        if y is None:
            return False
        y = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
        return y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and not _is_zero_one(y))

    def _validate_training_data(self, X, y, reset, classes=None):
        """Binarize 1-d labels one-vs-rest (``LabelBinarizer``'s encoding), then validate
        ``X`` and the 0/1 targets as for multi-hot ``Y``."""
        multilabel = not self._is_label_vector(y)
        if not reset and multilabel != self._fitted_multilabel():
            kinds = ("1-d class labels", "multi-hot (n, n_labels) targets")
            raise SkalValueError(
                f"The model was fitted on {kinds[not multilabel]} but continued training "
                f"got {kinds[multilabel]}; the kind of target cannot change. Refit from "
                "scratch (fit without warm_start) to switch."
            )
        labels = None
        if not multilabel:
            y = check_labels(y)
            labels = (task_classes(y, classes, advice=(
                "Label a sample of another class, pass partial_fit(..., classes=[...]) "
                "with every class, or give a 2-d multi-hot target (n, n_labels) of 0/1."))
                if reset else self.classes_)
            y = one_vs_rest_targets(encode_labels(y, labels), len(labels))
        X, targets = super()._validate_training_data(X, y, reset)
        if reset:
            self.multilabel_ = multilabel
            self.classes_ = np.arange(self.n_outputs_) if multilabel else labels
        return X, targets

    def _encode_targets(self, y, reset, classes=None):
        n_labels = y.shape[1]
        if reset:
            self.n_outputs_ = n_labels
        elif n_labels != self.n_outputs_:
            raise SkalValueError(
                f"y has {n_labels} labels but the model was trained on {self.n_outputs_}."
            )
        return y.astype(np.float32)

    # -------------------------------------------------------------- inference
    def logits_to_proba(self, z):
        """Multi-hot targets: an independent sigmoid per label. 1-d labels: ``[1 - p,
        p]`` for two classes, the sigmoids normalised to sum to 1 for more
        (``OneVsRestClassifier.predict_proba``)."""
        if self._fitted_multilabel():
            return torch.sigmoid(z)
        if z.shape[1] == 1:
            return torch.cat([torch.sigmoid(-z), torch.sigmoid(z)], dim=1)
        # sigmoid(z_k) / sum_j sigmoid(z_j), in log space: no 0/0 when all underflow
        return torch.softmax(F.logsigmoid(z), dim=1)

    def decision_function(self, X):
        """The logits ``(n, n_outputs)``; for two classes fitted on 1-d labels, the
        logit of ``classes_[1]``, shape ``(n,)`` (positive means ``classes_[1]``)."""
        z = super().decision_function(X)
        if not self._fitted_multilabel() and z.shape[1] == 1:
            return z[:, 0]
        return z

    def _check_threshold(self):
        threshold = self.threshold
        n_outputs = self.n_outputs_
        try:
            values = np.asarray(threshold, dtype=np.float64)
        except (TypeError, ValueError):
            values = None
        if (values is None or isinstance(threshold, (bool, np.bool_)) or values.ndim > 1
                or (values.ndim == 1 and len(values) != n_outputs)
                or not np.isfinite(values).all()
                or (values < 0).any() or (values > 1).any()):
            raise SkalValueError(
                f"threshold must be a probability in [0, 1], or one per output "
                f"({n_outputs}); got {threshold!r}."
            )
        return values

    def predict(self, X):
        """Multi-hot targets: the multi-hot decisions ``predict_proba(X) >= threshold``.
        1-d labels: ``classes_[1]`` where its probability ``>= threshold`` (two
        classes), the most probable class otherwise (values from ``classes_``)."""
        proba = self.predict_proba(X)
        threshold = self._check_threshold()
        if self._fitted_multilabel():
            return (proba >= threshold).astype(np.int64)
        if proba.shape[1] == 2:
            return self.classes_[(proba[:, 1] >= threshold.reshape(-1)[0]).astype(np.int64)]
        return self.classes_[proba.argmax(axis=1)]
