"""``MultiLabelCNNClassifier``: several independent findings per image (e.g. the 14
thoracic findings of ChestX-ray14), sigmoid outputs and ``BCEWithLogitsLoss``."""

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from skorch import NeuralNet
from torch import nn

from ..exceptions import SkalValueError
from .base import ImageClassifierMixin
from .small_cnn import SmallCNN

__all__ = ["MultiLabelCNNClassifier"]


class MultiLabelCNNClassifier(ImageClassifierMixin, ClassifierMixin, NeuralNet):
    """Multi-label convolutional classifier: one sigmoid probability per label.

    ``fit(X, Y)`` takes multi-hot targets ``Y`` of shape ``(n, n_labels)`` (1-d targets
    are rejected: each label is a binary problem, use :class:`skal.CNNClassifier` for
    single-label classes); ``predict_proba`` returns ``(n, n_labels)`` probabilities,
    ``decision_function`` the logits and ``predict`` the multi-hot decisions
    ``proba >= threshold``. Images and tabular rows are handled as in
    :class:`skal.CNNClassifier`.

    Parameters
    ----------
    module, optimizer, lr, max_epochs, batch_size, train_split, random_state,
    final_layer, predict_batch_size, min_steps, augment
        As in :class:`skal.CNNClassifier`.
    criterion : default=torch.nn.BCEWithLogitsLoss
    threshold : float or array-like of shape (n_labels,), default=0.5
        Decision threshold on each label's probability.

    Attributes
    ----------
    classes_ : ndarray of shape (n_labels,)
        Label indices ``0..n_labels-1``.
    n_outputs_ : int
        Number of labels.
    """

    _multilabel = True

    def __init__(self, module=SmallCNN, *args, criterion=nn.BCEWithLogitsLoss,
                 optimizer=torch.optim.AdamW, lr=1e-3, max_epochs=30, batch_size=32,
                 train_split=None, verbose=0, threshold=0.5, random_state=None,
                 final_layer=None, predict_batch_size=256, min_steps=200, augment=0.1,
                 **kwargs):
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(module, *args, criterion=criterion, optimizer=optimizer, lr=lr,
                         max_epochs=max_epochs, batch_size=batch_size,
                         train_split=train_split, verbose=verbose, **kwargs)
        self.threshold = threshold
        self.random_state = random_state
        self.final_layer = final_layer
        self.predict_batch_size = predict_batch_size
        self.min_steps = min_steps
        self.augment = augment

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # multi-hot targets only: scikit-learn's checks then pass 2-d (n, 1) targets
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.classifier_tags.multi_label = True
        tags.classifier_tags.multi_class = False
        return tags

    def _encode_targets(self, y, reset, classes=None):
        n_labels = y.shape[1]
        if reset:
            self.n_outputs_ = n_labels
            self.classes_ = np.arange(n_labels)
        elif n_labels != self.n_outputs_:
            raise SkalValueError(
                f"y has {n_labels} labels but the model was trained on {self.n_outputs_}."
            )
        return y.astype(np.float32)

    @staticmethod
    def logits_to_proba(z):
        """Independent sigmoid per label."""
        return torch.sigmoid(z)

    def predict(self, X):
        """Multi-hot decisions ``predict_proba(X) >= threshold``."""
        proba = self.predict_proba(X)
        threshold = np.asarray(self.threshold, dtype=float)
        if threshold.ndim not in (0, 1) or (threshold.ndim == 1 and len(threshold) != proba.shape[1]):
            raise SkalValueError(
                f"threshold must be a float or one value per label ({proba.shape[1]}); got "
                f"shape {threshold.shape}."
            )
        return (proba >= threshold).astype(np.int64)
