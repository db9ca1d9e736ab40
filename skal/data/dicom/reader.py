"""Read one DICOM file into a float32 image ready for a network.

:func:`read_dicom` turns a DICOM file (path, bytes, file-like object or an already
read :class:`pydicom.dataset.Dataset`) into a float32 image with the grey-level
pipeline of the DICOM standard applied in order:

1. decode the stored values (native, deflated and RLE transfer syntaxes natively;
   JPEG, JPEG-LS and JPEG 2000 when a decoder plugin is installed),
2. the Modality LUT or rescale slope/intercept (PS3.3 C.11.1),
3. the VOI LUT or window centre/width (PS3.3 C.11.2), or a user window,
4. MONOCHROME1 inversion, so that high values are bright for every file
   (Photometric Interpretation, PS3.3 C.7.6.3.1.2),
5. colour to grey (RGB luminance, luma of YBR, palette colour through its LUT),
6. the multi-frame policy, an anti-aliased resize and a min-max scale to [0, 1].

Every failure is a :class:`~skal.data.dicom.errors.DicomReadError` that names the
file and the cause. Absurd header sizes are refused before anything is decoded.
"""

import copy
import io
import logging
import numbers
import os
import threading
import warnings
from contextlib import contextmanager

import numpy as np
import pydicom
from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from scipy import ndimage

from ...exceptions import SkalTypeError, SkalValueError
from .errors import DicomReadError
from .guard import check_deflated, open_regular, read_bounded

__all__ = [
    "read_dicom",
    "DEFAULT_MAX_PIXELS",
    "FRAME_POLICIES",
    "JPEG_EXTRA_INSTALL",
]

#: Default limit on ``Rows x Columns x NumberOfFrames x SamplesPerPixel`` (268 million
#: values, 1 GiB as float32): larger headers are refused before decoding.
DEFAULT_MAX_PIXELS = 2**28

#: Accepted values of the ``frames`` option.
FRAME_POLICIES = ("first", "mean", "all", "raise")

#: The command that installs the optional JPEG-family decoders.
JPEG_EXTRA_INSTALL = 'pip install "skal[jpeg]"'

# Top-level elements that can hold an image (PS3.3 C.7.6.3 and C.7.6.24).
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Transfer syntaxes decoded by the plugins of the ``skal[jpeg]`` extra (pylibjpeg,
# pylibjpeg-libjpeg, pylibjpeg-openjpeg).
_JPEG_FAMILY = frozenset(
    list(dicom_uid.JPEGTransferSyntaxes)
    + list(dicom_uid.JPEGLSTransferSyntaxes)
    + list(dicom_uid.JPEG2000TransferSyntaxes)
)

# ITU-R BT.601 luma weights: the same as the Y of YBR_FULL (PS3.3 C.7.6.3.1.2).
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])

_VALID_BITS_ALLOCATED = (1, 8, 16, 32, 64)
_MAX_REASON_CHARS = 300


# ---------------------------------------------------------------------------------
# Silencing pydicom while it reads damaged files
# ---------------------------------------------------------------------------------

_quiet_state = threading.local()
_filter_lock = threading.Lock()
_filter_users = 0           # read_dicom calls in progress, in all threads


class _QuietPydicomFilter(logging.Filter):
    """Drop records of the ``pydicom`` logger while this thread is inside read_dicom.

    pydicom both warns and logs every oddity of a damaged file; the reader turns
    real failures into :class:`DicomReadError`, so the flood is noise. Records that
    other threads log meanwhile pass.
    """

    def filter(self, record):
        return not getattr(_quiet_state, "depth", 0)


_QUIET_FILTER = _QuietPydicomFilter()


@contextmanager
def _pydicom_filter():
    """The filter sits on the ``pydicom`` logger only while some read is in progress:
    installed by the first reader to enter, removed by the last to leave, so
    importing or using skal leaves the logger as it was."""
    global _filter_users
    logger = logging.getLogger("pydicom")
    with _filter_lock:
        if _filter_users == 0:
            logger.addFilter(_QUIET_FILTER)
        _filter_users += 1
    try:
        yield
    finally:
        with _filter_lock:
            _filter_users -= 1
            if _filter_users == 0:
                logger.removeFilter(_QUIET_FILTER)


