"""A scikit-learn transformer that turns DICOM paths into an image array."""

import numbers
import os
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin

from ...exceptions import SkalTypeError, SkalValueError
from .errors import DicomReadError
from .reader import DEFAULT_MAX_PIXELS, _check_read_options, read_dicom

__all__ = ["DicomReader"]

_ON_ERROR = ("raise", "skip", "nan")


def _read_one(path, options):
    """Worker: ``(image, None)`` on success, ``(None, reason)`` on a DicomReadError."""
    try:
        return read_dicom(path, **options), None
    except DicomReadError as exc:
        return None, exc.reason


def _as_path_list(X):
    """Validate the input of transform: a 1-d sequence of paths."""
    if isinstance(X, (str, bytes, os.PathLike)):
        raise SkalTypeError(
            "DicomReader expects a sequence of paths, not a single path; wrap it in a "
            "list: [path]."
        )
    if hasattr(X, "to_numpy"):  # pandas Series / DataFrame
        X = X.to_numpy()
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise SkalValueError(
                f"DicomReader expects a 1-d sequence of paths; got an array of shape {X.shape}."
            )
        X = X.tolist()
    try:
        paths = list(X)
    except TypeError as exc:
        raise SkalTypeError(
            f"DicomReader expects a sequence of paths; got {type(X).__name__}."
        ) from exc
    for i, p in enumerate(paths):
        if isinstance(p, (list, tuple, np.ndarray)) and len(p) == 1:
            paths[i] = p = p[0]
        if not isinstance(p, (str, os.PathLike)):
            raise SkalTypeError(
                f"DicomReader expects paths (str or os.PathLike); item {i} is "
                f"{type(p).__name__}."
            )
    return paths


