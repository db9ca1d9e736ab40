"""Lazy pools of DICOM files: a torch Dataset and a folder loader for the CLI."""

import numbers
import os
import threading
from collections import Counter, OrderedDict
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from ...exceptions import DataFileError, SkalTypeError, SkalValueError
from ..labels_csv import read_csv_rows
from .reader import READ_OPTIONS, _check_read_options, _check_size, read_dicom
from .transformer import DicomReader

__all__ = ["DicomDataset", "load_dicom_folder"]


def _check_read_kwargs(read_kwargs, where):
    unknown = sorted(set(read_kwargs) - set(READ_OPTIONS))
    if unknown:
        raise SkalTypeError(
            f"{where} got unknown read option(s) {', '.join(map(repr, unknown))}; valid "
            f"options are {', '.join(READ_OPTIONS)}."
        )
    if read_kwargs.get("frames") == "all":
        raise SkalValueError(
            f"{where} returns one (1, H, W) image per file; frames='all' is not available "
            "(use 'first', 'mean' or 'raise')."
        )


class DicomDataset(Dataset):
    """A torch ``Dataset`` of DICOM files, read on access with a bounded LRU cache.

    Use it as a lazy pool (``X_pool``) for skal's learners and strategies: only the
    images of the current batch are in memory, plus at most ``cache_size`` cached
    images, however large the pool. Each item goes through
    :func:`skal.data.read_dicom`.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        The DICOM files, in pool order.
    labels : array-like of shape (n,), optional
        One label per file. When given, items are ``(image, label)`` tuples (the
        image first, as the pool contract of :mod:`skal.data.pool` requires).
    size : int or (int, int), default=64
        Output ``(H, W)``; every item has this shape so batches can be stacked.
    cache_size : int, default=256
        Most images kept in memory (least recently used evicted first); ``0``
        disables the cache.
    **read_kwargs
        Other options of :func:`~skal.data.read_dicom`: ``window``, ``frames``
        (``"first"``, ``"mean"`` or ``"raise"``), ``scale``, ``max_pixels``,
        ``antialias``, ``force``.

    Attributes
    ----------
    paths : list of str
    labels : ndarray or None

    Notes
    -----
    A file that cannot be read raises :class:`~skal.data.DicomReadError` when its
    item is accessed. To drop bad files up front, read the folder with
    :class:`~skal.data.DicomReader` (``on_error="skip"``) or
    :func:`load_dicom_folder`. The dataset pickles without its cache and lock, so it
    works with ``DataLoader(num_workers > 0)`` (each worker has its own cache).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from skal.data import DicomDataset
    >>> ds = DicomDataset([get_testdata_file("CT_small.dcm")], labels=[1], size=32)
    >>> image, label = ds[0]
    >>> tuple(image.shape), image.dtype, int(label)
    ((1, 32, 32), torch.float32, 1)
    """

    def __init__(self, paths, labels=None, *, size=64, cache_size=256, **read_kwargs):
        if isinstance(paths, (str, bytes, os.PathLike)):
            raise SkalTypeError("paths must be a sequence of file paths, not a single path.")
        try:
            paths = [os.fspath(p) for p in paths]
        except TypeError as exc:
            raise SkalTypeError(
                f"paths must be a sequence of str or os.PathLike; ({exc})."
            ) from exc
        if not paths:
            raise SkalValueError("paths is empty; a DicomDataset needs at least one file.")
        if size is None:
            raise SkalValueError(
                "DicomDataset needs a fixed size (int or (H, W)) so that batches of images "
                "can be stacked; got size=None."
            )
        if (not isinstance(cache_size, numbers.Integral) or isinstance(cache_size, bool)
                or cache_size < 0):
            raise SkalValueError(f"cache_size must be a non-negative integer; got {cache_size!r}.")
        _check_read_kwargs(read_kwargs, "DicomDataset")
        self._options = _check_read_options(size=size, **read_kwargs)
        if labels is not None:
            if isinstance(labels, torch.Tensor):
                labels = labels.detach().cpu().numpy()
            labels = np.asarray(labels)
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim == 0 or len(labels) != len(paths):
                raise SkalValueError(
                    f"labels has {labels.size if labels.ndim == 0 else len(labels)} entries "
                    f"but there are {len(paths)} paths; give one label per file."
                )
        self.paths = paths
        self.labels = labels
        self.size = _check_size(size)
        self.cache_size = int(cache_size)
        self.read_kwargs = dict(read_kwargs)
        self._cache = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    # -- torch Dataset protocol ------------------------------------------------------

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, torch.Tensor) and index.ndim == 0:
            index = index.item()
        if not isinstance(index, numbers.Integral) or isinstance(index, bool):
            raise SkalTypeError(
                f"DicomDataset indices must be integers; got {type(index).__name__}. Use "
                "torch.utils.data.Subset or skal.data.take for several items."
            )
        n = len(self.paths)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} is out of range for a DicomDataset of {n} files")
        image = torch.from_numpy(self._image(i).copy()).unsqueeze(0)
        if self.labels is None:
            return image
        return image, self.labels[i]

    def _image(self, i):
        if self.cache_size:
            with self._lock:
                cached = self._cache.get(i)
                if cached is not None:
                    self._cache.move_to_end(i)
                    self._hits += 1
                    return cached
        image = read_dicom(self.paths[i], **self._options)
        with self._lock:
            self._misses += 1
            if self.cache_size:
                self._cache[i] = image
                self._cache.move_to_end(i)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return image

    # -- cache -----------------------------------------------------------------------

    def cache_info(self):
        """Cache statistics, as :func:`functools.lru_cache` reports them.

        Returns
        -------
        info : dict
            ``hits``, ``misses``, ``maxsize`` (``cache_size``) and ``currsize`` (images
            held now, never above ``maxsize``).
        """
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "maxsize": self.cache_size,
                "currsize": len(self._cache),
            }

    def cache_clear(self):
        """Empty the cache and reset its statistics."""
        with self._lock:
            self._cache.clear()
            self._hits = self._misses = 0

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        state["_hits"] = state["_misses"] = 0
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self):
        labelled = "labelled" if self.labels is not None else "unlabelled"
        return (
            f"{type(self).__name__}({len(self.paths)} files, {labelled}, size={self.size}, "
            f"cache_size={self.cache_size})"
        )

    # -- construction from a folder -------------------------------------------------

    @classmethod
    def from_folder(
        cls,
        folder,
        pattern="**/*.dcm",
        labels_csv=None,
        path_column="path",
        label_column="label",
        *,
        size=64,
        cache_size=256,
        **read_kwargs,
    ):
        """Build a pool from the files of a folder, with labels from an optional CSV.

        Parameters
        ----------
        folder : str or os.PathLike
            The folder to search.
        pattern : str, default="**/*.dcm"
            Glob pattern relative to ``folder`` (``**`` recurses). Matching is
            case-sensitive on most systems: use e.g. ``"**/*.[dD][cC][mM]"`` for
            mixed-case extensions. Files are sorted by relative path.
        labels_csv : str or os.PathLike, optional
            CSV file with a header row. Each file is looked up by its path relative
            to ``folder`` (``a/b.dcm``; ``./`` prefixes and backslashes are
            accepted), then by its bare file name only when that is unambiguous
            (unique among the folder's files and in the CSV, and its row is no other
            file's exact match); an ambiguous file is an error, never given another
            file's label. Every file found must have a row. Integer labels become an int64 array,
            other labels stay strings.
        path_column, label_column : str
            Column names of the file key and the label in ``labels_csv``.
        size, cache_size, **read_kwargs
            As in :class:`DicomDataset`.

        Returns
        -------
        dataset : DicomDataset

        Raises
        ------
        DataFileError
            Missing folder, no matching file, missing CSV or column, files without a
            row, conflicting or empty labels.
        """
        paths, labels = _collect_folder(folder, pattern, labels_csv, path_column, label_column)
        return cls(paths, labels, size=size, cache_size=cache_size, **read_kwargs)


