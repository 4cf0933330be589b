"""The store's SQLite file: opening it (0600, WAL), transactions, the few primitives every
other store module runs its SQL through, and `map_errors()` — the one place a sqlite3 error
becomes a one-line `StoreError` (as httpx's `map_exceptions()` maps transport errors).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
from sqlite_utils.db import PrimaryKeyRequired

from audit.errors import StoreError
from audit.store.checkpoint import BACKSTOP_PAGES, Checkpointer
from audit.store.schema import SCHEMA_VERSION, TABLES, migrate, schema_version
from audit.store.values import PLAIN, to_db_value

__all__ = [
    "IN_CHUNK",
    "StoreBase",
    "in_lists",
    "map_errors",
    "open_database",
    "open_database_readonly",
]

#: SQLite's default host-parameter limit is 999 on old builds: chunk IN (...) lists below it
IN_CHUNK = 500
_UPSERT_BATCH = 5000
_BUSY_TIMEOUT_MS = 10_000
#: SQLite's page cache for the store's connection, in KiB (its default is 2,000): a first
#: run inserts into indexes far larger than that in key order unrelated to theirs, and
#: every page pushed out is read back (and, mid-transaction, written twice). Writing a 300k
#: first run's rows: 6.2-6.4 s at 2,000, 5.3-5.6 s at 16 MiB, 5.5-6.2 s at 32 MiB; peak RSS
#: of a 100k first run +28 MB at 16 MiB, +75 MB at 32 MiB
_CACHE_KIB = 16 * 1024

V = TypeVar("V")


@contextlib.contextmanager
def map_errors(path: Path | str, doing: str = "store") -> Iterator[None]:
    """Turn any sqlite3 error raised inside into a one-line StoreError naming the store."""
    try:
        yield
    except sqlite3.Error as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text
        ):
            raise StoreError(f"{path} is not an awu-audit store (not a SQLite database)") from None
        raise StoreError(f"{doing} {path}: {text}") from None


def in_lists(values: Iterable[V], size: int = IN_CHUNK) -> Iterator[tuple[str, list[V]]]:
    """`values` in chunks below SQLite's host-parameter limit, each with its `?, ?, …` text."""
    iterator = iter(values)
    while chunk := list(itertools.islice(iterator, size)):
        yield ", ".join("?" * len(chunk)), chunk


