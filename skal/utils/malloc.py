"""Keep glibc's allocator from handing activation memory back to the OS after every
batch (CPU inference and pool scoring on Linux).

A forward pass over a batch of 256 small images allocates activations of ~10 MB each.
With glibc's default, adaptive settings, freed blocks at the top of the heap are
returned to the OS (``M_TRIM_THRESHOLD``) and the next batch takes page faults to get
them back. What this costs is measured in ``benchmarks/README.md`` ("Allocator",
``benchmarks/query_speed.py --malloc default``). PyTorch's CPU performance guide
suggests the same kind of fix, or preloading jemalloc or tcmalloc.

:func:`tune_malloc` fixes two thresholds with ``mallopt``: blocks up to
``mmap_threshold`` come from the heap, and up to ``trim_threshold`` of free heap is kept
for reuse. It changes the whole process, so skal never calls it by itself: the ``skal``
command does only when asked (``skal --tune-malloc ...`` or ``SKAL_TUNE_MALLOC=1``),
the benchmarks do, and applications can.
"""

import ctypes
import ctypes.util
import os
import sys

from ..exceptions import SkalValueError

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 2**20     # glibc's ceiling for M_MMAP_THRESHOLD (64-bit)


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def tune_malloc(mmap_threshold=_MMAP_THRESHOLD_MAX, trim_threshold=256 * 2**20, *,
                child_processes=True):
    """Fix glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` for this process.

    Parameters
    ----------
    mmap_threshold : int, default=32 MiB
        Allocations larger than this are mapped (and unmapped when freed); smaller ones
        come from the heap. At most 32 MiB (glibc's ceiling).
    trim_threshold : int, default=256 MiB
        Free memory at the top of the heap kept for reuse instead of being returned to
        the OS.
    child_processes : bool, default=True
        Also set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in
        ``os.environ`` (unless already set), so that processes started afterwards
        (joblib's workers, ``n_jobs``) start with the same settings.

    Returns
    -------
    bool
        Whether the settings were applied: ``False`` where the C library has no
        ``mallopt`` (macOS, Windows) or refused them.
    """
    for name, value in (("mmap_threshold", mmap_threshold),
                        ("trim_threshold", trim_threshold)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SkalValueError(f"{name} must be a non-negative integer of bytes; got "
                                 f"{value!r}.")
    if mmap_threshold > _MMAP_THRESHOLD_MAX:
        raise SkalValueError(f"mmap_threshold={mmap_threshold} exceeds glibc's ceiling "
                             f"of {_MMAP_THRESHOLD_MAX} bytes (32 MiB).")
    mallopt = _mallopt()
    if mallopt is None:
        return False
    applied = (mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
               and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1)
    if applied and child_processes:
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(mmap_threshold))
        os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(trim_threshold))
    return applied
