"""Stable ids of pool items, and the check that the pool on disk is still the one the
campaign was built on.

* A folder of files (DICOM, PNG, JPEG): the id of an item is its path relative to the
  folder (``patient1/study2/img3.dcm``), with the sha256 and size of the file.
* An array, a ``.npy`` file (read as a memmap) or an ``.npz`` file: the id is the row,
  ``row-000123``, with the sha256 of the row's bytes.

A campaign records every id and hash when it is created. Opening it again compares them
with the pool: a moved, missing or changed pool raises :class:`PoolChangedError` naming
what differs, instead of silently attaching labels to the wrong images.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..exceptions import DataFileError, SkalTypeError, SkalValueError

__all__ = ["PoolChangedError", "describe_pool", "item_rows", "load_pool", "verify_pool",
           "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_ARRAY_KEYS = ("images", "train_images", "x", "X")


class PoolChangedError(SkalValueError):
    """The pool on disk no longer matches the campaign's record of it."""


def _sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_row(row):
    return hashlib.sha256(np.ascontiguousarray(row).tobytes()).hexdigest()


def _npz_key(path, key):
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
    if key is not None:
        if key not in names:
            raise DataFileError(f"{path} has no array {key!r}; its arrays are {names}.")
        return key
    for candidate in _ARRAY_KEYS:
        if candidate in names:
            return candidate
    raise DataFileError(
        f"{path} has none of the image arrays {list(_ARRAY_KEYS)}; its arrays are {names}. "
        "Name the array with key=.")


def describe_pool(pool, *, pattern=None, key=None, size=64):
    """The JSON description of a pool that :func:`load_pool` rebuilds it from.

    ``pool`` is a folder, a ``.npz`` / ``.npy`` file or an in-memory array (which must
    be passed again when the campaign is opened).
    """
    if isinstance(pool, (str, os.PathLike)):
        path = Path(pool).expanduser().resolve()
        if path.is_dir():
            return {"kind": "folder", "root": str(path), "pattern": pattern or "**/*.dcm",
                    "size": int(size)}
        if not path.is_file():
            raise DataFileError(f"The pool {path} does not exist; give a folder of images, "
                                "an .npz or an .npy file.")
        if path.suffix == ".npz":
            return {"kind": "npz", "path": str(path), "key": _npz_key(path, key)}
        if path.suffix == ".npy":
            return {"kind": "npy", "path": str(path)}
        raise DataFileError(f"The pool {path} is neither a folder nor an .npz / .npy file.")
    if hasattr(pool, "shape") and hasattr(pool, "dtype"):
        array = np.asarray(pool)
        if array.ndim not in (3, 4):
            raise SkalValueError(f"An array pool must hold images (n, H, W) or (n, C, H, W); "
                                 f"got shape {array.shape}.")
        return {"kind": "array", "shape": list(array.shape), "dtype": str(array.dtype)}
    raise SkalTypeError(f"pool must be a folder, an .npz / .npy path or an array of images; "
                        f"got {type(pool).__name__}.")