def open_database(path: Path) -> sqlite_utils.Database:
    """Open (creating it 0600 if absent), configure and migrate the SQLite file at `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # create the file ourselves so it is private before SQLite writes a byte
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}") from None
    _make_private(path)
    with map_errors(path, "cannot open store"):
        conn = sqlite3.connect(
            # by its resolved name: every symlink to one store then shares its -wal/-shm
            os.path.realpath(path),
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,
        )
    try:
        with map_errors(path, "cannot open store"):
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"store {path}: cannot switch to WAL journal mode ({mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            db = sqlite_utils.Database(conn)
            migrate(db, path=path)
            return db
    except BaseException:
        conn.close()
        raise


def open_database_readonly(path: Path) -> sqlite_utils.Database:
    """Open the store at `path` for reading only: nothing is created, chmod-ed, migrated or
    written, so a read-only file, directory or filesystem works. When SQLite cannot make
    its WAL index beside the file (a read-only directory), the file is read as immutable —
    nothing can be writing it there either."""
    if not path.is_file():
        raise StoreError(f"no store at {path}; run `audit run` first")
    real = urllib.parse.quote(os.path.realpath(path))
    conn = None
    for options in ("mode=ro", "mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(
                f"file:{real}?{options}",
                uri=True,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            break
        except sqlite3.OperationalError:
            if conn is not None:
                conn.close()
            conn = None
        except sqlite3.Error as exc:
            with map_errors(path, "cannot open store"):
                raise exc
    if conn is None:
        raise StoreError(f"cannot open store {path} for reading")
    db = sqlite_utils.Database(conn)
    try:
        with map_errors(path, "cannot open store"):
            version = schema_version(conn, path)
    except BaseException:
        conn.close()
        raise
    if version != SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"store {path} has schema version {version}, this awu-audit reads "
            f"{SCHEMA_VERSION}: run `audit run` once to migrate it"
        )
    return db


def _make_private(path: Path) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:
        raise StoreError(
            f"store {path} is readable by other users and cannot be made private: "
            f"run chmod 600 {path}"
        ) from None


class StoreBase:
    """An open store file. The store's modules speak SQL only through the methods here,
    each inside `map_errors()`; nothing outside audit.store sees a connection."""

    def __init__(self, db: sqlite_utils.Database, path: Path):
        self._db = db
        self.path = path
        self._savepoints = itertools.count(1)
        #: > 0 inside `together()`: a nested transaction is part of it, not a savepoint
        self._together = 0
        self._checkpoints = Checkpointer(os.path.realpath(path))

    def close(self) -> None:
        self._checkpoints.stop()
        self._db.close()

    @property
    def schema_version(self) -> int:
        with map_errors(self.path):
            return schema_version(self._db.conn, self.path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreBase]:
        """BEGIN IMMEDIATE … COMMIT; rollback on error. Nested use is a savepoint.

        sqlite3 errors raised inside are translated to StoreError.
        """
        conn = self._db.conn
        with map_errors(self.path):
            if conn.in_transaction and self._together:
                yield self  # one unit with the `together()` block around it
                return
            if conn.in_transaction:
                name = f"awu_sp_{next(self._savepoints)}"
                conn.execute(f"SAVEPOINT {name}")
                try:
                    yield self
                except BaseException:
                    if conn.in_transaction:
                        conn.execute(f"ROLLBACK TO {name}")
                        conn.execute(f"RELEASE {name}")
                    raise
                conn.execute(f"RELEASE {name}")
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._checkpoints.committed()

    @contextlib.contextmanager
    def together(self) -> Iterator[StoreBase]:
        """One transaction for every `transaction()` block inside it, with no savepoint
        between them: all of it is stored, or none. (A savepoint makes SQLite copy again
        every page it changes that the transaction had already changed: a third more time
        writing a large log file's rows a page at a time into big tables.)"""
        with self.transaction():
            self._together += 1
            try:
                yield self
            finally:
                self._together -= 1

    def count(self, table: str) -> int:
        """How many rows `table` holds (a diagnostic: callers otherwise ask by meaning)."""
        self._check_table(table)
        with map_errors(self.path):
            return self._db.table(table).count

    # -- primitives: every statement of audit.store runs through one of these ----------

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement; returns the rows it changed."""
        with map_errors(self.path):
            return self._db.conn.execute(sql, params).rowcount

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with map_errors(self.path):
            self._db.conn.executemany(sql, rows)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """All rows of a query, as dicts (read whole, so errors surface here)."""
        with map_errors(self.path):
            return list(self._db.query(sql, params))

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with map_errors(self.path):
            return self._db.conn.execute(sql, params).fetchall()

    def _where(
        self,
        table: str,
        where: str | None = None,
        params: Sequence[Any] = (),
        *,
        select: str = "*",
        order_by: str | None = None,
    ) -> list[dict[str, Any]]:
        """sqlite-utils' `rows_where`, read whole."""
        with map_errors(self.path):
            return list(
                self._db.table(table).rows_where(where, params, select=select, order_by=order_by)
            )

    def _values_in(self, table: str, column: str, values: Iterable[str]) -> set[str]:
        """Which of `values` the store holds in `table.column` (chunked IN queries)."""
        found: set[str] = set()
        for marks, chunk in in_lists(values):
            rows = self._tuples(
                f'SELECT "{column}" FROM {table} WHERE "{column}" IN ({marks})', chunk
            )
            found.update(r[0] for r in rows)
        return found

    def _upsert(
        self, table: str, rows: Iterable[Mapping[str, Any]], pk: str | Sequence[str]
    ) -> int:
        """Insert or update `rows` keyed by `pk` with sqlite-utils; returns the rows written.

        A row updates only the columns it carries: rows are grouped by their columns, since
        sqlite-utils writes the columns of a batch's rows to every row of it.
        """
        pks = (pk,) if isinstance(pk, str) else tuple(pk)
        written = 0
        with self.transaction():
            iterator = iter(rows)
            while batch := list(itertools.islice(iterator, _UPSERT_BATCH)):
                groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
                for row in batch:
                    groups.setdefault(tuple(row), []).append(
                        {k: v if isinstance(v, PLAIN) else to_db_value(v) for k, v in row.items()}
                    )
                for columns, group in groups.items():
                    missing = [c for c in pks if c not in columns]
                    if missing:
                        raise StoreError(
                            f"a row for table {table} lacks its primary key column {missing[0]}"
                        )
                    try:
                        self._db.table(table).upsert_all(
                            group, pk=pks[0] if len(pks) == 1 else pks, alter=False
                        )
                    except PrimaryKeyRequired:
                        raise StoreError(
                            f"a row for table {table} has no value for its primary key"
                        ) from None
                written += len(batch)
        return written

    def _check_table(self, table: str) -> None:
        if table not in TABLES:
            raise StoreError(f"unknown store table {table!r}")
