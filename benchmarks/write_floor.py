"""What storing alone costs (issue 12): the rows a first run left in its store — AgentWorkItem
records, log rows, log files, actions, findings, daily usage — written again into a fresh
store (same schema and indexes: made by `Store.open`) with plain `executemany` of tuples,
in transactions of the sizes a first run uses (a 2,000-record page, one log file's rows, one
hour's actions, findings a few thousand at a time). No parsing, no checks, no
reconciliation, no upsert conditions: the least a design that keeps SPEC's tables pays to
write a first run's rows. Reading them out of the first store is not timed.

`benchmarks/scale.py` runs it as a child after the first run and prints floor + this beside
the first run: the part of the gap to the floor no faster Python can close.

Usage: python benchmarks/write_floor.py FIRST_RUN_STORE
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from audit.store import Store

# table → (order the first run wrote them in, rows per transaction or None: per group)
TABLES = {
    "awi_records": ("rowid", 2000),
    "elf_events": ("file_id, rowid", None),  # one log file per transaction
    "elf_files": ("rowid", 1),
    "actions": ("started_at", None),  # one hour per transaction (pass 1's chunks)
    "findings": ("rowid", 2000),
    "daily_usage": ("rowid", 1000),
}
GROUP_KEY = {"elf_events": "file_id", "actions": "substr(started_at, 1, 13)"}


def batches(src: sqlite3.Connection, table: str) -> tuple[str, list[list[tuple[object, ...]]]]:
    """The INSERT for `table` and its rows cut into a first run's transactions."""
    order, size = TABLES[table]
    cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    select = ", ".join(cols)
    if size is not None:
        rows = src.execute(f"SELECT {select} FROM {table} ORDER BY {order}").fetchall()
        return sql, [rows[i : i + size] for i in range(0, len(rows), size)]
    groups: dict[object, list[tuple[object, ...]]] = {}
    query = f"SELECT {GROUP_KEY[table]}, {select} FROM {table} ORDER BY {order}"
    for key, *row in src.execute(query):
        groups.setdefault(key, []).append(tuple(row))
    return sql, list(groups.values())


def main() -> None:
    src = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "write-floor.db"
        Store.open(path).close()  # the schema, its indexes, WAL — as a first run finds it
        dst = sqlite3.connect(path, isolation_level=None)
        dst.execute("PRAGMA journal_mode = WAL")
        dst.execute("PRAGMA synchronous = NORMAL")
        for table in TABLES:
            sql, cut = batches(src, table)
            started = time.perf_counter()
            for batch in cut:
                dst.execute("BEGIN IMMEDIATE")
                dst.executemany(sql, batch)
                dst.execute("COMMIT")
            seconds[table] = round(time.perf_counter() - started, 3)
            rows[table] = sum(len(b) for b in cut)
        dst.close()
    total = round(sum(seconds.values()), 3)
    print(json.dumps({"seconds": seconds, "rows": rows, "total_s": total}))


if __name__ == "__main__":
    main()
