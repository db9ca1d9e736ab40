"""Keeping a fitted skal classifier: skorch's ``save_params`` / ``load_params`` with
``use_safetensors=True``, plus what skorch does not store.

skorch saves the module's weights only; a skal classifier also needs what it learned
from the data to rebuild the module and read its outputs (``classes_``, input channels,
number of outputs, the final layer's name, the kind of target). These are written as
JSON into the safetensors header's metadata (strings only: no pickle is ever read), so
the recipe of skorch's documentation gives a usable model::

    net.save_params(f_params="model.safetensors", use_safetensors=True)
    new = CNNClassifier(**same_parameters)
    new.initialize()                      # optional: load_params initialises as needed
    new.load_params(f_params="model.safetensors", use_safetensors=True)
    new.predict(X)                        # identical to net.predict(X)
"""

import json
import os

import numpy as np

from ..exceptions import DataFileError, SkalValueError

__all__ = ["fitted_metadata", "save_safetensors", "read_metadata", "restore_metadata"]

_KEY = "skal"
# learned attributes a skal classifier needs besides the weights
_ATTRIBUTES = ("classes_inferred_", "classes_", "multilabel_", "n_channels_in_",
               "n_outputs_", "n_features_in_", "final_layer_name_")


def _encode(value):
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufU":
            raise SkalValueError(
                f"Cannot store classes of dtype {value.dtype} in safetensors metadata; "
                "use numeric or string class labels.")
        return {"array": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def _decode(value):
    if isinstance(value, dict) and "array" in value:
        return np.asarray(value["array"], dtype=np.dtype(value["dtype"]))
    return value


def fitted_metadata(net):
    """The learned attributes of a fitted skal classifier, as one JSON string."""
    state = {name: _encode(net.__dict__[name]) for name in _ATTRIBUTES if name in net.__dict__}
    return json.dumps({"class": type(net).__name__, "attributes": state})


def save_safetensors(net, f_params):
    """Write the module's weights (made contiguous: ``channels_last`` weights are not)
    with the learned attributes in the header's metadata."""
    from safetensors.torch import save, save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in net.module_.state_dict().items()}
    metadata = {_KEY: fitted_metadata(net)}
    if isinstance(f_params, (str, os.PathLike)):
        save_file(tensors, f_params, metadata=metadata)
    else:
        f_params.write(save(tensors, metadata=metadata))


def read_metadata(f_params):
    """The learned attributes stored by :func:`save_safetensors`, or None for a file
    without them (saved by plain skorch)."""
    from safetensors import safe_open

    if not isinstance(f_params, (str, os.PathLike)):
        return None
    try:
        with safe_open(os.fspath(f_params), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, ValueError) as exc:      # missing or not a safetensors file
        raise DataFileError(f"Cannot read safetensors weights from {f_params!r}: {exc}") from exc
    if _KEY not in metadata:
        return None
    return json.loads(metadata[_KEY])


def restore_metadata(net, stored):
    """Set the learned attributes on ``net`` (of the class that saved them)."""
    if stored["class"] != type(net).__name__:
        raise SkalValueError(
            f"The weights were saved from a {stored['class']}; load them into a "
            f"{stored['class']}, not a {type(net).__name__}.")
    for name, value in stored["attributes"].items():
        setattr(net, name, _decode(value))
