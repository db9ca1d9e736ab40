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
import math
import numbers

import torch

from ..exceptions import SkalValueError

__all__ = ["run_training", "rollback_on_error", "check_training_params"]


def run_training(net, X, y, **fit_params):
    """skorch's ``partial_fit`` loop (``on_train_begin``, ``fit_loop``,
    ``on_train_end``) with ``KeyboardInterrupt`` and every other exception propagated;
    ``on_train_end`` is only notified when the loop completed."""
    if not net.initialized_:
        net.initialize()
    net.notify("on_train_begin", X=X, y=y)
    try:
        net.fit_loop(X, y, **fit_params)
    except KeyboardInterrupt as exc:
        # skorch's own way for a callback to end training early (``EarlyStopping``
        # raises KeyboardInterrupt): that is a normal end, not Ctrl-C
        if not _raised_by_callback(exc, net):
            raise
    net.notify("on_train_end", X=X, y=y)
    return net


def _raised_by_callback(exc, net):
    """Whether ``exc`` was raised by one of the net's callbacks: the innermost frame
    of its traceback is a method of a callback in ``net.callbacks_``. (A real Ctrl-C
    that lands while a callback's own code runs is read the same way; that window is
    a few Python lines per epoch.)"""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    owner = tb.tb_frame.f_locals.get("self")
    return owner is not None and any(owner is cb for _, cb in getattr(net, "callbacks_", ()))


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


# ``lr="auto"`` (skal's classifiers): the learning rate of a linear head on frozen
# pre-trained features, and of training every layer (from scratch or fine-tuning);
# measured by benchmarks/finetune_switch.py (docs/pretraining.md).
AUTO_LR = {"linear": 1e-2, "network": 1e-3}


def is_auto(value):
    """``value == "auto"`` for any parameter value (arrays included)."""
    return isinstance(value, str) and value == "auto"


def check_training_params(net):
    """Reject hyper-parameters that would crash deep in torch or train in silence
    on nonsense (``batch_size=0``, ``lr=nan``, ``max_epochs=-1``, ...)."""
    def integer(name, minimum, allow=()):
        value = getattr(net, name, None)
        if value in allow and not isinstance(value, (bool, float)):
            return
        if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                or value < minimum):
            allowed = "".join(f" or {a!r}" for a in allow)
            raise SkalValueError(
                f"{name} must be an integer >= {minimum}{allowed}; got {value!r}.")

    integer("batch_size", 1, allow=(-1,))
    integer("max_epochs", 1)
    integer("min_steps", 0, allow=(None,))
    integer("predict_batch_size", 1, allow=(None,))
    lr = getattr(net, "lr", None)
    takes_auto = hasattr(net, "resolved_lr")
    if not (takes_auto and is_auto(lr)) and (
            isinstance(lr, bool) or not isinstance(lr, numbers.Real)
            or not math.isfinite(lr) or lr <= 0):
        allowed = " or 'auto'" if takes_auto else ""
        raise SkalValueError(
            f"lr must be a positive finite number{allowed}; got {lr!r}. Typical values "
            "are 1e-4 to 1e-2.")
    augment = getattr(net, "augment", None)
    if augment is not None and (isinstance(augment, bool)
                                or not isinstance(augment, numbers.Real)
                                or not 0 <= augment <= 1):
        raise SkalValueError(
            f"augment must be None or a fraction of the image size in [0, 1]; got "
            f"{augment!r}.")
