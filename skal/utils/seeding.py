"""Seeding that makes numpy, torch and skorch runs repeatable without side effects."""

import contextlib
import numbers
import threading

import numpy as np
import torch

from ..exceptions import SkalTypeError

__all__ = ["resolve_seed", "torch_seed"]


def resolve_seed(random_state, offset=0):
    """Turn ``random_state`` (None, int or ``np.random.RandomState``) into an int seed.

    ``None`` gives ``None`` (use the global generators). An int gives ``int + offset``
    (kept in torch's range). A ``RandomState`` is advanced to draw a seed.
    """
    if random_state is None:
        return None
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return (int(random_state) + int(offset)) % (2**63 - 1)
    raise SkalTypeError(
        f"random_state must be None, an int or a numpy RandomState; got {random_state!r}."
    )


# torch's generators are global to the process: two seeded blocks running at once in
# threads (joblib's threading backend, Dask workers with several threads) would draw
# from one stream in an unpredictable interleaving. Seeded blocks therefore run one at
# a time per process (re-entrant, so nested seeded fits are fine).
_SEED_LOCK = threading.RLock()


@contextlib.contextmanager
def torch_seed(seed):
    """Run a block with torch's generators seeded, restoring their state afterwards.

    With ``seed=None`` the block runs on the global generators, untouched. Seeded blocks
    of different threads of one process run one after the other, so a seed gives one
    result under thread-based parallelism too (processes run in parallel as usual).
    """
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with _SEED_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
