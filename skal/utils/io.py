"""Atomic file writing: a crash never leaves a half-written result or label file."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_json", "to_jsonable"]


def to_jsonable(obj):
    """Plain JSON types: numpy scalars and arrays become Python numbers and lists, and
    NaN / infinity become ``null`` (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` via a temporary file in the same folder and
    ``os.replace`` (atomic on POSIX and Windows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path, obj, **dump_kwargs):
    """Serialise ``obj`` as strict JSON (see :func:`to_jsonable`) and write it atomically."""
    dump_kwargs.setdefault("indent", 2)
    text = json.dumps(to_jsonable(obj), allow_nan=False, **dump_kwargs)
    return atomic_write_bytes(path, text.encode("utf-8"))
