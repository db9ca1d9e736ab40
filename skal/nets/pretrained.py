"""Pre-trained encoders: the safetensors file format, and the network a classifier
builds on top of one (``CNNClassifier(pretrained=...)``).

An *encoder* maps images ``(n, C, H, W)`` to feature vectors ``(n, d)``. skal's default
encoder is :class:`~skal.nets.SmallCNN` without its final layer (what
:class:`skal.pretrain.SimCLR` trains). An encoder file is a safetensors file of the
encoder's ``state_dict`` whose metadata records what is needed to rebuild it
(``skal_format="encoder"``, the architecture and its arguments, ``in_channels``, the
image size, the number of features and the input scaling). Loading never unpickles.
"""

import copy
import json
import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.pool import DEFAULT_BATCH_SIZE, iter_pool
from ..exceptions import DataFileError, NotFittedError, SkalTypeError, SkalValueError
from ..utils.validation import to_image_tensor
from .small_cnn import SmallCNN
from .training import AUTO_LR, is_auto

__all__ = ["small_cnn_encoder", "EncoderClassifierNet", "PretrainedStartMixin",
           "save_encoder", "load_encoder", "resolve_pretrained", "load_matching_state",
           "FINETUNE_MODES", "AUTO_FULL_FINETUNE_FROM", "AUTO_LR"]

FINETUNE_MODES = ("linear", "full", "auto")
# ``finetune="auto"``: full fine-tuning from this many labelled samples in one fit (a
# linear head below); chosen by ``benchmarks/finetune_switch.py``, see docs/pretraining.md.
AUTO_FULL_FINETUNE_FROM = 50
ENCODER_FORMAT = "encoder"


def small_cnn_encoder(in_channels=1, widths=(16, 32, 64), convs_per_block=1):
    """:class:`SmallCNN` feature extractor: conv blocks and global average pooling,
    no hidden layer, no dropout, and ``fc`` replaced by ``nn.Identity`` (output
    ``(n, widths[-1])``)."""
    net = SmallCNN(in_channels=in_channels, n_outputs=1, widths=tuple(widths),
                   convs_per_block=convs_per_block, hidden=None, dropout=0.0)
    net.fc = nn.Identity()
    return net


# Architectures an encoder file can name (rebuilt from their JSON arguments).
_ARCHITECTURES = {"SmallCNN": small_cnn_encoder}


class EncoderClassifierNet(nn.Module):
    """A pre-trained encoder followed by dropout and a linear head ``fc``.

    The features are L2-normalised and scaled by ``sqrt(n_features)`` (unit mean square
    per coordinate, whatever the encoder's raw scale), as contrastive embeddings are
    compared by cosine similarity; ``fc`` sees them through dropout.

    Parameters
    ----------
    encoder : nn.Module
        Maps images to ``(n, n_features)`` features (used as given: pass a copy).
    n_features, n_outputs : int
        Width of the features and number of logits.
    dropout : float
        Dropout before ``fc``.
    """

    # ``dropout`` feeds ``fc``: MC dropout computes the features once and masks only the
    # head's input (skal.query.bayesian; not used when the encoder has dropout of its own)
    head_dropout = True

    def __init__(self, encoder, n_features, n_outputs, dropout=0.0):
        super().__init__()
        self.encoder = encoder
        self.scale = float(n_features) ** 0.5
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(int(n_features), int(n_outputs))
        # skal's classifiers store channels_last weights for modules that allow it
        self.supports_channels_last = bool(getattr(encoder, "supports_channels_last", False))

    def features(self, x):
        """The head's input: normalised encoder features ``(n, n_features)``."""
        return F.normalize(self.encoder(x).flatten(1), dim=1) * self.scale

    def forward(self, x):
        return self.fc(self.dropout(self.features(x)))


def _metadata_of(encoder_meta):
    return {key: json.dumps(value) for key, value in encoder_meta.items()}


def save_encoder(encoder, path, *, architecture=None, arguments=None, in_channels=None,
                 image_shape=None, n_features=None, scaling="uint8/255", extra=None):
    """Write ``encoder``'s weights to a safetensors file with skal's metadata.

    ``architecture`` names a builder skal knows (``"SmallCNN"``) with ``arguments``; a
    user's own architecture is recorded by class name only, and the file then loads as a
    state dict into a module of that class (``CNNClassifier(module=..., pretrained=path)``).
    """
    from safetensors.torch import save_file

    meta = {"skal_format": ENCODER_FORMAT,
            "architecture": architecture or type(encoder).__name__,
            "arguments": arguments if architecture in _ARCHITECTURES else None,
            "in_channels": in_channels, "image_shape": list(image_shape or []) or None,
            "n_features": n_features, "scaling": scaling, **(extra or {})}
    tensors = {name: t.detach().cpu().contiguous() for name, t in encoder.state_dict().items()}
    save_file(tensors, os.fspath(path), metadata=_metadata_of(meta))