# ---------------------------------------------------------------------------------
# Folder + labels CSV
# ---------------------------------------------------------------------------------


def _normalise_key(key):
    key = key.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return str(PurePosixPath(key)) if key else key


def _first_few(names, n=5):
    """``names`` for a message: the first ``n``, then "..." when there are more."""
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _read_labels_csv(labels_csv, path_column, label_column, folder):
    """Map normalised relative paths (and unique file names) to labels."""
    csv_path = Path(labels_csv)
    _, rows = read_csv_rows(csv_path, (path_column, label_column),
                            hint="Set path_column= and label_column=.")
    folder_abs = Path(folder).resolve()
    by_path, by_name, name_count = {}, {}, {}
    for line, row in enumerate(rows, start=2):
        raw_key = row.get(path_column)
        label = row.get(label_column)
        if raw_key is None or not raw_key.strip():
            raise DataFileError(f"Row {line} of '{csv_path}' has an empty {path_column!r} value.")
        if label is None or not label.strip():
            raise DataFileError(
                f"Row {line} of '{csv_path}' ({raw_key!r}) has an empty {label_column!r} value."
            )
        label = label.strip()
        key = _normalise_key(raw_key)
        if Path(key).is_absolute():
            try:
                key = Path(key).resolve().relative_to(folder_abs).as_posix()
            except ValueError:
                pass
        if key in by_path and by_path[key] != label:
            raise DataFileError(
                f"The labels CSV '{csv_path}' gives {key!r} two labels "
                f"({by_path[key]!r} and {label!r})."
            )
        by_path[key] = label
        name = PurePosixPath(key).name
        name_count[name] = name_count.get(name, 0) + 1
        by_name[name] = (key, label)
    unique_names = {n: entry for n, entry in by_name.items() if name_count[n] == 1}
    return by_path, unique_names


