"""An append-only array that grows in place (amortised O(1) per appended row).

modAL re-stacks the whole training set into a new array on every ``teach``
(``np.concatenate``), so memory traffic grows quadratically over a campaign. skal keeps
the labelled data in a buffer whose capacity doubles when full, and hands out views.
"""

import numpy as np

from ..exceptions import SkalValueError

__all__ = ["GrowableArray"]


class GrowableArray:
    """Rows of one shape, appended in place; :attr:`view` is ``data[:len]`` (no copy)."""

    def __init__(self, initial=None):
        self._data = None
        self._n = 0
        if initial is not None:
            self.append(initial)

    def __len__(self):
        return self._n

    @property
    def view(self):
        """The stored rows as an array view (``None`` when empty)."""
        return None if self._data is None else self._data[:self._n]

    @property
    def capacity(self):
        return 0 if self._data is None else len(self._data)

    def check_compatible(self, rows, name="X"):
        """Raise unless ``rows`` has the row shape of what is stored."""
        rows = np.asarray(rows)
        if self._data is not None and rows.shape[1:] != self._data.shape[1:]:
            raise SkalValueError(
                f"{name} rows have shape {rows.shape[1:]} but the stored data have "
                f"{self._data.shape[1:]}; new samples must match the training data."
            )
        return rows

    def append(self, rows):
        """Append rows (copied in); returns the new length."""
        rows = self.check_compatible(rows)
        if rows.ndim == 0:
            raise SkalValueError("Cannot append a scalar; pass an array of rows.")
        needed = self._n + len(rows)
        if self._data is None:
            self._data = np.empty((max(needed, 16),) + rows.shape[1:], dtype=rows.dtype)
        else:
            dtype = np.result_type(self._data.dtype, rows.dtype)
            if needed > len(self._data) or dtype != self._data.dtype:
                capacity = max(needed, 2 * len(self._data))
                grown = np.empty((capacity,) + self._data.shape[1:], dtype=dtype)
                grown[:self._n] = self._data[:self._n]
                self._data = grown
        self._data[self._n:needed] = rows
        self._n = needed
        return self._n

    def state(self):
        """What :meth:`restore` needs to undo every later ``append`` (the storage array,
        which ``append`` replaces rather than changes when it grows or changes dtype,
        and the length)."""
        return self._data, self._n

    def restore(self, state):
        """Return to a :meth:`state`: same rows, same dtype (used to roll back a failed
        call)."""
        self._data, self._n = state

    def truncate(self, n):
        """Forget rows beyond the first ``n`` (used to roll back a failed call)."""
        if not 0 <= n <= self._n:
            raise SkalValueError(f"cannot truncate {self._n} rows to {n}.")
        self._n = n
