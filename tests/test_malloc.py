"""``tune_malloc``: glibc keeps freed activation memory instead of faulting it back in."""

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from skal import SkalValueError
from skal.utils.malloc import tune_malloc

glibc_only = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
    reason="the C library has no mallopt (not glibc)")


def _run(code, env):
    """Run ``code`` in a fresh process (tune_malloc changes the whole process, so never
    this test process) and return the JSON it prints last."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

# Page faults of 20 allocate-touch-free cycles of an 8 MiB block, before and after
# tune_malloc(), in a process whose allocator maps (and unmaps) every block > 128 KiB.
_FAULTS = textwrap.dedent("""
    import ctypes, ctypes.util, json, resource
    from skal.utils.malloc import tune_malloc

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def faults():
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            block = libc.malloc(2**23)              # 8 MiB, every page touched
            ctypes.memset(block, 1, 2**23)
            libc.free(block)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

    before = faults()
    applied = tune_malloc()
    print(json.dumps({"before": before, "after": faults(), "applied": applied}))
""")

@glibc_only
def test_freed_blocks_are_reused_without_page_faults():
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    result = _run(_FAULTS, env)
    assert result["applied"] is True
    # before: every cycle maps 2048 fresh 4 KiB pages; after: the heap keeps them
    assert result["before"] > 20 * 1500
    assert result["after"] < 3 * 2048


_ENVIRONMENT = textwrap.dedent("""
    import json, os
    from skal.utils.malloc import tune_malloc

    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    result = {"quiet": tune_malloc(child_processes=False),
              "quiet_env": [os.environ.get(k) for k in keys],
              "loud": tune_malloc(mmap_threshold=2**24, trim_threshold=2**27),
              "loud_env": [os.environ.get(k) for k in keys]}
    os.environ["MALLOC_TRIM_THRESHOLD_"] = "123"
    tune_malloc()
    result["user_env"] = os.environ["MALLOC_TRIM_THRESHOLD_"]
    print(json.dumps(result))
""")


@glibc_only
def test_sets_environment_for_child_processes():
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    result = _run(_ENVIRONMENT, env)
    assert result["quiet"] is True and result["quiet_env"] == [None, None]
    assert result["loud"] is True and result["loud_env"] == [str(2**24), str(2**27)]
    assert result["user_env"] == "123"          # a user's own setting wins


def test_no_mallopt_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert tune_malloc() is False


@pytest.mark.parametrize("kwargs", [dict(mmap_threshold=-1), dict(trim_threshold=1.5),
                                    dict(trim_threshold=True),
                                    dict(mmap_threshold=64 * 2**20)])
def test_bad_thresholds(kwargs):
    with pytest.raises(SkalValueError) as info:
        tune_malloc(**kwargs)
    assert isinstance(info.value, ValueError)