def _convert_labels(labels):
    try:
        return np.asarray([int(v) for v in labels], dtype=np.int64)
    except ValueError:
        return np.asarray(labels)


def _collect_folder(folder, pattern, labels_csv, path_column, label_column):
    """Sorted file paths under ``folder`` and their labels (or None)."""
    if not isinstance(pattern, str) or not pattern:
        raise SkalTypeError(f"pattern must be a non-empty glob string; got {pattern!r}.")
    root = Path(folder)
    if not root.is_dir():
        raise DataFileError(f"The DICOM folder '{root}' does not exist or is not a folder.")
    files = sorted(
        (p for p in root.glob(pattern) if p.is_file()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise DataFileError(f"No file under '{root}' matches the pattern {pattern!r}.")
    paths = [str(p) for p in files]
    if labels_csv is None:
        return paths, None
    by_path, by_name = _read_labels_csv(labels_csv, path_column, label_column, root)
    rels = [p.relative_to(root).as_posix() for p in files]
    # A file is matched by its bare name only when that is unambiguous: the name is
    # unique among the folder's files and in the CSV, and the CSV row is not already
    # the exact match of another file (a/IM1.dcm's row never labels b/IM1.dcm).
    folder_names = Counter(p.name for p in files)
    exact = {rel for rel in rels if rel in by_path}
    labels, missing, ambiguous = [], [], []
    for p, rel in zip(files, rels):
        entry = by_name.get(p.name)
        if rel in by_path:
            labels.append(by_path[rel])
        elif entry is not None and folder_names[p.name] == 1 and entry[0] not in exact:
            labels.append(entry[1])
        else:
            (ambiguous if folder_names[p.name] > 1 or entry is not None else missing).append(rel)
    if ambiguous:
        raise DataFileError(
            f"{len(ambiguous)} file(s) under '{root}' have no row with their relative path "
            f"in '{labels_csv}', and their file name is ambiguous (shared with another "
            f"file of the folder or with another file's row), so they are not matched by "
            f"name: {_first_few(ambiguous)}. Give every such file a row with its path relative to "
            f"'{root}' (column {path_column!r}), or narrow the pattern."
        )
    if missing:
        raise DataFileError(
            f"{len(missing)} of {len(files)} files under '{root}' have no row in "
            f"'{labels_csv}' (column {path_column!r}, by relative path or unique file name): "
            f"{_first_few(missing)}. Add rows for them or narrow the pattern."
        )
    return paths, _convert_labels(labels)


def load_dicom_folder(
    folder,
    labels_csv,
    size=64,
    on_error="skip",
    *,
    pattern="**/*.dcm",
    path_column="path",
    label_column="label",
    n_jobs=None,
    **read_kwargs,
):
    """Read a folder of DICOM files (and their labels) into memory.

    The eager counterpart of :meth:`DicomDataset.from_folder`, used by the command
    line (``skal simulate``): every file is read with :class:`DicomReader`.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder of DICOM files.
    labels_csv : str, os.PathLike or None
        CSV with ``path_column`` and ``label_column`` (see
        :meth:`DicomDataset.from_folder`); ``None`` returns ``y=None``.
    size : int or (int, int), default=64
        Output ``(H, W)``.
    on_error : {"skip", "raise", "nan"}, default="skip"
        What to do with unreadable files (see :class:`DicomReader`); skipped files
        are dropped from ``X``, ``y`` and ``paths`` alike.
    pattern, path_column, label_column
        As in :meth:`DicomDataset.from_folder`.
    n_jobs : int or None
        Parallel reads with joblib.
    **read_kwargs
        Other options of :func:`~skal.data.read_dicom`.

    Returns
    -------
    X : ndarray of float32, shape (n, 1, H, W)
    y : ndarray of shape (n,) or None
    paths : list of str
        The files of the rows of ``X``.

    Raises
    ------
    DataFileError
        As :meth:`DicomDataset.from_folder`.
    DicomReadError
        With ``on_error="raise"``, for the first unreadable file.
    """
    if size is None:
        raise SkalValueError("load_dicom_folder needs a size (int or (H, W)); got None.")
    _check_read_kwargs(read_kwargs, "load_dicom_folder")
    paths, labels = _collect_folder(folder, pattern, labels_csv, path_column, label_column)
    reader = DicomReader(size=size, on_error=on_error, n_jobs=n_jobs, **read_kwargs)
    X = reader.fit_transform(paths)
    kept = reader.kept_indices_
    y = None if labels is None else labels[kept]
    return X, y, [paths[i] for i in kept]