def _folder_files(spec):
    root = Path(spec["root"])
    if not root.is_dir():
        raise PoolChangedError(
            f"The pool folder {root} is gone (moved or deleted). If it moved, open the "
            "campaign with pool=NEW_FOLDER (CLI: --pool); the files are checked against "
            "the campaign's record.")
    files = sorted((p for p in root.glob(spec["pattern"]) if p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())
    return root, files


def _array(spec, array=None):
    """The pool's image array: a memmap for ``.npy``, loaded for ``.npz``, ``array``
    (checked) for in-memory pools."""
    kind = spec["kind"]
    if kind == "npy":
        if not Path(spec["path"]).is_file():
            raise PoolChangedError(f"The pool file {spec['path']} is gone (moved or "
                                   "deleted); open with pool=NEW_PATH if it moved.")
        return np.load(spec["path"], mmap_mode="r", allow_pickle=False)
    if kind == "npz":
        if not Path(spec["path"]).is_file():
            raise PoolChangedError(f"The pool file {spec['path']} is gone (moved or "
                                   "deleted); open with pool=NEW_PATH if it moved.")
        with np.load(spec["path"], allow_pickle=False) as archive:
            return archive[spec["key"]]
    if array is None:
        raise SkalValueError("This campaign's pool is an in-memory array: pass it again, "
                             "Campaign.open(path, pool=X).")
    return np.asarray(array)


def item_rows(spec, array=None, progress=False):
    """``(position, id, path, sha256, size)`` of every item of the pool, in pool order."""
    from tqdm.auto import tqdm

    if spec["kind"] == "folder":
        root, files = _folder_files(spec)
        if not files:
            raise DataFileError(f"No file under {root} matches {spec['pattern']!r}.")
        rows = []
        for k, path in enumerate(tqdm(files, desc="hash pool", unit="file",
                                      disable=not progress)):
            rel = path.relative_to(root).as_posix()
            rows.append((k, rel, rel, _sha256_file(path), path.stat().st_size))
        return rows
    X = _array(spec, array)
    if len(X) == 0:
        raise SkalValueError("The pool is empty.")
    return [(k, f"row-{k:06d}", None, _sha256_row(X[k]), None)
            for k in tqdm(range(len(X)), desc="hash pool", unit="row", disable=not progress)]


def verify_pool(spec, stored, array=None, level="full"):
    """Compare the pool with the ``stored`` item rows; raise :class:`PoolChangedError`
    naming the missing and changed items.

    ``level``: ``"full"`` re-hashes every item, ``"quick"`` checks that files exist
    with the recorded size (folders) or that the array has the recorded shape,
    ``"none"`` checks nothing. Files added to a folder since the campaign began are
    not part of it and are ignored.
    """
    if level not in ("full", "quick", "none"):
        raise SkalValueError(f"verify must be 'full', 'quick' or 'none'; got {level!r}.")
    if level == "none":
        return
    problems = {"missing": [], "changed": []}
    if spec["kind"] == "folder":
        root = Path(spec["root"])
        _folder_files(spec)                     # raises when the folder is gone
        for _, item_id, rel, digest, size in stored:
            path = root / rel
            if not path.is_file():
                problems["missing"].append(item_id)
            elif path.stat().st_size != size or (level == "full"
                                                 and _sha256_file(path) != digest):
                problems["changed"].append(item_id)
    else:
        X = _array(spec, array)
        if len(X) != len(stored):
            raise PoolChangedError(
                f"The pool has {len(X)} rows but the campaign was built on {len(stored)}; "
                "row ids would point at other images. Use the original array.")
        if spec["kind"] == "array" and list(X.shape) != spec["shape"]:
            raise PoolChangedError(f"The pool has shape {list(X.shape)} but the campaign "
                                   f"was built on shape {spec['shape']}.")
        if level == "full":
            problems["changed"] = [item_id for k, item_id, _, digest, _ in stored
                                   if _sha256_row(X[k]) != digest]
    if problems["missing"] or problems["changed"]:
        parts = [f"{len(v)} {k} (e.g. {', '.join(v[:5])})" for k, v in problems.items() if v]
        raise PoolChangedError(
            "The pool no longer matches the campaign: " + "; ".join(parts) + ". Restore "
            "the original files, or open with verify='none' to go on at your own risk.")


class ImageFileDataset(Dataset):
    """PNG / JPEG files read on access as grey ``(1, size, size)`` float32 images in
    [0, 1] (Pillow), for folders of images that are not DICOM."""

    def __init__(self, paths, size=64):
        self.paths = [str(p) for p in paths]
        self.size = int(size)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            image = image.convert("L").resize((self.size, self.size))
            return np.asarray(image, dtype=np.float32)[None] / 255.0


def load_pool(spec, rel_paths=None, array=None):
    """The pool as skal's learners read it: a lazy torch Dataset for folders (DICOM
    through :class:`skal.data.DicomDataset`, PNG / JPEG through
    :class:`ImageFileDataset`) over ``rel_paths`` in pool order, a memmap for
    ``.npy``, an array otherwise."""
    if spec["kind"] != "folder":
        return _array(spec, array)
    root = Path(spec["root"])
    paths = [root / rel for rel in rel_paths]
    if paths and paths[0].suffix.lower() in IMAGE_SUFFIXES:
        return ImageFileDataset(paths, spec["size"])
    from ..data.dicom import DicomDataset

    return DicomDataset(paths, size=spec["size"])
