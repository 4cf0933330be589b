"""# legacy: pre-sink connector writes — removed when connector uses SyncSink

connector/sync.py and connector/data360.py still write the store by table name
(`upsert`, `existing`, `get_sync_state`/`set_sync_state`) and through `store.db.conn`.
Everything they need is here, in one mixin, so it can be deleted in one cut once they
write through `commit(page)` (audit.store.sources).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlite_utils

from audit.store.sources import Sources
from audit.store.values import bound

__all__ = ["LegacyConnectorWrites"]


class LegacyConnectorWrites(Sources):
    """# legacy: pre-sink connector writes — removed when connector uses SyncSink"""

    @property
    def db(self) -> sqlite_utils.Database:
        """The raw database (connector SQL; errors raised through it are not mapped)."""
        return self._db

    def upsert(self, table: str, rows: Iterable[Mapping[str, Any]], pk: str | Sequence[str]) -> int:
        """Insert or update `rows` of `table` keyed by `pk` (a row updates only the columns
        it carries); returns how many rows were written."""
        self._check_table(table)
        return self._upsert(table, rows, pk)

    def existing(self, table: str, column: str, values: Iterable[str]) -> set[str]:
        """Which of `values` the store holds in `table.column`."""
        self._check_table(table)
        return self._values_in(table, column, values)

    def get_sync_state(self, source: str) -> dict[str, Any] | None:
        return self.sync_state(source)

    def set_sync_state(
        self,
        source: str,
        state: Mapping[str, Any],
        run_id: str | None,
        *,
        now: datetime | str | None = None,
    ) -> None:
        """Store the cursor of `source`. Call it in the transaction that wrote its data."""
        self._write_sync_state(source, state, run_id, bound(now))
