"""The single exception raised when a DICOM file cannot be turned into an image."""

from ...exceptions import SkalValueError

__all__ = ["DicomReadError"]


class DicomReadError(SkalValueError):
    """A DICOM file could not be read or decoded into an image.

    Every failure of :func:`skal.data.read_dicom` (a missing or unreadable file, a
    malformed header, absent, empty or truncated pixel data, an absurd image size, a
    compressed transfer syntax without an installed decoder, ...) is reported with
    this exception, never with a bare pydicom, numpy, PIL, ``struct`` or ``OSError``
    exception. It is a :class:`skal.exceptions.SkalValueError`, hence also a
    :class:`skal.exceptions.SkalError` and a built-in :class:`ValueError`.

    Parameters
    ----------
    reason : str
        What went wrong, in words (the cause, without the file name).
    path : str or None, optional
        The file (or a description of the file-like object) that failed.

    Attributes
    ----------
    reason : str
        The cause of the failure.
    path : str or None
        The file that failed.

    Examples
    --------
    >>> from skal.data import DicomReadError
    >>> err = DicomReadError("the file contains no pixel data", path="report.dcm")
    >>> str(err)
    "Cannot read DICOM file 'report.dcm': the file contains no pixel data"
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, reason, path=None):
        self.reason = str(reason)
        self.path = None if path is None else str(path)
        if self.path is None:
            message = f"Cannot read DICOM data: {self.reason}"
        else:
            message = f"Cannot read DICOM file '{self.path}': {self.reason}"
        super().__init__(message)

    def __reduce__(self):
        # Keep the exception picklable (joblib workers send it between processes).
        return (type(self), (self.reason, self.path))
