"""SimCLR: contrastive self-supervised pre-training of an image encoder on an unlabelled
pool.

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020. Two random views of each image of a batch of ``B``
go through the encoder and a 2-layer MLP projection; the L2-normalised projections of
the ``2B`` views are trained with the NT-Xent loss (temperature ``tau``), which pulls the
two views of an image together and pushes the other ``2B - 2`` views away. The encoder
(without the projection) is the pre-trained start for classifiers, and its
L2-normalised features are the embeddings label-free selection (TypiClust, ProbCover)
works on.
"""

import copy
import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, TransformerMixin
from torch import nn
from tqdm.auto import tqdm

from ..data.pool import DEFAULT_BATCH_SIZE, is_dataset, iter_pool, materialize, pool_length
from ..exceptions import NotFittedError, SkalTypeError, SkalValueError
from ..nets.pretrained import save_encoder, small_cnn_encoder
from ..utils.seeding import resolve_seed, torch_seed
from ..utils.validation import check_images, to_image_tensor
from .augment import ImageAugmenter

__all__ = ["SimCLR", "nt_xent_loss"]


def nt_xent_loss(z1, z2, temperature):
    """NT-Xent over the ``2B`` views: mean over views ``i`` of
    ``-log exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau)`` with ``s`` the cosine
    similarity and ``j`` the other view of the same image."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def _check_positive_int(name, value, minimum=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise SkalValueError(f"{name}={value!r} must be an integer >= {minimum}.")


def _check_positive_float(name, value):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(float(value)) or value <= 0):
        raise SkalValueError(f"{name}={value!r} must be a positive number.")


class SimCLR(TransformerMixin, BaseEstimator):
    """Self-supervised contrastive pre-training (SimCLR) of an image encoder.

    ``fit(X)`` needs no labels. ``transform(X)`` returns the encoder's L2-normalised
    features, and ``encoder_`` is the trained encoder, which
    ``CNNClassifier(pretrained=simclr)`` / ``MultiLabelCNNClassifier(pretrained=...)``
    start from; ``save(path)`` writes it as a safetensors file they accept too.

    Parameters
    ----------
    encoder : nn.Module, callable or None, default=None
        The encoder to train, mapping ``(n, C, H, W)`` to ``(n, d)``. ``None`` builds
        skal's :class:`~skal.nets.SmallCNN` feature extractor with ``encoder_widths``.
        A callable is called as ``encoder(in_channels=C)`` when it declares it. An
        instance is copied, never modified.
    encoder_widths : tuple of int, default=(16, 32, 64)
        Widths of the default SmallCNN encoder's blocks (its feature size is the last;
        the default is SmallCNN's own, so a pre-trained start costs what training one does).
    projection_dim : int, default=64
        Output width of the 2-layer MLP projection head.
    projection_hidden : int or None, default=None
        Hidden width of the projection head (``None``: the encoder's feature size).
    temperature : float, default=0.2
        NT-Xent temperature ``tau``.
    max_epochs : int, default=30
        Passes over the pool.
    batch_size : int, default=256
        Images per step (``2 * batch_size`` views).
    lr : float, default=2e-3
        AdamW learning rate (cosine-decayed to 0 over the run).
    weight_decay : float, default=1e-4
    augmenter : ImageAugmenter or None, default=None
        The random views (``None``: ``ImageAugmenter()``, no horizontal flips).
    random_state : int, RandomState or None
        Seeds initialisation, shuffling and augmentations through explicit generators.
    device : str, default="cpu"
    memory_format : {"channels_last", "contiguous"}, default="channels_last"
        Layout of the convolution weights and inputs (channels_last is faster on CPU;
        figures: ``benchmarks/README.md``, "Query speed").
    progress : bool, default=True
        A tqdm progress bar over the epochs (with the running loss).

    Attributes
    ----------
    encoder_ : nn.Module
        The trained encoder (eval mode).
    projection_ : nn.Module
        The trained projection head (used only for the loss).
    loss_curve_ : list of float
        Mean NT-Xent loss of each epoch.
    n_features_ : int
        Width of the encoder's features.
    in_channels_ : int
    image_shape_ : tuple of int
        ``(C, H, W)`` of the training images.
    scaling_ : str
        ``"uint8/255"`` when the pool was uint8 (scaled by 1/255, as skal's classifiers
        do), else ``"none"``.

    Notes
    -----
    A fitted SimCLR clones (``sklearn.base.clone``) *with* a copy of its encoder, so a
    classifier holding it as ``pretrained`` keeps its start through the clones that
    active learning makes; ``fit`` retrains from scratch as usual.
    """

    def __init__(self, encoder=None, encoder_widths=(16, 32, 64), projection_dim=64,
                 projection_hidden=None, temperature=0.2, max_epochs=30, batch_size=256,
                 lr=2e-3, weight_decay=1e-4, augmenter=None, random_state=None,
                 device="cpu", memory_format="channels_last", progress=True):
        self.encoder = encoder
        self.encoder_widths = encoder_widths
        self.projection_dim = projection_dim
        self.projection_hidden = projection_hidden
        self.temperature = temperature
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.augmenter = augmenter
        self.random_state = random_state
        self.device = device
        self.memory_format = memory_format
        self.progress = progress

    # ----------------------------------------------------------- scikit-learn
    def __sklearn_clone__(self):
        clone = super().__sklearn_clone__()
        if hasattr(self, "encoder_"):
            for key, value in vars(self).items():
                if key.endswith("_") and not key.startswith("_"):
                    setattr(clone, key, copy.deepcopy(value))
        return clone

    def _check_params(self):
        for name in ("projection_dim", "max_epochs"):
            _check_positive_int(name, getattr(self, name))
        _check_positive_int("batch_size", self.batch_size, minimum=2)
        if self.projection_hidden is not None:
            _check_positive_int("projection_hidden", self.projection_hidden)
        for name in ("temperature", "lr"):
            _check_positive_float(name, getattr(self, name))
        if (not isinstance(self.weight_decay, numbers.Real) or self.weight_decay < 0):
            raise SkalValueError(f"weight_decay={self.weight_decay!r} must be >= 0.")
        try:
            widths = tuple(int(w) for w in self.encoder_widths)
        except (TypeError, ValueError):
            widths = ()
        if not widths or min(widths) < 1:
            raise SkalValueError(f"encoder_widths={self.encoder_widths!r} must be a "
                                 "non-empty sequence of positive integers.")
        if self.memory_format not in ("channels_last", "contiguous"):
            raise SkalValueError(f"memory_format={self.memory_format!r} must be "
                                 "'channels_last' or 'contiguous'.")
        augmenter = ImageAugmenter() if self.augmenter is None else self.augmenter
        if not callable(augmenter):
            raise SkalTypeError("augmenter must be an ImageAugmenter (or a callable "
                                "(x, generator) -> x).")
        return widths, augmenter

    # --------------------------------------------------------------- building
    def _build_encoder(self, in_channels, widths):
        if self.encoder is None:
            return small_cnn_encoder(in_channels, widths), ("SmallCNN", {
                "in_channels": in_channels, "widths": list(widths), "convs_per_block": 1})
        if isinstance(self.encoder, nn.Module):
            return copy.deepcopy(self.encoder), (None, None)
        if callable(self.encoder):
            try:
                return self.encoder(in_channels=in_channels), (None, None)
            except TypeError:
                return self.encoder(), (None, None)
        raise SkalTypeError(f"encoder={self.encoder!r} must be None, an nn.Module or a "
                            "callable returning one.")

    def _channels_last(self):
        return self.memory_format == "channels_last"

    def _to_device(self, batch):
        x = to_image_tensor(batch).to(self.device)
        if self._channels_last():
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # ---------------------------------------------------------------- fitting
    def _validate_pool(self, X):
        X = check_images(X, ndims=(3, 4))
        if is_dataset(X):
            X = check_images(materialize(X), ndims=(3, 4))
        n = pool_length(X)
        if n < 2:
            raise SkalValueError(f"SimCLR needs at least 2 images to contrast; got {n}.")
        return X

    def fit(self, X, y=None):
        """Pre-train the encoder on the images ``X`` (labels, if given, are ignored).

        Parameters
        ----------
        X : array-like (n, H, W) or (n, C, H, W), memmap, or torch Dataset
            Unlabelled images; uint8 is scaled by 1/255, float used as given. Arrays
            and memmaps are read batch by batch; a torch Dataset is read into memory
            once.
        y : ignored
        """
        widths, augmenter = self._check_params()
        X = self._validate_pool(X)
        n = len(X)
        sample = to_image_tensor(X[:2])
        in_channels, image_shape = int(sample.shape[1]), tuple(sample.shape[1:])
        seed = resolve_seed(self.random_state)
        rng = np.random.default_rng(seed)
        gen = torch.Generator()
        gen.manual_seed(int(rng.integers(2**62)))
        with torch_seed(int(rng.integers(2**62)) if seed is not None else None):
            encoder, (architecture, arguments) = self._build_encoder(in_channels, widths)
            encoder.to(self.device)
            if self._channels_last():
                encoder.to(memory_format=torch.channels_last)
            encoder.eval()
            with torch.no_grad():
                n_features = int(encoder(self._to_device(sample)).flatten(1).shape[1])
            hidden = self.projection_hidden or n_features
            projection = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(inplace=True),
                                       nn.Linear(hidden, self.projection_dim)).to(self.device)
        params = list(encoder.parameters()) + list(projection.parameters())
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        batch = min(self.batch_size, n)
        steps_per_epoch = max(1, n // batch)            # full batches only (BatchNorm)
        total = steps_per_epoch * self.max_epochs
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
        losses = []
        encoder.train()
        projection.train()
        bar = tqdm(range(self.max_epochs), desc="SimCLR", unit="epoch",
                   disable=not self.progress, leave=False)
        for _ in bar:
            order = rng.permutation(n)
            epoch_loss = 0.0
            for step in range(steps_per_epoch):
                idx = np.sort(order[step * batch:(step + 1) * batch])
                x = self._to_device(X[idx])
                v1, v2 = augmenter(x, gen), augmenter(x, gen)
                z = projection(encoder(torch.cat([v1, v2])).flatten(1))
                loss = nt_xent_loss(z[:len(idx)], z[len(idx):], float(self.temperature))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                epoch_loss += float(loss.detach())
            losses.append(epoch_loss / steps_per_epoch)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        bar.close()
        encoder.eval()
        projection.eval()
        self.encoder_ = encoder
        self.projection_ = projection
        self.loss_curve_ = losses
        self.n_features_ = n_features
        self.in_channels_ = in_channels
        self.image_shape_ = image_shape
        self.scaling_ = "uint8/255" if np.asarray(X[:1]).dtype == np.uint8 else "none"
        self.encoder_architecture_ = (architecture, arguments)
        return self

    # -------------------------------------------------------------- inference
    def _check_fitted(self):
        if not hasattr(self, "encoder_"):
            raise NotFittedError("This SimCLR is not fitted yet; call fit(X) on the "
                                 "unlabelled images first.")

    def transform(self, X, batch_size=DEFAULT_BATCH_SIZE):
        """L2-normalised encoder features, float32 ``(n, n_features_)``."""
        self._check_fitted()
        X = check_images(X, ndims=(3, 4), check_values=False)
        parts = []
        self.encoder_.eval()
        for _, batch in iter_pool(X, batch_size):
            x = self._to_device(batch)
            if x.shape[1] != self.in_channels_:
                raise SkalValueError(
                    f"X has {x.shape[1]} channel(s) but SimCLR was fitted on "
                    f"{self.in_channels_}; pass images with the same channels.")
            with torch.no_grad():
                h = F.normalize(self.encoder_(x).flatten(1), dim=1)
            parts.append(h.cpu().numpy().astype(np.float32, copy=False))
        if not parts:
            return np.zeros((0, self.n_features_), np.float32)
        return np.concatenate(parts)

    def score(self, X, y=None):
        """Negative NT-Xent loss of one pass of random views over ``X`` (higher is
        better), with views drawn from ``random_state``."""
        self._check_fitted()
        _, augmenter = self._check_params()
        X = self._validate_pool(X)
        seed = resolve_seed(self.random_state)
        gen = torch.Generator()
        gen.manual_seed(0 if seed is None else seed)
        total, count = 0.0, 0
        batch = min(self.batch_size, len(X))
        for start, images in iter_pool(X, batch):
            if len(images) < 2:
                continue
            x = self._to_device(images)
            with torch.no_grad():
                z = self.projection_(self.encoder_(
                    torch.cat([augmenter(x, gen), augmenter(x, gen)])).flatten(1))
                loss = nt_xent_loss(z[:len(x)], z[len(x):], float(self.temperature))
            total += float(loss) * len(x)
            count += len(x)
        return -total / count

    def encoder_metadata(self):
        """What an encoder file records about this encoder."""
        self._check_fitted()
        return {"in_channels": self.in_channels_, "image_shape": list(self.image_shape_),
                "n_features": self.n_features_, "scaling": self.scaling_}

    def save(self, path):
        """Write the encoder to a safetensors file (with JSON metadata: architecture,
        in_channels, image shape, feature size, input scaling) that
        ``CNNClassifier(pretrained=path)`` accepts."""
        self._check_fitted()
        architecture, arguments = self.encoder_architecture_
        save_encoder(self.encoder_, path, architecture=architecture, arguments=arguments,
                     image_shape=self.image_shape_, in_channels=self.in_channels_,
                     n_features=self.n_features_, scaling=self.scaling_,
                     extra={"trained_by": "skal.pretrain.SimCLR",
                            "temperature": float(self.temperature),
                            "max_epochs": int(self.max_epochs)})
        return path
