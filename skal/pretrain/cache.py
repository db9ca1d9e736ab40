"""Pre-train once per pool: an encoder file cache keyed by the pool's content and the
pre-training parameters, so campaigns, strategies, seeds and later runs share one
encoder."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone

from ..data.pool import iter_pool
from ..exceptions import SkalTypeError

__all__ = ["pool_fingerprint", "pretrain_key", "cached_encoder", "default_cache_dir"]


def default_cache_dir():
    """``$SKAL_CACHE_DIR/encoders``, else ``~/.cache/skal/encoders``."""
    root = os.environ.get("SKAL_CACHE_DIR") or Path.home() / ".cache" / "skal"
    return Path(root) / "encoders"


def pool_fingerprint(X, batch_size=1024):
    """SHA-256 of the pool's pixels, shapes and dtype (read batch by batch)."""
    digest = hashlib.sha256()
    for _, batch in iter_pool(X, batch_size):
        arr = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}{arr.shape[1:]}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def pretrain_key(pretrainer, X):
    """Hex key of (pool content, pre-trainer class and parameters)."""
    params = pretrainer.get_params(deep=False)
    params.pop("progress", None)          # does not change the result
    text = json.dumps({"class": type(pretrainer).__qualname__,
                       "params": {k: repr(v) for k, v in sorted(params.items())},
                       "pool": pool_fingerprint(X)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_encoder(pretrainer, X, cache_dir=None, *, progress=None):
    """Path of an encoder file pre-trained by ``pretrainer`` on ``X``: read from the cache
    when this pool and these parameters were pre-trained before, else fitted (on a
    clone; ``pretrainer`` is not modified) and saved.

    Parameters
    ----------
    pretrainer : skal.pretrain.SimCLR (unfitted parameters)
    X : the pool (only its images; never the test set)
    cache_dir : path, None or False
        Folder of the cached files (``None``: :func:`default_cache_dir`). ``False``
        disables the cache: the encoder is written to a temporary file.
    progress : bool or None
        Override the pre-trainer's progress bar.
    """
    if not (hasattr(pretrainer, "fit") and hasattr(pretrainer, "save")):
        raise SkalTypeError(
            f"pretrain={pretrainer!r} must be a pre-trainer with fit(X) and save(path), "
            "e.g. skal.pretrain.SimCLR().")
    key = pretrain_key(pretrainer, X)
    if cache_dir is False:
        import tempfile
        folder = Path(tempfile.mkdtemp(prefix="skal-encoder-"))
    else:
        folder = Path(default_cache_dir() if cache_dir is None else cache_dir)
    path = folder / f"{type(pretrainer).__name__.lower()}-{key}.safetensors"
    if path.is_file():
        return path
    model = clone(pretrainer)
    if progress is not None and "progress" in model.get_params(deep=False):
        model.set_params(progress=progress)
    model.fit(X)
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    model.save(partial)
    os.replace(partial, path)             # atomic: a reader never sees half a file
    return path
