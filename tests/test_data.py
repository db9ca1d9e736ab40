"""Data loading: MedMNIST npz files, the bundled digits and pool helpers."""

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset

from skal.data import (MedMNISTData, iter_pool, load_digits_images, load_medmnist,
                       materialize, pool_length, take)
from skal.exceptions import DataFileError, SkalError, SkalTypeError, SkalValueError

SPLITS = ("train", "val", "test")


def _write_npz(path, n=(6, 3, 4), image_shape=(8, 8), label_width=1, drop=(), **overrides):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(SPLITS, n):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count,) + image_shape,
                                                 dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (count, label_width)).astype(np.uint8)
    arrays.update(overrides)
    for key in drop:
        arrays.pop(key)
    np.savez(path, **arrays)
    return arrays


# ------------------------------------------------------------------ real data
def test_pneumoniamnist(data_file):
    data = load_medmnist(data_file("medmnist/pneumoniamnist.npz"))
    assert isinstance(data, MedMNISTData)
    assert data.X_train.shape == (4708, 28, 28)
    assert data.X_val.shape == (524, 28, 28)
    assert data.X_test.shape == (624, 28, 28)
    for X in (data.X_train, data.X_val, data.X_test):
        assert X.dtype == np.uint8
    for X, y in ((data.X_train, data.y_train), (data.X_val, data.y_val),
                 (data.X_test, data.y_test)):
        assert y.ndim == 1 and y.shape == (len(X),)
        assert y.dtype.kind == "i"
        assert set(np.unique(y).tolist()) == {0, 1}
    assert data.multilabel is False
    assert np.bincount(data.y_train).tolist() == [1214, 3494]


# --------------------------------------------------------------- synthetic npz
def test_roundtrip_single_label(tmp_path):
    path = tmp_path / "tiny.npz"
    arrays = _write_npz(path)
    data = load_medmnist(str(path))                       # str paths work too
    np.testing.assert_array_equal(data.X_train, arrays["train_images"])
    np.testing.assert_array_equal(data.y_test, arrays["test_labels"][:, 0])
    assert data.y_train.dtype == np.int64 and data.y_train.ndim == 1
    assert data.multilabel is False


def test_multilabel_npz(tmp_path):
    path = tmp_path / "multi.npz"
    arrays = _write_npz(path, label_width=3)
    data = load_medmnist(path)
    assert data.multilabel is True
    assert data.y_train.shape == (6, 3) and data.y_val.shape == (3, 3)
    assert data.y_train.dtype == np.int64
    np.testing.assert_array_equal(data.y_train, arrays["train_labels"])


def test_colour_moved_channel_first(tmp_path):
    path = tmp_path / "colour.npz"
    arrays = _write_npz(path, image_shape=(8, 8, 3))
    data = load_medmnist(path)
    assert data.X_train.shape == (6, 3, 8, 8)
    assert data.X_test.shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(data.X_train, np.moveaxis(arrays["train_images"], -1, 1))
    assert data.X_train.flags["C_CONTIGUOUS"]


def test_1d_labels_accepted(tmp_path):
    path = tmp_path / "flat.npz"
    rng = np.random.default_rng(1)
    labels = {f"{s}_labels": rng.integers(0, 3, n) for s, n in zip(SPLITS, (6, 3, 4))}
    _write_npz(path, **labels)
    data = load_medmnist(path)
    np.testing.assert_array_equal(data.y_train, labels["train_labels"])
    assert data.multilabel is False


def test_missing_file(tmp_path):
    with pytest.raises(DataFileError, match="not found"):
        load_medmnist(tmp_path / "nope.npz")
    with pytest.raises(DataFileError):
        load_medmnist(tmp_path)                           # a directory is not a file


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"\x00\x01this is not a zip archive at all" * 10)
    with pytest.raises(DataFileError, match="npz"):
        load_medmnist(path)


def test_truncated_zip(tmp_path):
    path = tmp_path / "cut.npz"
    _write_npz(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError):
        load_medmnist(path)


def test_single_npy_file(tmp_path):
    path = tmp_path / "single.npy"
    np.save(path, np.zeros((3, 8, 8)))
    with pytest.raises(DataFileError):
        load_medmnist(path)


def test_missing_keys(tmp_path):
    path = tmp_path / "partial.npz"
    _write_npz(path, drop=("val_labels", "test_images"))
    with pytest.raises(DataFileError, match="missing keys") as info:
        load_medmnist(path)
    assert "val_labels" in str(info.value) and "test_images" in str(info.value)


def test_mismatched_lengths(tmp_path):
    path = tmp_path / "mismatch.npz"
    _write_npz(path, train_labels=np.zeros((5, 1), np.uint8))
    with pytest.raises(DataFileError, match="train_images has 6 rows"):
        load_medmnist(path)


def test_bad_image_shape(tmp_path):
    path = tmp_path / "flatimages.npz"
    _write_npz(path, val_images=np.zeros((3, 64), np.uint8))
    with pytest.raises(DataFileError, match="val_images"):
        load_medmnist(path)


def test_bad_label_shape(tmp_path):
    path = tmp_path / "badlabels.npz"
    _write_npz(path, test_labels=np.zeros((4, 1, 1), np.uint8))
    with pytest.raises(DataFileError, match="test_labels"):
        load_medmnist(path)


def test_pickled_object_npz_rejected(tmp_path):
    path = tmp_path / "pickled.npz"
    obj = np.empty(6, dtype=object)
    _write_npz(path, train_labels=obj)
    with pytest.raises(DataFileError):
        load_medmnist(path)


def test_data_file_error_hierarchy():
    assert issubclass(DataFileError, ValueError)
    assert issubclass(DataFileError, SkalValueError)
    assert issubclass(DataFileError, SkalError)


# ------------------------------------------------------------------- digits
def test_digits_images():
    X, y = load_digits_images()
    assert X.shape == (1797, 1, 8, 8)
    assert X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.shape == (1797,) and y.dtype == np.int64
    assert set(np.unique(y).tolist()) == set(range(10))


# --------------------------------------------------------------------- pools
class Images(Dataset):
    def __init__(self, X):
        self.X = X

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.from_numpy(self.X[i]), i


def test_iter_pool_array_and_dataset():
    X = np.arange(10 * 4, dtype=np.float32).reshape(10, 1, 2, 2)
    batches = list(iter_pool(X, 4))
    assert [start for start, _ in batches] == [0, 4, 8]
    assert [len(b) for _, b in batches] == [4, 4, 2]
    ds_batches = list(iter_pool(Images(X), 4))
    assert [start for start, _ in ds_batches] == [0, 4, 8]
    np.testing.assert_array_equal(np.concatenate([b.numpy() for _, b in ds_batches]), X)
    with pytest.raises(SkalValueError):
        list(iter_pool(X, 0))


def test_take_and_materialize():
    X = np.arange(10 * 4, dtype=np.float32).reshape(10, 1, 2, 2)
    np.testing.assert_array_equal(take(X, [3, 1]), X[[3, 1]])
    sub = take(Images(X), [3, 1])
    assert isinstance(sub, Subset) and len(sub) == 2
    np.testing.assert_array_equal(materialize(sub), X[[3, 1]])
    np.testing.assert_array_equal(take(torch.from_numpy(X), [2]).numpy(), X[[2]])
    assert pool_length(Images(X)) == 10
    with pytest.raises(SkalTypeError):
        pool_length(5)
