"""MedMNIST npz files (Yang et al., "MedMNIST v2", Scientific Data 2023).

A MedMNIST file holds ``train_images, train_labels, val_images, val_labels,
test_images, test_labels``; images are uint8 ``(N, H, W)`` (grey) or ``(N, H, W, 3)``
(colour), labels ``(N, 1)`` (single label) or ``(N, L)`` (multi-label, e.g. ChestMNIST).
The file is opened with ``allow_pickle=False``: nothing in it is unpickled.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import DataFileError
from .npz import read_npz_arrays

__all__ = ["load_medmnist", "MedMNISTData"]

_SPLITS = ("train", "val", "test")


@dataclass
class MedMNISTData:
    """The three splits of a MedMNIST file.

    Images are uint8 ``(N, H, W)`` or ``(N, 3, H, W)`` (colour moved channel-first);
    labels are 1-d for single-label tasks and ``(N, L)`` for multi-label tasks.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    multilabel: bool


def _labels(y, path, key):
    if y.ndim == 1:
        return y.astype(np.int64)
    if y.ndim != 2:
        raise DataFileError(f"{path}: {key} has shape {y.shape}; expected (N, 1) or (N, L).")
    return y[:, 0].astype(np.int64) if y.shape[1] == 1 else y.astype(np.int64)


def _images(X, path, key):
    if X.ndim == 4 and X.shape[-1] in (1, 3):
        X = np.moveaxis(X, -1, 1)
    if X.ndim not in (3, 4):
        raise DataFileError(f"{path}: {key} has shape {X.shape}; expected images.")
    return np.ascontiguousarray(X)


def load_medmnist(path):
    """Load a MedMNIST ``.npz`` file.

    Parameters
    ----------
    path : str or Path
        For example ``pneumoniamnist.npz``.

    Returns
    -------
    MedMNISTData

    Raises
    ------
    DataFileError
        If the file is missing, is not an npz archive, lacks one of the six keys, or
        has images and labels of different lengths.
    """
    path = Path(path)
    expected = [f"{split}_{kind}" for split in _SPLITS for kind in ("images", "labels")]
    arrays = read_npz_arrays(path, expected, kind="MedMNIST")
    parts = {}
    for split in _SPLITS:
        X = _images(arrays[f"{split}_images"], path, f"{split}_images")
        y = _labels(arrays[f"{split}_labels"], path, f"{split}_labels")
        if len(X) != len(y):
            raise DataFileError(
                f"{path}: {split}_images has {len(X)} rows but {split}_labels has {len(y)}."
            )
        parts[f"X_{split}"], parts[f"y_{split}"] = X, y
    return MedMNISTData(**parts, multilabel=parts["y_train"].ndim == 2)
