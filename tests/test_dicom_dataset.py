"""Tests of skal.data.DicomDataset (lazy pools) and skal.data.load_dicom_folder."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from skal.data import DicomDataset, DicomReadError, load_dicom_folder, read_dicom
from skal.data.pool import iter_pool, materialize, take
from skal.exceptions import DataFileError, SkalTypeError, SkalValueError
from conftest import write_dicom


# ----------------------------------------------------------------------- helpers



def disc_image(label, rng, size=40):
    """Class 1: a bright disc on noise; class 0: noise only."""
    yy, xx = np.mgrid[:size, :size]
    img = rng.randint(0, 200, size=(size, size)).astype(float)
    if label:
        cy, cx = rng.randint(12, size - 12, size=2)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] += 800
    return img.astype(np.uint16)


@pytest.fixture
def pool_folder(tmp_path):
    """12 files in two sub-folders, with a labels CSV keyed by relative path."""
    rng = np.random.RandomState(0)
    root = tmp_path / "pool"
    rows = ["path,label"]
    for i in range(12):
        label = i % 2
        rel = f"{'a' if i < 6 else 'b'}/img_{i:02d}.dcm"
        write_dicom(root / rel, disc_image(label, rng))
        rows.append(f"{rel},{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return root, tmp_path / "labels.csv"


def sorted_paths(root):
    return sorted(str(p) for p in root.glob("**/*.dcm"))


# ------------------------------------------------------------------- Dataset
def test_items_are_float32_tensors(pool_folder):
    root, _ = pool_folder
    paths = sorted_paths(root)
    ds = DicomDataset(paths, size=32)
    assert len(ds) == 12
    item = ds[0]
    assert isinstance(item, torch.Tensor) and item.dtype == torch.float32
    assert tuple(item.shape) == (1, 32, 32)
    np.testing.assert_array_equal(item[0].numpy(), read_dicom(paths[0], size=32))
    assert torch.equal(ds[-1], ds[11])
    assert torch.equal(ds[np.int64(3)], ds[3])
    with pytest.raises(IndexError):
        ds[12]
    with pytest.raises(SkalTypeError):
        ds[1:3]


def test_labelled_items_put_the_image_first(pool_folder):
    root, _ = pool_folder
    paths = sorted_paths(root)
    ds = DicomDataset(paths, labels=np.arange(12) % 2, size=(24, 16))
    image, label = ds[3]
    assert tuple(image.shape) == (1, 24, 16) and int(label) == 1


def test_size_options_and_validation(pool_folder):
    root, _ = pool_folder
    paths = sorted_paths(root)
    with pytest.raises(SkalValueError, match="fixed size"):
        DicomDataset(paths, size=None)
    with pytest.raises(SkalValueError, match="labels"):
        DicomDataset(paths, labels=[0, 1])
    with pytest.raises(SkalValueError, match="empty"):
        DicomDataset([])
    with pytest.raises(SkalTypeError, match="single path"):
        DicomDataset(paths[0])
    with pytest.raises(SkalTypeError, match="unknown read option"):
        DicomDataset(paths, windw=(1, 2))
    with pytest.raises(SkalValueError, match="frames='all'"):
        DicomDataset(paths, frames="all")
    with pytest.raises(SkalValueError, match="cache_size"):
        DicomDataset(paths, cache_size=-1)
    ds = DicomDataset(paths, size=16, window=False, frames="mean")
    assert tuple(ds[0].shape) == (1, 16, 16)


def test_lru_cache_is_bounded(pool_folder):
    root, _ = pool_folder
    paths = sorted_paths(root) * 5  # a 60-item pool
    ds = DicomDataset(paths, size=16, cache_size=4)
    rng = np.random.RandomState(0)
    for i in rng.randint(0, len(ds), size=300):
        ds[int(i)]
        assert ds.cache_info()["currsize"] <= 4
    for _, _batch in iter_pool(ds, batch_size=7):  # a full pass over the pool
        assert ds.cache_info()["currsize"] <= 4
    info = ds.cache_info()
    assert info["maxsize"] == 4 and info["currsize"] == 4
    assert info["hits"] + info["misses"] == 300 + len(ds)


def test_lru_cache_hits_and_eviction_order(pool_folder):
    root, _ = pool_folder
    ds = DicomDataset(sorted_paths(root), size=8, cache_size=2)
    ds[0], ds[1], ds[0]  # 0 is now most recent
    assert ds.cache_info()["hits"] == 1
    ds[2]  # evicts 1, the least recently used
    ds[2], ds[0]  # both still cached: hits
    assert ds.cache_info()["hits"] == 3 and ds.cache_info()["misses"] == 3
    ds[1]  # was evicted: a miss
    assert ds.cache_info()["misses"] == 4
    ds.cache_clear()
    assert ds.cache_info() == {"hits": 0, "misses": 0, "maxsize": 2, "currsize": 0}


def test_cache_can_be_disabled(pool_folder):
    root, _ = pool_folder
    ds = DicomDataset(sorted_paths(root), size=8, cache_size=0)
    for i in range(len(ds)):
        ds[i]
    assert ds.cache_info()["currsize"] == 0 and ds.cache_info()["misses"] == 12


def test_returned_tensors_do_not_alias_the_cache(pool_folder):
    root, _ = pool_folder
    ds = DicomDataset(sorted_paths(root), size=8)
    first = ds[0]
    first.fill_(-5.0)
    assert ds[0].min() >= 0.0


def test_pickles_without_cache(pool_folder):
    root, _ = pool_folder
    ds = DicomDataset(sorted_paths(root), labels=np.arange(12), size=8)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.cache_info()["currsize"] == 0
    assert torch.equal(clone[5][0], ds[5][0]) and clone[5][1] == 5


# ------------------------------------------------------------ pool contract
@pytest.mark.parametrize("labelled", [False, True])
def test_iter_pool_contract(pool_folder, labelled):
    root, _ = pool_folder
    paths = sorted_paths(root)
    labels = np.arange(12) % 2 if labelled else None
    ds = DicomDataset(paths, labels, size=20)
    starts, batches = [], []
    for start, batch in iter_pool(ds, batch_size=5):
        assert isinstance(batch, torch.Tensor) and batch.dtype == torch.float32
        assert tuple(batch.shape[1:]) == (1, 20, 20)
        starts.append(start)
        batches.append(batch)
    assert starts == [0, 5, 10] and [len(b) for b in batches] == [5, 5, 2]
    X = materialize(ds, batch_size=5)
    assert X.shape == (12, 1, 20, 20) and X.dtype == np.float32
    for i, path in enumerate(paths):
        np.testing.assert_array_equal(X[i, 0], read_dicom(path, size=20))
    sub = take(ds, [3, 7])
    assert isinstance(sub, Subset) and materialize(sub).shape == (2, 1, 20, 20)


def test_dataloader_with_workers(pool_folder):
    root, _ = pool_folder
    ds = DicomDataset(sorted_paths(root), np.arange(12) % 2, size=8)
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    images = torch.cat([x for x, _ in loader])
    assert tuple(images.shape) == (12, 1, 8, 8)


def test_unreadable_item_raises_dicom_read_error(pool_folder, tmp_path):
    root, _ = pool_folder
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"garbage" * 50)
    ds = DicomDataset(sorted_paths(root)[:2] + [str(bad)], size=8)
    assert tuple(ds[0].shape) == (1, 8, 8)
    with pytest.raises(DicomReadError, match="bad.dcm"):
        ds[2]
    with pytest.raises(DicomReadError):
        list(iter_pool(ds, batch_size=2))


# ---------------------------------------------------------------- from_folder
def test_from_folder_without_labels(pool_folder):
    root, _ = pool_folder
    ds = DicomDataset.from_folder(root, size=16)
    assert len(ds) == 12 and ds.labels is None
    assert ds.paths == sorted_paths(root)
    assert tuple(ds[0].shape) == (1, 16, 16)
    assert len(DicomDataset.from_folder(root, pattern="a/*.dcm", size=8)) == 6


def test_from_folder_with_labels_by_relative_path(pool_folder):
    root, csv_path = pool_folder
    ds = DicomDataset.from_folder(root, labels_csv=csv_path, size=16)
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels, np.arange(12) % 2)
    image, label = ds[1]
    assert tuple(image.shape) == (1, 16, 16) and label == 1


def test_from_folder_labels_by_file_name_and_custom_columns(pool_folder, tmp_path):
    root, _ = pool_folder
    csv_path = tmp_path / "names.csv"
    # even rows: Windows-style "./a/..." keys; odd rows: bare file names; with a BOM
    csv_path.write_text(
        "file,notes,diagnosis\n"
        + "".join(f".\\{'a' if i < 6 else 'b'}\\img_{i:02d}.dcm,x,{'disc' if i % 2 else 'none'}\n"
                  for i in range(0, 12, 2))
        + "".join(f"img_{i:02d}.dcm,y,{'disc' if i % 2 else 'none'}\n" for i in range(1, 12, 2)),
        encoding="utf-8-sig",
    )
    ds = DicomDataset.from_folder(root, labels_csv=csv_path, path_column="file",
                                  label_column="diagnosis", size=8)
    assert ds.labels.tolist() == ["none", "disc"] * 6


def test_from_folder_errors(pool_folder, tmp_path):
    root, csv_path = pool_folder
    with pytest.raises(DataFileError, match="does not exist"):
        DicomDataset.from_folder(tmp_path / "nowhere")
    with pytest.raises(DataFileError, match="matches"):
        DicomDataset.from_folder(root, pattern="**/*.png")
    with pytest.raises(DataFileError, match="labels CSV"):
        DicomDataset.from_folder(root, labels_csv=tmp_path / "missing.csv")
    with pytest.raises(DataFileError, match="no column 'target'.*columns are"):
        DicomDataset.from_folder(root, labels_csv=csv_path, label_column="target")
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(csv_path.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(DataFileError, match="2 of 12 files.*no row.*b/img_10.dcm"):
        DicomDataset.from_folder(root, labels_csv=partial)
    conflict = tmp_path / "conflict.csv"
    conflict.write_text(csv_path.read_text() + "a/img_00.dcm,1\n")
    with pytest.raises(DataFileError, match="two labels"):
        DicomDataset.from_folder(root, labels_csv=conflict)
    empty_label = tmp_path / "empty_label.csv"
    empty_label.write_text(csv_path.read_text().replace("a/img_00.dcm,0", "a/img_00.dcm,"))
    with pytest.raises(DataFileError, match="empty 'label'"):
        DicomDataset.from_folder(root, labels_csv=empty_label)


# ---------------------------------------------------------- load_dicom_folder
def test_load_dicom_folder(pool_folder):
    root, csv_path = pool_folder
    X, y, paths = load_dicom_folder(root, csv_path, size=16)
    assert X.shape == (12, 1, 16, 16) and X.dtype == np.float32
    np.testing.assert_array_equal(y, np.arange(12) % 2)
    assert paths == sorted_paths(root)
    X2, y2, _ = load_dicom_folder(root, None, size=16, n_jobs=1)
    assert y2 is None and np.array_equal(X, X2)


def test_load_dicom_folder_skips_bad_files(pool_folder):
    root, csv_path = pool_folder
    (root / "a" / "img_03.dcm").write_bytes(b"\x00" * 10)  # damaged
    X, y, paths = load_dicom_folder(root, csv_path, size=16)
    assert X.shape == (11, 1, 16, 16) and len(y) == 11 and len(paths) == 11
    assert not any(p.endswith("img_03.dcm") for p in paths)
    np.testing.assert_array_equal(y, np.delete(np.arange(12) % 2, 3))
    with pytest.raises(DicomReadError, match="img_03.dcm"):
        load_dicom_folder(root, csv_path, size=16, on_error="raise")
    with pytest.raises(SkalValueError):
        load_dicom_folder(root, csv_path, size=None)


# --------------------------------------------------------- skal's learner
@pytest.fixture
def one_torch_thread():
    """Tiny networks train far faster on one thread (no contention on busy CI cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_active_learner_queries_a_dicom_pool(pool_folder, one_torch_thread):
    try:
        from skal import ActiveLearner, CNNClassifier
        from skal.query import entropy_sampling
    except ImportError as exc:  # the learner is written in parallel
        pytest.skip(f"skal's learner is not available yet: {exc}")
    root, csv_path = pool_folder
    dataset = DicomDataset.from_folder(root, labels_csv=csv_path, size=32)
    rng = np.random.RandomState(0)
    X0 = rng.rand(6, 1, 32, 32).astype(np.float32)
    y0 = np.array([0, 1, 0, 1, 0, 1])
    net = CNNClassifier(max_epochs=2, random_state=0)
    learner = ActiveLearner(net, entropy_sampling, X_training=X0, y_training=y0)
    idx, Xq = learner.query(dataset, n_instances=3)
    assert len(idx) == 3 and len(set(np.asarray(idx).tolist())) == 3
    assert materialize(Xq).shape == (3, 1, 32, 32)
    assert learner.predict_proba(dataset).shape == (len(dataset), 2)
