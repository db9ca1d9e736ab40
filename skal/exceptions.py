"""Exceptions raised by skal.

Every error skal raises on bad input derives from :class:`SkalError` *and* from the
matching built-in exception, so ``except ValueError`` keeps working in user code
while ``except skal.SkalError`` catches everything skal-specific.
"""

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

__all__ = [
    "SkalError",
    "SkalValueError",
    "SkalTypeError",
    "NotFittedError",
    "DataFileError",
    "QueryResultError",
]


class SkalError(Exception):
    """Base class of every exception raised by skal."""


class SkalValueError(SkalError, ValueError):
    """An argument has the right type but an invalid value (shape, range, content)."""


class SkalTypeError(SkalError, TypeError):
    """An argument has the wrong type (for example a non-callable strategy)."""


class NotFittedError(SkalError, _SklearnNotFittedError):
    """A model was used before it was fitted.

    Also a :class:`sklearn.exceptions.NotFittedError` (hence a ``ValueError`` and an
    ``AttributeError``), so scikit-learn's own checks recognise it.
    """


class DataFileError(SkalValueError):
    """A data file is missing, unreadable or does not have the expected layout."""


class QueryResultError(SkalValueError):
    """A query strategy returned an invalid answer (indices that are not distinct
    integer positions of the pool, or more samples than asked for). Callers that give
    the strategy a sub-pool (campaign rounds) catch it by type to say which pool."""
