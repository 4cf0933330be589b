"""The Data 360 objects of the mock tenant, held in an in-memory SQLite database and typed
the way Query API v2 types them (VARCHAR, DECIMAL, TIMESTAMP, BOOLEAN)."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

__all__ = [
    "TYPES",
    "KNOWN_TYPES",
    "STORED_TS",
    "ObjectTable",
    "Data360Db",
    "logical",
    "parse_ts",
    "stored_ts",
    "render",
]

#: Query API v2 type → (typeCode, metadata API type)
TYPES = {
    "VARCHAR": (12, "STRING"),
    "DECIMAL": (3, "NUMBER"),
    "TIMESTAMP": (93, "DATE_TIME"),
    "BOOLEAN": (16, "BOOLEAN"),
}
#: logical field names (family prefix and __c stripped) whose type is not VARCHAR
KNOWN_TYPES = {
    **dict.fromkeys(
        ("Timestamp", "StartTimestamp", "EndTimestamp", "MessageSentTimestamp", "CreatedDate"),
        "TIMESTAMP",
    ),
    **dict.fromkeys(
        (
            "PromptInputTokenCount",
            "PromptCompletionTokenCount",
            "PromptTotalTokenCount",
            "UsageQuantity",
        ),
        "DECIMAL",
    ),
    **dict.fromkeys(("IsBillableIndicator", "IsMeteredIndicator"), "BOOLEAN"),
}
_PREFIX = re.compile(r"^(?:ssot__|std__)", re.IGNORECASE)
_TIMESTAMP_LITERAL = re.compile(r"\bTIMESTAMP\s*'([^']*)'", re.IGNORECASE)
STORED_TS = "%Y-%m-%d %H:%M:%S.%f"  # sortable text, microseconds


def logical(column: str) -> str:
    """The field name without its family prefix (``ssot__``/``std__``) and ``__c``."""
    name = _PREFIX.sub("", column)
    return name[:-3] if name.lower().endswith("__c") else name


def parse_ts(text: str) -> datetime:
    """A timestamp in any form the snapshot or a query gives (ISO, ``… UTC``) as UTC."""
    value = text.strip()
    if value.upper().endswith(" UTC"):
        value = value[:-4]
    value = value.replace(" ", "T", 1)
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def stored_ts(text: str) -> str:
    """A timestamp in the form SQLite stores and compares (sortable text)."""
    return parse_ts(text).strftime(STORED_TS)


_SCALE = Decimal(10) ** -18


def render(value: Any, typ: str) -> Any:
    """A stored value as Query API v2 sends it in ``data`` (DECIMAL as a string)."""
    if value is None:
        return None
    if typ == "DECIMAL":
        return f"{Decimal(repr(float(value))).quantize(_SCALE):f}"
    if typ == "TIMESTAMP":
        text = str(value)
        return f"{text[:23]} UTC" if len(text) >= 23 else f"{text} UTC"
    if typ == "BOOLEAN":
        return bool(value)
    return value if isinstance(value, str) else str(value)


@dataclass
class ObjectTable:
    name: str
    columns: list[tuple[str, str]]  # (API name, Query API type)


class Data360Db:
    """Objects by lower-cased API name over one SQLite connection; ``lock`` is the
    tenant's (the connection is shared by the server's threads)."""

    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self.tables: dict[str, ObjectTable] = {}
        self._types: dict[str, str] = {}  # lower-cased column name → type, all tables

    # ---------------------------------------------------------------- loading
    def load(self, name: str, rows: list[dict[str, Any]]) -> None:
        """(Re)create object ``name`` holding ``rows``, its column types inferred."""
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise ValueError(f"org snapshot: data360/{name}.jsonl is not an object API name")
        columns: dict[str, str] = {}
        for row in rows:
            for key, value in row.items():
                if key not in columns or (columns[key] == "VARCHAR" and value is not None):
                    columns[key] = self._type_of(key, value, columns.get(key))
        cols = list(columns.items())
        table = ObjectTable(name, cols)
        ddl = ", ".join(f'"{c}"' for c, _ in cols) or '"Id__c"'
        with self.lock:
            self._db.execute(f'DROP TABLE IF EXISTS "{name}"')
            self._db.execute(f'CREATE TABLE "{name}" ({ddl})')
            if cols:
                marks = ", ".join("?" for _ in cols)
                self._db.executemany(
                    f'INSERT INTO "{name}" VALUES ({marks})',
                    [tuple(self._to_sql(row.get(c), t) for c, t in cols) for row in rows],
                )
            self.tables[name.lower()] = table
            for c, t in cols:
                self._types[c.lower()] = t

    @staticmethod
    def _type_of(column: str, value: Any, previous: str | None) -> str:
        known = KNOWN_TYPES.get(logical(column))
        if known:
            return known
        if isinstance(value, bool):
            return "BOOLEAN"
        if isinstance(value, (int, float)):
            return "DECIMAL"
        return previous or "VARCHAR"

    @staticmethod
    def _to_sql(value: Any, typ: str) -> Any:
        if value is None:
            return None
        if typ == "TIMESTAMP":
            return stored_ts(str(value))
        if typ == "BOOLEAN":
            return 1 if value else 0
        if typ == "DECIMAL":
            return float(value)
        return value if isinstance(value, str) else json.dumps(value)

    # ---------------------------------------------------------------- mutation (tests)
    def add_rows(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Append rows to an object (a new object if unknown), e.g. late-arriving events."""
        with self.lock:
            table = self.tables.get(name.lower())
            if table is None:
                self.load(name, rows)
                return
            existing = self.rows(table.name)
            self.load(table.name, existing + rows)

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The object's rows in snapshot form (timestamps ISO, booleans JSON)."""
        with self.lock:
            table = self.tables[name.lower()]
            cur = self._db.execute(f'SELECT * FROM "{table.name}"')
            out = []
            for values in cur.fetchall():
                row: dict[str, Any] = {}
                for (col, typ), v in zip(table.columns, values, strict=False):
                    if v is not None and typ == "TIMESTAMP":
                        v = (
                            datetime.strptime(v, STORED_TS).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
                            + "Z"
                        )
                    elif v is not None and typ == "BOOLEAN":
                        v = bool(v)
                    row[col] = v
                out.append(row)
            return out

    def drop_object(self, name: str) -> None:
        """Remove an object (a tenant whose data model lacks it)."""
        with self.lock:
            table = self.tables.pop(name.lower())
            self._db.execute(f'DROP TABLE "{table.name}"')

    def drop_column(self, name: str, column: str) -> None:
        """Remove a column from an object (a data model without that field)."""
        with self.lock:
            table = self.tables[name.lower()]
            rows = self.rows(table.name)
            for row in rows:
                row.pop(column, None)
            self.load(table.name, rows)

    # ---------------------------------------------------------------- queries
    def objects(self) -> list[ObjectTable]:
        """Every object, by name."""
        with self.lock:
            tables = list(self.tables.values())
        return sorted(tables, key=lambda t: t.name)

    @staticmethod
    def translate(sql: str) -> str:
        """``sql`` with ``TIMESTAMP '…'`` literals in stored text form (the one dialect
        step); ``ValueError`` for a literal that is not a timestamp."""
        return _TIMESTAMP_LITERAL.sub(lambda m: "'" + stored_ts(m.group(1)) + "'", sql)

    def execute(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of ``sql`` as SQLite runs it (``sqlite3.Error`` if not)."""
        with self.lock:
            cur = self._db.execute(sql)
            rows = cur.fetchall()
            names = [d[0] for d in cur.description or ()]
        return names, rows

    def result_type(self, name: str, index: int, rows: list[tuple[Any, ...]]) -> str:
        known = self._types.get(name.lower())
        if known:
            return known
        for row in rows:
            value = row[index]
            if value is not None:
                return "DECIMAL" if isinstance(value, (int, float)) else "VARCHAR"
        return "VARCHAR"
