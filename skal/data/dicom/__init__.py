"""DICOM ingestion: read files into float32 images, as arrays or lazy pools.

* :func:`read_dicom`: one file to a float32 image (Modality LUT, VOI LUT or window,
  MONOCHROME1 inversion, colour to grey, multi-frame policy, resize, [0, 1] scaling).
* :class:`DicomReader`: a scikit-learn transformer, paths to ``(n, 1, H, W)``.
* :class:`DicomDataset`: a torch ``Dataset`` read on access with a bounded cache,
  usable as a pool by skal's learners.
* :func:`load_dicom_folder`: a folder and a labels CSV to ``(X, y, paths)``.
* :class:`DicomReadError`: raised for every file that cannot be read.
"""

from .dataset import DicomDataset, load_dicom_folder
from .errors import DicomReadError
from .reader import DEFAULT_MAX_PIXELS, read_dicom
from .transformer import DicomReader

__all__ = [
    "read_dicom",
    "DicomReader",
    "DicomDataset",
    "load_dicom_folder",
    "DicomReadError",
    "DEFAULT_MAX_PIXELS",
]
