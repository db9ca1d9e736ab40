"""What every skal image classifier shares: input handling, seeding, module set-up,
final-layer discovery and streamed forward passes that expose ``(h, z)``."""

import math

import numpy as np
import torch
from torch import nn

from ..data.pool import DEFAULT_BATCH_SIZE, is_dataset, iter_pool, materialize
from ..exceptions import NotFittedError, SkalTypeError, SkalValueError
from ..utils.seeding import resolve_seed, seeded_construction
from ..utils.validation import (check_consistent_length, check_images, check_labels,
                                native_array, to_image_tensor)
from .augment import random_shift
from .head import capture_input, find_final_linear
from .skorch_glue import SkorchNetMixin, declared_kwargs
from .training import check_training_params, rollback_on_error, run_training
from .persistence import read_metadata, restore_metadata, save_safetensors

__all__ = ["ImageClassifierMixin"]

# Input outside [0, 1] by more than this is not on the scale of uint8 / 255.
_SCALE_TOL = 1e-3


def _dtype_name(X):
    dtype = X.dtype
    return str(dtype).replace("torch.", "")


def _value_range(X):
    """``(min, max)`` of the values skal feeds the network (uint8 scaled by 1/255),
    without converting the whole array."""
    lo, hi = float(X.min()), float(X.max())
    return (lo / 255, hi / 255) if _dtype_name(X) == "uint8" else (lo, hi)


# Images (n, H, W) / (n, C, H, W), and tabular rows (n, n_features) seen as one-row images.
_INPUT_NDIMS = (2, 3, 4)
_MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


