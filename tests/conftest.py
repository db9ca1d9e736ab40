"""Shared fixtures: tiny, fast settings and the optional real-data folder.

The real medical data lives beside the project (``../shared/data`` from the repository
root) and is never copied into it. Point ``SKAL_DATA_DIR`` elsewhere to use another
copy; tests that need it skip cleanly when it is absent.
"""

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Fast training for tests of skal's nets: no minimum step count, no augmentation
# (FAST), and a tiny net for 2 epochs (TINY). Import them (``from conftest import
# TINY``) and override what a test needs: ``dict(TINY, random_state=0)``.
FAST = dict(min_steps=None, augment=None)
TINY = dict(FAST, module__widths=(8,), module__hidden=16, max_epochs=2, batch_size=16)


@pytest.fixture
def tiny():
    """A fresh copy of :data:`TINY`."""
    return dict(TINY)


class ArrayDataset(Dataset):
    """An array (or memmap) served as a torch ``Dataset`` pool, read item by item:
    ``x`` as a tensor, or ``(x, 0)`` when ``labelled`` (the (input, target) pairs of a
    training set)."""

    def __init__(self, X, labelled=False):
        self.X = X
        self.labelled = labelled

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        x = torch.from_numpy(np.ascontiguousarray(self.X[i]))
        return (x, 0) if self.labelled else x


def shared_data_dir():
    """The folder of shared real data, or None when it is absent."""
    path = Path(os.environ.get("SKAL_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    return path if path.is_dir() else None


@pytest.fixture
def data_dir():
    """Path of the shared real-data folder; skips the test when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared real data not found (set SKAL_DATA_DIR)")
    return path


@pytest.fixture
def data_file(data_dir):
    """Return a function that resolves a file under the data folder or skips."""

    def resolve(relative):
        path = data_dir / relative
        if not path.exists():
            pytest.skip(f"{relative} not found under {data_dir}")
        return path

    return resolve


@pytest.fixture(scope="module")
def tiny_images():
    """48 random 12x12 images: 3 classes ``y`` and 3 multi-hot labels ``Y``."""
    rng = np.random.RandomState(0)
    X = rng.rand(48, 1, 12, 12).astype(np.float32)
    y = (X[:, 0, :6].mean(axis=(1, 2)) > X[:, 0, 6:].mean(axis=(1, 2))).astype(int)
    y[::7] = 2
    Y = np.stack([y == 0, y == 2, X[:, 0].mean(axis=(1, 2)) > 0.5], axis=1).astype(int)
    return X, y, Y


# ------------------------------------------------------------------ DICOM files
def dicom_bytes(pixels, photometric="MONOCHROME2", bits_stored=16):
    """A small uint16 Secondary Capture DICOM file (with file meta) as bytes."""
    from pydicom.dataset import Dataset as DicomData, FileMetaDataset
    from pydicom.uid import (ExplicitVRLittleEndian, SecondaryCaptureImageStorage,
                             generate_uid)

    pixels = np.asarray(pixels, dtype=np.uint16)
    ds = DicomData()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_dicom(path, pixels, **kwargs):
    """Write :func:`dicom_bytes` to ``path`` (parents created); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_bytes(pixels, **kwargs))
    return path


@pytest.fixture(autouse=True, scope="session")
def _encoder_cache_in_a_temporary_folder(tmp_path_factory):
    """Encoders pre-trained by tests (``simulate``'s ``pretrain="auto"`` included) are
    cached in a temporary folder, never in the user's ``~/.cache/skal``."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SKAL_CACHE_DIR", str(tmp_path_factory.mktemp("skal_cache")))
    yield
    patch.undo()
