"""Image / label ``.npz`` files with optional patient identifiers.

For data sets laid out like the NIH ChestX-ray14 sample: ``images`` ``(N, H, W)`` (or
``(N, C, H, W)`` / ``(N, H, W, C)``), ``labels`` ``(N,)`` or multi-hot ``(N, L)``,
optionally ``patient_ids`` ``(N,)`` and ``label_names`` ``(L,)``. Opened with
``allow_pickle=False``: nothing in the file is unpickled.
"""

import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import DataFileError

__all__ = ["ImageLabelData", "load_image_npz", "read_npz_arrays", "MAX_NPZ_BYTES"]

#: Default bound on the inflated size of the arrays read from one ``.npz`` (4 GiB).
MAX_NPZ_BYTES = 4 << 30
# Arrays above _RATIO_FLOOR bytes that inflate more than _MAX_RATIO times are refused
# as decompression bombs (images compress a few times to a few tens of times; zeros
# compress a thousand times).
_MAX_RATIO = 200
_RATIO_FLOOR = 64 << 20
# What a damaged archive raises from zipfile, zlib and numpy's .npy reader.
_READ_ERRORS = (OSError, ValueError, zipfile.BadZipFile, zlib.error, struct.error, EOFError,
                NotImplementedError, RuntimeError, KeyError, SyntaxError, UnicodeDecodeError)


def _check_members(path, keys, max_bytes):
    """Check, from the zip directory and each ``.npy`` header and before anything is
    inflated, that the arrays ``keys`` fit in ``max_bytes``, are not a decompression
    bomb, need no pickle and hold the data their header declares."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = 0
            for key in keys:
                try:
                    info = archive.getinfo(f"{key}.npy")
                except KeyError:
                    continue
                total += info.file_size
                if total > max_bytes:
                    raise DataFileError(
                        f"{path}: the arrays inflate to more than max_bytes={max_bytes:,} "
                        f"bytes ({key!r} alone is {info.file_size:,}); raise max_bytes if "
                        "the file is genuine.")
                if (info.file_size > _RATIO_FLOOR
                        and info.file_size > _MAX_RATIO * max(info.compress_size, 1)):
                    raise DataFileError(
                        f"{path}: {key!r} inflates from {info.compress_size:,} to "
                        f"{info.file_size:,} bytes (more than {_MAX_RATIO}x): refused as "
                        "a decompression bomb.")
                with archive.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(fh)
                if dtype.hasobject:
                    raise DataFileError(
                        f"{path}: {key!r} is an object array, which would need pickle; "
                        "skal never unpickles files. Save numeric arrays.")
                declared = math.prod(shape) * dtype.itemsize
                if declared > info.file_size:
                    raise DataFileError(
                        f"{path}: the header of {key!r} declares {declared:,} bytes "
                        f"({shape}, {dtype}) but the archive stores {info.file_size:,}; "
                        "the file is truncated or corrupt.")
    except DataFileError:
        raise
    except _READ_ERRORS as exc:
        raise DataFileError(f"{path} is not a readable npz file: {exc}") from exc


def read_npz_arrays(path, required, optional=(), kind="npz", max_bytes=MAX_NPZ_BYTES):
    """Read named arrays from an ``.npz`` file without unpickling anything.

    Returns a dict with every ``required`` key and the ``optional`` keys present.
    Sizes are checked from the zip directory and the ``.npy`` headers before anything
    is inflated: at most ``max_bytes`` in all, and no decompression bomb.

    Raises
    ------
    DataFileError
        If the file is missing, is not an npz archive, lacks a required key, or an array
        cannot be read (say, an object array that would need pickle).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{kind} file not found: {path} (or not a regular file).")
    if zipfile.is_zipfile(path):
        _check_members(path, [k for k in list(required) + list(optional) if k], max_bytes)
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise DataFileError(f"{path} is not a readable npz file: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataFileError(f"{path} holds a single array, not a {kind} npz archive.")
    with archive:
        missing = [key for key in required if key not in archive.files]
        if missing:
            raise DataFileError(
                f"{path} is not a {kind} file: missing keys {missing} (found "
                f"{sorted(archive.files)})."
            )
        keys = list(required) + [k for k in optional if k and k in archive.files]
        try:
            return {key: archive[key] for key in keys}
        except _READ_ERRORS as exc:
            raise DataFileError(f"{path}: could not read the arrays: {exc}") from exc


@dataclass
class ImageLabelData:
    """Images, labels and (optionally) patient ids and label names of one file."""

    X: np.ndarray
    y: np.ndarray
    patient_ids: np.ndarray = None
    label_names: np.ndarray = None

    @property
    def multilabel(self):
        return self.y.ndim == 2 and self.y.shape[1] > 1


def load_image_npz(path, *, images_key="images", labels_key="labels",
                   patient_key="patient_ids", names_key="label_names"):
    """Load an image/label ``.npz`` file.

    Parameters
    ----------
    path : str or Path
    images_key, labels_key : str
        Required arrays.
    patient_key, names_key : str or None
        Optional arrays (``None`` skips them).

    Returns
    -------
    ImageLabelData

    Raises
    ------
    DataFileError
        If the file is missing or unreadable, lacks a required key, or its arrays
        disagree in length.
    """
    path = Path(path)
    arrays = read_npz_arrays(path, [images_key, labels_key], [patient_key, names_key],
                             kind="image/label")
    X, y = arrays[images_key], arrays[labels_key]
    patients = arrays.get(patient_key) if patient_key else None
    names = arrays.get(names_key) if names_key else None
    if X.ndim == 4 and X.shape[-1] in (1, 3) and X.shape[1] not in (1, 3):
        X = np.moveaxis(X, -1, 1)
    if X.ndim not in (3, 4):
        raise DataFileError(f"{path}: {images_key} has shape {X.shape}; expected images.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    for name, values in ((labels_key, y), (patient_key, patients)):
        if values is not None and len(values) != len(X):
            raise DataFileError(
                f"{path}: {name} has {len(values)} rows but {images_key} has {len(X)}."
            )
    y = y.astype(np.int64) if y.dtype.kind in "biu" else y
    return ImageLabelData(np.ascontiguousarray(X), y, patients, names)
