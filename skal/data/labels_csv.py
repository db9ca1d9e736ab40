"""Reading a labels CSV: the checks every reader of one makes, in one place.

A labels CSV (a campaign's batch of labels, a DICOM folder's labels) is UTF-8 (a
spreadsheet's byte-order mark allowed) with a header row naming its columns. Readers
differ in the columns they need and in what a row means; opening the file, checking
the header and turning every failure into a :class:`skal.exceptions.DataFileError` that
names the file is the same for all.
"""

import csv
from pathlib import Path

from ..exceptions import DataFileError

__all__ = ["read_csv_rows"]


def read_csv_rows(path, required, *, hint=""):
    """The header and the rows of a labels CSV, after checking its columns.

    Parameters
    ----------
    path : str or Path
    required : sequence of str, or callable
        The columns the file must have, or a function of the header (the list of
        column names) returning them, for readers that accept alternatives.
    hint : str, default=""
        Appended to the message when a column is missing: how to fix it.

    Returns
    -------
    columns : list of str
        The header.
    rows : list of dict
        One ``{column: cell}`` a data row; the first is line 2 of the file.

    Raises
    ------
    DataFileError
        The file does not exist, cannot be read as UTF-8 CSV, or lacks a required
        column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"The labels CSV '{path}' does not exist or is not a file.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            needed = required(columns) if callable(required) else required
            missing = [c for c in needed if c not in columns]
            if missing:
                raise DataFileError(
                    f"The labels CSV '{path}' has no column {', '.join(map(repr, missing))}; "
                    f"its columns are {columns!r}. {hint}".rstrip()
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"The labels CSV '{path}' could not be read: {exc}") from exc
    return columns, rows
