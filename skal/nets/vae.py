"""``VAE``: a convolutional variational auto-encoder as a skorch / scikit-learn
estimator.

It is the generator of latent-space hard sampling (Mo et al., "Suggestive Labelling
for Medical Image Analysis by Adaptive Latent Space Sampling", MIDL 2020;
arXiv:2004.02757), see :class:`skal.query.LatentHardSampling`, and is useful on its
own as a transformer: ``transform`` maps images to latent means, ``inverse_transform``
decodes latent codes to images.
"""

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNet
from torch import nn

from ..data.pool import DEFAULT_BATCH_SIZE, is_dataset, iter_pool, materialize
from ..exceptions import NotFittedError, SkalTypeError, SkalValueError
from ..utils.seeding import resolve_seed, seeded_construction
from ..utils.validation import check_images, native_array, to_image_tensor
from .skorch_glue import SkorchNetMixin, declared_kwargs
from .training import check_training_params, rollback_on_error, run_training

__all__ = ["VAE", "ConvVAE", "ELBOLoss"]

_RECONSTRUCTIONS = ("bce", "mse")


class ConvVAE(nn.Module):
    """Convolutional VAE for images of any size (padded inside to a multiple of
    ``2 ** len(widths)``, cropped back on output).

    Encoder: per width a stride-2 ``conv4x4-BN-LeakyReLU``, then linear maps to the
    posterior mean ``mu`` and log-variance ``logvar``. Decoder: a linear map back to the
    last feature map, stride-2 transposed convolutions mirroring the encoder, and a
    final transposed convolution to ``in_channels`` logits.

    Parameters
    ----------
    in_channels : int
        Image channels.
    image_shape : tuple of int
        ``(H, W)`` of the images.
    latent_dim : int
        Size of the latent code ``z``.
    widths : sequence of int
        Channels of the encoder blocks (the decoder mirrors them); each block halves
        the (padded) resolution.

    Notes
    -----
    The module contract :class:`VAE` relies on (a custom module must follow it):
    ``forward(x) -> (logits, mu, logvar)`` with ``logits`` of the images' shape (the
    reconstruction is ``sigmoid(logits)``; ``z = mu`` in eval mode, a reparameterised
    sample in training mode), ``encode(x) -> (mu, logvar)`` and
    ``decode(z) -> logits``.
    """

    def __init__(self, in_channels=1, image_shape=(28, 28), latent_dim=16,
                 widths=(32, 64, 128)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise SkalValueError("widths must list at least one channel count.")
        height, width = (int(s) for s in image_shape)
        factor = 2 ** len(widths)
        self.image_shape = (height, width)
        self.padded_shape = (math.ceil(height / factor) * factor,
                             math.ceil(width / factor) * factor)
        self.bottom_shape = (self.padded_shape[0] // factor, self.padded_shape[1] // factor)
        encoder, channels = [], in_channels
        for w in widths:
            encoder += [nn.Conv2d(channels, w, 4, stride=2, padding=1, bias=False),
                        nn.BatchNorm2d(w), nn.LeakyReLU(0.2, inplace=True)]
            channels = w
        self.encoder = nn.Sequential(*encoder)
        flat = widths[-1] * self.bottom_shape[0] * self.bottom_shape[1]
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)
        self.fc_decode = nn.Linear(latent_dim, flat)
        decoder = []
        for w_in, w_out in zip(widths[::-1], widths[::-1][1:]):
            decoder += [nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1, bias=False),
                        nn.BatchNorm2d(w_out), nn.LeakyReLU(0.2, inplace=True)]
        decoder.append(nn.ConvTranspose2d(widths[0], in_channels, 4, stride=2, padding=1))
        self.decoder = nn.Sequential(*decoder)
        self.widths = widths

    def _pad_offsets(self):
        return ((self.padded_shape[0] - self.image_shape[0]) // 2,
                (self.padded_shape[1] - self.image_shape[1]) // 2)

    def encode(self, x):
        """Posterior parameters ``(mu, logvar)`` of images ``x`` ``(n, C, H, W)``."""
        top, left = self._pad_offsets()
        bottom = self.padded_shape[0] - self.image_shape[0] - top
        right = self.padded_shape[1] - self.image_shape[1] - left
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        h = self.encoder(x).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        """Reconstruction logits ``(n, C, H, W)`` of latent codes ``z``."""
        h = self.fc_decode(z).view(len(z), self.widths[-1], *self.bottom_shape)
        logits = self.decoder(h)
        top, left = self._pad_offsets()
        return logits[:, :, top:top + self.image_shape[0], left:left + self.image_shape[1]]

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu
        if self.training:
            # a fit sets noise_generator: the noise then never reads torch's global
            # generator (thread-safe seeding, see skal.utils.seeding)
            generator = getattr(self, "noise_generator", None)
            noise = (torch.randn_like(mu) if generator is None else
                     torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device))
            z = mu + noise * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


