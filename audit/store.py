"""The local SQLite store: runs, synced records, actions, findings, usage, the alert outbox.

One file (mode 0600, WAL) opened through `Store.open`; its schema is built by versioned
migrations recorded in `meta.schema_version`, so an older store is upgraded in place and a
newer one is refused. Every write is an idempotent upsert keyed by a stable id, inside
`Store.transaction()`. `Store.lock()` keeps two runs from writing at once (an flock that
the kernel releases when the holding process dies, even by kill -9).

Datetimes are stored as ISO text `YYYY-MM-DDTHH:MM:SS.mmmZ` (sorts like the instant);
JSON columns (`summary`, `action_ids`, `detail`, `payload`, `state`) hold JSON text.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import sqlite_utils

from audit.engine.model import format_iso_ms
from audit.errors import StoreError

__all__ = [
    "Store",
    "FindingChanges",
    "FindingLike",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SYNC_STATE_VERSION",
    "TABLES",
    "migrate",
    "to_db_value",
]

#: version of the JSON documents kept in `sync_state.state`; bump when their shape changes
SYNC_STATE_VERSION = 1

#: SQLite's default host-parameter limit is 999 on old builds: chunk IN (...) lists below it
_IN_CHUNK = 500
_UPSERT_BATCH = 5000
_BUSY_TIMEOUT_MS = 10_000


class FindingLike(Protocol):
    """What `sync_findings` needs of a finding (audit.engine.rules.Finding has these attributes).

    Read-only members, so a frozen dataclass such as audit.engine.rules.Finding matches.
    """

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def severity(self) -> str: ...

    @property
    def session_id(self) -> str | None: ...

    @property
    def agent(self) -> str | None: ...

    @property
    def action_name(self) -> str | None: ...

    @property
    def action_ids(self) -> Sequence[str]: ...

    @property
    def started_at(self) -> datetime: ...

    @property
    def wasted_awu(self) -> float: ...

    @property
    def wasted_usd(self) -> float: ...

    @property
    def explanation(self) -> str: ...

    @property
    def detail(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class FindingChanges:
    """What one `sync_findings` call changed: ids in the order the findings were given."""

    new_ids: list[str]
    reopened_ids: list[str]
    resolved_ids: list[str]


# --- schema migrations -----------------------------------------------------------------------

_V1_SCHEMA = """
CREATE TABLE meta (
    "key" TEXT PRIMARY KEY,
    "value" TEXT
);
CREATE TABLE runs (
    "id" TEXT PRIMARY KEY,
    "started_at" TEXT,
    "ended_at" TEXT,
    "window_start" TEXT,
    "window_end" TEXT,
    "trigger" TEXT,
    "outcome" TEXT NOT NULL DEFAULT 'running'
        CHECK ("outcome" IN ('running', 'ok', 'failed', 'interrupted')),
    "error" TEXT,
    "org_id" TEXT,
    "is_sandbox" INTEGER,
    "records" INTEGER,
    "elf_files_downloaded" INTEGER,
    "elf_files_skipped" INTEGER,
    "actions" INTEGER,
    "findings_open" INTEGER,
    "alerts_sent" INTEGER,
    "api_calls" INTEGER,
    "summary" TEXT
);
CREATE TABLE awi_records (
    "id" TEXT PRIMARY KEY,
    "session_id" TEXT,
    "agent_id" TEXT,
    "agent_name" TEXT,
    "action_name" TEXT,
    "action_type" TEXT,
    "channel" TEXT,
    "status" TEXT,
    "error_code" TEXT,
    "prompt_tokens" INTEGER,
    "completion_tokens" INTEGER,
    "tokens" INTEGER,
    "reported_awu" REAL,
    "action_input" TEXT,
    "user_id" TEXT,
    "case_id" TEXT,
    "started_at" TEXT,
    "created_date" TEXT,
    "system_modstamp" TEXT
);
CREATE INDEX idx_awi_records_started_at ON awi_records ("started_at");
CREATE TABLE elf_events (
    "request_id" TEXT PRIMARY KEY,
    "work_item_id" TEXT,
    "session_id" TEXT,
    "user_id" TEXT,
    "agent_id" TEXT,
    "action_name" TEXT,
    "action_type" TEXT,
    "channel" TEXT,
    "status" TEXT,
    "prompt_tokens" INTEGER,
    "completion_tokens" INTEGER,
    "tokens" INTEGER,
    "reported_awu" REAL,
    "started_at" TEXT,
    "file_id" TEXT,
    "file_created_date" TEXT,
    "file_sequence" INTEGER
);
CREATE INDEX idx_elf_events_started_at ON elf_events ("started_at");
CREATE INDEX idx_elf_events_work_item_id ON elf_events ("work_item_id");
CREATE TABLE elf_files (
    "id" TEXT PRIMARY KEY,
    "log_date" TEXT,
    "interval" TEXT,
    "sequence" INTEGER,
    "created_date" TEXT,
    "rows" INTEGER,
    "sha256" TEXT,
    "bytes" INTEGER,
    "bad" INTEGER NOT NULL DEFAULT 0,
    "error" TEXT,
    "processed_at" TEXT,
    "run_id" TEXT
);
CREATE TABLE cases (
    "id" TEXT PRIMARY KEY,
    "status" TEXT,
    "is_closed" INTEGER,
    "closed_at" TEXT
);
CREATE TABLE actions (
    "id" TEXT PRIMARY KEY,
    "session_id" TEXT,
    "agent_id" TEXT,
    "agent_name" TEXT,
    "action_name" TEXT,
    "action_type" TEXT,
    "channel" TEXT,
    "status" TEXT,
    "error_code" TEXT,
    "tokens" INTEGER,
    "prompt_tokens" INTEGER,
    "completion_tokens" INTEGER,
    "reported_awu" REAL,
    "elf_tokens" INTEGER,
    "action_input" TEXT,
    "user_id" TEXT,
    "case_id" TEXT,
    "started_at" TEXT,
    "source" TEXT,
    "billable" INTEGER,
    "units" INTEGER,
    "multiplier" REAL,
    "awu" REAL,
    "excess_awu" REAL,
    "credits" REAL,
    "cost_usd" REAL,
    "fingerprint" TEXT,
    "day" TEXT
);
CREATE INDEX idx_actions_started_at ON actions ("started_at");
CREATE INDEX idx_actions_session_id ON actions ("session_id");
CREATE TABLE findings (
    "id" TEXT PRIMARY KEY,
    "kind" TEXT NOT NULL,
    "key" TEXT NOT NULL,
    "severity" TEXT,
    "status" TEXT NOT NULL DEFAULT 'open' CHECK ("status" IN ('open', 'resolved')),
    "session_id" TEXT,
    "agent" TEXT,
    "action_name" TEXT,
    "action_ids" TEXT,
    "started_at" TEXT,
    "wasted_awu" REAL,
    "wasted_usd" REAL,
    "explanation" TEXT,
    "detail" TEXT,
    "first_seen_run" TEXT,
    "last_seen_run" TEXT,
    "resolved_run" TEXT
);
CREATE TABLE daily_usage (
    "day" TEXT NOT NULL,
    "agent" TEXT NOT NULL,
    "channel" TEXT NOT NULL,
    "actions" INTEGER,
    "billable_actions" INTEGER,
    "tokens" INTEGER,
    "awu" REAL,
    "reported_awu" REAL,
    "credits" REAL,
    "cost_usd" REAL,
    PRIMARY KEY ("day", "agent", "channel")
);
CREATE TABLE alerts (
    "id" TEXT PRIMARY KEY,
    "kind" TEXT NOT NULL,
    "period" TEXT,
    "threshold" REAL,
    "day" TEXT,
    "title" TEXT,
    "payload" TEXT,
    "created_run" TEXT,
    "created_at" TEXT
);
CREATE TABLE alert_deliveries (
    "alert_id" TEXT NOT NULL REFERENCES alerts ("id") ON DELETE CASCADE,
    "channel" TEXT NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'pending' CHECK ("state" IN ('pending', 'sent', 'failed')),
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "last_error" TEXT,
    "delivered_at" TEXT,
    "delivered_run" TEXT,
    PRIMARY KEY ("alert_id", "channel")
);
CREATE TABLE sync_state (
    "source" TEXT PRIMARY KEY,
    "version" INTEGER NOT NULL,
    "state" TEXT NOT NULL,
    "updated_at" TEXT,
    "run_id" TEXT
);
"""

# v2: indexes for the queries every run makes (open findings of a window, undelivered
# alerts, thresholds of a period, usage of a day).
_V2_SCHEMA = """
CREATE INDEX idx_findings_status_started_at ON findings ("status", "started_at");
CREATE INDEX idx_findings_kind ON findings ("kind");
CREATE INDEX idx_alert_deliveries_state ON alert_deliveries ("state");
CREATE INDEX idx_alerts_kind_period ON alerts ("kind", "period");
CREATE INDEX idx_actions_day ON actions ("day");
"""

# v3: raw Data 360 rows (SPEC §11, connector.data360): tool-call usage events, their
# interaction steps (matched by GenAiGatewayRequestId) and sessions (voice).
_V3_SCHEMA = """
CREATE TABLE d360_events (
    "id" TEXT PRIMARY KEY, "request_id" TEXT, "started_at" TEXT, "session_id" TEXT,
    "interaction_id" TEXT, "agent_id" TEXT, "agent_name" TEXT, "tool_name" TEXT,
    "user_id" TEXT, "prompt_tokens" INTEGER, "completion_tokens" INTEGER, "tokens" INTEGER,
    "usage_quantity" TEXT, "is_metered" INTEGER, "is_billable" INTEGER, "skip_reason" TEXT,
    "usage_type" TEXT, "run_id" TEXT
);
CREATE INDEX idx_d360_events_started_at ON d360_events ("started_at");
CREATE TABLE d360_steps (
    "id" TEXT PRIMARY KEY, "request_id" TEXT, "interaction_id" TEXT, "step_type" TEXT,
    "prev_step_id" TEXT, "input_text" TEXT, "error_text" TEXT, "started_at" TEXT
);
CREATE INDEX idx_d360_steps_request_id ON d360_steps ("request_id");
CREATE TABLE d360_sessions (
    "id" TEXT PRIMARY KEY, "channel_type" TEXT, "voice_call_id" TEXT, "started_at" TEXT
)
"""


def _run_script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        # statement by statement: executescript() would COMMIT the migration transaction
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)

    return apply


#: Migration n+1 is MIGRATIONS[n]; append, never edit one that has shipped.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _run_script(_V1_SCHEMA),
    _run_script(_V2_SCHEMA),
    _run_script(_V3_SCHEMA),
)
SCHEMA_VERSION = len(MIGRATIONS)

#: table → primary key columns (the tables `upsert`, `count` … accept)
TABLES: dict[str, tuple[str, ...]] = {
    "meta": ("key",),
    "runs": ("id",),
    "awi_records": ("id",),
    "elf_events": ("request_id",),
    "elf_files": ("id",),
    "cases": ("id",),
    "actions": ("id",),
    "findings": ("id",),
    "daily_usage": ("day", "agent", "channel"),
    "alerts": ("id",),
    "alert_deliveries": ("alert_id", "channel"),
    "sync_state": ("source",),
    "d360_events": ("id",),
    "d360_steps": ("id",),
    "d360_sessions": ("id",),
}

_RUN_COUNTS = (
    "org_id",
    "is_sandbox",
    "records",
    "elf_files_downloaded",
    "elf_files_skipped",
    "actions",
    "findings_open",
    "alerts_sent",
    "api_calls",
    "summary",
)


def _schema_version(conn: sqlite3.Connection, path: Path | str) -> int:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables - {"sqlite_sequence"}:
            raise StoreError(f"{path} is a SQLite database but not an awu-audit store")
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row else 0
    except (TypeError, ValueError):
        raise StoreError(f"store {path} has an unreadable schema_version: {row[0]!r}") from None


def migrate(db: sqlite_utils.Database, target: int | None = None, *, path: Path | str = "") -> int:
    """Bring the schema of `db` to `target` (default: the latest) in one transaction.

    Returns the version the store is at afterwards. A store newer than this code is refused.
    """
    target = SCHEMA_VERSION if target is None else target
    conn = db.conn
    where = path or "the store"
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = _schema_version(conn, where)
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {where} was written by a newer awu-audit (schema {current}); "
                "upgrade awu-audit"
            )
        for version in range(current + 1, target + 1):
            MIGRATIONS[version - 1](conn)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return max(current, target)


# --- values ----------------------------------------------------------------------------------

_PLAIN = (str, int, float, type(None), bytes)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return format_iso_ms(value)


def to_db_value(value: Any) -> Any:
    """A Python value as the store keeps it: datetimes as ISO-ms UTC text, containers as JSON."""
    if isinstance(value, _PLAIN):  # bool is an int: sqlite3 stores it as 0/1
        return value
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return _json(value)
    if isinstance(value, Decimal):
        return float(value)
    raise StoreError(f"cannot store a value of type {type(value).__name__}")


def _bound(value: datetime | str | None) -> str | None:
    return _iso(value) if isinstance(value, datetime) else value


def _q(name: str) -> str:
    if not name or '"' in name or "\x00" in name:
        raise StoreError(f"invalid column name {name!r}")
    return f'"{name}"'


def _now_iso() -> str:
    return _iso(datetime.now(timezone.utc))


# --- the store -------------------------------------------------------------------------------


class Store:
    """An open awu-audit store. Use one from one thread at a time."""

    def __init__(self, db: sqlite_utils.Database, path: Path):
        self.db = db
        self.path = path
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._savepoints = itertools.count(1)
        self._sql_cache: dict[tuple[Any, ...], str] = {}

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open (creating it 0600 if absent) and migrate the store at `path`."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # create the file ourselves so it is private before SQLite writes a byte
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot open store {path}: {exc.strerror}") from None
        _make_private(path)
        try:
            conn = sqlite3.connect(
                str(path),
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"store {path}: cannot switch to WAL journal mode ({mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            db = sqlite_utils.Database(conn)
            store = cls(db, path)
            migrate(db, path=path)
            store._mark_interrupted_if_idle()
            return store
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(
                    f"{path} is not an awu-audit store (not a SQLite database)"
                ) from None
            raise StoreError(f"cannot open store {path}: {exc}") from None
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        if self._lock_fd is not None:
            self._release_lock()
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return _schema_version(self.db.conn, self.path)

    # -- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """BEGIN IMMEDIATE … COMMIT; rollback on error. Nested use is a savepoint.

        sqlite3 errors raised inside are translated to StoreError.
        """
        conn = self.db.conn
        try:
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
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {exc}") from None

    # -- generic writes --------------------------------------------------------------------

    def upsert(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any]],
        pk: str | Sequence[str],
        *,
        insert_only: Sequence[str] = (),
    ) -> int:
        """Insert or update `rows` keyed by `pk`; returns how many rows were written.

        A row updates only the columns it carries; `insert_only` columns are written when
        the row is new and kept otherwise. Values go through `to_db_value`.
        """
        self._check_table(table)
        pks = (pk,) if isinstance(pk, str) else tuple(pk)
        keep = tuple(insert_only)
        written = 0
        with self.transaction():
            conn = self.db.conn
            iterator = iter(rows)
            while batch := list(itertools.islice(iterator, _UPSERT_BATCH)):
                groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
                for row in batch:
                    groups.setdefault(tuple(row), []).append(
                        tuple(v if isinstance(v, _PLAIN) else to_db_value(v) for v in row.values())
                    )
                for columns, values in groups.items():
                    missing = [c for c in pks if c not in columns]
                    if missing:
                        raise StoreError(
                            f"a row for table {table} lacks its primary key column {missing[0]}"
                        )
                    conn.executemany(self._upsert_sql(table, columns, pks, keep), values)
                written += len(batch)
        return written

    def _upsert_sql(
        self, table: str, columns: tuple[str, ...], pks: tuple[str, ...], keep: tuple[str, ...]
    ) -> str:
        cache_key = (table, columns, pks, keep)
        sql = self._sql_cache.get(cache_key)
        if sql is None:
            cols = ", ".join(_q(c) for c in columns)
            marks = ", ".join("?" for _ in columns)
            updates = [c for c in columns if c not in pks and c not in keep]
            conflict = ", ".join(_q(c) for c in pks)
            if updates:
                sets = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in updates)
                action = f"DO UPDATE SET {sets}"
            else:
                action = "DO NOTHING"
            sql = (
                f"INSERT INTO {_q(table)} ({cols}) VALUES ({marks}) "
                f"ON CONFLICT ({conflict}) {action}"
            )
            self._sql_cache[cache_key] = sql
        return sql

    def replace_window(
        self,
        table: str,
        start: datetime | str,
        end: datetime | str,
        rows: Iterable[Mapping[str, Any]],
        pk: str | Sequence[str],
    ) -> int:
        """Delete rows whose started_at is in [start, end), then upsert `rows` — atomically."""
        self._check_table(table)
        with self.transaction():
            self.db.conn.execute(
                f'DELETE FROM {_q(table)} WHERE "started_at" >= ? AND "started_at" < ?',
                (_bound(start), _bound(end)),
            )
            return self.upsert(table, rows, pk)

    def existing(self, table: str, column: str, values: Iterable[str]) -> set[str]:
        """Which of `values` the store holds in `table.column` (batched IN queries)."""
        self._check_table(table)
        wanted = list(values)
        found: set[str] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" for _ in chunk)
            sql = f"SELECT {_q(column)} FROM {_q(table)} WHERE {_q(column)} IN ({marks})"
            found.update(r[0] for r in self.db.conn.execute(sql, chunk))
        return found

    def count(self, table: str) -> int:
        self._check_table(table)
        return int(self.db.conn.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0])

    def _check_table(self, table: str) -> None:
        if table not in TABLES:
            raise StoreError(f"unknown store table {table!r}")

    # -- the run lock ----------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return Path(f"{self.path}.lock")

    @contextlib.contextmanager
    def lock(self, wait_s: float = 0.0) -> Iterator[Store]:
        """Hold the store's inter-process run lock; re-entrant within this Store.

        Waits up to `wait_s` for another holder, then raises StoreError. On acquiring it,
        runs a killed process left 'running' are marked 'interrupted'.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self
            finally:
                self._lock_depth -= 1
            return
        fd = self._try_lock(wait_s)
        if fd is None:
            holder = _read_pid(self.lock_path)
            suffix = f" (pid {holder})" if holder else ""
            raise StoreError(f"another run holds the lock on {self.path}{suffix}")
        self._lock_fd = fd
        self._lock_depth = 1
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.mark_interrupted_runs()
            yield self
        finally:
            self._release_lock()

    def _try_lock(self, wait_s: float) -> int | None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create lock file {self.lock_path}: {exc.strerror}") from None
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise StoreError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.close(fd)
                return None
            time.sleep(min(0.05, remaining))

    def _release_lock(self) -> None:
        fd, self._lock_fd, self._lock_depth = self._lock_fd, None, 0
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _mark_interrupted_if_idle(self) -> None:
        # At open: only when no other process holds the lock (else its run is live).
        if self._lock_depth:
            return
        fd = self._try_lock(0.0)
        if fd is None:
            return
        try:
            self.mark_interrupted_runs()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- runs ------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        *,
        started_at: datetime | str,
        window_start: datetime | str | None,
        window_end: datetime | str | None,
        trigger: str,
    ) -> None:
        row = {
            "id": run_id,
            "started_at": _bound(started_at),
            "window_start": _bound(window_start),
            "window_end": _bound(window_end),
            "trigger": trigger,
            "outcome": "running",
            "ended_at": None,
            "error": None,
        }
        self.upsert("runs", [row], "id")

    def finish_run(
        self,
        run_id: str,
        *,
        outcome: str,
        error: str | None = None,
        ended_at: datetime | str | None = None,
        **counts: Any,
    ) -> None:
        """Record how a run ended; `counts` are runs columns (records, actions, summary …)."""
        if outcome not in ("ok", "failed", "interrupted"):
            raise StoreError(f"invalid run outcome {outcome!r}")
        unknown = sorted(set(counts) - set(_RUN_COUNTS))
        if unknown:
            raise StoreError(f"runs has no column {unknown[0]!r}")
        row: dict[str, Any] = {
            "id": run_id,
            "outcome": outcome,
            "error": error,
            "ended_at": _bound(ended_at) if ended_at is not None else _now_iso(),
            **counts,
        }
        self.upsert("runs", [row], "id")

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = list(self.db.query('SELECT * FROM runs WHERE "id" = ?', [run_id]))
        if not rows:
            return None
        row = rows[0]
        if row.get("summary"):
            row["summary"] = json.loads(row["summary"])
        return row

    def mark_interrupted_runs(self, *, now: datetime | str | None = None) -> int:
        """Runs still 'running' become 'interrupted'. Call only while holding the lock."""
        ended = _bound(now) if now is not None else _now_iso()
        with self.transaction():
            cur = self.db.conn.execute(
                "UPDATE runs SET outcome = 'interrupted', ended_at = COALESCE(ended_at, ?), "
                "error = COALESCE(error, 'the process stopped before the run finished') "
                "WHERE outcome = 'running'",
                (ended,),
            )
            return cur.rowcount

    # -- sync state ------------------------------------------------------------------------

    def get_sync_state(self, source: str) -> dict[str, Any] | None:
        """The cursor document of `source`, or None when there is none.

        A document written with an older SYNC_STATE_VERSION is treated as absent (the
        source re-syncs its initial window; upserts make that safe). One written with a
        newer version raises StoreError: a newer awu-audit owns this store.
        """
        row = self.db.conn.execute(
            'SELECT "version", "state" FROM sync_state WHERE "source" = ?', (source,)
        ).fetchone()
        if row is None:
            return None
        version, state = row
        if version > SYNC_STATE_VERSION:
            raise StoreError(
                f"store {self.path}: sync state of {source} was written by a newer awu-audit "
                f"(version {version}); upgrade awu-audit"
            )
        if version != SYNC_STATE_VERSION:
            return None
        try:
            value = json.loads(state)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def set_sync_state(
        self,
        source: str,
        state: Mapping[str, Any],
        run_id: str | None,
        *,
        now: datetime | str | None = None,
    ) -> None:
        """Store the cursor of `source`. Call it in the transaction that wrote its data."""
        row = {
            "source": source,
            "version": SYNC_STATE_VERSION,
            "state": _json(dict(state)),
            "updated_at": _bound(now) if now is not None else _now_iso(),
            "run_id": run_id,
        }
        self.upsert("sync_state", [row], "source")

    # -- findings --------------------------------------------------------------------------

    def sync_findings(
        self,
        run_id: str,
        findings: Iterable[FindingLike],
        *,
        window_start: datetime | str,
        window_end: datetime | str,
    ) -> FindingChanges:
        """Make the store's findings of [window_start, window_end) equal to `findings`.

        Given findings are upserted open (first_seen_run kept, last_seen_run = run_id);
        a resolved one that is given again reopens with its id. Open findings whose
        started_at is in the window and which are not given are resolved by run_id.
        Findings outside the window are upserted but never resolved by this call.
        """
        by_id: dict[str, dict[str, Any]] = {}
        for f in findings:
            by_id[f.id] = {
                "id": f.id,
                "kind": f.kind,
                "key": f.key,
                "severity": f.severity,
                "status": "open",
                "session_id": f.session_id,
                "agent": f.agent,
                "action_name": f.action_name,
                "action_ids": _json(list(f.action_ids)),
                "started_at": _bound(f.started_at),
                "wasted_awu": float(f.wasted_awu),
                "wasted_usd": float(f.wasted_usd),
                "explanation": f.explanation,
                "detail": _json(dict(f.detail)),
                "first_seen_run": run_id,
                "last_seen_run": run_id,
                "resolved_run": None,
            }
        ws, we = _bound(window_start), _bound(window_end)
        with self.transaction():
            conn = self.db.conn
            before: dict[str, str] = {}
            ids = list(by_id)
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                marks = ", ".join("?" for _ in chunk)
                for fid, status in conn.execute(
                    f'SELECT "id", "status" FROM findings WHERE "id" IN ({marks})', chunk
                ):
                    before[fid] = status
            new_ids = [fid for fid in ids if fid not in before]
            reopened = [fid for fid in ids if before.get(fid) == "resolved"]
            self.upsert("findings", by_id.values(), "id", insert_only=("first_seen_run",))
            candidates = [
                r[0]
                for r in conn.execute(
                    'SELECT "id" FROM findings WHERE "status" = \'open\' '
                    'AND "started_at" >= ? AND "started_at" < ? ORDER BY "started_at", "id"',
                    (ws, we),
                )
            ]
            resolved = [fid for fid in candidates if fid not in by_id]
            conn.executemany(
                "UPDATE findings SET status = 'resolved', resolved_run = ? WHERE id = ?",
                [(run_id, fid) for fid in resolved],
            )
        return FindingChanges(new_ids, reopened, resolved)

    def open_findings(
        self,
        kind: str | None = None,
        window: tuple[datetime | str, datetime | str] | None = None,
    ) -> list[dict[str, Any]]:
        """Open findings (of `kind`, with started_at in [start, end)), oldest first;
        action_ids and detail decoded from JSON."""
        where = ["\"status\" = 'open'"]
        params: list[Any] = []
        if kind is not None:
            where.append('"kind" = ?')
            params.append(kind)
        if window is not None:
            where.append('"started_at" >= ? AND "started_at" < ?')
            params.extend([_bound(window[0]), _bound(window[1])])
        sql = f'SELECT * FROM findings WHERE {" AND ".join(where)} ORDER BY "started_at", "id"'
        rows = list(self.db.query(sql, params))
        for row in rows:
            row["action_ids"] = json.loads(row["action_ids"]) if row["action_ids"] else []
            row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
        return rows

    # -- daily usage -----------------------------------------------------------------------

    def replace_daily_usage(self, days: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> int:
        """Replace the usage of `days` ('YYYY-MM-DD') with `rows` (day × agent × channel).

        A null agent or channel is stored as '' (they are part of the primary key).
        """
        day_list = sorted(set(days))
        normalised = (
            {**row, "agent": row.get("agent") or "", "channel": row.get("channel") or ""}
            for row in rows
        )
        with self.transaction():
            conn = self.db.conn
            for i in range(0, len(day_list), _IN_CHUNK):
                chunk = day_list[i : i + _IN_CHUNK]
                marks = ", ".join("?" for _ in chunk)
                conn.execute(f'DELETE FROM daily_usage WHERE "day" IN ({marks})', chunk)
            return self.upsert("daily_usage", normalised, ("day", "agent", "channel"))

    def credits_by_day(self, start_day: str, end_day: str) -> dict[str, float]:
        """Credits per day for days in [start_day, end_day) — half-open, like the window."""
        rows = self.db.conn.execute(
            'SELECT "day", SUM("credits") FROM daily_usage WHERE "day" >= ? AND "day" < ? '
            'GROUP BY "day" ORDER BY "day"',
            (start_day, end_day),
        )
        return {day: float(total or 0.0) for day, total in rows}


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


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
