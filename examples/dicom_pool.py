"""Active learning on a lazy pool of DICOM files.

The script writes its own small DICOM folder into a temporary directory (synthetic
images of two classes: a bright disc on noise, or noise only; half of the files are
stored MONOCHROME1, i.e. inverted, which skal's reader undoes) with a labels CSV,
builds a :class:`skal.data.DicomDataset` pool that reads files on access, and runs
three query / teach rounds with entropy sampling, printing the test accuracy.

Run it with ``python examples/dicom_pool.py``; it takes a minute or two on a CPU.
"""

import csv
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from skal import ActiveLearner, CNNClassifier
from skal.data import DicomDataset, load_dicom_folder
from skal.data.pool import materialize, take
from skal.query import entropy_sampling

IMAGE_SIZE = 48  # stored size; the pool resizes to 32 x 32
N_POOL, N_TEST = 160, 80


def synthetic_image(label, rng):
    """12-bit noise with a soft background gradient, plus a bright disc for class 1."""
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 400 * (np.cos(angle) * xx + np.sin(angle) * yy) / IMAGE_SIZE
    image = rng.normal(1500, 300, size=(IMAGE_SIZE, IMAGE_SIZE)) + gradient
    if label == 1:
        cy, cx = rng.randint(8, IMAGE_SIZE - 8, size=2)
        radius = rng.uniform(4, 7)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] += 800
    return np.clip(image, 0, 4095).astype(np.uint16)


def write_dicom(path, pixels, monochrome1=False):
    """A minimal Secondary Capture file (Part 10, with file meta)."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if monochrome1:  # minimum is white: store inverted values
        ds.PhotometricInterpretation = "MONOCHROME1"
        pixels = (4095 - pixels).astype(np.uint16)
    else:
        ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def write_folder(root, n, rng):
    """``n`` files under ``root`` and ``root/labels.csv`` (path relative to root)."""
    rows = []
    for i in range(n):
        label = i % 2
        rel = f"class_{label}/image_{i:04d}.dcm"
        write_dicom(root / rel, synthetic_image(label, rng), monochrome1=rng.rand() < 0.5)
        rows.append({"path": rel, "label": label})
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "labels.csv"


def main():
    rng = np.random.RandomState(0)
    with tempfile.TemporaryDirectory() as tmp:
        pool_dir, test_dir = Path(tmp) / "pool", Path(tmp) / "test"
        pool_csv = write_folder(pool_dir, N_POOL, rng)
        test_csv = write_folder(test_dir, N_TEST, rng)

        # The pool is lazy: files are read (and cached, at most 64 images) on access.
        pool = DicomDataset.from_folder(pool_dir, labels_csv=pool_csv, size=32, cache_size=64)
        # The test set is small: read it eagerly (unreadable files would be skipped).
        X_test, y_test, _ = load_dicom_folder(test_dir, test_csv, size=32)
        print(f"pool: {pool}; test set: {X_test.shape}")

        # Start from two labelled images of each class.
        start = np.concatenate([np.flatnonzero(pool.labels == c)[:2] for c in (0, 1)])
        learner = ActiveLearner(
            CNNClassifier(max_epochs=15, random_state=0),
            entropy_sampling,
            X_training=materialize(take(pool, start)),
            y_training=pool.labels[start],
        )
        unlabelled = np.setdiff1d(np.arange(len(pool)), start)
        print(f"round 0: {len(start)} labels, test accuracy {learner.score(X_test, y_test):.3f}")

        for round_ in range(1, 4):
            remaining = take(pool, unlabelled)  # a Subset: still read lazily
            idx, X_query = learner.query(remaining, n_instances=8)
            chosen = unlabelled[idx]
            learner.teach(X_query, pool.labels[chosen])  # the oracle: the CSV labels
            unlabelled = np.setdiff1d(unlabelled, chosen)
            n_labels = len(pool) - len(unlabelled)
            accuracy = learner.score(X_test, y_test)
            print(f"round {round_}: {n_labels} labels, test accuracy {accuracy:.3f}")
        print("cache:", pool.cache_info())


if __name__ == "__main__":
    main()