def _read_safetensors(path):
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileError(f"Pre-trained weights file {path!r} does not exist.")
    try:
        with safe_open(path, framework="pt") as handle:
            raw = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types on bad headers
        raise DataFileError(
            f"{path!r} is not a readable safetensors file ({exc}); skal loads weights only "
            "from safetensors files (never pickles)."
        ) from exc
    meta = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except (TypeError, ValueError):
            meta[key] = value
    return state, meta


def load_encoder(path):
    """Read an encoder file: ``(encoder, metadata)`` when it names an architecture
    skal can rebuild, else ``(state_dict, metadata)``."""
    state, meta = _read_safetensors(path)
    builder = _ARCHITECTURES.get(meta.get("architecture"))
    if meta.get("skal_format") != ENCODER_FORMAT or builder is None:
        return state, meta
    encoder = builder(**(meta.get("arguments") or {}))
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        raise DataFileError(f"{os.fspath(path)!r}: weights do not match its recorded "
                            f"architecture ({exc}).") from exc
    return encoder, meta


def resolve_pretrained(pretrained):
    """Interpret a ``pretrained=`` argument without modifying it.

    Returns ``("encoder", module_copy, metadata)`` for a fitted SimCLR (anything with an
    ``encoder_``), an ``nn.Module`` or an encoder file skal can rebuild, and
    ``("state_dict", state, metadata)`` for a mapping of tensors or a safetensors file of
    a user's own module.
    """
    if isinstance(pretrained, nn.Module):
        return "encoder", copy.deepcopy(pretrained), {}
    if isinstance(pretrained, (str, os.PathLike)):
        loaded, meta = load_encoder(pretrained)
        kind = "encoder" if isinstance(loaded, nn.Module) else "state_dict"
        return kind, loaded, meta
    if isinstance(pretrained, Mapping):
        if not all(isinstance(v, torch.Tensor) for v in pretrained.values()):
            raise SkalTypeError("pretrained= as a mapping must be a state dict "
                                "{name: torch.Tensor}.")
        return "state_dict", dict(pretrained), {}
    if hasattr(pretrained, "transform") and hasattr(pretrained, "fit"):
        encoder = getattr(pretrained, "encoder_", None)
        if encoder is None:
            raise NotFittedError(
                f"pretrained={type(pretrained).__name__}(...) is not fitted; call its "
                "fit(X) on the unlabelled pool first (or pass a saved encoder file).")
        meta = pretrained.encoder_metadata() if hasattr(pretrained, "encoder_metadata") else {}
        return "encoder", copy.deepcopy(encoder), meta
    raise SkalTypeError(
        f"pretrained={pretrained!r} is not supported: pass a fitted skal.pretrain.SimCLR, "
        "an nn.Module encoder, a state dict, or the path of a safetensors file.")


def load_matching_state(module, state, exclude=()):
    """Copy the tensors of ``state`` whose name and shape match ``module``'s (except the
    ``exclude`` prefixes, e.g. the final layer); raise if none match."""
    own = module.state_dict()
    matched = {key: value for key, value in state.items()
               if key in own and own[key].shape == value.shape
               and not any(key == p or key.startswith(p + ".") for p in exclude)}
    if not matched:
        raise SkalValueError(
            f"None of the {len(state)} pre-trained tensors matches a parameter of "
            f"{type(module).__name__} (by name and shape); pass weights of this module "
            "class, or an encoder (nn.Module / SimCLR).")
    module.load_state_dict(matched, strict=False)
    return sorted(matched)


