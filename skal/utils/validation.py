"""Input validation shared by every estimator and learner.

Each check raises a :mod:`skal.exceptions` error that says what is wrong and how to fix
it, before any state is changed.
"""

import numbers
import warnings

import numpy as np
import torch
from scipy import sparse
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.multiclass import type_of_target
from torch.utils.data import Dataset

from ..exceptions import SkalTypeError, SkalValueError

__all__ = [
    "is_dataset",
    "pool_length",
    "check_images",
    "check_labels",
    "check_consistent_length",
    "check_n_instances",
    "to_image_tensor",
    "check_finite",
    "native_array",
]

_NUMERIC_KINDS = "biuf"


def is_dataset(X):
    """True if ``X`` is a torch ``Dataset`` (rather than an array-like)."""
    return isinstance(X, Dataset)


def pool_length(X):
    """Number of samples in a pool (array, memmap, tensor or torch ``Dataset``)."""
    try:
        return len(X)
    except TypeError as exc:
        raise SkalTypeError(
            f"A pool must be an array of images or a torch Dataset with a length; got "
            f"{type(X).__name__}."
        ) from exc


def check_finite(X, name="X"):
    """Raise if a float array contains NaN or infinity."""
    if isinstance(X, torch.Tensor):
        if X.is_floating_point() and not bool(torch.isfinite(X).all()):
            raise SkalValueError(
                f"{name} contains NaN or infinite values; clean or impute them before "
                "passing the images to skal."
            )
        return
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise SkalValueError(
            f"{name} contains NaN or infinite values; clean or impute them before passing "
            "the images to skal."
        )


def check_images(X, *, name="X", ndims=(3, 4), allow_dataset=True, check_values=True):
    """Validate an image array (or a torch Dataset) and return it without copying.

    Parameters
    ----------
    X : array-like, np.memmap, torch.Tensor or torch Dataset
        Images of shape ``(n, H, W)`` or ``(n, C, H, W)`` (and ``(n, n_features)`` where
        ``ndims`` allows 2). Array-likes (lists, pandas frames, objects with
        ``__array__``) are converted; numeric ``object`` arrays are converted to float64.
    name : str
        Name used in error messages.
    ndims : tuple of int
        Accepted numbers of dimensions.
    allow_dataset : bool
        Whether a torch ``Dataset`` is accepted (it is checked lazily, batch by batch).
    check_values : bool
        Scan float data for NaN / inf (a full pass; skip it for huge memmaps, which are
        checked batch by batch while they are scored).
    """
    if X is None:
        raise SkalValueError(f"{name} is None; pass an array of images.")
    if is_dataset(X):
        if not allow_dataset:
            raise SkalTypeError(f"{name} must be an array here, not a torch Dataset.")
        if pool_length(X) == 0:
            raise SkalValueError(f"{name} is empty; it must contain at least one image.")
        return X
    if sparse.issparse(X):
        raise SkalTypeError(
            f"{name} is a sparse {type(X).__name__}; sparse input is not supported. "
            "skal needs dense arrays: convert it with X.toarray()."
        )
    if not isinstance(X, (np.ndarray, torch.Tensor)):
        if isinstance(X, (str, bytes)) or not (hasattr(X, "__len__")
                                                or hasattr(X, "__array__")):
            raise SkalTypeError(
                f"{name} must be an array of images (numpy array, memmap, tensor) or a "
                f"torch Dataset; got {type(X).__name__}."
            )
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as exc:
            raise SkalValueError(
                f"{name} could not be converted to an array: {exc}. Pass images of one shape."
            ) from exc
    if (isinstance(X, np.ndarray) and X.dtype.kind == "c") or (
            isinstance(X, torch.Tensor) and X.is_complex()):
        raise SkalValueError(
            f"Complex data not supported: {name} has dtype {X.dtype}; pass real-valued "
            "images (e.g. the magnitude, abs(X))."
        )
    if isinstance(X, np.ndarray) and X.dtype.kind == "O":
        X = _object_to_float(X, name)
    dtype_kind = "f" if isinstance(X, torch.Tensor) and X.is_floating_point() else (
        "i" if isinstance(X, torch.Tensor) else X.dtype.kind)
    if dtype_kind not in _NUMERIC_KINDS:
        raise SkalTypeError(
            f"{name} has dtype {X.dtype}; images must be numeric (uint8, integer or float)."
        )
    if X.ndim not in ndims:
        shapes = " or ".join({3: "(n, H, W)", 4: "(n, C, H, W)", 2: "(n, n_features)"}[d] for d in ndims)
        raise SkalValueError(
            f"{name} has shape {tuple(X.shape)} ({X.ndim} dimensions); expected {shapes}. "
            "Reshape your data: a single image needs a leading batch axis, e.g. X[None]."
        )
    if X.shape[0] == 0:
        raise SkalValueError(
            f"{name} is empty: 0 sample(s) (shape={tuple(X.shape)}); it must contain at "
            "least one image."
        )
    if X.ndim >= 2 and 0 in tuple(X.shape[1:]):
        raise SkalValueError(
            f"{name} has 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
            "required: every image needs at least one pixel."
        )
    if check_values:
        check_finite(X, name)
    return X


def _object_to_float(X, name):
    """Numeric values stored in an ``object`` array, as float64."""
    try:
        return X.astype(np.float64)
    except TypeError as exc:
        raise SkalTypeError(
            f"{name} has dtype object with non-numeric entries ({exc}); images must be "
            "numeric."
        ) from exc
    except ValueError as exc:
        raise SkalValueError(
            f"{name} has dtype object with non-numeric entries ({exc}); images must be "
            "numeric."
        ) from exc


def check_labels(y, *, name="y", multilabel=False):
    """Validate labels: 1-d for single-label, 2-d multi-hot for multi-label.

    Single-label: a column vector ``(n, 1)`` is flattened with scikit-learn's
    ``DataConversionWarning``; continuous targets are rejected (``Unknown label type``).
    """
    if y is None:
        raise SkalValueError(
            f"{name} is None: this estimator requires y to be passed, but the target y is "
            "None. Pass one label per sample."
        )
    y = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
    if multilabel:
        if y.ndim != 2:
            kind = type_of_target(y) if y.ndim == 1 and len(y) else "unknown"
            if kind == "continuous":
                raise SkalValueError(
                    f"Unknown label type: continuous. {name} holds continuous values; "
                    "multi-label targets must be a 2-d multi-hot array (n_samples, n_labels)."
                )
            if kind == "multiclass":
                raise SkalValueError(
                    f"Only binary classification is supported. {name} is a 1-d multiclass "
                    "target, but a multi-label classifier predicts independent binary "
                    "labels from a 2-d multi-hot array (n_samples, n_labels). For "
                    "multi-class targets use CNNClassifier."
                )
            raise SkalValueError(
                f"{name} has shape {y.shape}; multi-label targets must be a 2-d multi-hot "
                "array of shape (n_samples, n_labels). For single-label (class) targets "
                "use CNNClassifier."
            )
        if y.dtype.kind == "O":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError):
                raise SkalValueError(
                    f"Unknown label type: {name} has dtype object with non-numeric "
                    "entries; multi-label targets must be multi-hot 0/1."
                ) from None
        if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
            raise SkalValueError(f"{name} must contain only 0 and 1 (multi-hot labels).")
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change "
            "the shape of y to (n_samples,), for example using ravel().",
            DataConversionWarning, stacklevel=3,
        )
        y = y[:, 0]
    if y.ndim != 1:
        raise SkalValueError(
            f"{name} has shape {y.shape}; single-label targets must be 1-d. For multi-label "
            "targets use MultiLabelCNNClassifier."
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise SkalValueError(f"{name} contains NaN or infinite labels.")
    if y.dtype.kind == "O":
        if any(v is None for v in y):
            raise SkalValueError(f"{name} contains missing labels (None).")
    if y.dtype.kind == "f" and len(y) and type_of_target(y) == "continuous":
        raise SkalValueError(
            f"Unknown label type: continuous. {name} holds continuous values (e.g. "
            f"{y[np.flatnonzero(y != np.round(y))[:3]].tolist()}); a classifier needs "
            "discrete class labels. For regression use a regressor."
        )
    return y


def check_consistent_length(X, y, names=("X", "y")):
    """Raise unless ``X`` and ``y`` have the same number of samples."""
    n_x, n_y = pool_length(X), len(y)
    if n_x != n_y:
        raise SkalValueError(
            f"{names[0]} has {n_x} samples but {names[1]} has {n_y}; they must match "
            "one label per image."
        )


def check_n_instances(n_instances, n_pool):
    """Validate a query size against the pool size and return it as an int."""
    if isinstance(n_instances, bool) or not isinstance(n_instances, numbers.Integral):
        raise SkalTypeError(f"n_instances must be an integer; got {n_instances!r}.")
    if n_pool == 0:
        raise SkalValueError("The pool is empty: there is nothing left to query.")
    if n_instances <= 0:
        raise SkalValueError(f"n_instances must be at least 1; got {n_instances}.")
    if n_instances > n_pool:
        raise SkalValueError(
            f"n_instances={n_instances} is larger than the pool ({n_pool} samples); ask "
            "for at most the pool size."
        )
    return int(n_instances)


def _torch_compatible(arr):
    """A C-contiguous array of a dtype torch can wrap: big-endian data in native byte
    order, and dtypes torch lacks (float128 / longdouble, unsigned > 8 bits on older
    torch) as float64 (then float32, like every other float input)."""
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        arr = arr.astype(np.float64)
    elif arr.dtype.kind == "u" and arr.dtype.itemsize > 1:
        arr = arr.astype(np.float64 if arr.dtype.itemsize > 2 else np.int32)
    return np.ascontiguousarray(arr)


def native_array(X):
    """``X`` as an array torch can wrap (see :func:`_torch_compatible`): numpy arrays
    in another byte order or of a dtype torch lacks are converted, anything else
    (tensors, Datasets, native arrays) is returned as is."""
    if isinstance(X, np.ndarray) and (not X.dtype.isnative or (
            X.dtype.kind == "f" and X.dtype.itemsize > 8) or (
            X.dtype.kind == "u" and X.dtype.itemsize > 1)):
        return _torch_compatible(X)
    return X


def to_image_tensor(batch, *, name="X"):
    """Convert one batch of images to a float32 ``(n, C, H, W)`` tensor.

    uint8 images are scaled by 1/255; other integer types are cast; float images are
    used as given. NaN / inf are rejected. ``(n, H, W)`` gains a channel axis, and
    tabular rows ``(n, n_features)`` become one-row images ``(n, 1, 1, n_features)``.
    """
    if isinstance(batch, torch.Tensor):
        t = batch
        if t.is_complex():
            raise SkalValueError(
                f"Complex data not supported: {name} has dtype {t.dtype}; pass "
                "real-valued images (e.g. the magnitude, abs(X)).")
    else:
        arr = np.asarray(batch)
        if arr.dtype.kind == "c":
            raise SkalValueError(
                f"Complex data not supported: {name} has dtype {arr.dtype}; pass "
                "real-valued images (e.g. the magnitude, abs(X)).")
        if arr.dtype.kind not in _NUMERIC_KINDS:
            raise SkalTypeError(f"{name} has dtype {arr.dtype}; images must be numeric.")
        arr = _torch_compatible(arr)
        if not arr.flags.writeable:
            # A read-only batch (e.g. a slice of an np.memmap opened with mode="r"):
            # copy this one batch so torch does not warn about non-writable memory.
            arr = arr.copy()
        t = torch.from_numpy(arr)
    if t.dtype == torch.uint8:
        t = t.to(torch.float32).div_(255.0)
    elif t.dtype != torch.float32:
        t = t.to(torch.float32)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.ndim == 2:
        t = t[:, None, None, :]
    elif t.ndim != 4:
        raise SkalValueError(
            f"{name} batch has shape {tuple(t.shape)}; expected (n, H, W), (n, C, H, W) "
            "or tabular (n, n_features)."
        )
    if not bool(torch.isfinite(t).all()):
        raise SkalValueError(
            f"{name} contains NaN or infinite values; clean or impute them before passing "
            "the images to skal."
        )
    return t
