"""Bounds checked before a DICOM file is read or inflated.

A deflated DICOM (transfer syntax 1.2.840.10008.1.2.1.99) is one zlib stream: pydicom
inflates the whole data set in memory before anything can look at ``Rows`` and
``Columns``, so a 255 KB file can become 256 MB before ``max_pixels`` is checked.
:func:`check_deflated` inflates only the header (the elements before the pixel data),
checks the declared image against ``max_pixels`` and then counts the rest of the
stream in fixed-size chunks, without keeping it, refusing a stream that inflates to
more than the header declares. :func:`open_regular` refuses FIFOs, devices and
sockets (``/dev/zero`` or a FIFO would hang a read) and files larger than any image
``max_pixels`` allows; :func:`read_bounded` caps what is read from a non-seekable
stream.
"""

import io
import os
import stat
import zlib

from pydicom.filereader import read_dataset, read_preamble, _read_file_meta_info

from .errors import DicomReadError

__all__ = ["max_file_bytes", "open_regular", "read_bounded", "check_deflated"]

_DEFLATED = "1.2.840.10008.1.2.1.99"
_CHUNK = 1 << 16
_HEADER_LIMIT = 16 << 20      # inflated bytes before the pixel data we are ready to hold
_SLACK = 1 << 20              # trailing elements, padding, item delimiters
_PIXEL_GROUP = 0x7FE0


def max_file_bytes(max_pixels):
    """Largest file any image within ``max_pixels`` can need: 8 bytes per value
    (64-bit pixels) plus 64 MiB of other elements."""
    return int(max_pixels) * 8 + (64 << 20)


def open_regular(path, max_pixels):
    """Open ``path`` for binary reading after checking (without opening it, which
    blocks on a FIFO) that it is a regular file of a plausible size."""
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise DicomReadError("the file does not exist") from exc
    except OSError as exc:
        raise DicomReadError(f"the file could not be opened ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise DicomReadError("the path is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise DicomReadError(
            "the path is not a regular file (a FIFO, socket or device such as /dev/zero); "
            "skal reads only regular files")
    limit = max_file_bytes(max_pixels)
    if info.st_size > limit:
        raise DicomReadError(
            f"the file is {info.st_size:,} bytes, more than any image within "
            f"max_pixels={max_pixels:,} can need ({limit:,}); raise max_pixels if it is "
            "genuine")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DicomReadError(f"the file could not be opened ({exc.strerror or exc})") from exc


def read_bounded(fileobj, max_pixels):
    """All of a non-seekable binary stream, refusing one longer than
    :func:`max_file_bytes` (``/dev/zero`` opened by the caller would never end)."""
    limit = max_file_bytes(max_pixels)
    data = fileobj.read(limit + 1)
    if data is not None and len(data) > limit:
        raise DicomReadError(
            f"the stream is longer than any image within max_pixels={max_pixels:,} can "
            f"need ({limit:,} bytes); raise max_pixels if it is genuine")
    return data


def _declared_bytes(header):
    """Bytes of pixel data the header declares (Rows x Columns x frames x samples x
    bits), and the number of values."""
    def value(keyword, default=None):
        v = header.get(keyword, default)
        try:
            return int(v if v not in (None, "") else default)
        except (TypeError, ValueError):
            raise DicomReadError(f"the header's {keyword} is not an integer ({v!r})") from None

    rows, cols = value("Rows", 0), value("Columns", 0)
    frames = max(1, value("NumberOfFrames", 1))
    samples = max(1, value("SamplesPerPixel", 1))
    bits = max(1, value("BitsAllocated", 64))
    n_values = max(rows, 0) * max(cols, 0) * frames * samples
    return n_values, (n_values * bits + 7) // 8


def check_deflated(fh, max_pixels):
    """Check a seekable binary DICOM stream before pydicom inflates it; rewinds it.

    Does nothing unless the file meta declares the deflated transfer syntax. Raises
    :class:`DicomReadError` when the inflated header declares more than
    ``max_pixels`` values, or the stream inflates to more than the header declares.
    """
    start = fh.tell()
    try:
        try:
            read_preamble(fh, False)
            meta = _read_file_meta_info(fh)
        except Exception:
            return      # not a well-formed Part 10 file: pydicom reports it
        if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
            return
        _check_stream(fh, max_pixels)
    finally:
        fh.seek(start)


def _check_stream(fh, max_pixels):
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    head, total, allowed = bytearray(), 0, None
    while True:
        chunk = inflater.unconsumed_tail or fh.read(_CHUNK)
        if not chunk:
            break
        try:
            out = inflater.decompress(chunk, _CHUNK)
        except zlib.error as exc:
            raise DicomReadError(f"the deflated data set is corrupt ({exc})") from exc
        total += len(out)
        if allowed is None:
            head += out
            header = _parse_header(bytes(head))
            if header is not None:
                n_values, n_bytes = _declared_bytes(header)
                if n_values > max_pixels:
                    raise DicomReadError(
                        f"the deflated header declares {n_values:,} values, above "
                        f"max_pixels={max_pixels:,}; refusing to inflate (raise "
                        "max_pixels if the file is genuine)")
                allowed = header.header_bytes + n_bytes + _SLACK
                head = None
            elif len(head) > _HEADER_LIMIT:
                raise DicomReadError(
                    f"the deflated data set has more than {_HEADER_LIMIT:,} bytes before "
                    "its pixel data; refusing to inflate it")
        if allowed is not None and total > allowed:
            raise DicomReadError(
                f"the deflated data set inflates to more than the {allowed:,} bytes its "
                "header declares (a decompression bomb?); refusing to read it")
        if inflater.eof:
            break


class _Header(dict):
    header_bytes = 0


def _parse_header(data):
    """The elements before the pixel data, once ``data`` holds all of them."""
    fp = io.BytesIO(data)
    try:
        ds = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                          stop_when=lambda tag, vr, length: tag.group >= _PIXEL_GROUP)
    except Exception:
        return None
    position = fp.tell()
    if position >= len(data):
        return None         # the pixel data tag is not in view yet
    header = _Header()
    for keyword in ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated"):
        try:
            header[keyword] = ds.get(keyword)
        except Exception:
            header[keyword] = None
    header.header_bytes = position
    return header