class ImageClassifierMixin(SkorchNetMixin):
    """Mixed into skorch nets to make them image classifiers that active learning can
    query.

    * Images are ``(n, H, W)`` or ``(n, C, H, W)``; uint8 is scaled by 1/255 and float
      is used as given; NaN / inf and wrong shapes are rejected with clear errors.
    * Tabular data ``(n_samples, n_features)`` (what scikit-learn's own estimator checks
      and most tabular pipelines pass) are accepted too: each row is treated as a
      one-row, one-channel image ``(1, 1, n_features)``, without augmentation (columns
      are not spatial), and ``n_features_in_`` is set. The kind of input is fixed by
      ``fit``: a model fitted on images rejects 2-d input (it would be ambiguous: a
      single ``(H, W)`` image missing its batch axis, or rows of features), and a
      model fitted on tabular data rejects images and a different number of features.
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
    def initialize_module(self):
        """Instantiate the module, adding inferred ``in_channels`` / ``n_outputs``, and
        give it the ``memory_format`` layout."""
        kwargs = self.get_params_for("module")
        inferred = {"in_channels": getattr(self, "n_channels_in_", None),
                    "n_outputs": getattr(self, "n_outputs_", None)}
        kwargs = {**declared_kwargs(self.module, inferred, kwargs), **kwargs}
        self.module_ = self.initialized_instance(self.module, kwargs)
        if self._channels_last():
            self.module_.to(memory_format=torch.channels_last)
        return self

    def _channels_last(self):
        """Whether the module's 4-d weights are stored ``channels_last`` (see the
        ``memory_format`` parameter): always when asked, with ``"auto"`` for image input
        to one of skal's networks (which declare ``supports_channels_last``)."""
        memory_format = self._check_memory_format()
        if memory_format == "auto":
            return (getattr(self, "n_features_in_", None) is None
                    and bool(getattr(self.module_, "supports_channels_last", False)))
        return memory_format == "channels_last"

    def _batch_tensor(self, x):
        """A batch of images as a float32 ``(n, C, H, W)`` tensor, augmented when
        training with ``augment`` (images only: tabular columns are not spatial)."""
        tabular = x.ndim == 2
        x = to_image_tensor(x)
        if self.augment and not tabular and self.module_.training and torch.is_grad_enabled():
            x = random_shift(x, self.augment, generator=getattr(self, "_generator", None))
        return x

    def epochs_for(self, n_samples):
        """``max_epochs``, raised so that at least ``min_steps`` optimizer steps run
        (the epochs one ``fit`` on ``n_samples`` samples trains).

        With a handful of labels an epoch is one step; a fixed number of epochs would
        leave the first rounds of a campaign undertrained.
        """
        epochs = self.max_epochs
        if self.min_steps:
            steps_per_epoch = max(1, math.ceil(n_samples / self.batch_size))
            epochs = max(epochs, math.ceil(self.min_steps / steps_per_epoch))
        return epochs

    _epochs_for = epochs_for

    def set_params(self, **params):
        """skorch's ``set_params``; changing a module parameter of a fitted net
        re-initialises its module with fresh weights, so the net is then unfitted
        (``predict`` raises ``NotFittedError`` until the next ``fit``) instead of
        predicting with untrained weights. A failed call changes nothing."""
        with rollback_on_error(self):
            trained, module = self._is_trained(), getattr(self, "module_", None)
            super().set_params(**params)
            if trained and getattr(self, "module_", None) is not module:
                vars(self).pop("final_layer_name_", None)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True      # tabular rows: one-row images
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags

    # ---------------------------------------------------------------- fitting
    def _validate_images(self, X, name="X", check_values=True):
        X = check_images(X, name=name, ndims=_INPUT_NDIMS, check_values=check_values)
        if hasattr(self, "n_channels_in_"):
            self._check_input_kind(X, name)
            channels = self._channels_of(X)
            if channels is not None and channels != self.n_channels_in_:
                raise SkalValueError(
                    f"{name} has {channels} channel(s) but the model was fitted on "
                    f"{self.n_channels_in_}; pass images with the same channels."
                )
        return X

    def _check_input_kind(self, X, name="X"):
        """Tabular input after a tabular fit (same number of features), images after
        an image fit."""
        if is_dataset(X):
            return
        n_features = getattr(self, "n_features_in_", None)
        if n_features is not None:
            if X.ndim != 2:
                raise SkalValueError(
                    f"{name} has shape {tuple(X.shape)} ({X.ndim} dimensions) but "
                    f"{type(self).__name__} was fitted on tabular data (n_samples, "
                    f"{n_features}); pass the same kind of input."
                )
            if X.shape[1] != n_features:
                raise SkalValueError(
                    f"{name} has {X.shape[1]} features, but {type(self).__name__} is "
                    f"expecting {n_features} features as input."
                )
        elif X.ndim == 2:
            raise SkalValueError(
                f"{name} has shape {tuple(X.shape)} (2 dimensions) but "
                f"{type(self).__name__} was fitted on images (n, H, W) or (n, C, H, W). "
                "Reshape your data: a single image needs a leading batch axis, e.g. "
                "X[None]; tabular rows (n_samples, n_features) need a model fitted on "
                "tabular rows."
            )

    @staticmethod
    def _channels_of(X):
        if is_dataset(X):
            return None
        return 1 if X.ndim in (2, 3) else int(X.shape[1])

    @staticmethod
    def _reject_sample_weight(fit_params):
        if "sample_weight" in fit_params:
            raise SkalTypeError(
                "skal's CNN classifiers do not support sample_weight in fit; resample "
                "the training set, or weight classes through the criterion (e.g. "
                "criterion__weight=torch.tensor([...]))."
            )

    def _check_memory_format(self):
        memory_format = getattr(self, "memory_format", "auto")
        if not isinstance(memory_format, str) or memory_format not in _MEMORY_FORMATS:
            raise SkalValueError(
                f"memory_format={memory_format!r} is not one of {_MEMORY_FORMATS}.")
        return memory_format

    def _validate_training_data(self, X, y, reset, classes=None):
        self._check_memory_format()
        X = check_images(X, ndims=_INPUT_NDIMS)
        if is_dataset(X):
            X = materialize(X)
            check_images(X, ndims=_INPUT_NDIMS)
        y = check_labels(y, multilabel=self._multilabel)
        check_consistent_length(X, y)
        channels = self._channels_of(X)
        if not reset:
            self._check_input_kind(X)
            if channels != self.n_channels_in_:
                raise SkalValueError(
                    f"X has {channels} channel(s) but the model was trained on "
                    f"{self.n_channels_in_}; continued training needs the same channels."
                )
        if not reset:
            self._check_fitted_input(X)
        y_encoded = self._encode_targets(y, reset, classes)
        if reset:
            self._record_fitted_input(X)
            self.n_channels_in_ = channels
            if X.ndim == 2:
                self.n_features_in_ = int(X.shape[1])
            else:
                self.__dict__.pop("n_features_in_", None)
        # big-endian / float128 data: the training batches need a dtype torch can wrap
        return native_array(X), y_encoded

    def _record_fitted_input(self, X):
        """Remember the dtype, value range (after uint8 scaling) and image size of the
        training input, which :meth:`_check_fitted_input` holds later input to."""
        self.input_dtype_ = _dtype_name(X)
        self.input_range_ = _value_range(X)
        self.image_size_ = None if X.ndim == 2 else tuple(int(s) for s in X.shape[-2:])

    def _check_fitted_input(self, X, name="X"):
        """Reject input on another scale or of another size than the training input,
        as scikit-learn rejects another ``n_features_in_``: a float image in 0..255
        given to a model fitted on uint8 (scaled to 0..1) would be scored on the wrong
        scale without any error."""
        if is_dataset(X) or not hasattr(self, "input_dtype_"):
            return
        size = None if X.ndim == 2 else tuple(int(s) for s in X.shape[-2:])
        if size != self.image_size_ and self.image_size_ is not None:
            raise SkalValueError(
                f"{name} has images of size {size[0]}x{size[1]} but the model was fitted "
                f"on {self.image_size_[0]}x{self.image_size_[1]}; resize the images to "
                "the training size (e.g. skal.preprocessing) before scoring them.")
        dtype = _dtype_name(X)
        if (dtype == "uint8") == (self.input_dtype_ == "uint8"):
            return
        lo, hi = self.input_range_
        if self.input_dtype_ == "uint8":
            x_lo, x_hi = _value_range(X)
            if x_lo < -_SCALE_TOL or x_hi > 1 + _SCALE_TOL:
                raise SkalValueError(
                    f"{name} has dtype {dtype} with values in [{x_lo:g}, {x_hi:g}], but the "
                    "model was fitted on uint8 images, which skal scales by 1/255 to "
                    "[0, 1]; this input would be scored on the wrong scale. Pass the "
                    "images as uint8 (X.astype(np.uint8)) or divided by 255.")
        elif lo < -_SCALE_TOL or hi > 1 + _SCALE_TOL:
            raise SkalValueError(
                f"{name} is uint8 (skal scales it by 1/255 to [0, 1]) but the model was "
                f"fitted on {self.input_dtype_} input with values in [{lo:g}, {hi:g}]; this "
                "input would be scored on the wrong scale. Pass it on the training scale, "
                "e.g. X.astype(np.float32).")

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
            hint = "Check in_channels and the image size the module expects."
            if self._channels_last() and "view" in str(exc):
                hint = ("The module's weights are channels_last (memory_format="
                        f"{self._check_memory_format()!r}), so are its activations, and "
                        "its forward calls .view on them: use .flatten(1) or .reshape, or "
                        "set memory_format='contiguous'.")
            raise SkalValueError(
                f"The module failed on input of shape {tuple(device_sample.shape)}: {exc}. "
                + hint
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
            Training images; uint8 is scaled by 1/255, float is used as given. Tabular
            data ``(n_samples, n_features)`` are treated as one-row images.
        y : array-like
            Class labels ``(n,)``, or multi-hot labels ``(n, n_labels)`` for
            :class:`MultiLabelCNNClassifier`.
        """
        self._reject_sample_weight(fit_params)
        continuing = bool(self.warm_start and self._is_trained())
        return self._train(X, y, continuing, fit_params)

    def partial_fit(self, X, y, classes=None, **fit_params):
        """Continue training the current weights (initialising them on first call).

        ``classes`` (single-label only) declares every class on the first call, as in
        scikit-learn's ``partial_fit``; later calls keep the classes of the first.
        """
        self._reject_sample_weight(fit_params)
        return self._train(X, y, self._is_trained(), fit_params, classes=classes)

    def __sklearn_is_fitted__(self):
        return self._is_trained()

    def _check_validation_split(self):
        """A callback that reads validation scores (``EarlyStopping()`` monitors
        ``valid_loss``) needs ``train_split``; say so instead of skorch's KeyError."""
        if self.train_split is not None or not isinstance(self.callbacks, (list, tuple)):
            return
        for item in self.callbacks:
            callback = item[1] if isinstance(item, tuple) else item
            monitor = getattr(callback, "monitor", None)
            if (isinstance(monitor, str) and monitor.startswith("valid")) or (
                    getattr(callback, "on_train", True) is False):
                raise SkalValueError(
                    f"The callback {type(callback).__name__} reads validation scores "
                    f"({monitor or 'valid_*'}), but train_split=None (skal's default: "
                    "labelled sets are small). Hold out a validation split with "
                    "train_split=skorch.dataset.ValidSplit(0.2), or monitor the training "
                    "loss (e.g. EarlyStopping(monitor='train_loss'))."
                )

    def _is_trained(self):
        return bool(getattr(self, "initialized_", False) and hasattr(self, "final_layer_name_"))

    def _train(self, X, y, continuing, fit_params, classes=None):
        """Validate, (re)initialise unless ``continuing``, and run skorch's loop seeded
        with ``random_state`` (offset by the epochs already run when continuing)."""
        with rollback_on_error(self):
            return self._train_or_raise(X, y, continuing, fit_params, classes)

    def _train_or_raise(self, X, y, continuing, fit_params, classes):
        """:meth:`_train` without the rollback: weights are drawn under
        ``seeded_construction`` and every random number of the loop (shuffling,
        augmentation, dropout) from the fit's own ``torch.Generator`` (thread-safe, see
        :mod:`skal.utils.seeding`); ``KeyboardInterrupt`` propagates."""
        check_training_params(self)
        X, y_encoded = self._validate_training_data(X, y, reset=not continuing,
                                                    classes=classes)
        if hasattr(self, "_check_threshold"):   # multi-label: a threshold in [0, 1]
            self._check_threshold()
        offset = len(self.history_) if continuing else 0
        seed = self._seed(offset)
        if not continuing:
            with seeded_construction(seed):
                self.initialize()
            self._prepare_head(X)
        fit_params.setdefault("epochs", self.epochs_for(len(y_encoded)))
        self._check_validation_split()
        try:
            with self._fit_generator(seed):
                run_training(self, X, y_encoded, **fit_params)
        except ValueError as exc:
            if "Expected more than 1 value per channel" not in str(exc):
                raise
            raise SkalValueError(
                f"Training on n_samples={len(y_encoded)} failed: a BatchNorm layer got "
                "one value per channel (a batch of 1 sample, with tabular input or "
                "images pooled down to 1x1). Train on at least 2 samples."
            ) from exc
        return self

    # ------------------------------------------------------------ persistence
    def save_params(self, f_params=None, *args, use_safetensors=False, **kwargs):
        """skorch's ``save_params``; with ``use_safetensors=True`` the weights file
        also stores what the model learned from the data (classes, channels, ...), so
        ``load_params`` gives a usable model (see :mod:`skal.nets.persistence`)."""
        if f_params is not None and use_safetensors:
            self._check_fitted()
            save_safetensors(self, f_params)
            f_params = None
        return super().save_params(f_params, *args, use_safetensors=use_safetensors,
                                   **kwargs)

    def load_params(self, f_params=None, *args, use_safetensors=False, **kwargs):
        """skorch's ``load_params``; a weights file written by :meth:`save_params`
        with ``use_safetensors=True`` also restores the learned attributes (and
        initialises the module to their shapes), so the model predicts as the saved
        one did. The net must be built with the same parameters."""
        stored = read_metadata(f_params) if f_params is not None and use_safetensors else None
        if stored is not None:
            restore_metadata(self, stored)
            self.initialize()
        return super().load_params(f_params, *args, use_safetensors=use_safetensors,
                                   **kwargs)

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

    @property
    def output_kind_(self):
        """What the fitted head predicts: ``"softmax"`` (one distribution over
        ``classes_``), ``"multilabel"`` (a sigmoid per label; ``predict`` gives label
        sets) or ``"one-vs-rest"`` (sigmoid outputs fitted on 1-d labels; ``predict``
        gives classes). See :func:`skal.labels.output_kind`."""
        if not hasattr(self, "classes_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, y) first.")
        if not self._multilabel:
            return "softmax"
        return "multilabel" if getattr(self, "multilabel_", True) else "one-vs-rest"

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
            self._check_fitted_input(batch, "X")
            with torch.no_grad(), capture_input(layer) as store:
                z = self.infer(batch)
            yield start, store["input"], z

    def _collect(self, X, fn, batch_size=None):
        parts = [fn(h, z).detach().cpu().numpy()
                 for _, h, z in self.iter_head_outputs(X, batch_size)]
        return np.concatenate(parts)

    def decision_function(self, X):
        """Confidence scores, float64, as scikit-learn defines them.

        Multi-class and multi-label: the logits ``z``, shape ``(n, n_outputs)``. Binary
        single-label: the log-odds of the second class, ``z[:, 1] - z[:, 0]``, shape
        ``(n,)`` (positive means ``classes_[1]``). The raw logits of every model are
        the ``z`` of :meth:`iter_head_outputs`.
        """
        z = self._collect(X, lambda h, z: z.to(torch.float64))
        if not self._multilabel and z.shape[1] == 2:
            return z[:, 1] - z[:, 0]
        return z

    def embed(self, X, batch_size=None):
        """Penultimate features ``h`` (the input of the final linear layer)."""
        return self._collect(X, lambda h, z: h.flatten(1), batch_size)

    def predict_proba(self, X):
        """Class probabilities (softmax), or per-label probabilities (sigmoid) for
        multi-label nets; shape ``(n, n_outputs)``, float64 (computed from the logits in
        double precision, so they rank exactly as :meth:`decision_function`)."""
        return self._collect(X, lambda h, z: self.logits_to_proba(z.to(torch.float64)))