@contextmanager
def _quiet():
    """Silence pydicom's warnings and log records and numpy's floating-point warnings."""
    _quiet_state.depth = getattr(_quiet_state, "depth", 0) + 1
    try:
        with _pydicom_filter(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                yield
    finally:
        _quiet_state.depth -= 1


# ---------------------------------------------------------------------------------
# Option validation (shared with DicomReader and DicomDataset)
# ---------------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _check_size(size):
    """Return ``None`` or an ``(H, W)`` tuple of positive ints."""
    if size is None:
        return None
    if _is_int(size):
        size = (size, size)
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(s) for s in size):
        size = tuple(size)
    else:
        raise SkalTypeError(
            f"size must be None, an int or a (height, width) pair of ints; got {size!r}."
        )
    if size[0] < 1 or size[1] < 1:
        raise SkalValueError(f"size must be positive; got {size!r}.")
    return (int(size[0]), int(size[1]))


def _check_window(window):
    if window is None or window is False:
        return window
    if (
        isinstance(window, (tuple, list))
        and len(window) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in window)
    ):
        center, width = float(window[0]), float(window[1])
        if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
            raise SkalValueError(
                f"window=(center, width) needs a finite center and a positive width; "
                f"got {window!r}."
            )
        return (center, width)
    raise SkalTypeError(
        "window must be None (use the file's VOI LUT or window), False (no windowing) "
        f"or a (center, width) pair of numbers; got {window!r}."
    )


def _check_read_options(
    size=None, window=None, frames="first", scale=True, max_pixels=DEFAULT_MAX_PIXELS,
    antialias=True, force=True,
):
    """Validate the options of :func:`read_dicom` and return them normalised."""
    if not isinstance(frames, str) or frames not in FRAME_POLICIES:
        raise SkalValueError(
            f"frames must be one of {', '.join(repr(p) for p in FRAME_POLICIES)}; got {frames!r}."
        )
    if not _is_int(max_pixels) or max_pixels < 1:
        raise SkalValueError(f"max_pixels must be a positive integer; got {max_pixels!r}.")
    for name, value in (("scale", scale), ("antialias", antialias), ("force", force)):
        if not isinstance(value, (bool, np.bool_)):
            raise SkalTypeError(f"{name} must be True or False; got {value!r}.")
    return {
        "size": _check_size(size),
        "window": _check_window(window),
        "frames": frames,
        "scale": bool(scale),
        "max_pixels": int(max_pixels),
        "antialias": bool(antialias),
        "force": bool(force),
    }


#: Keyword options of :func:`read_dicom` besides ``path`` and ``size``.
READ_OPTIONS = ("window", "frames", "scale", "max_pixels", "antialias", "force")


# ---------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------


def _short(exc):
    """One-line description of an exception for an error message."""
    text = " ".join(str(exc).split())
    if len(text) > _MAX_REASON_CHARS:
        text = text[: _MAX_REASON_CHARS - 3] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _source_name(source):
    if isinstance(source, Dataset):
        return str(getattr(source, "filename", None) or "<pydicom Dataset>")
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        return str(name) if isinstance(name, (str, os.PathLike)) else "<file-like object>"
    raise SkalTypeError(
        "path must be a file path (str or os.PathLike), bytes, a binary file-like object "
        f"or a pydicom Dataset; got {type(source).__name__}."
    )


def _check_magic(head):
    if not head:
        raise DicomReadError("the file is empty (0 bytes)")
    if head[:2] == b"\x1f\x8b":
        raise DicomReadError(
            "the file is gzip-compressed, not a DICOM file; decompress it first (gunzip)"
        )


def _parse(fileobj, force):
    try:
        return pydicom.dcmread(fileobj, force=force)
    except InvalidDicomError as exc:
        raise DicomReadError(
            "no DICOM preamble/'DICM' marker; if this is an ACR-NEMA style file without "
            f"file meta, read it with force=True ({_short(exc)})"
        ) from exc
    except Exception as exc:  # pydicom raises OSError, ValueError, struct.error, ...
        raise DicomReadError(f"the file could not be parsed as DICOM ({_short(exc)})") from exc


