"""Pools of images: numpy arrays, ``np.memmap`` files and torch ``Dataset`` objects.

Every place in skal that walks over a pool (prediction, scoring, embedding) goes
through :func:`iter_pool`, which hands out one batch at a time: contiguous slices of
an array or memmap (so only the batch is read from disk), or collated batches of a
torch ``Dataset`` (so lazy datasets such as a DICOM folder are read on access). The
pool is never materialised as one float tensor.

Dataset contract: ``len(dataset)`` is the pool size and ``dataset[i]`` returns an
image (array or tensor, ``(H, W)`` or ``(C, H, W)``) or a tuple whose first item is
the image (as a labelled ``(x, y)`` dataset does).
"""

import numbers

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset, default_collate

from ..exceptions import SkalTypeError, SkalValueError
from ..utils.validation import is_dataset, pool_length

__all__ = ["is_dataset", "pool_length", "iter_pool", "take", "materialize", "DEFAULT_BATCH_SIZE"]

DEFAULT_BATCH_SIZE = 256


def _first_item(batch):
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        raise SkalTypeError(
            "Dataset items must be an image or an (image, label) tuple, not a dict."
        )
    return batch


def _collate(items):
    """``default_collate``, with a skal error for items that cannot form a batch
    (images of different shapes, ``None``, strings)."""
    try:
        return default_collate(items)
    except (RuntimeError, TypeError, ValueError) as exc:
        kinds = sorted({type(_first_item(item)).__name__ for item in items})
        shapes = sorted({tuple(getattr(_first_item(item), "shape", ())) for item in items})
        raise SkalValueError(
            f"The Dataset's items could not be stacked into a batch ({exc}); item types "
            f"{kinds}, shapes {shapes[:4]}. Every item must be an image (array or tensor "
            "(H, W) or (C, H, W)) of one shape, or an (image, label) tuple; resize the "
            "images to one size and drop missing (None) items."
        ) from exc


def iter_pool(X, batch_size=DEFAULT_BATCH_SIZE):
    """Yield ``(start, batch)`` pairs that cover the pool in order.

    Parameters
    ----------
    X : ndarray, np.memmap, torch.Tensor or torch.utils.data.Dataset
        The pool. Arrays are sliced (no copy of the pool); datasets are read through a
        ``DataLoader`` with ``shuffle=False``.
    batch_size : int
        Samples per batch.

    Yields
    ------
    start : int
        Index of the batch's first sample in the pool.
    batch : ndarray or torch.Tensor
        The batch, still in its stored dtype (uint8 stays uint8).
    """
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE
    if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
            or int(batch_size) < 1):
        raise SkalValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    batch_size = int(batch_size)
    if is_dataset(X):
        loader = DataLoader(X, batch_size=batch_size, shuffle=False, num_workers=0,
                            collate_fn=_collate)
        start = 0
        for batch in loader:
            images = _first_item(batch)
            yield start, images
            start += len(images)
        return
    n = pool_length(X)
    for start in range(0, n, batch_size):
        yield start, X[start:start + batch_size]


def take(X, indices):
    """``X[indices]`` for arrays; a ``torch.utils.data.Subset`` for datasets."""
    indices = np.asarray(indices, dtype=np.intp)
    if is_dataset(X):
        return Subset(X, indices.tolist())
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(indices)]
    return X[indices]


def materialize(X, batch_size=DEFAULT_BATCH_SIZE):
    """Return the pool as one numpy array (for small sets such as labelled batches)."""
    if not is_dataset(X):
        if isinstance(X, torch.Tensor):
            return X.detach().cpu().numpy()
        return np.asarray(X)
    parts = []
    for _, batch in iter_pool(X, batch_size):
        parts.append(batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch))
    if not parts:
        raise SkalValueError("The dataset is empty.")
    return np.concatenate(parts)
