"""What every skal image classifier shares: input handling, seeding, module set-up,
final-layer discovery and streamed forward passes that expose ``(h, z)``."""

import inspect
import math
from collections.abc import Mapping

import numpy as np
import torch
from skorch import NeuralNet
from torch import nn

from ..data.pool import DEFAULT_BATCH_SIZE, is_dataset, iter_pool, materialize
from ..exceptions import NotFittedError, SkalValueError
from ..utils.seeding import resolve_seed, torch_seed
from ..utils.validation import (check_consistent_length, check_images, check_labels,
                                to_image_tensor)
from .augment import random_shift
from .head import capture_input, find_final_linear

__all__ = ["ImageClassifierMixin"]


class ImageClassifierMixin:
    """Mixed into skorch nets to make them image classifiers that active learning can
    query.

    * Images are ``(n, H, W)`` or ``(n, C, H, W)``; uint8 is scaled by 1/255 and float
      is used as given; NaN / inf and wrong shapes are rejected with clear errors.
    * ``in_channels`` and ``n_outputs`` are inferred from the data and passed to the
      module class only if its constructor declares those parameters (a user's module
      gets no argument it did not ask for).
    * ``random_state`` seeds torch for initialisation, shuffling and dropout, without
      touching the global generators.
    * The final ``nn.Linear`` is found with a forward hook (or named with
      ``final_layer``), so :meth:`iter_head_outputs` yields penultimate features and
      logits from one forward pass, as gradient and embedding strategies need.
    """

    _multilabel = False

    # ----------------------------------------------------------------- set-up
    def _inferred_module_kwargs(self, given):
        if isinstance(self.module, nn.Module) or not callable(self.module):
            return {}
        try:
            accepted = inspect.signature(self.module).parameters
        except (TypeError, ValueError):
            return {}
        inferred = {"in_channels": getattr(self, "n_channels_in_", None),
                    "n_outputs": getattr(self, "n_outputs_", None)}
        return {key: value for key, value in inferred.items()
                if value is not None and key in accepted and key not in given}

    def initialize_module(self):
        """Instantiate the module, adding inferred ``in_channels`` / ``n_outputs``."""
        kwargs = self.get_params_for("module")
        kwargs = {**self._inferred_module_kwargs(kwargs), **kwargs}
        self.module_ = self.initialized_instance(self.module, kwargs)
        return self

    def infer(self, x, **fit_params):
        """Forward one batch, converting images to float32 ``(n, C, H, W)`` first (and
        augmenting them when training with ``augment``)."""
        if not isinstance(x, Mapping):
            x = to_image_tensor(x)
            if self.augment and self.module_.training and torch.is_grad_enabled():
                x = random_shift(x, self.augment)
        return super().infer(x, **fit_params)

    def _epochs_for(self, n_samples):
        """``max_epochs``, raised so that at least ``min_steps`` optimizer steps run.

        With a handful of labels an epoch is one step; a fixed number of epochs would
        leave the first rounds of a campaign undertrained.
        """
        epochs = self.max_epochs
        if self.min_steps:
            steps_per_epoch = max(1, math.ceil(n_samples / self.batch_size))
            epochs = max(epochs, math.ceil(self.min_steps / steps_per_epoch))
        return epochs

    def check_data(self, X, y=None):
        """Data are validated in :meth:`fit`; skorch's own label inference is skipped
        because ``y`` is already encoded there."""

    # ---------------------------------------------------------------- fitting
    def _validate_images(self, X, name="X", check_values=True):
        X = check_images(X, name=name, check_values=check_values)
        if hasattr(self, "n_channels_in_"):
            channels = self._channels_of(X)
            if channels is not None and channels != self.n_channels_in_:
                raise SkalValueError(
                    f"{name} has {channels} channel(s) but the model was fitted on "
                    f"{self.n_channels_in_}; pass images with the same channels."
                )
        return X

    @staticmethod
    def _channels_of(X):
        if is_dataset(X):
            return None
        return 1 if X.ndim == 3 else int(X.shape[1])

    def _validate_training_data(self, X, y, reset, classes=None):
        X = check_images(X)
        if is_dataset(X):
            X = materialize(X)
            check_images(X)
        y = check_labels(y, multilabel=self._multilabel)
        check_consistent_length(X, y)
        channels = self._channels_of(X)
        if not reset and channels != self.n_channels_in_:
            raise SkalValueError(
                f"X has {channels} channel(s) but the model was trained on "
                f"{self.n_channels_in_}; continued training needs the same channels."
            )
        y_encoded = self._encode_targets(y, reset, classes)
        if reset:
            self.n_channels_in_ = channels
        return X, y_encoded

    def _seed(self, offset=0):
        return resolve_seed(self.random_state, offset)

    def _prepare_head(self, X):
        """Find the final linear layer and check the module against the data."""
        sample = X[:2]
        device_sample = to_image_tensor(sample).to(self.device)
        try:
            if self.final_layer is None:
                name = find_final_linear(self.module_, device_sample)
            else:
                name = self.final_layer
                try:
                    layer = self.module_.get_submodule(name)
                except AttributeError as exc:
                    raise SkalValueError(
                        f"final_layer={name!r} is not a submodule of "
                        f"{type(self.module_).__name__}."
                    ) from exc
                if not isinstance(layer, nn.Linear):
                    raise SkalValueError(
                        f"final_layer={name!r} is a {type(layer).__name__}, not an nn.Linear."
                    )
        except RuntimeError as exc:
            raise SkalValueError(
                f"The module failed on input of shape {tuple(device_sample.shape)}: {exc}. "
                "Check in_channels and the image size the module expects."
            ) from exc
        layer = self.module_.get_submodule(name)
        if layer.out_features != self.n_outputs_:
            raise SkalValueError(
                f"The module's final layer {name!r} has {layer.out_features} outputs but the "
                f"data has {self.n_outputs_} {'labels' if self._multilabel else 'classes'}. "
                "Build the module with matching outputs (skal passes n_outputs to modules "
                "whose constructor accepts it)."
            )
        self.final_layer_name_ = name

    def fit(self, X, y, **fit_params):
        """Initialise (unless ``warm_start``) and train the network on images ``X``.

        Parameters
        ----------
        X : array-like of shape (n, H, W) or (n, C, H, W), or a torch Dataset
            Training images; uint8 is scaled by 1/255, float is used as given.
        y : array-like
            Class labels ``(n,)``, or multi-hot labels ``(n, n_labels)`` for
            :class:`MultiLabelCNNClassifier`.
        """
        continuing = bool(self.warm_start and self._is_trained())
        return self._train(X, y, continuing, fit_params)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Continue training the current weights (initialising them on first call).

        ``classes`` (single-label only) declares every class on the first call, as in
        scikit-learn's ``partial_fit``; later calls keep the classes of the first.
        """
        return self._train(X, y, self._is_trained(), fit_params, classes=classes)

    def _is_trained(self):
        return bool(getattr(self, "initialized_", False) and hasattr(self, "final_layer_name_"))

    def _train(self, X, y, continuing, fit_params, classes=None):
        """Validate, (re)initialise unless ``continuing``, and run skorch's loop seeded
        with ``random_state`` (offset by the epochs already run when continuing)."""
        X, y_encoded = self._validate_training_data(X, y, reset=not continuing,
                                                    classes=classes)
        offset = len(self.history_) if continuing else 0
        with torch_seed(self._seed(offset)):
            if not continuing:
                self.initialize()
                self._prepare_head(X)
            fit_params.setdefault("epochs", self._epochs_for(len(y_encoded)))
            NeuralNet.partial_fit(self, X, y_encoded, **fit_params)
        return self

    # ------------------------------------------------------------- inference
    def _check_fitted(self):
        if not hasattr(self, "final_layer_name_") or not getattr(self, "initialized_", False):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, y) first."
            )

    @property
    def final_layer_(self):
        """The final ``nn.Linear`` of the fitted module (``z = W h + b``)."""
        self._check_fitted()
        return self.module_.get_submodule(self.final_layer_name_)

    def iter_head_outputs(self, X, batch_size=None):
        """Stream ``(start, h, z)`` over a pool: penultimate features and logits.

        One forward pass per batch, in eval mode, without gradients. ``X`` may be an
        array, a memmap or a torch Dataset; only one batch is in memory at a time.
        """
        self._check_fitted()
        X = self._validate_images(X, check_values=False)
        layer = self.final_layer_
        self.module_.eval()
        batch_size = batch_size or self.predict_batch_size or DEFAULT_BATCH_SIZE
        for start, batch in iter_pool(X, batch_size):
            with torch.no_grad(), capture_input(layer) as store:
                z = self.infer(batch)
            yield start, store["input"], z

    def _collect(self, X, fn, batch_size=None):
        parts = [fn(h, z).detach().cpu().numpy()
                 for _, h, z in self.iter_head_outputs(X, batch_size)]
        return np.concatenate(parts)

    def decision_function(self, X):
        """Logits ``z`` of shape ``(n, n_outputs)``."""
        return self._collect(X, lambda h, z: z)

    def embed(self, X, batch_size=None):
        """Penultimate features ``h`` (the input of the final linear layer)."""
        return self._collect(X, lambda h, z: h.flatten(1), batch_size)

    def predict_proba(self, X):
        """Class probabilities (softmax), or per-label probabilities (sigmoid) for
        multi-label nets; shape ``(n, n_outputs)``."""
        return self._collect(X, lambda h, z: self.logits_to_proba(z))