def _load_dataset(source, force, max_pixels=DEFAULT_MAX_PIXELS):
    """Read ``source`` into a Dataset; the caller's Dataset is never modified. Only
    regular files are opened, bytes read are bounded and a deflated data set is
    checked against ``max_pixels`` before it is inflated (see :mod:`.guard`)."""
    if isinstance(source, Dataset):
        return copy.copy(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_magic(data[:4])
        fileobj = io.BytesIO(data)
        check_deflated(fileobj, max_pixels)
        return _parse(fileobj, force)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        fh = open_regular(path, max_pixels)
        with fh:
            try:
                head = fh.read(4)
                fh.seek(0)
            except OSError as exc:
                raise DicomReadError(f"the file could not be read ({_short(exc)})") from exc
            _check_magic(head)
            check_deflated(fh, max_pixels)
            return _parse(fh, force)
    # binary file-like object
    try:
        if hasattr(source, "seekable") and source.seekable():
            start = source.tell()
            head = source.read(4)
            source.seek(start)
            fileobj = source
        else:
            data = read_bounded(source, max_pixels)
            head = data[:4]
            fileobj = io.BytesIO(data)
    except Exception as exc:
        raise DicomReadError(f"the file-like object could not be read ({_short(exc)})") from exc
    if not isinstance(head, (bytes, bytearray)):
        raise SkalTypeError("file-like objects must be opened in binary mode ('rb').")
    _check_magic(head)
    check_deflated(fileobj, max_pixels)
    return _parse(fileobj, force)


def _int_attr(ds, keyword, *, default=None):
    """An integer attribute of the Image Pixel module, validated.

    Returns ``default`` when the element is absent or empty; raises DicomReadError
    when it has several values or is not an integer.
    """
    try:
        value = ds.get(keyword)
    except Exception as exc:
        raise DicomReadError(f"the {keyword} element is malformed ({_short(exc)})") from exc
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        if default is None:
            raise DicomReadError(f"the header has no {keyword} element, which an image needs")
        return default
    if isinstance(value, (list, tuple, MultiValue)):
        raise DicomReadError(f"{keyword} has several values ({list(value)[:4]!r}); expected one")
    try:
        as_int = int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DicomReadError(f"{keyword} is not a valid integer ({value!r})") from exc
    if isinstance(value, float) and as_int != value:
        raise DicomReadError(f"{keyword} is not a valid integer ({value!r})")
    return as_int


def _safe_get(ds, keyword):
    """``ds.get(keyword)``, or None when the element is damaged (for messages only)."""
    try:
        return ds.get(keyword)
    except Exception:
        return None


def _pixel_keyword(ds):
    present = [k for k in _PIXEL_KEYWORDS if k in ds]
    if present:
        return present[0]
    if len(ds) == 0:
        raise DicomReadError("no DICOM elements could be read; is it a DICOM file?")
    kind = []
    modality = _safe_get(ds, "Modality")
    if isinstance(modality, str) and modality:
        kind.append(f"Modality {modality!r}")
    sop = _safe_get(ds, "SOPClassUID")
    if sop:
        try:
            kind.append(str(pydicom.uid.UID(str(sop)).name))
        except Exception:
            pass
    what = f" ({', '.join(kind)})" if kind else ""
    rows, cols = _safe_get(ds, "Rows"), _safe_get(ds, "Columns")
    if rows or cols:
        raise DicomReadError(
            f"the file contains no pixel data (no (7FE0,0010) Pixel Data element) although "
            f"its header describes a {rows} x {cols} image{what}; the pixel data are "
            "missing or the file is damaged or truncated"
        )
    raise DicomReadError(
        f"the file contains no pixel data (no (7FE0,0010) Pixel Data element){what}; "
        "it is not an image"
    )


def _photometric(ds):
    value = _safe_get(ds, "PhotometricInterpretation")
    return str(value).strip().upper() if isinstance(value, str) else ""


def _transfer_syntax(ds):
    """The dataset's transfer syntax, set to a sensible default when missing.

    Files without file meta (ACR-NEMA style) carry no Transfer Syntax UID; pydicom
    then cannot decode the pixels. The encoding pydicom detected while reading
    is used, and Implicit VR Little Endian (the DICOM default, PS3.5 10.1) when
    nothing is known.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    try:
        ts = meta.get("TransferSyntaxUID")
    except Exception:
        ts = None
    if ts is not None and str(ts).strip():
        return dicom_uid.UID(str(ts).strip())
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is False and little is True:
        ts = dicom_uid.ExplicitVRLittleEndian
    elif implicit is False and little is False:
        ts = dicom_uid.ExplicitVRBigEndian
    else:
        ts = dicom_uid.ImplicitVRLittleEndian
    # Never modify the caller's file meta (a Dataset passed in is only copied shallowly).
    new_meta = FileMetaDataset()
    for tag in list(meta.keys()):
        try:
            new_meta.add(meta[tag])
        except Exception:  # a damaged meta element: the pixels do not need it
            continue
    new_meta.TransferSyntaxUID = ts
    ds.file_meta = new_meta
    return ts


def _available_plugins(decoder):
    """Names of the installed plugins of a pydicom decoder (patched in tests)."""
    return tuple(decoder.available_plugins)


def _get_decoder(ts):
    try:
        return get_decoder(ts)
    except Exception as exc:  # NotImplementedError for unknown or video syntaxes
        name = ts.name if ts.name != str(ts) else "unknown"
        raise DicomReadError(
            f"no pixel data decoder exists for transfer syntax {str(ts)!r} ({name}); "
            "this encoding is not supported"
        ) from exc


def _jpeg_hint(ts):
    return f"install the optional JPEG decoders: {JPEG_EXTRA_INSTALL}" if ts in _JPEG_FAMILY else ""


def _check_geometry(ds, ts, decoder, opts):
    """Validate the Image Pixel module before decoding.

    Returns ``(rows, columns, frames, samples_per_pixel)``.

    Rejects zero, negative or missing Rows/Columns, absurd sizes (above
    ``max_pixels``), empty pixel data and, for native encodings, pixel data shorter
    than the header says (truncated files).
    """
    keyword = _pixel_keyword(ds)
    rows = _int_attr(ds, "Rows")
    cols = _int_attr(ds, "Columns")
    if rows <= 0 or cols <= 0:
        raise DicomReadError(f"the header declares an empty image (Rows={rows}, Columns={cols})")
    frames = _int_attr(ds, "NumberOfFrames", default=1)
    if frames == 0:
        frames = 1  # as pydicom: 0 is read as a single frame
    if frames < 0:
        raise DicomReadError(f"NumberOfFrames is negative ({frames})")
    samples = _int_attr(ds, "SamplesPerPixel", default=1)
    if samples not in (1, 3):
        raise DicomReadError(f"SamplesPerPixel={samples} is not supported (expected 1 or 3)")
    n_values = rows * cols * frames * samples
    if n_values > opts["max_pixels"]:
        raise DicomReadError(
            f"the header declares {rows} x {cols} pixels x {frames} frame(s) x {samples} "
            f"sample(s) = {n_values:,} values, above max_pixels={opts['max_pixels']:,}; "
            "refusing to decode (raise max_pixels if the file is genuine)"
        )
    bits = _int_attr(ds, "BitsAllocated")
    if bits not in _VALID_BITS_ALLOCATED:
        raise DicomReadError(f"BitsAllocated={bits} is not supported (expected 1, 8, 16, 32 or 64)")
    if opts["frames"] == "raise" and frames > 1:
        raise DicomReadError(
            f"the file has {frames} frames and frames='raise'; pass frames='first', "
            "'mean' or 'all' to read multi-frame files"
        )
    try:
        value = ds[keyword].value
    except Exception as exc:
        raise DicomReadError(f"the pixel data element is malformed ({_short(exc)})") from exc
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        raise DicomReadError("the Pixel Data element (7FE0,0010) is empty")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise DicomReadError(f"the pixel data has an unexpected type ({type(value).__name__})")
    if decoder.is_native:
        n_bits = n_values * bits
        if _photometric(ds) == "YBR_FULL_422" and samples == 3 and keyword == "PixelData":
            n_bits = n_bits // 3 * 2  # chroma subsampled, PS3.3 C.7.6.3.1.2
        expected = (n_bits + 7) // 8
        if len(value) < expected:
            raise DicomReadError(
                f"the pixel data is truncated: {len(value):,} bytes present but the header "
                f"({rows} x {cols} pixels x {frames} frame(s) x {samples} sample(s) x "
                f"{bits} bits) needs {expected:,}"
            )
    elif not _available_plugins(decoder):
        hint = _jpeg_hint(ts)
        raise DicomReadError(
            f"the pixel data is compressed ({ts.name}) and no decoder for it is installed"
            + (f"; {hint}" if hint else "")
        )
    return rows, cols, frames, samples


def _decode(ds, ts, decoder, index):
    try:
        arr, meta = decoder.as_array(ds, index=index)
    except MemoryError as exc:
        raise DicomReadError("not enough memory to decode the pixel data") from exc
    except Exception as exc:
        reason = f"the pixel data could not be decoded ({ts.name}; {_short(exc)})"
        if not decoder.is_native and "pylibjpeg" not in _available_plugins(decoder):
            hint = _jpeg_hint(ts)
            if hint:
                reason += f"; if the file is valid, {hint}"
        raise DicomReadError(reason) from exc
    return np.asarray(arr), meta


def _to_grey(arr, ds, meta, rows, cols):
    """Return ``(stack, photometric)``: a float64 ``(F, H, W)`` stack of grey values."""
    photometric = str(meta.get("photometric_interpretation", _photometric(ds))).strip().upper()
    samples = int(meta.get("samples_per_pixel", 1))
    try:
        if samples == 1:
            stack = arr.reshape(-1, rows, cols)
        else:
            stack = arr.reshape(-1, rows, cols, samples)
    except ValueError as exc:
        raise DicomReadError(
            f"the decoded pixel data has shape {arr.shape}, which does not match the "
            f"header ({rows} x {cols}, {samples} sample(s))"
        ) from exc
    if samples == 1 and photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(stack, ds)
        except Exception as exc:
            raise DicomReadError(f"the palette colour LUT is invalid ({_short(exc)})") from exc
        return rgb.astype(np.float64) @ _LUMA_WEIGHTS, photometric
    if samples == 1:
        return stack, photometric
    if photometric.startswith("YBR"):
        # Y is the luma already (PS3.3 C.7.6.3.1.2).
        return stack[..., 0].astype(np.float64), photometric
    return stack[..., :3].astype(np.float64) @ _LUMA_WEIGHTS, photometric


def _window_dataset(ds, center, width):
    """A minimal VOI LUT module carrying a user window, for pydicom's apply_voi_lut."""
    voi = Dataset()
    voi.PhotometricInterpretation = "MONOCHROME2"
    for keyword, default in (("BitsStored", None), ("PixelRepresentation", 0)):
        try:
            value = int(ds.get(keyword, default))
        except (TypeError, ValueError):
            value = default
        if value is None:
            value = int(ds.BitsAllocated)
        setattr(voi, keyword, value)
    voi.BitsStored = min(max(int(voi.BitsStored), 1), 64)
    if ds.get("ModalityLUTSequence"):
        voi.ModalityLUTSequence = ds.ModalityLUTSequence
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        voi.RescaleSlope = ds.RescaleSlope
        voi.RescaleIntercept = ds.RescaleIntercept
    voi.WindowCenter = center
    voi.WindowWidth = width
    # LINEAR needs width >= 1 (PS3.3 C.11.2.1.2.1); LINEAR_EXACT accepts any width > 0.
    voi.VOILUTFunction = "LINEAR" if width >= 1 else "LINEAR_EXACT"
    return voi


def _apply_grey_luts(stack, ds, window):
    """Modality LUT then VOI LUT/window (PS3.3 C.11.1 and C.11.2)."""
    try:
        out = apply_modality_lut(stack, ds)
    except Exception as exc:
        raise DicomReadError(
            f"the Modality LUT or Rescale Slope/Intercept is invalid ({_short(exc)})"
        ) from exc
    if window is False:
        return out
    if window is None:
        try:
            return apply_voi_lut(out, ds, index=0, prefer_lut=True)
        except Exception:
            # A damaged VOI module (zero width, unknown function, bad LUT) only
            # affects display: keep the modality values and let min-max scaling act.
            return out
    try:
        return apply_voi_lut(out, _window_dataset(ds, *window), index=0, prefer_lut=False)
    except Exception as exc:
        raise DicomReadError(f"window={window!r} could not be applied ({_short(exc)})") from exc


def _resize(stack, size, antialias):
    """Resize each frame of a float64 ``(F, H, W)`` stack to ``size`` with scipy.

    Downsampling first low-pass filters each frame with a Gaussian of standard
    deviation ``(factor - 1) / 2`` pixels per axis (as scikit-image does), then samples
    it bilinearly at the output pixel centres.
    """
    _, h_in, w_in = stack.shape
    h_out, w_out = size
    if (h_in, w_in) == (h_out, w_out):
        return stack
    zoom_y, zoom_x = h_in / h_out, w_in / w_out
    if antialias:
        sigma = (0.0, max(0.0, (zoom_y - 1.0) / 2.0), max(0.0, (zoom_x - 1.0) / 2.0))
        if sigma[1] > 0 or sigma[2] > 0:
            stack = ndimage.gaussian_filter(stack, sigma=sigma, mode="nearest")
    return ndimage.affine_transform(
        stack,
        matrix=[1.0, zoom_y, zoom_x],
        offset=[0.0, 0.5 * zoom_y - 0.5, 0.5 * zoom_x - 0.5],
        output_shape=(stack.shape[0], h_out, w_out),
        order=1,
        mode="nearest",
    )


def _check_finite(x, stage):
    if not np.isfinite(x).all():
        raise DicomReadError(f"the pixel values are not finite (NaN or infinity) {stage}")


def _read(source, opts):
    ds = _load_dataset(source, opts["force"], opts["max_pixels"])
    ts = _transfer_syntax(ds)
    decoder = _get_decoder(ts)
    rows, cols, n_frames, _ = _check_geometry(ds, ts, decoder, opts)
    index = 0 if (opts["frames"] == "first" and n_frames > 1) else None
    arr, meta = _decode(ds, ts, decoder, index)
    stack, photometric = _to_grey(arr, ds, meta, rows, cols)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        stack = _apply_grey_luts(stack, ds, opts["window"])
    stack = np.asarray(stack, dtype=np.float64)
    _check_finite(stack, "after the Modality and VOI LUTs")
    if photometric == "MONOCHROME1":
        # Minimum is white (PS3.3 C.7.6.3.1.2): invert within the value range.
        stack = (stack.max() + stack.min()) - stack
    if opts["frames"] == "first":
        stack = stack[:1]
    elif opts["frames"] == "mean":
        stack = stack.mean(axis=0, keepdims=True)
    if opts["size"] is not None:
        stack = _resize(stack, opts["size"], opts["antialias"])
    if opts["scale"]:
        lo, hi = float(stack.min()), float(stack.max())
        span = hi - lo
        if span > 0 and np.isfinite(span):
            stack = (stack - lo) / span
            np.clip(stack, 0.0, 1.0, out=stack)
        elif span > 0:  # range too wide for float64 arithmetic: scale in two steps
            stack = (stack / 2 - lo / 2) / (hi / 2 - lo / 2)
        else:
            stack = np.zeros_like(stack)
    out = stack.astype(np.float32)
    _check_finite(out, "after conversion to float32 (values exceed the float32 range)")
    if opts["frames"] != "all":
        out = out[0]
    return np.ascontiguousarray(out)


def read_dicom(
    path,
    *,
    size=None,
    window=None,
    frames="first",
    scale=True,
    max_pixels=DEFAULT_MAX_PIXELS,
    antialias=True,
    force=True,
):
    """Read a DICOM file into a float32 grey-level image.

    The grey-level pipeline of the DICOM standard is applied in order: decoding,
    Modality LUT or rescale slope/intercept (PS3.3 C.11.1), VOI LUT or window
    centre/width (PS3.3 C.11.2), MONOCHROME1 inversion (PS3.3 C.7.6.3.1.2, so that
    high values are bright for every file), colour to grey, the multi-frame policy,
    an anti-aliased resize and a min-max scale to [0, 1].

    Parameters
    ----------
    path : str, os.PathLike, bytes, binary file-like or pydicom.dataset.Dataset
        The DICOM file. A :class:`~pydicom.dataset.Dataset` is not modified.
    size : None, int or (int, int), default=None
        Target ``(height, width)`` (an int means a square). ``None`` keeps the stored
        size. Downsampling is anti-aliased (Gaussian prefilter, then bilinear
        sampling with :mod:`scipy.ndimage`).
    window : None, False or (float, float), default=None
        ``None`` applies the file's VOI LUT Sequence, or else its first Window
        Center/Width (a damaged VOI module is ignored); ``(center, width)``
        applies this window instead (in modality units, e.g. Hounsfield units for
        CT: ``(40, 400)`` is a soft-tissue window); ``False`` skips the VOI stage.
        Windowing applies to monochrome images only.
    frames : {"first", "mean", "all", "raise"}, default="first"
        Multi-frame policy: the first frame (only that frame is decoded), the mean
        of all frames, every frame (the result is ``(F, H, W)``, also for
        single-frame files) or a :class:`DicomReadError` for files with more than one
        frame.
    scale : bool, default=True
        Min-max scale the result to [0, 1] (over all frames together). A constant
        image maps to zeros. With ``False`` the values after the LUTs are returned
        (MONOCHROME1 is then inverted as ``max + min - x``).
    max_pixels : int, default=DEFAULT_MAX_PIXELS (2**28)
        Largest accepted ``Rows x Columns x NumberOfFrames x SamplesPerPixel``.
        Larger headers are refused before any pixel is decoded, which bounds
        memory and time on damaged or hostile files.
    antialias : bool, default=True
        Gaussian prefilter before downsampling.
    force : bool, default=True
        Read files without the 128-byte preamble and ``DICM`` marker (ACR-NEMA
        style). A missing Transfer Syntax UID is then set from the encoding
        detected while reading, Implicit VR Little Endian by default.

    Returns
    -------
    image : ndarray of float32
        ``(H, W)``, or ``(F, H, W)`` with ``frames="all"``. Finite; in [0, 1] when
        ``scale=True``.

    Raises
    ------
    DicomReadError
        For every failure of the file: missing or unreadable file, not DICOM,
        no/empty/truncated pixel data, zero or missing Rows/Columns, a header
        above ``max_pixels``, a compressed transfer syntax without a decoder (the
        message then names the ``skal[jpeg]`` extra), more than one frame with
        ``frames="raise"``, non-finite values. It names the file and the cause.
    SkalValueError, SkalTypeError
        For invalid options (before the file is opened).

    Notes
    -----
    Native (uncompressed), deflated and RLE Lossless transfer syntaxes decode with
    pydicom alone. JPEG, JPEG-LS and JPEG 2000 need a decoder plugin:
    ``pip install "skal[jpeg]"`` installs pylibjpeg, pylibjpeg-libjpeg and
    pylibjpeg-openjpeg (Pillow, when present, decodes some JPEG baseline and JPEG
    2000 files too). RGB is converted with the ITU-R BT.601 luma weights
    (0.299, 0.587, 0.114); for YBR data the Y channel is used directly; PALETTE
    COLOR goes through its colour LUT first. The Presentation LUT Module and
    per-frame functional groups of enhanced multi-frame objects are not applied.

    pydicom's warnings and log records are silenced while reading: damaged files
    either still give an image or raise :class:`DicomReadError`.

    References
    ----------
    DICOM PS3.3, C.7.6.3 Image Pixel Module (Photometric Interpretation,
    C.7.6.3.1.2), C.11.1 Modality LUT Module, C.11.2 VOI LUT Module.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from skal.data import read_dicom
    >>> img = read_dicom(get_testdata_file("CT_small.dcm"), size=64)
    >>> img.shape, img.dtype, float(img.min()), float(img.max())
    ((64, 64), dtype('float32'), 0.0, 1.0)
    """
    opts = _check_read_options(
        size=size, window=window, frames=frames, scale=scale, max_pixels=max_pixels,
        antialias=antialias, force=force,
    )
    name = _source_name(path)
    with _quiet():
        try:
            return _read(path, opts)
        except DicomReadError as exc:
            if exc.path is None:
                raise DicomReadError(exc.reason, name) from exc.__cause__
            raise
        except (SkalTypeError, SkalValueError):
            raise
        except MemoryError as exc:
            raise DicomReadError("not enough memory to read the file", name) from exc
        except RecursionError as exc:
            raise DicomReadError("the file is too deeply nested (recursion limit)", name) from exc
        except Exception as exc:  # last line of defence: never leak a bare exception
            raise DicomReadError(f"unexpected error while reading ({_short(exc)})", name) from exc
