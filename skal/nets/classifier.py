"""``CNNClassifier``: a skorch ``NeuralNetClassifier`` for single-label images."""

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from ..exceptions import SkalValueError
from ..labels import encode_labels  # noqa: F401  (re-exported)
from .base import ImageClassifierMixin
from .pretrained import PretrainedStartMixin
from .small_cnn import SmallCNN

__all__ = ["CNNClassifier", "encode_labels", "task_classes"]


def task_classes(y, classes=None, *, advice=""):
    """The classes of a single-label task: ``classes`` when given, else those in ``y``;
    at least two either way (``advice`` ends the error on a single class)."""
    if classes is not None:
        classes = np.asarray(classes)
        if classes.ndim != 1 or len(classes) < 2:
            raise SkalValueError("classes must list at least two classes.")
        if len(np.unique(classes)) != len(classes):
            values, counts = np.unique(classes, return_counts=True)
            raise SkalValueError(
                f"classes lists {values[counts > 1].tolist()} more than once "
                f"({classes.tolist()}); give each class once.")
        return classes
    classes = np.unique(y)
    if len(classes) < 2:
        raise SkalValueError(
            f"y has a single class ({classes.tolist()}); a classifier needs at least two, "
            "one class is not enough." + (" " + advice if advice else "")
        )
    return classes


class CNNClassifier(PretrainedStartMixin, ImageClassifierMixin, NeuralNetClassifier):
    """Convolutional image classifier (binary or multi-class), a skorch
    ``NeuralNetClassifier`` with skal's image handling.

    ``X`` is ``(n, H, W)`` or ``(n, C, H, W)`` images; tabular ``(n_samples,
    n_features)`` rows are accepted as one-row images ``(1, 1, n_features)`` (so the
    estimator passes scikit-learn's checks and works after tabular transformers), and a
    model fitted on images rejects 2-d input with a clear error. ``decision_function``
    follows scikit-learn: binary log-odds ``(n,)``, multi-class logits ``(n, C)``.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=SmallCNN
        The network. Any module whose output comes from a final ``nn.Linear`` works
        (see ``final_layer``). ``in_channels`` and ``n_outputs`` are filled in from the
        data when the module class's constructor declares them; set other module
        arguments with ``module__<name>``.
    criterion : default=torch.nn.CrossEntropyLoss
        Loss on logits. (skorch's default ``NLLLoss`` expects log-probabilities and
        would train to chance on logits.)
    optimizer : default=torch.optim.AdamW
    lr : float or "auto", default="auto"
        Learning rate. ``"auto"``: 1e-3 when every layer trains (from scratch or full
        fine-tuning), 1e-2 for a linear head on frozen pre-trained features (the rates
        measured best by ``benchmarks/finetune_switch.py``); ``resolved_lr()`` gives the
        rate in use.
    max_epochs : int, default=30
        Epochs per fit (raised for small sets by ``min_steps``).
    batch_size : int, default=32
        Training batch size.
    train_split : default=None
        No internal validation split: labelled sets in active learning are tiny.
    classes : array-like or None
        The full set of classes, if known up front (lets a net trained on a few labels
        already output every class).
    random_state : int, RandomState or None
        Seeds weight initialisation, shuffling and dropout (torch) so one seed gives one
        result. ``None`` uses torch's global generator.
    final_layer : str or None
        Name of the final ``nn.Linear`` (e.g. ``"classifier"`` for a DenseNet); ``None``
        finds it with a forward hook.
    predict_batch_size : int, default=256
        Batch size for prediction, embedding and pool scoring.
    min_steps : int or None, default=200
        Train at least this many optimizer steps: ``max_epochs`` is raised for small
        training sets (with 10 labels an epoch is one step). ``None`` trains exactly
        ``max_epochs`` epochs.
    augment : float or None, default=0.1
        Training-time random translation of up to this fraction of the image size
        (:func:`skal.nets.augment.random_shift`; no flips or rotations, which are not
        label-preserving for chest X-rays). ``None`` disables augmentation.
    memory_format : {"auto", "channels_last", "contiguous"}, default="auto"
        Layout of the convolution weights (hence of the activations). On CPU,
        ``channels_last`` makes oneDNN's convolutions faster for inference, pool scoring
        and training (figures: ``benchmarks/README.md``, "Query speed"); the numbers
        computed are the same up to float32 rounding. ``"auto"`` uses it for
        image input with skal's own networks, and keeps torch's default layout for a
        user's module (a module that calls ``.view`` on convolution features fails on
        ``channels_last`` tensors: use ``.flatten``/``.reshape``, then opt in).
    pretrained : SimCLR, nn.Module, str, path or state dict, default=None
        A pre-trained start: a fitted :class:`skal.pretrain.SimCLR`, an encoder
        ``nn.Module`` (images to features), or an encoder safetensors file
        (``SimCLR.save``) build a linear head on a copy of the encoder; a state dict /
        safetensors file of ``module``'s own weights is loaded into it (matching names
        and shapes). Never modified. ``None``: train ``module`` from scratch.
    finetune : {"auto", "linear", "full"}, default="auto"
        With ``pretrained``: ``"linear"`` trains only the final layer on the frozen
        features, ``"full"`` fine-tunes every layer, ``"auto"`` trains a linear head on
        fewer than ``skal.nets.pretrained.AUTO_FULL_FINETUNE_FROM`` (50) labelled samples
        and fine-tunes every layer from then on (the measured best at each budget: see
        ``docs/pretraining.md``). The mode of the last fit is ``finetune_``.
    **kwargs
        Any other skorch parameter (``callbacks``, ``device``, ``module__dropout``, ...).

    Attributes
    ----------
    classes_ : ndarray
        Class labels; ``predict`` returns values from it.
    n_channels_in_ : int
        Image channels seen in ``fit``.
    n_outputs_ : int
        Logits per sample.
    final_layer_ : torch.nn.Linear
        The final layer, ``z = W h + b``.
    finetune_ : {"linear", "full"}
        With ``pretrained``: how the last fit trained.
    """

    def __init__(self, module=SmallCNN, *args, criterion=nn.CrossEntropyLoss,
                 optimizer=torch.optim.AdamW, lr="auto", max_epochs=30, batch_size=32,
                 train_split=None, classes=None, verbose=0, random_state=None,
                 final_layer=None, predict_batch_size=256, min_steps=200, augment=0.1,
                 memory_format="auto", pretrained=None, finetune="auto", **kwargs):
        self._init_net(locals())    # skorch's parameters to skorch, skal's stored

    def _encode_targets(self, y, reset, classes=None):
        classes = self.classes if classes is None else classes
        if reset:
            classes = task_classes(y, classes, advice=(
                "Label at least one sample of another class, or pass classes=[...] with "
                "every class of the task."))
            encoded = encode_labels(y, classes)
            self.classes_inferred_ = classes
            self.n_outputs_ = len(classes)
            return encoded
        return encode_labels(y, self.classes_)

    @staticmethod
    def logits_to_proba(z):
        """Softmax over classes."""
        return torch.softmax(z, dim=1)

    def predict(self, X):
        """Most probable class for each image (values from ``classes_``)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]