class ELBOLoss(nn.Module):
    """Negative evidence lower bound per image: reconstruction + ``beta`` * KL.

    Both terms are summed over pixels / latent dimensions and averaged over the
    batch, so the value is in nats per image.

    Parameters
    ----------
    reconstruction : {"bce", "mse"}
        ``"bce"``: binary cross-entropy of the logits against images in [0, 1]
        (Bernoulli likelihood, the usual choice for [0, 1] images). ``"mse"``: squared
        error of ``sigmoid(logits)`` (a Gaussian likelihood up to scale).
    beta : float
        Weight of the KL term (``beta``-VAE; 1 is the plain ELBO).
    """

    def __init__(self, reconstruction="bce", beta=1.0):
        super().__init__()
        self.reconstruction = reconstruction
        self.beta = beta

    def per_sample(self, y_pred, x):
        """Loss of each image, shape ``(n,)``."""
        logits, mu, logvar = y_pred
        if self.reconstruction == "bce":
            recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            recon = (torch.sigmoid(logits) - x) ** 2
        recon = recon.flatten(1).sum(1)
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
        return recon + self.beta * kl

    def forward(self, y_pred, x):
        return self.per_sample(y_pred, x).mean()


class VAE(SkorchNetMixin, NeuralNet):
    """Convolutional variational auto-encoder (Kingma & Welling, ICLR 2014) as a
    skorch ``NeuralNet`` with scikit-learn's transformer interface.

    ``fit(X)`` is unsupervised: it minimises the negative ELBO, a reconstruction term
    plus ``beta`` times the KL divergence of the posterior ``q(z|x)`` from ``N(0, I)``.
    It is the generator of :class:`skal.query.LatentHardSampling` (Mo et al., MIDL
    2020, "Suggestive Labelling for Medical Image Analysis by Adaptive Latent Space
    Sampling"), which fits it on the unlabelled pool.

    Images are ``(n, H, W)`` or ``(n, C, H, W)``: uint8 is scaled by 1/255 (as skal's
    classifiers do), float must already lie in [0, 1]. Any image size works: the
    default module pads to a multiple of ``2 ** len(widths)`` inside and crops back.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=ConvVAE
        The network; ``in_channels``, ``image_shape`` and ``latent_dim`` are passed to a
        module class whose constructor declares them. Set other module arguments with
        ``module__<name>`` (e.g. ``module__widths=(16, 32)``). See :class:`ConvVAE` for
        the module contract.
    latent_dim : int, default=16
        Size of the latent code.
    beta : float, default=1.0
        Weight of the KL term.
    reconstruction : {"bce", "mse"}, default="bce"
        Reconstruction term of the ELBO (see :class:`ELBOLoss`).
    criterion : default=ELBOLoss
        Built with ``reconstruction`` and ``beta``.
    optimizer : default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=30
    batch_size : int, default=64
    train_split : default=None
        No validation split (pass a skorch ``ValidSplit`` to monitor one).
    random_state : int, RandomState or None
        Seeds initialisation, shuffling and the reparameterisation noise, so one seed
        gives one model; also the default seed of :meth:`sample`.
    predict_batch_size : int, default=256
        Batch size of :meth:`transform`, :meth:`inverse_transform` and :meth:`score`.
    **kwargs
        Any other skorch parameter (``callbacks``, ``device``, ...).

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted network.
    n_channels_in_ : int
        Image channels seen in ``fit``.
    image_shape_ : tuple of int
        ``(H, W)`` seen in ``fit``.
    history_ : skorch History
        Per-epoch ``train_loss`` (negative ELBO per image, in nats).

    Examples
    --------
    >>> from skal.data import load_digits_images
    >>> from skal.nets import VAE
    >>> X, _ = load_digits_images()
    >>> vae = VAE(latent_dim=8, max_epochs=5, random_state=0).fit(X[:200])
    >>> vae.transform(X[:3]).shape
    (3, 8)
    >>> vae.inverse_transform(vae.transform(X[:3])).shape
    (3, 1, 8, 8)
    """

    def __init__(self, module=ConvVAE, *args, latent_dim=16, beta=1.0,
                 reconstruction="bce", criterion=ELBOLoss, optimizer=torch.optim.Adam,
                 lr=1e-3, max_epochs=30, batch_size=64, train_split=None, verbose=0,
                 random_state=None, predict_batch_size=256, **kwargs):
        self._init_net(locals())    # skorch's parameters to skorch, skal's stored

    # ----------------------------------------------------------------- set-up
    def initialize_module(self):
        """Instantiate the module, adding inferred ``in_channels`` / ``image_shape``
        and ``latent_dim`` when its constructor declares them."""
        kwargs = self.get_params_for("module")
        inferred = {"in_channels": getattr(self, "n_channels_in_", None),
                    "image_shape": getattr(self, "image_shape_", None),
                    "latent_dim": self.latent_dim}
        kwargs = {**declared_kwargs(self.module, inferred, kwargs), **kwargs}
        self.module_ = self.initialized_instance(self.module, kwargs)
        return self

    def initialize_criterion(self):
        """Instantiate the criterion with ``reconstruction`` and ``beta``."""
        kwargs = self.get_params_for("criterion")
        own = {"reconstruction": self.reconstruction, "beta": self.beta}
        kwargs = {**declared_kwargs(self.criterion, own, kwargs), **kwargs}
        self.criterion_ = self.initialized_instance(self.criterion, kwargs)
        return self

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Negative ELBO of the batch: the target is the input ``X`` itself."""
        return self.criterion_(y_pred, to_image_tensor(X).to(self.device))

    # ---------------------------------------------------------------- fitting
    def _check_params(self):
        if self.reconstruction not in _RECONSTRUCTIONS:
            raise SkalValueError(
                f"reconstruction must be one of {_RECONSTRUCTIONS}; got "
                f"{self.reconstruction!r}."
            )
        if (isinstance(self.latent_dim, bool) or not isinstance(self.latent_dim, numbers.Integral)
                or self.latent_dim < 1):
            raise SkalValueError(f"latent_dim must be a positive integer; got {self.latent_dim!r}.")
        if not isinstance(self.beta, numbers.Real) or not np.isfinite(self.beta) or self.beta < 0:
            raise SkalValueError(f"beta must be a non-negative number; got {self.beta!r}.")

    def fit(self, X, y=None, **fit_params):
        """Train the VAE on images ``X`` (unsupervised; ``y`` is ignored).

        Parameters
        ----------
        X : array-like of shape (n, H, W) or (n, C, H, W), or a torch Dataset
            uint8 images (scaled by 1/255) or float images in [0, 1]. A Dataset is read
            into memory once.
        y : ignored
        **fit_params
            Passed to skorch's ``fit`` (e.g. ``epochs``).
        """
        with rollback_on_error(self):
            return self._fit(X, fit_params)

    def _fit(self, X, fit_params):
        """:meth:`fit` without its rollback; seeded with explicit generators."""
        self._check_params()
        check_training_params(self)
        X = check_images(X)
        if is_dataset(X):
            X = materialize(X)
            check_images(X)
        if len(X) < 2:
            raise SkalValueError("X has 1 image; a VAE needs at least 2 to train.")
        _check_unit_range(X)
        X = native_array(X)
        self.n_channels_in_ = 1 if X.ndim == 3 else int(X.shape[1])
        self.image_shape_ = tuple(int(s) for s in X.shape[-2:])
        seed = resolve_seed(self.random_state)
        if not (self.warm_start and self.initialized_):
            with seeded_construction(seed):
                self.initialize()
        with self._fit_generator(seed) as generator:
            self.module_.noise_generator = generator    # the reparameterisation noise
            try:
                run_training(self, X, None, **fit_params)
            finally:
                vars(self.module_).pop("noise_generator", None)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X).transform(X)``."""
        return self.fit(X, y, **fit_params).transform(X)

    # ------------------------------------------------------------- inference
    def __sklearn_is_fitted__(self):
        return bool(getattr(self, "initialized_", False) and hasattr(self, "image_shape_"))

    def _check_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(X) first."
            )

    def _check_X(self, X, name="X"):
        X = check_images(X, name=name, check_values=False)
        if not is_dataset(X):
            channels = 1 if X.ndim == 3 else int(X.shape[1])
            shape = tuple(int(s) for s in X.shape[-2:])
            if channels != self.n_channels_in_ or shape != self.image_shape_:
                raise SkalValueError(
                    f"{name} has images of {channels} channel(s) x {shape} but the VAE was "
                    f"fitted on {self.n_channels_in_} x {self.image_shape_}; pass images of "
                    "the fitted shape."
                )
        return X

    def _stream(self, X, fn):
        """Apply ``fn`` (tensor batch -> tuple of tensors) batch by batch, in eval mode
        without gradients, and concatenate the outputs as float32 numpy arrays."""
        self.module_.eval()
        parts = None
        with torch.no_grad():
            for _, batch in iter_pool(X, self.predict_batch_size or DEFAULT_BATCH_SIZE):
                outputs = fn(batch)
                outputs = [o.detach().cpu().numpy().astype(np.float32, copy=False)
                           for o in outputs]
                parts = [[o] for o in outputs] if parts is None else [
                    p + [o] for p, o in zip(parts, outputs)]
        return tuple(np.concatenate(p) for p in parts)

    def _images(self, batch):
        return to_image_tensor(batch).to(self.device)

    def transform(self, X, return_logvar=False):
        """Latent means ``mu = E[z | x]`` of images ``X``, streamed in batches.

        Parameters
        ----------
        X : array-like of shape (n, H, W) or (n, C, H, W), np.memmap or torch Dataset
            Images of the fitted shape.
        return_logvar : bool, default=False
            Also return the posterior log-variances.

        Returns
        -------
        mu : ndarray of shape (n, latent_dim), float32
        logvar : ndarray of shape (n, latent_dim), float32
            Only with ``return_logvar=True``.
        """
        self._check_fitted()
        X = self._check_X(X)
        mu, logvar = self._stream(X, lambda b: self.module_.encode(self._images(b)))
        return (mu, logvar) if return_logvar else mu

    def decode(self, z):
        """Decode a torch tensor of latent codes into images in [0, 1], differentiably.

        This is the generator ``G`` that gradient-based latent search moves through.
        The module's current mode is kept (call ``module_.eval()`` for inference).

        Parameters
        ----------
        z : torch.Tensor of shape (n, latent_dim)

        Returns
        -------
        images : torch.Tensor of shape (n, C, H, W)
        """
        self._check_fitted()
        return torch.sigmoid(self.module_.decode(z))

    def _check_latents(self, Z):
        if isinstance(Z, torch.Tensor):
            Z = Z.detach().cpu().numpy()
        try:
            Z = np.asarray(Z, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise SkalTypeError(f"Z must be a numeric array of latent codes: {exc}") from exc
        if Z.ndim != 2 or Z.shape[1] != self.latent_dim or len(Z) == 0:
            raise SkalValueError(
                f"Z has shape {Z.shape}; expected (n, {self.latent_dim}) latent codes "
                "with n >= 1."
            )
        if not np.isfinite(Z).all():
            raise SkalValueError("Z contains NaN or infinite values.")
        return Z

    def inverse_transform(self, Z):
        """Decode latent codes into images.

        Parameters
        ----------
        Z : array-like of shape (n, latent_dim)

        Returns
        -------
        X : ndarray of shape (n, C, H, W), float32 in [0, 1]
        """
        self._check_fitted()
        Z = self._check_latents(Z)
        (X,) = self._stream(Z, lambda b: (self.decode(torch.from_numpy(b).to(self.device)),))
        return X

    def sample(self, n_samples=1, random_state=None):
        """Draw ``z ~ N(0, I)`` and decode it: new images from the generative model.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState or None
            Seed of the draw; ``None`` uses the estimator's ``random_state`` (so a
            seeded VAE samples the same images on every call; a ``None`` one draws
            fresh ones).

        Returns
        -------
        X : ndarray of shape (n_samples, C, H, W), float32 in [0, 1]
        """
        self._check_fitted()
        if (isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral)
                or n_samples < 1):
            raise SkalValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        seed = resolve_seed(self.random_state if random_state is None else random_state)
        z = np.random.default_rng(seed).standard_normal((int(n_samples), self.latent_dim))
        return self.inverse_transform(z.astype(np.float32))

    def score(self, X, y=None):
        """Mean ELBO per image (the negative loss, with ``z = mu``): higher is better,
        so scikit-learn's model selection can tune the VAE.

        Parameters
        ----------
        X : images of the fitted shape
        y : ignored

        Returns
        -------
        score : float
        """
        self._check_fitted()
        X = self._check_X(X)
        _check_unit_range(X)

        def batch_loss(batch):
            x = self._images(batch)
            return (self.criterion_.per_sample(self.module_(x), x),)

        (losses,) = self._stream(X, batch_loss)
        return -float(np.mean(losses, dtype=np.float64))


def _check_unit_range(X):
    """Images other than uint8 must lie in [0, 1] (the decoder's output range)."""
    if is_dataset(X):
        return
    if isinstance(X, torch.Tensor):
        if X.dtype == torch.uint8:
            return
        low, high = float(X.min()), float(X.max())
    else:
        if X.dtype == np.uint8:
            return
        low, high = float(np.min(X)), float(np.max(X))
    if low < 0.0 or high > 1.0:
        raise SkalValueError(
            f"Non-uint8 images for the VAE must lie in [0, 1]; got values in [{low:.4g}, "
            f"{high:.4g}]. Rescale them (e.g. (X - X.min()) / (X.max() - X.min())) or "
            "pass uint8 images."
        )
