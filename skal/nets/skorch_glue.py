"""The skorch glue every skal net shares: the CNN classifiers (through
:class:`skal.nets.base.ImageClassifierMixin`) and :class:`skal.nets.VAE`.

* **Constructor.** Each net keeps its own explicit ``__init__`` signature (scikit-learn's
  ``get_params`` and ``clone`` read it) and hands its arguments to
  :meth:`SkorchNetMixin._init_net`, which gives skorch's constructor the parameters
  skorch knows and stores skal's own (``random_state``, ``predict_batch_size``,
  ``min_steps``, ...) as attributes; training batches are shuffled unless
  ``iterator_train__shuffle`` says otherwise.
* **Parameters.** skorch lists every attribute not ending in ``_`` as a parameter,
  its private bookkeeping (``_params_to_validate``) included; private names are not
  parameters.
* **Batches.** Images become float32 ``(n, C, H, W)`` tensors before the forward pass;
  in training, a last batch of a single sample is dropped (BatchNorm cannot normalise
  one sample), and shuffling, augmentation and dropout draw from the fit's own
  ``torch.Generator`` (:meth:`SkorchNetMixin._fit_generator`), never from torch's
  global one.
* **Constructors of parts.** Values inferred from the data (channels, outputs, image
  shape) are passed to a module or criterion class only when its constructor declares
  them (:func:`declared_kwargs`).
"""

import contextlib
import inspect
from collections.abc import Mapping

from skorch import NeuralNet
from torch import nn
from torch.utils.data import DataLoader

from ..utils.seeding import generator_dropout, make_generator
from ..utils.validation import to_image_tensor

__all__ = ["SkorchNetMixin", "declared_kwargs"]


def _skorch_parameters(cls):
    """The parameter names the constructors of ``cls``'s skorch base classes take."""
    names = set()
    for klass in cls.__mro__:
        if issubclass(klass, NeuralNet) and klass.__module__.partition(".")[0] == "skorch":
            names.update(inspect.signature(klass.__init__).parameters)
    return names - {"self", "args", "kwargs"}


def declared_kwargs(factory, inferred, given=()):
    """The entries of ``inferred`` that ``factory``'s constructor declares, that are
    known (not ``None``) and that the user did not give (``given``).

    A module or criterion *instance* (or anything not callable) gets none: it is used
    as it is.
    """
    if isinstance(factory, nn.Module) or not callable(factory):
        return {}
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {key: value for key, value in inferred.items()
            if value is not None and key in accepted and key not in given}


class SkorchNetMixin:
    """Mixed in before a skorch ``NeuralNet`` class: see the module docstring."""

    def _init_net(self, arguments):
        """Set the net up from the arguments of its ``__init__``.

        ``arguments`` is ``locals()`` taken as the first statement of the concrete
        class's ``__init__``: ``self``, ``module``, ``args``, ``kwargs`` and the named
        parameters. skorch's constructor gets ``module``, ``*args``, the named
        parameters its signature declares and ``**kwargs`` (``iterator_train__shuffle``
        defaulting to ``True``); the other named parameters, skal's own, are stored as
        attributes.
        """
        arguments = {key: value for key, value in arguments.items() if key != "self"}
        args = arguments.pop("args", ())
        kwargs = dict(arguments.pop("kwargs", {}))
        kwargs.setdefault("iterator_train__shuffle", True)
        skorch_names = _skorch_parameters(type(self))
        for_skorch = {key: value for key, value in arguments.items() if key in skorch_names}
        super().__init__(for_skorch.pop("module"), *args, **for_skorch, **kwargs)
        for key, value in arguments.items():
            if key not in skorch_names:
                setattr(self, key, value)

    def _get_param_names(self):
        # skorch lists every attribute not ending in "_" as a parameter, including its
        # private bookkeeping (``_params_to_validate``); private names are not
        # parameters (clone rebuilds them from the keyword arguments).
        return [name for name in super()._get_param_names() if not name.startswith("_")]

    def get_default_callbacks(self):
        """skorch's default callbacks, without the epoch table when ``verbose=0``
        (it is built every epoch even when nothing is printed, a tenth of the cost of a
        small fit)."""
        callbacks = super().get_default_callbacks()
        if not self.verbose:
            callbacks = [(name, cb) for name, cb in callbacks if name != "print_log"]
        return callbacks

    def check_data(self, X, y=None):
        """Data are validated in ``fit``; skorch's own checks (and label inference)
        are skipped."""

    def infer(self, x, **fit_params):
        """Forward one batch, converting it with :meth:`_batch_tensor` first."""
        if not isinstance(x, Mapping):
            x = self._batch_tensor(x)
        return super().infer(x, **fit_params)

    def _batch_tensor(self, x):
        """A batch of images as a float32 ``(n, C, H, W)`` tensor."""
        return to_image_tensor(x)

    def get_iterator(self, dataset, training=False):
        """skorch's iterator; in training, a last batch of a single sample is dropped
        (BatchNorm cannot normalise one sample; the shuffle drops a different one each
        epoch) unless ``iterator_train__drop_last`` is set, and the fit's own generator
        shuffles."""
        if training and self.iterator_train is DataLoader:
            kwargs = self.get_params_for("iterator_train")
            batch_size = kwargs.get("batch_size", self.batch_size)
            n = len(dataset)
            if batch_size == -1:
                batch_size = n
            if "drop_last" not in kwargs and batch_size > 1 and n > 1 and n % batch_size == 1:
                kwargs["drop_last"] = True
            if getattr(self, "_generator", None) is not None:
                # the fit's own generator: shuffling never reads torch's global one
                kwargs.setdefault("generator", self._generator)
            return DataLoader(dataset, **{**kwargs, "batch_size": batch_size})
        return super().get_iterator(dataset, training=training)

    @contextlib.contextmanager
    def _fit_generator(self, seed):
        """Within the block, the fit's own ``torch.Generator`` (seeded with ``seed``)
        is ``self._generator``, which shuffling, augmentation and the module's dropout
        draw from (thread-safe, see :mod:`skal.utils.seeding`)."""
        self._generator = make_generator(seed)
        try:
            with generator_dropout(self.module_, self._generator):
                yield self._generator
        finally:
            vars(self).pop("_generator", None)