class PretrainedStartMixin:
    """``pretrained=`` / ``finetune=`` for skal's classifiers (mixed in before
    :class:`~skal.nets.base.ImageClassifierMixin`).

    * ``pretrained`` is a fitted :class:`skal.pretrain.SimCLR`, an ``nn.Module`` encoder
      or an encoder safetensors file: the network is :class:`EncoderClassifierNet`
      (a copy of the encoder + a linear head). A state dict, or a safetensors file of a
      user's own module, is loaded into ``module`` (tensors matching by name and shape).
      The ``pretrained`` object itself is never modified.
    * ``finetune="linear"`` trains only the final layer: every other parameter is frozen
      and kept in eval mode (BatchNorm statistics fixed). ``"full"`` trains everything.
      ``"auto"`` trains a linear head while the labelled set is small and fine-tunes
      every layer from the first fit on ``AUTO_FULL_FINETUNE_FROM`` or more samples (and
      in every fit that continues from such a network). The mode of the last fit is
      ``finetune_``.
    * ``lr="auto"`` is ``AUTO_LR["linear"]`` for a linear head on frozen features and
      ``AUTO_LR["network"]`` when every layer trains.
    * Before ``fit``, :meth:`embed` already returns the encoder's features, so a cold
      start can select its first samples from them.
    """

    def __setattr__(self, name, value):
        if name == "pretrained":
            # a parameter (an encoder skal copies), not a torch component of the net that
            # skorch would register, move between devices or refuse outside initialize
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)

    def _check_finetune(self):
        if not isinstance(self.finetune, str) or self.finetune not in FINETUNE_MODES:
            raise SkalValueError(
                f"finetune={self.finetune!r} is not one of {FINETUNE_MODES}: 'linear' "
                "trains a linear head on the frozen pre-trained features, 'full' fine-tunes "
                f"every layer, 'auto' switches from the first to the second at "
                f"{AUTO_FULL_FINETUNE_FROM} labelled samples.")
        return self.finetune

    def _finetune_mode(self, n_samples, continuing):
        """The mode of a fit on ``n_samples``: ``"auto"`` resolved by the size of the
        training set, never back from ``"full"`` while continuing a fitted network."""
        mode = self._check_finetune()
        if mode != "auto":
            return mode
        if continuing and getattr(self, "finetune_", None) == "full":
            return "full"
        return "full" if n_samples >= AUTO_FULL_FINETUNE_FROM else "linear"

    def _frozen_encoder(self):
        """True when only the head trains (a pre-trained start in linear mode)."""
        if self.pretrained is None:
            return False
        mode = getattr(self, "finetune_", None) or self.finetune
        return mode == "linear"

    def resolved_lr(self):
        """The learning rate training uses: ``lr``, or for ``lr="auto"``
        ``AUTO_LR["linear"]`` (1e-2) when only a linear head trains on frozen pre-trained
        features and ``AUTO_LR["network"]`` (1e-3) when every layer trains."""
        if not is_auto(self.lr):
            return self.lr
        return AUTO_LR["linear" if self._frozen_encoder() else "network"]

    def _validate_training_data(self, X, y, reset, classes=None):
        continuing = not reset
        if self.pretrained is not None:
            self._check_finetune()
        X, y_encoded = super()._validate_training_data(X, y, reset, classes)
        if reset:
            shape = tuple(int(s) for s in X.shape[1:])
            self.image_shape_ = {2: (1, 1) + shape, 3: (1,) + shape}.get(X.ndim, shape)
        if self.pretrained is not None:
            self.finetune_ = self._finetune_mode(len(y_encoded), continuing)
            if continuing:
                self._apply_finetune_mode()
        else:
            vars(self).pop("finetune_", None)
        return X, y_encoded

    def get_params_for_optimizer(self, prefix, named_parameters):
        """skorch's optimizer arguments, with ``lr="auto"`` resolved (:meth:`resolved_lr`)."""
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        if is_auto(kwargs.get("lr")):
            kwargs["lr"] = self.resolved_lr()
        return args, kwargs

    def set_params(self, **params):
        super().set_params(**params)
        if is_auto(params.get("lr")) and getattr(self, "optimizer_", None) is not None:
            # skorch copies a new lr into the live optimizer as given
            for group in self.optimizer_.param_groups:
                group["lr"] = self.resolved_lr()
        return self

    def _apply_finetune_mode(self):
        """Make the parameters ``finetune_`` trains (all, or the final layer only) the
        trainable ones, at ``resolved_lr()`` if ``lr="auto"``: on a fresh network, and
        on a continuing one whose mode ``"auto"`` has just switched to ``"full"``."""
        head = self.final_layer_name_ + "."
        frozen = self._frozen_encoder()
        for name, param in self.module_.named_parameters():
            param.requires_grad_(not frozen or name.startswith(head))
        if is_auto(self.lr) and getattr(self, "optimizer_", None) is not None:
            for group in self.optimizer_.param_groups:
                group["lr"] = self.resolved_lr()

    def _pretrained_encoder(self, in_channels, image_shape):
        """``(encoder_copy, n_features)``, or None for a state-dict start."""
        kind, loaded, meta = resolve_pretrained(self.pretrained)
        if kind == "state_dict":
            return None, loaded
        expected = meta.get("in_channels")
        if expected is not None and in_channels is not None and int(expected) != in_channels:
            raise SkalValueError(
                f"The pre-trained encoder takes {expected} channel(s) but X has "
                f"{in_channels}; pre-train on images with the same channels.")
        n_features = meta.get("n_features")
        if n_features is None:
            probe = torch.zeros((2,) + tuple(image_shape))
            was_training = loaded.training
            loaded.eval()
            try:
                with torch.no_grad():
                    n_features = int(loaded(probe).flatten(1).shape[1])
            except RuntimeError as exc:
                raise SkalValueError(
                    f"The pre-trained encoder failed on images of shape "
                    f"{tuple(image_shape)}: {exc}") from exc
            loaded.train(was_training)
        return loaded, int(n_features)

    def initialize_module(self):
        """Build the network on the pre-trained encoder (or load a state dict into
        ``module``); without ``pretrained``, as usual."""
        if self.pretrained is None:
            return super().initialize_module()
        image_shape = getattr(self, "image_shape_", None)
        encoder, extra = self._pretrained_encoder(getattr(self, "n_channels_in_", None),
                                                  image_shape)
        if encoder is None:
            super().initialize_module()
            load_matching_state(self.module_, extra)
            return self
        dropout = self.get_params_for("module").get("dropout", 0.0)
        # before fit (skorch's ``initialize()`` then ``load_params``) the head gets the
        # module's default size, as skal's own networks do; fit / load_params rebuild it
        n_outputs = getattr(self, "n_outputs_", None)
        if n_outputs is None:
            n_outputs = self.get_params_for("module").get("n_outputs", 2)
        self.module_ = EncoderClassifierNet(encoder, extra, n_outputs, dropout=dropout)
        if self._channels_last():
            self.module_.to(memory_format=torch.channels_last)
        return self

    def _prepare_head(self, X):
        super()._prepare_head(X)
        if self.pretrained is not None:
            self._apply_finetune_mode()

    def _set_training(self, training=True):
        super()._set_training(training)
        if training and self._frozen_encoder():
            self.module_.eval()
            self.final_layer_.train()

    def _linear_fast_path(self):
        """A linear probe on a pre-trained encoder, without a validation split: the
        frozen features are computed once per fit and the head trains on them."""
        return (self._frozen_encoder()
                and isinstance(getattr(self, "module_", None), EncoderClassifierNet)
                and self.train_split is None)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """skorch's loop, except for a linear probe on a pre-trained encoder: the
        encoder is frozen, so its features are computed once (in eval mode, without
        ``augment``, which would change them) and only the head ``fc`` trains on them,
        with the same optimizer, batch size, epochs (``min_steps``) and loss. Each epoch
        records ``train_loss`` in ``history_``; batch-level callbacks do not run."""
        if not self._linear_fast_path():
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        epochs = epochs if epochs is not None else self.max_epochs
        net = self.module_
        net.eval()
        parts = []
        for _, batch in iter_pool(X, self.predict_batch_size or DEFAULT_BATCH_SIZE):
            with torch.no_grad():
                parts.append(net.features(to_image_tensor(batch).to(self.device)))
        features = torch.cat(parts)
        targets = torch.as_tensor(np.asarray(y)).to(self.device)
        n = len(features)
        batch_size = n if self.batch_size == -1 else min(int(self.batch_size), n)
        # the fit's own generator (seeded from random_state, thread-safe; see _train)
        generator = getattr(self, "_generator", None)
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        self._set_training(True)
        for _ in range(epochs):
            self.history_.new_epoch()
            self.history_.record("epoch", len(self.history_))
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size].to(self.device)
                logits = net.fc(net.dropout(features[idx]))
                loss = self.get_loss(logits, targets[idx], training=True)
                self.optimizer_.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer_.step()
                total += float(loss.detach()) * len(idx)
            self.history_.record("train_loss", total / n)
        self._set_training(False)
        return self

    def get_all_learnable_params(self):
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param

    def embed(self, X, batch_size=None):
        """Penultimate features ``h`` (the input of the final linear layer); with a
        pre-trained encoder also before ``fit`` (the features of the pre-trained start,
        what a cold-start strategy selects from)."""
        if self._is_trained() or self.pretrained is None:
            return super().embed(X, batch_size)
        X = self._validate_images(X, check_values=False)
        batch_size = batch_size or self.predict_batch_size or DEFAULT_BATCH_SIZE
        net, parts = None, []
        for _, batch in iter_pool(X, batch_size):
            x = to_image_tensor(batch).to(self.device)
            if net is None:
                encoder, n_features = self._pretrained_encoder(int(x.shape[1]),
                                                               tuple(x.shape[1:]))
                if encoder is None:
                    raise NotFittedError(
                        f"This {type(self).__name__} starts from a state dict of its own "
                        "module, which gives no features before fit (the module needs "
                        "n_outputs); call fit first, or pre-train an encoder "
                        "(skal.pretrain.SimCLR).")
                net = EncoderClassifierNet(encoder, n_features, 1).to(self.device).eval()
                memory_format = self._check_memory_format()
                if memory_format == "channels_last" or (
                        memory_format == "auto" and net.supports_channels_last):
                    # the layout fit uses, so features match bit for bit
                    net.to(memory_format=torch.channels_last)
            with torch.no_grad():
                parts.append(net.features(x).cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