class DicomReader(TransformerMixin, BaseEstimator):
    """Read DICOM files into a ``(n, 1, H, W)`` float32 array, inside a Pipeline.

    A stateless scikit-learn transformer: ``fit`` only validates the parameters.
    Each file goes through :func:`skal.data.read_dicom` (Modality LUT, VOI LUT or
    window, MONOCHROME1 inversion, colour to grey, multi-frame policy, resize,
    scaling to [0, 1]).

    Parameters
    ----------
    size : None, int or (int, int), default=None
        Output ``(H, W)``. Needed whenever the files do not all share one size
        (and with ``on_error="nan"``, so that failed rows have a shape).
    window : None, False or (float, float), default=None
        See :func:`~skal.data.read_dicom`.
    frames : {"first", "mean", "raise"}, default="first"
        Multi-frame policy (``"all"`` is not available here: one image per file).
    scale : bool, default=True
        Min-max scale each image to [0, 1].
    max_pixels : int, default=2**28
        Refuse headers with more values than this before decoding.
    antialias : bool, default=True
        Gaussian prefilter before downsampling.
    force : bool, default=True
        Read files without preamble / file meta (ACR-NEMA style).
    on_error : {"raise", "skip", "nan"}, default="raise"
        What to do with a file that cannot be read: raise its
        :class:`~skal.data.DicomReadError`, drop it from the output, or output an
        all-NaN image in its row. Failures are recorded in ``errors_``.
    n_jobs : int or None, default=None
        Files read in parallel with :mod:`joblib` (``None`` means 1 unless inside a
        :func:`joblib.parallel_config` context; ``-1`` uses all cores).

    Attributes
    ----------
    errors_ : list of (str, str)
        ``(path, reason)`` of each file that failed in the last ``transform``.
    kept_indices_ : ndarray of int
        Indices (into the last ``transform`` input) of the rows of the output:
        all of them except with ``on_error="skip"``.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from skal.data import DicomReader
    >>> paths = [get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")]
    >>> DicomReader(size=32).fit_transform(paths).shape
    (2, 1, 32, 32)
    """

    # read_dicom's options (the same defaults), then the transformer's own
    def __init__(self, size=None, *, window=None, frames="first", scale=True,
                 max_pixels=DEFAULT_MAX_PIXELS, antialias=True, force=True,
                 on_error="raise", n_jobs=None):
        self.size = size
        self.window = window
        self.frames = frames
        self.scale = scale
        self.max_pixels = max_pixels
        self.antialias = antialias
        self.force = force
        self.on_error = on_error
        self.n_jobs = n_jobs

    def _read_options(self):
        if self.frames == "all":
            raise SkalValueError(
                "DicomReader returns one image per file; frames='all' is not available "
                "here (use 'first', 'mean' or 'raise', or read_dicom directly)."
            )
        if not isinstance(self.on_error, str) or self.on_error not in _ON_ERROR:
            raise SkalValueError(
                f"on_error must be 'raise', 'skip' or 'nan'; got {self.on_error!r}."
            )
        if self.n_jobs is not None and (
            not isinstance(self.n_jobs, numbers.Integral) or isinstance(self.n_jobs, bool)
            or self.n_jobs == 0
        ):
            raise SkalValueError(f"n_jobs must be None or a non-zero integer; got {self.n_jobs!r}.")
        return _check_read_options(
            size=self.size, window=self.window, frames=self.frames, scale=self.scale,
            max_pixels=self.max_pixels, antialias=self.antialias, force=self.force,
        )

    def fit(self, X=None, y=None):
        """Validate the parameters; nothing is learned.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self : DicomReader
        """
        self._read_options()
        return self

    def transform(self, X):
        """Read the files.

        Parameters
        ----------
        X : sequence of str or os.PathLike
            Paths (a list, a 1-d array, an ``(n, 1)`` array or a pandas Series).

        Returns
        -------
        images : ndarray of float32, shape (n_kept, 1, H, W)
            One image per file (failed files dropped with ``on_error="skip"``, NaN
            with ``on_error="nan"``).

        Raises
        ------
        DicomReadError
            The first failing file (in input order) with ``on_error="raise"``.
        SkalValueError
            When images differ in size and ``size`` is None.
        """
        options = self._read_options()
        paths = _as_path_list(X)
        read_kwargs = dict(options)
        # Results arrive in input order; with on_error="raise" the first failure stops
        # the remaining reads.
        stream = Parallel(n_jobs=self.n_jobs, return_as="generator")(
            delayed(_read_one)(path, read_kwargs) for path in paths
        )
        results, errors = [], []
        self.errors_ = errors
        for path, (img, reason) in zip(paths, stream):
            results.append((img, reason))
            if img is None:
                errors.append((os.fspath(path), reason))
                if self.on_error == "raise":
                    with warnings.catch_warnings():  # joblib warns about cancelled tasks
                        warnings.simplefilter("ignore")
                        stream.close()
                    raise DicomReadError(reason, os.fspath(path))
        images = [img for img, _ in results]
        kept = [i for i, img in enumerate(images) if img is not None]
        shape = options["size"]
        shapes = {img.shape for img in images if img is not None}
        if shape is None:
            if len(shapes) > 1:
                examples = []
                seen = set()
                for p, img in zip(paths, images):
                    if img is not None and img.shape not in seen:
                        seen.add(img.shape)
                        examples.append(f"{os.fspath(p)}: {img.shape[0]}x{img.shape[1]}")
                raise SkalValueError(
                    "The images have different sizes (" + "; ".join(examples[:3]) + "); pass "
                    "size=(H, W) to resize them to one shape."
                )
            if not shapes:
                if paths:
                    raise SkalValueError(
                        f"None of the {len(paths)} files could be read and size=None, so the "
                        f"output shape is unknown; first error: {errors[0][0]}: {errors[0][1]}"
                    )
                raise SkalValueError("No paths given; pass at least one DICOM file.")
            shape = shapes.pop()
        if self.on_error == "skip":
            out = np.empty((len(kept), 1) + tuple(shape), dtype=np.float32)
            for row, i in enumerate(kept):
                out[row, 0] = images[i]
            self.kept_indices_ = np.asarray(kept, dtype=np.intp)
            return out
        out = np.full((len(paths), 1) + tuple(shape), np.nan, dtype=np.float32)
        for i in kept:
            out[i, 0] = images[i]
        self.kept_indices_ = np.arange(len(paths), dtype=np.intp)
        return out

    def __sklearn_is_fitted__(self):
        # Stateless: usable without fit (as FunctionTransformer).
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags
