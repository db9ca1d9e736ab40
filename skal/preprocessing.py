"""Image-shaped preprocessing transformers for scikit-learn pipelines.

They take and return image arrays ``(n, H, W)`` / ``(n, C, H, W)`` (the scalers also
accept tabular ``(n, n_features)`` rows), so they chain in front of skal's classifiers
and :class:`skal.ActiveLearningClassifier`::

    Pipeline([("resize", ImageResizer((28, 28))), ("scale", ImageScaler()),
              ("al", ActiveLearningClassifier(CNNClassifier(), n_queries=5))])

Outputs are float32 (what skal's networks compute in), except :class:`ImageResizer`,
which keeps integer images integer (uint8 stays uint8, so the networks still scale it
by 1/255). Each transform materialises its output: for pools that do not fit in memory,
preprocess lazily in a torch ``Dataset`` instead.
"""

import numbers

import numpy as np
from scipy import ndimage
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .exceptions import SkalTypeError, SkalValueError
from .utils.validation import check_images

__all__ = ["ImageScaler", "ImageStandardizer", "ImageResizer"]


def _as_array(X, ndims, name="X"):
    X = check_images(X, name=name, ndims=ndims, allow_dataset=False)
    if not isinstance(X, np.ndarray):            # torch tensor
        X = X.detach().cpu().numpy()
    return X


def _spatial_axes(X):
    """Axes reduced for per-image statistics: everything but the sample axis (and the
    channel axis of ``(n, C, H, W)`` when per channel)."""
    return tuple(range(1, X.ndim))


def _channel_view(X):
    """``X`` as ``(n, C, rest)``: channels are axis 1 of 4-d images, one channel else."""
    if X.ndim == 4:
        return X.reshape(X.shape[0], X.shape[1], -1)
    return X.reshape(X.shape[0], 1, -1)


class _ImageTransformer(TransformerMixin, BaseEstimator):
    _ndims = (2, 3, 4)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _validate(self, X, reset):
        X = _as_array(X, self._ndims)
        if reset:
            self.n_channels_in_ = 1 if X.ndim != 4 else int(X.shape[1])
            self.input_ndim_ = X.ndim
            if X.ndim == 2:
                self.n_features_in_ = int(X.shape[1])
            else:
                self.__dict__.pop("n_features_in_", None)
            return X
        check_is_fitted(self)
        if X.ndim != self.input_ndim_:
            raise SkalValueError(
                f"X has {X.ndim} dimensions but {type(self).__name__} was fitted on "
                f"{self.input_ndim_}-d input."
            )
        if X.ndim == 2 and X.shape[1] != self.n_features_in_:
            raise SkalValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        channels = 1 if X.ndim != 4 else int(X.shape[1])
        if channels != self.n_channels_in_:
            raise SkalValueError(
                f"X has {channels} channel(s) but {type(self).__name__} was fitted on "
                f"{self.n_channels_in_}."
            )
        return X


class ImageScaler(_ImageTransformer):
    """Scale image intensities to [0, 1].

    Parameters
    ----------
    method : {"auto", "uint8", "minmax"}, default="auto"
        ``"uint8"``: divide by 255 (8-bit images). ``"minmax"``: subtract the minimum
        and divide by the range, learned on the training images (``per_image=False``)
        or taken from each image. ``"auto"``: ``"uint8"`` when ``fit`` sees uint8
        images, ``"minmax"`` otherwise.
    per_image : bool, default=False
        With ``"minmax"``, scale every image by its own minimum and range (useful when
        exposure differs between scanners) instead of the training set's.
    clip : bool, default=False
        Clip the output to [0, 1] (data-set min-max only; new images may fall outside
        the training range).

    Attributes
    ----------
    method_ : str
        The method used (``"uint8"`` or ``"minmax"``).
    data_min_, data_range_ : float
        Training-set minimum and range (data-set min-max only).
    """

    def __init__(self, method="auto", per_image=False, clip=False):
        self.method = method
        self.per_image = per_image
        self.clip = clip

    def fit(self, X, y=None):
        """Learn the intensity range (data-set min-max) or nothing."""
        if self.method not in ("auto", "uint8", "minmax"):
            raise SkalValueError(
                f"method must be 'auto', 'uint8' or 'minmax'; got {self.method!r}.")
        X = self._validate(X, reset=True)
        method = self.method
        if method == "auto":
            method = "uint8" if X.dtype == np.uint8 else "minmax"
        self.method_ = method
        if method == "minmax" and not self.per_image:
            low, high = float(np.min(X)), float(np.max(X))
            self.data_min_, self.data_range_ = low, (high - low) or 1.0
        return self

    def transform(self, X):
        """``X`` scaled to [0, 1], float32."""
        X = self._validate(X, reset=False)
        if self.method_ == "uint8":
            return X.astype(np.float32) / np.float32(255.0)
        Xf = X.astype(np.float32)
        if self.per_image:
            axes = _spatial_axes(Xf)
            low = Xf.min(axis=axes, keepdims=True)
            span = Xf.max(axis=axes, keepdims=True) - low
            return (Xf - low) / np.where(span > 0, span, 1).astype(np.float32)
        out = (Xf - np.float32(self.data_min_)) / np.float32(self.data_range_)
        return np.clip(out, 0, 1, out=out) if self.clip else out


class ImageStandardizer(_ImageTransformer):
    """Standardise intensities to zero mean and unit variance.

    Parameters
    ----------
    per_image : bool, default=False
        ``False``: one mean and standard deviation per channel, learned on the training
        images (the usual data-set normalisation). ``True``: each image by its own
        per-channel statistics (stateless).
    eps : float, default=1e-7
        Added to the standard deviation (constant images map to zero).

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_channels,)
        Per-channel training mean and standard deviation (data-set mode only). Tabular
        ``(n, n_features)`` input is one channel: one mean and scale for all features.
    """

    def __init__(self, per_image=False, eps=1e-7):
        self.per_image = per_image
        self.eps = eps

    def fit(self, X, y=None):
        """Learn the per-channel mean and standard deviation (data-set mode)."""
        if not isinstance(self.eps, numbers.Real) or self.eps < 0:
            raise SkalValueError(f"eps must be a non-negative number; got {self.eps!r}.")
        X = self._validate(X, reset=True)
        if not self.per_image:
            channels = _channel_view(X)
            self.mean_ = np.array([channels[:, c].mean(dtype=np.float64)
                                   for c in range(channels.shape[1])])
            self.scale_ = np.array([channels[:, c].std(dtype=np.float64)
                                    for c in range(channels.shape[1])])
        return self

    def _shape_stats(self, stats, X):
        shape = (1, -1, 1, 1) if X.ndim == 4 else (1,) * X.ndim
        return stats.astype(np.float32).reshape(shape)

    def transform(self, X):
        """``(X - mean) / (std + eps)``, float32."""
        X = self._validate(X, reset=False)
        Xf = X.astype(np.float32)
        eps = np.float32(self.eps)
        if self.per_image:
            axes = tuple(range(2, Xf.ndim)) if Xf.ndim == 4 else _spatial_axes(Xf)
            mean = Xf.mean(axis=axes, keepdims=True)
            std = Xf.std(axis=axes, keepdims=True)
            return (Xf - mean) / (std + eps)
        return (Xf - self._shape_stats(self.mean_, Xf)) / (
            self._shape_stats(self.scale_, Xf) + eps)


class ImageResizer(_ImageTransformer):
    """Resize images to ``output_shape`` with :func:`scipy.ndimage.zoom`.

    Downsampling first smooths with a Gaussian of ``sigma = (1 / zoom - 1) / 2`` per
    axis (as ``skimage.transform.resize`` does), so fine patterns do not alias.

    Parameters
    ----------
    output_shape : (int, int)
        ``(H, W)`` of the output.
    order : int, default=1
        Spline order of the interpolation (0 nearest, 1 bilinear, 3 cubic).
    anti_aliasing : bool, default=True
        Gaussian pre-filter when downsampling.

    Notes
    -----
    Integer images keep their dtype (rounded and clipped to its range): uint8 stays
    uint8 and is still scaled by 1/255 by skal's networks. Float images come out as
    float32. Stateless: ``fit`` only checks the parameters and records the channels.
    """

    _ndims = (3, 4)

    def __init__(self, output_shape=(28, 28), order=1, anti_aliasing=True):
        self.output_shape = output_shape
        self.order = order
        self.anti_aliasing = anti_aliasing

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.transformer_tags.preserves_dtype = ["float32", "uint8"]
        return tags

    def _check_params(self):
        shape = self.output_shape
        if (not isinstance(shape, (tuple, list)) or len(shape) != 2
                or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                           and s >= 1 for s in shape)):
            raise SkalValueError(
                f"output_shape must be two positive integers (H, W); got {shape!r}.")
        if not isinstance(self.order, numbers.Integral) or not 0 <= self.order <= 5:
            raise SkalValueError(f"order must be an integer in [0, 5]; got {self.order!r}.")

    def fit(self, X, y=None):
        """Check the parameters and record the input layout."""
        self._check_params()
        self._validate(X, reset=True)
        return self

    def transform(self, X):
        """The resized images ``(n, [C,] H_out, W_out)``."""
        self._check_params()
        X = self._validate(X, reset=False)
        if X.dtype.kind == "b":
            raise SkalTypeError("Boolean images cannot be resized; convert them to uint8.")
        out_h, out_w = (int(s) for s in self.output_shape)
        in_h, in_w = X.shape[-2:]
        factors = (out_h / in_h, out_w / in_w)
        planes = X.reshape(-1, in_h, in_w)
        out = np.empty((len(planes), out_h, out_w), dtype=np.float32)
        sigma = [max(0.0, (1.0 / f - 1.0) / 2.0) for f in factors]
        smooth = self.anti_aliasing and max(sigma) > 0
        for i, plane in enumerate(planes):          # one 2-d image (channel) at a time
            plane = plane.astype(np.float32)
            if smooth:
                plane = ndimage.gaussian_filter(plane, sigma=sigma, mode="nearest")
            if factors == (1.0, 1.0):
                out[i] = plane
            else:
                out[i] = ndimage.zoom(plane, factors, order=self.order, mode="nearest",
                                      grid_mode=True)
        out = out.reshape(X.shape[:-2] + (out_h, out_w))
        if X.dtype.kind in "iu":
            info = np.iinfo(X.dtype)
            return np.clip(np.rint(out), info.min, info.max).astype(X.dtype)
        return out
