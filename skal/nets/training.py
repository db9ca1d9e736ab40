"""Training calls that either complete or change nothing.

skorch's ``NeuralNet.partial_fit`` wraps its loop in ``except KeyboardInterrupt: pass``:
Ctrl-C returns normally with a half-trained model, and whatever called ``fit`` (a
learner's ``teach``, ``skal simulate``) carries on with it. :func:`run_training` runs
the same loop without swallowing the interrupt, and :func:`rollback_on_error` puts the
net back as it was before the call (unfitted for a first fit) when the call raises
anything (Ctrl-C, an error in the data, a module that fails after ``set_params``).
"""

import contextlib
import copy

import torch

__all__ = ["run_training", "rollback_on_error"]


def run_training(net, X, y, **fit_params):
    """skorch's ``partial_fit`` loop (``on_train_begin``, ``fit_loop``,
    ``on_train_end``) with ``KeyboardInterrupt`` and every other exception propagated;
    ``on_train_end`` is only notified when the loop completed."""
    if not net.initialized_:
        net.initialize()
    net.notify("on_train_begin", X=X, y=y)
    net.fit_loop(X, y, **fit_params)
    net.notify("on_train_end", X=X, y=y)
    return net


def _stateful(value):
    return isinstance(value, (torch.nn.Module, torch.optim.Optimizer))


def _copy_state(obj):
    return copy.deepcopy(obj.state_dict())


@contextlib.contextmanager
def rollback_on_error(net):
    """Restore ``net`` (its attributes, and the weights / optimizer state of every
    module and optimizer it holds, including a module instance passed as a parameter
    and trained in place) if the block raises any ``BaseException``."""
    saved = {key: (copy.deepcopy(value) if key == "history_" else
                   copy.copy(value) if isinstance(value, (list, dict, set)) else value)
             for key, value in vars(net).items()}
    states = [(value, _copy_state(value)) for value in saved.values() if _stateful(value)]
    try:
        yield
    except BaseException:
        vars(net).clear()
        vars(net).update(saved)
        for obj, state in states:
            obj.load_state_dict(state)
        raise
