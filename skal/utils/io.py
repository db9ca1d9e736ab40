"""Atomic file writing: a crash never leaves a half-written result or label file."""

import contextlib
import json
import os
import secrets
import signal
import threading
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_files", "atomic_write_json", "json_bytes",
           "to_jsonable"]


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


def _create_temp(folder, name):
    """A new temporary file beside the target, created with mode 0666 minus the
    umask, as any new file (``mkstemp`` would make it 0600)."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file in {folder}")


def _write_temp(path, data):
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def _sigint_deferred():
    """Hold back SIGINT (Ctrl-C) for the block, when running in the main thread of a
    platform that can: the renames of a set of files then happen all or none."""
    can_block = (hasattr(signal, "pthread_sigmask")
                 and threading.current_thread() is threading.main_thread())
    if not can_block:
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def atomic_write_files(contents):
    """Write several files as one unit: ``contents`` maps paths to bytes.

    Every file is first written (and flushed to disk) as a temporary file beside its
    target; only when all are written are they renamed over their targets, one
    ``os.replace`` each, with Ctrl-C held back during the renames. An error or an
    interrupt before that leaves every target as it was (no new file beside an old
    one, as a results JSON beside the plot of an earlier run). New files get the
    mode 0666 minus the umask, like any file the user creates.
    """
    items = [(Path(path), data) for path, data in contents.items()]
    for path, _ in items:
        path.parent.mkdir(parents=True, exist_ok=True)
    temps = []
    try:
        for path, data in items:
            temps.append(_write_temp(path, data))
        with _sigint_deferred():
            for (path, _), tmp in zip(items, temps):
                os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            _unlink(tmp)
        raise
    return [path for path, _ in items]


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` via a temporary file in the same folder and
    ``os.replace`` (atomic on POSIX and Windows); see :func:`atomic_write_files`."""
    return atomic_write_files({path: data})[0]


def json_bytes(obj, **dump_kwargs):
    """``obj`` as strict JSON (see :func:`to_jsonable`), UTF-8 encoded."""
    dump_kwargs.setdefault("indent", 2)
    return json.dumps(to_jsonable(obj), allow_nan=False, **dump_kwargs).encode("utf-8")


def atomic_write_json(path, obj, **dump_kwargs):
    """Serialise ``obj`` as strict JSON (see :func:`to_jsonable`) and write it atomically."""
    return atomic_write_bytes(path, json_bytes(obj, **dump_kwargs))
