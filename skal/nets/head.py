"""Finding a network's final ``nn.Linear`` layer and reading its input.

Gradient and embedding strategies need, for each sample, the penultimate features
``h`` (the input of the final linear layer ``z = W h + b``) and the logits ``z``, from
one forward pass. Any module whose output comes straight from an ``nn.Linear`` works:
the layer is found with forward hooks, or named explicitly.
"""

import contextlib
import threading

import torch
from torch import nn

from ..exceptions import SkalValueError

__all__ = ["find_final_linear", "capture_input", "this_thread_only"]


def this_thread_only(hook):
    """Wrap a forward (pre-)hook so that it fires only for forward passes run by the
    thread that created it.

    A hook is registered on a module shared by every thread: without this, concurrent
    ``embed`` / ``query`` calls on one fitted model (threads of joblib, Dask or a web
    server) would record each other's features. The wrapped hook returns ``None`` in
    other threads (their forward pass is left as is).
    """
    owner = threading.get_ident()

    def wrapped(*args, **kwargs):
        if threading.get_ident() == owner:
            return hook(*args, **kwargs)
        return None

    return wrapped


def _as_output_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    raise SkalValueError(
        f"The module returned {type(output).__name__}; skal needs a module whose forward "
        "returns one logits tensor of shape (n, n_outputs)."
    )


def find_final_linear(module, x):
    """Name of the ``nn.Linear`` submodule whose output is the module's output.

    Runs one forward pass on ``x`` in eval mode without gradients (so BatchNorm
    statistics are not touched) with a forward hook on every ``nn.Linear``.

    Raises
    ------
    SkalValueError
        If no linear layer produces the output (e.g. the module ends in a non-linearity);
        then name the layer explicitly with ``final_layer="..."``.
    """
    seen = {}
    hooks = []
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Linear):
            hooks.append(sub.register_forward_hook(this_thread_only(
                lambda _m, _inp, out, name=name: seen.__setitem__(name, out))))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            output = _as_output_tensor(module(x))
    finally:
        for hook in hooks:
            hook.remove()
        module.train(was_training)
    for name, out in seen.items():
        if out is output:
            return name
    for name, out in reversed(list(seen.items())):
        if out.shape == output.shape and torch.equal(out, output):
            return name
    raise SkalValueError(
        f"Could not find the final nn.Linear layer of {type(module).__name__}: its output "
        "does not come directly from an nn.Linear. Make the module end in an nn.Linear "
        "returning logits, or name the layer with final_layer='<submodule name>'."
    )


@contextlib.contextmanager
def capture_input(layer):
    """Context manager recording the input of ``layer`` on each forward call made by
    the calling thread (see :func:`this_thread_only`).

    Yields a dict whose ``"input"`` entry holds the latest input tensor.
    """
    store = {}

    def hook(_module, inputs):
        store["input"] = inputs[0]

    handle = layer.register_forward_pre_hook(this_thread_only(hook))
    try:
        yield store
    finally:
        handle.remove()
