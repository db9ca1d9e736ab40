"""The SQLite layer of a campaign: one database file, every change in one transaction.

The database is the campaign's single source of truth. It uses only the standard
library's :mod:`sqlite3`, in WAL mode with ``synchronous=FULL``: a change is on disk
when its ``COMMIT`` returns, so a process killed at any moment (``kill -9``) loses at
most the change that had not been acknowledged yet. Two processes writing at once are
serialised by SQLite's lock (``BEGIN IMMEDIATE`` and a busy timeout), never interleaved.

The file is marked with an application id (``PRAGMA application_id``) and a schema
version (``PRAGMA user_version``), so a foreign SQLite file, a file that is not a
database, or one written by a newer skal is refused with a clear message.

This module imports only the standard library, so tools that only read or write
labels start fast.
"""

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ..exceptions import SkalError, SkalValueError

__all__ = ["CampaignStore", "CampaignDatabaseError", "APPLICATION_ID", "SCHEMA_VERSION",
           "DB_NAME", "utc_now", "is_busy_error"]

APPLICATION_ID = 0x534B414C       # "SKAL"
SCHEMA_VERSION = 1
DB_NAME = "campaign.sqlite"
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                          -- JSON
);
CREATE TABLE items (
    position INTEGER PRIMARY KEY,                -- row of the pool, 0..n-1
    id       TEXT NOT NULL UNIQUE,               -- stable id: relative path or row-N
    path     TEXT,                               -- relative path for file pools
    hash     TEXT NOT NULL,                      -- content hash (sha256, hex)
    size     INTEGER                             -- bytes, for file pools
);
CREATE TABLE labels (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT, -- order of arrival
    item_id   TEXT NOT NULL REFERENCES items(id),
    label     TEXT NOT NULL,                     -- JSON: a class name or a list of them
    annotator TEXT,
    created   TEXT NOT NULL,                     -- ISO 8601 UTC
    holdout   INTEGER NOT NULL DEFAULT 0,        -- 1: evaluation only, never trained on
    round     INTEGER                            -- round that proposed the item, if any
);
CREATE INDEX labels_item ON labels(item_id, seq);
CREATE TABLE rounds (
    round      INTEGER PRIMARY KEY,
    created    TEXT NOT NULL,
    strategy   TEXT NOT NULL,
    params     TEXT NOT NULL,                    -- JSON
    seed       INTEGER,
    checkpoint INTEGER REFERENCES checkpoints(id),
    batch      TEXT NOT NULL,                    -- JSON list of item ids, in query order
    scores     TEXT,                             -- JSON list, or null
    n_labels   INTEGER NOT NULL,                 -- training labels when proposed
    closed     INTEGER NOT NULL DEFAULT 0        -- 1 once a model was trained after it
);
CREATE TABLE checkpoints (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    created   TEXT NOT NULL,
    file      TEXT,                              -- relative to the campaign folder, or null
    sha256    TEXT,
    label_seq INTEGER NOT NULL,                  -- labels up to this seq were used
    n_labels  INTEGER NOT NULL,
    metrics   TEXT NOT NULL                      -- JSON
);
"""


def is_busy_error(exc):
    """Whether an ``sqlite3`` error says that another connection holds the database
    (``SQLITE_BUSY`` / ``SQLITE_LOCKED``, read from the error code; Python 3.10's
    exceptions carry no code, and there the message "database is locked" is the only
    sign)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
    return (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class CampaignDatabaseError(SkalError, RuntimeError):
    """The campaign database is missing, foreign, corrupt or from a newer skal."""


def utc_now():
    """The current time, ISO 8601 in UTC with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class CampaignStore:
    """One connection to a campaign's database.

    Parameters
    ----------
    path : str or Path
        The database file.
    create : bool
        Create a new database (the file must not exist) instead of opening one.
    busy_timeout : float
        Seconds to wait for another process's write before giving up.
    """

    def __init__(self, path, create=False, busy_timeout=BUSY_TIMEOUT_S):
        self.path = Path(path)
        if create and self.path.exists():
            raise SkalValueError(f"{self.path} already exists; a campaign is created once.")
        if not create and not self.path.is_file():
            raise CampaignDatabaseError(
                f"No campaign database at {self.path}; create the campaign first "
                "(Campaign.create or `skal campaign init`)."
            )
        self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout,
                                    isolation_level=None, check_same_thread=False)
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if create:
                self._create()
            else:
                self._check()
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise CampaignDatabaseError(
                f"{self.path} is not a readable skal campaign database ({exc}); it may be "
                "corrupt or another program's file."
            ) from exc
        except BaseException:
            self.conn.close()
            raise

    # ----------------------------------------------------------------- set-up
    def _create(self):
        with self.transaction():
            self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)

    def _check(self):
        app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise CampaignDatabaseError(
                f"{self.path} is an SQLite database but not a skal campaign "
                f"(application id {app_id:#x}, expected {APPLICATION_ID:#x})."
            )
        if version > SCHEMA_VERSION:
            raise CampaignDatabaseError(
                f"{self.path} was written by a newer skal (schema version {version}, this "
                f"skal reads up to {SCHEMA_VERSION}); upgrade skal to open it."
            )
        if version < 1:
            raise CampaignDatabaseError(f"{self.path} has no skal schema (version {version}).")
        self.conn.execute("SELECT count(*) FROM items").fetchone()

    def close(self):
        self.conn.close()

    # ----------------------------------------------------------- transactions
    @contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front (waiting up
        to the busy timeout for another writer), rolls back on any error."""
        self._begin()
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _begin(self):
        # sqlite3's own busy handler covers BEGIN IMMEDIATE; retry on the rare
        # "database is locked" raised without waiting (WAL checkpoint races).
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy_error(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    # ------------------------------------------------------------------- meta
    def set_meta(self, key, value):
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                          (key, json.dumps(value)))

    def meta(self, key, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # ------------------------------------------------------------------ items
    def insert_items(self, rows):
        """``rows``: ``(position, id, path, hash, size)`` tuples."""
        self.conn.executemany(
            "INSERT INTO items(position, id, path, hash, size) VALUES (?, ?, ?, ?, ?)", rows)

    def items(self):
        """``(position, id, path, hash, size)`` in pool order."""
        return self.conn.execute(
            "SELECT position, id, path, hash, size FROM items ORDER BY position").fetchall()

    def item_ids(self):
        return [r[0] for r in self.conn.execute("SELECT id FROM items ORDER BY position")]

    # ----------------------------------------------------------------- labels
    def current_labels(self, up_to_seq=None):
        """``{item_id: (label, holdout, seq)}``: the latest label of every labelled item
        (among labels with ``seq <= up_to_seq`` when given)."""
        query = ("SELECT item_id, label, holdout, seq FROM labels "
                 + ("WHERE seq <= ? " if up_to_seq is not None else "") + "ORDER BY seq")
        args = (up_to_seq,) if up_to_seq is not None else ()
        out = {}
        for item_id, label, holdout, seq in self.conn.execute(query, args):
            out[item_id] = (json.loads(label), bool(holdout), seq)
        return out

    def insert_labels(self, rows):
        """``rows``: ``(item_id, label (JSON-able), annotator, created, holdout, round)``."""
        self.conn.executemany(
            "INSERT INTO labels(item_id, label, annotator, created, holdout, round) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(i, json.dumps(lab), a, c, int(h), r) for i, lab, a, c, h, r in rows])

    def label_history(self, item_id=None):
        query = "SELECT seq, item_id, label, annotator, created, holdout, round FROM labels"
        args = ()
        if item_id is not None:
            query += " WHERE item_id = ?"
            args = (item_id,)
        return [dict(seq=s, id=i, label=json.loads(lab), annotator=a, created=c,
                     holdout=bool(h), round=r)
                for s, i, lab, a, c, h, r in self.conn.execute(query + " ORDER BY seq", args)]

    def last_label_seq(self):
        return self.conn.execute("SELECT coalesce(max(seq), 0) FROM labels").fetchone()[0]

    # ----------------------------------------------------------------- rounds
    def insert_round(self, *, strategy, params, seed, checkpoint, batch, scores, n_labels):
        number = self.conn.execute(
            "SELECT coalesce(max(round), 0) + 1 FROM rounds").fetchone()[0]
        self.conn.execute(
            "INSERT INTO rounds(round, created, strategy, params, seed, checkpoint, batch, "
            "scores, n_labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (number, utc_now(), strategy, json.dumps(params), seed, checkpoint,
             json.dumps(batch), None if scores is None else json.dumps(scores), n_labels))
        return number

    def rounds(self):
        rows = self.conn.execute(
            "SELECT round, created, strategy, params, seed, checkpoint, batch, scores, "
            "n_labels, closed FROM rounds ORDER BY round").fetchall()
        return [dict(round=r, created=c, strategy=s, params=json.loads(p), seed=seed,
                     checkpoint=ck, batch=json.loads(b),
                     scores=None if sc is None else json.loads(sc), n_labels=n,
                     closed=bool(closed))
                for r, c, s, p, seed, ck, b, sc, n, closed in rows]

    def open_round(self):
        """The latest round not closed by a training, or None."""
        rows = [r for r in self.rounds() if not r["closed"]]
        return rows[-1] if rows else None

    def close_rounds(self):
        self.conn.execute("UPDATE rounds SET closed = 1 WHERE closed = 0")

    # ------------------------------------------------------------ checkpoints
    def insert_checkpoint(self, *, file, sha256, label_seq, n_labels, metrics):
        cur = self.conn.execute(
            "INSERT INTO checkpoints(created, file, sha256, label_seq, n_labels, metrics) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (utc_now(), file, sha256, label_seq, n_labels, json.dumps(metrics)))
        return cur.lastrowid

    def checkpoints(self):
        rows = self.conn.execute(
            "SELECT id, created, file, sha256, label_seq, n_labels, metrics FROM checkpoints "
            "ORDER BY id").fetchall()
        return [dict(id=i, created=c, file=f, sha256=h, label_seq=s, n_labels=n,
                     metrics=json.loads(m)) for i, c, f, h, s, n, m in rows]

    def latest_checkpoint(self):
        rows = self.checkpoints()
        return rows[-1] if rows else None


def fsync_dir(path):
    """Make a rename in folder ``path`` durable (POSIX; a no-op where folders cannot
    be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
