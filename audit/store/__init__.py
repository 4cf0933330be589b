"""The local SQLite store — the only code of awu-audit that speaks SQL.

One file (mode 0600, WAL) opened through `Store.open`; its schema is built by versioned
migrations (`schema`), so an older store is upgraded in place and a newer one is refused.
Writes are idempotent upserts keyed by stable ids, inside `Store.transaction()`;
`Store.lock()` keeps two runs from writing at once. Callers ask for rows by meaning
(`store.credits_between(start, end)`), never by table; every sqlite3 error leaves as a
one-line `StoreError` (`db.map_errors`).

Datetimes are stored as ISO text `YYYY-MM-DDTHH:MM:SS.mmmZ` (sorts like the instant);
JSON columns (`summary`, `action_ids`, `detail`, `payload`, `state`) hold JSON text.

Modules: `db` (open, transactions, error mapping, chunked IN lists), `schema`, `values`,
`lock` (and `runs`), `sources` (the connector's SyncSink and raw-row readers), `actions`
(and `action_days`, the sums spike detection reads), `findings`, `outbox`, `reports`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from audit.store.actions import Actions
from audit.store.basis import Basis
from audit.store.db import StoreBase, map_errors, open_database, open_database_readonly
from audit.store.findings import FindingChanges, Findings
from audit.store.lake import LakeRows
from audit.store.lock import RunLock
from audit.store.outbox import Delivery, Outbox
from audit.store.reports import Reports, run_triggers
from audit.store.schema import MIGRATIONS, SCHEMA_VERSION, TABLES, migrate
from audit.store.sources import SYNC_STATE_VERSION, Sources
from audit.store.values import to_db_value

__all__ = [
    "Delivery",
    "FindingChanges",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SYNC_STATE_VERSION",
    "Store",
    "StoreBase",
    "TABLES",
    "map_errors",
    "migrate",
    "run_triggers",
    "to_db_value",
]


class Store(RunLock, Actions, Findings, Outbox, Reports, Sources, Basis, LakeRows):
    """An open awu-audit store. Use one from one thread at a time."""

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False) -> Store:
        """Open (creating it 0600 if absent) and migrate the store at `path`. `readonly`
        opens an existing store for reading only (`audit report`): nothing is created,
        migrated or written, and a write raises StoreError."""
        path = Path(path)
        if readonly:
            return cls(open_database_readonly(path), path)
        store = cls(open_database(path), path)
        try:
            store._mark_interrupted_if_idle()
        except BaseException:
            store.close()
            raise
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if TYPE_CHECKING:
    from connector.sink import SyncSink

    def _store_is_a_sync_sink(store: Store) -> SyncSink:
        return store  # mypy checks that Store implements the connector's protocol
