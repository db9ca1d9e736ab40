"""Seeding that makes numpy, torch and skorch runs repeatable without side effects.

A seeded fit draws every random number of its training loop (shuffling, augmentation,
dropout, VAE noise) from its *own* ``torch.Generator``, never from torch's global
generator, so two seeded fits running at once in threads of one process are each
deterministic and run concurrently. Only the construction of a module (whose layers
initialise their weights from torch's global generator; ``nn.Linear`` and friends take
no generator) is done under a seeded, restored global generator, in a short section
held by one lock: module construction is the only thing serialised, never training.
"""

import contextlib
import numbers
import threading

import numpy as np
import torch
from torch import nn

from ..exceptions import SkalTypeError, SkalValueError

__all__ = ["resolve_seed", "torch_seed", "seeded_construction", "make_generator",
           "generator_dropout"]

_MAX_SEED = 2**63 - 1


def resolve_seed(random_state, offset=0):
    """Turn ``random_state`` into an int seed: skal's one seed converter.

    ``None`` gives ``None`` (draw from the global generators). A non-negative int gives
    ``int + offset`` (kept in torch's range). A ``np.random.RandomState`` or
    ``np.random.Generator`` is advanced to draw a seed in ``[0, 2**31 - 1)`` (``offset``
    is then ignored: the draw already differs call by call). Negative ints, bools,
    floats and strings are rejected, as scikit-learn's ``check_random_state`` does.

    Raises
    ------
    SkalValueError
        A negative int.
    SkalTypeError
        Anything else that is not None, an int, a RandomState or a Generator.
    """
    if random_state is None:
        return None
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if int(random_state) < 0:
            raise SkalValueError(
                f"random_state must be a non-negative int (or None, a numpy RandomState "
                f"or Generator); got {random_state!r}."
            )
        return (int(random_state) + int(offset)) % _MAX_SEED
    raise SkalTypeError(
        f"random_state must be None, a non-negative int, a numpy RandomState or a numpy "
        f"Generator; got {random_state!r} ({type(random_state).__name__})."
    )


# Guards torch's *global* generator for the instants skal reads or reseeds it: the
# seeded construction of a module, and the draw of a fresh seed for an unseeded fit.
# Re-entrant: code inside a torch_seed block may build or fit seeded skal nets.
_GLOBAL_RNG_LOCK = threading.RLock()


def _devices():
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextlib.contextmanager
def seeded_construction(seed):
    """Construct modules with torch's global generator seeded with ``seed`` (restored
    afterwards); ``None`` runs the block as is. Hold it only around construction: it
    serialises the seeded sections of all threads."""
    if seed is None:
        yield
        return
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=_devices()):
        torch.manual_seed(seed)
        yield


def make_generator(seed, device="cpu"):
    """A ``torch.Generator`` on ``device`` seeded with ``seed``; ``None`` draws a seed
    from torch's global generator (so unseeded runs still follow ``torch.manual_seed``)."""
    if seed is None:
        with _GLOBAL_RNG_LOCK:
            seed = int(torch.randint(0, 2**62, (1,)).item())
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(int(seed))
    return generator


@contextlib.contextmanager
def torch_seed(seed):
    """Seeded construction, for code that builds modules outside a skal fit.

    Kept for compatibility: prefer :func:`make_generator` for random draws.
    """
    with seeded_construction(seed):
        yield


_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def _dropout_forward(layer, generator):
    channelwise = type(layer) is not nn.Dropout

    def forward(x):
        if not layer.training or layer.p == 0:
            return x
        if layer.p >= 1:
            return x * 0
        shape = (tuple(x.shape[:2]) + (1,) * (x.ndim - 2)) if channelwise and x.ndim > 2 \
            else tuple(x.shape)
        keep = torch.rand(shape, generator=generator, device=generator.device) >= layer.p
        return x * keep.to(device=x.device, dtype=x.dtype) / (1.0 - layer.p)

    return forward


@contextlib.contextmanager
def generator_dropout(module, generator):
    """Within the block, the standard dropout layers of ``module`` (``nn.Dropout``,
    ``nn.Dropout1d/2d/3d``, exact types) draw their masks from ``generator`` instead of
    torch's global generator (same distribution: keep with probability ``1 - p``,
    scaled by ``1 / (1 - p)``; a whole channel at a time for the ``Nd`` variants).
    Dropout written functionally inside a module's ``forward`` is not affected."""
    patched = [layer for layer in module.modules() if type(layer) in _DROPOUTS
               and "forward" not in vars(layer)]
    for layer in patched:
        object.__setattr__(layer, "forward", _dropout_forward(layer, generator))
    try:
        yield
    finally:
        for layer in patched:
            vars(layer).pop("forward", None)

