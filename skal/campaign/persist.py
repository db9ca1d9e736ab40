"""Saving a campaign's estimator, strategy and model without pickle.

* The estimator is stored as JSON: its class and ``get_params(deep=False)``, where
  classes and functions (a torch module class, an optimizer, a criterion) are stored by
  import name (``package.module:QualName``). Only importable, module-level objects can
  be stored this way.
* The strategy is stored by its registry name (:data:`skal.query.registry.STRATEGIES`),
  with ``get_params`` for strategy objects, or by import name for a module-level
  function.
* A trained model is a checkpoint: its torch ``state_dict`` as a safetensors file
  plus a JSON file of metadata, each written atomically (temporary file, fsync,
  rename, fsync of the folder); the campaign database records it only afterwards.

Limits: a strategy or module defined in ``__main__``, a lambda, a closure or an
object without ``get_params`` cannot be named; pass it again to
``Campaign.open(path, query_strategy=..., estimator=...)``. Estimators that are not
torch networks have no weights to save: they are refitted, deterministically with
their ``random_state``, on the labels their checkpoint records.
"""

import functools
import hashlib
import importlib
import json

import numpy as np

from ..exceptions import SkalTypeError, SkalValueError
from ..utils.io import atomic_write_bytes, atomic_write_json
from .store import fsync_dir

__all__ = ["encode_value", "decode_value", "estimator_spec", "build_estimator",
           "strategy_spec", "build_strategy", "save_weights", "load_weights",
           "SpecError"]


class SpecError(SkalValueError):
    """An estimator or strategy cannot be stored or rebuilt by name."""


def _import_name(obj):
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    try:
        if _resolve(f"{module}:{qualname}") is obj:
            return f"{module}:{qualname}"
    except (ImportError, AttributeError):
        return None
    return None


def _resolve(name):
    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def encode_value(value, where="value"):
    """A JSON form of a parameter value (see :func:`decode_value`)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode_value(v, where) for v in value]}
    if isinstance(value, list):
        return [encode_value(v, where) for v in value]
    if isinstance(value, dict):
        return {"__dict__": {str(k): encode_value(v, where) for k, v in value.items()}}
    if isinstance(value, functools.partial):
        return {"__partial__": encode_value(value.func, where),
                "args": [encode_value(a, where) for a in value.args],
                "keywords": {k: encode_value(v, where) for k, v in value.keywords.items()}}
    if isinstance(value, type) or callable(value) and not hasattr(value, "get_params"):
        name = _import_name(value)
        if name is None:
            raise SpecError(
                f"{where}={value!r} cannot be stored by name (defined in __main__, a "
                "lambda or a local object); define it in an importable module, or pass "
                "it again when opening the campaign.")
        return {"__callable__": name}
    if hasattr(value, "get_params"):
        return {"__estimator__": estimator_spec(value)}
    raise SpecError(f"{where}={value!r} ({type(value).__name__}) cannot be stored as JSON; "
                    "pass the object again when opening the campaign.")


def decode_value(value):
    """Inverse of :func:`encode_value`."""
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        return np.asarray(value["__array__"], dtype=value["dtype"])
    if "__tuple__" in value:
        return tuple(decode_value(v) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: decode_value(v) for k, v in value["__dict__"].items()}
    if "__partial__" in value:
        return functools.partial(decode_value(value["__partial__"]),
                                 *[decode_value(a) for a in value["args"]],
                                 **{k: decode_value(v) for k, v in value["keywords"].items()})
    if "__callable__" in value:
        try:
            return _resolve(value["__callable__"])
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"{value['__callable__']} cannot be imported ({exc}); pass the "
                            "object again when opening the campaign.") from exc
    if "__estimator__" in value:
        return build_estimator(value["__estimator__"])
    raise SpecError(f"Unknown stored value {value!r}.")


def estimator_spec(estimator):
    """``{"class": import name, "params": JSON of get_params(deep=False)}``."""
    name = _import_name(type(estimator))
    if name is None:
        raise SpecError(f"The estimator class {type(estimator).__name__} cannot be stored "
                        "by name; pass the estimator again when opening the campaign.")
    params = estimator.get_params(deep=False)
    return {"class": name,
            "params": {k: encode_value(v, f"{type(estimator).__name__}.{k}")
                       for k, v in params.items()}}


def build_estimator(spec):
    """An unfitted estimator from :func:`estimator_spec`."""
    cls = decode_value({"__callable__": spec["class"]})
    return cls(**{k: decode_value(v) for k, v in spec["params"].items()})


def strategy_spec(strategy):
    """The JSON description of a query strategy, or ``None`` when it can only be passed
    again at open time."""
    from ..query.registry import STRATEGIES, get_strategy, strategy_name

    if isinstance(strategy, str):
        get_strategy(strategy)                 # raises on an unknown name
        return {"name": strategy}
    name = strategy_name(strategy)
    if name in STRATEGIES:
        spec = {"name": name}
        if hasattr(strategy, "get_params"):
            spec["params"] = encode_value(strategy.get_params(deep=False), name)
        return spec
    try:
        if hasattr(strategy, "get_params"):
            return {"object": estimator_spec(strategy)}
        return {"callable": encode_value(strategy, "query_strategy")}
    except SpecError:
        return None


def build_strategy(spec):
    """The strategy described by :func:`strategy_spec`."""
    from ..query.registry import get_strategy

    if spec is None:
        raise SpecError("This campaign's query strategy was not stored by name (a lambda, a "
                        "closure or an object defined in __main__): pass it again, "
                        "Campaign.open(path, query_strategy=...).")
    if "name" in spec:
        strategy = get_strategy(spec["name"])
        if "params" in spec:
            strategy.set_params(**decode_value(spec["params"]))
        return strategy
    if "object" in spec:
        return build_estimator(spec["object"])
    return decode_value(spec["callable"])


def _module_of(estimator):
    module = getattr(estimator, "module_", None)
    import torch

    return module if isinstance(module, torch.nn.Module) else None


def save_weights(estimator, path, metadata):
    """Write a fitted torch estimator's ``state_dict`` to ``path`` (safetensors) and
    ``metadata`` (plus the file's sha256) to ``path.with_suffix(".json")``, each
    atomically and durably. Returns the sha256, or None for estimators without torch
    weights (nothing is written then)."""
    module = _module_of(estimator)
    if module is None:
        return None
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    data = save(tensors, metadata={"format": "pt", "skal": "campaign-checkpoint"})
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(path, data)
    atomic_write_json(path.with_suffix(".json"), {**metadata, "sha256": digest,
                                                  "weights": path.name})
    fsync_dir(path.parent)
    return digest


def load_weights(estimator, path, sha256):
    """Load a checkpoint written by :func:`save_weights` into the initialised
    ``estimator.module_``, after checking the file's sha256."""
    from safetensors.torch import load

    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SkalValueError(f"The checkpoint {path} does not match the sha256 the campaign "
                             "recorded; it was changed or damaged. Retrain with train().")
    module = _module_of(estimator)
    if module is None:
        raise SkalTypeError("Checkpoint weights need a torch estimator (one with module_).")
    module.load_state_dict(load(data))
    return estimator


def read_metadata(path):
    """The JSON metadata beside a checkpoint."""
    return json.loads(path.with_suffix(".json").read_text())
