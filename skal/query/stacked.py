"""Stacked stochastic passes: one batched forward pass over several copies of a pool
batch (augmented views for AIFT, dropout masks for MC dropout), seeded with an explicit
``torch.Generator`` so a ``random_state`` gives the same draws without touching torch's
global generator."""

import numpy as np
import torch

from ..utils.seeding import resolve_seed

__all__ = ["seeded_generator", "repeat_batch", "proba_one_pass", "split_copies"]


def seeded_generator(random_state):
    """A CPU ``torch.Generator`` seeded from ``random_state`` (``None``: fresh entropy)."""
    generator = torch.Generator()
    seed = resolve_seed(random_state)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def repeat_batch(batch, n_copies):
    """``n_copies`` copies of a batch stacked copy-major: row ``k * n + i`` is sample
    ``i`` of copy ``k`` (arrays stay arrays, tensors stay tensors)."""
    if isinstance(batch, torch.Tensor):
        return batch.repeat(n_copies, *([1] * (batch.ndim - 1)))
    return np.concatenate([np.asarray(batch)] * n_copies)


def proba_one_pass(model, X):
    """``predict_proba`` of ``X`` in a single forward pass for skal classifiers (one
    batch of ``len(X)``), float64; other models' own ``predict_proba``."""
    if hasattr(model, "iter_head_outputs"):
        (_, _, z), = list(model.iter_head_outputs(X, batch_size=len(X)))
        return model.logits_to_proba(z.to(torch.float64)).cpu().numpy()
    if isinstance(X, torch.Tensor):
        X = X.numpy()
    return np.asarray(model.predict_proba(X), dtype=np.float64)


def split_copies(proba, n_copies):
    """``(n_copies * n, C)`` copy-major rows as ``(n, n_copies, C)``."""
    return proba.reshape(n_copies, len(proba) // n_copies, -1).transpose(1, 0, 2)
