"""A log file's rows go to the store a page at a time (a Daily file of a large org holds a
whole day), all of a file's pages in one transaction: whatever the page size, the store ends
as SPEC §3.2 says, and a file found torn after pages of it were handed over leaves nothing
behind — not its rows, and not its REQUEST_IDs settling the older files of its day."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from audit.store import Store
from connector.core import eventlogfile
from tests.helpers import LogFilesOrg, log_csv, log_row

DAY = "2026-10-06T00:00:00.000Z"
DAILY, TORN, HOURLY = "0ATD00000000002AAA", "0ATT00000000002AAA", "0ATH00000000002AAA"


BODIES = {
    # the newest file: eight good rows, a bad one among them, and r6 again (newer copy)
    DAILY: log_csv(
        [log_row(f"d{i}", str(10 * i), hour=i) for i in range(1, 5)]
        + [log_row("d5", "-1"), log_row("r6", "600")]
        + [log_row(f"d{i}", str(10 * i), hour=i) for i in range(6, 9)]
    ),
    # newer than the Hourly file but torn after five good rows (two pages and more of 2)
    TORN: log_csv([log_row(f"r{i}", "7") for i in range(1, 6)], tail='EventLogFile,"torn\n'),
    # the oldest: r1 and r3 (also in the torn file), r6 (also in the Daily file), r7 bad
    HOURLY: log_csv([log_row("r1", "11"), log_row("r3", "33"), log_row("r6", "66"), log_row("r7", "x")]),
}
CREATED = {
    DAILY: "2026-10-07T02:00:00.000Z",
    TORN: "2026-10-06T08:00:00.000Z",
    HOURLY: "2026-10-06T07:00:00.000Z",
}


def _sql(db: Path, sql: str) -> set[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return set(conn.execute(sql).fetchall())


@pytest.mark.parametrize("page_rows", [1, 2, 3, eventlogfile.PAGE_ROWS])
def test_pages_of_any_size_store_what_one_page_would(
    page_rows: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eventlogfile, "PAGE_ROWS", page_rows)
    changed: list[str | None] = []
    sync = LogFilesOrg(BODIES, CREATED, DAY, DAILY).elf_sync(changed.append)
    db = tmp_path / "s.db"
    with Store.open(db) as store:
        sync.sync(store, None)

    daily = {(f"d{i}", DAILY, 10 * i) for i in (1, 2, 3, 4, 6, 7, 8)}
    # the torn file settled nothing: the Hourly copies of r1 and r3 are the events
    assert _sql(db, "SELECT request_id, file_id, tokens FROM elf_events") == daily | {
        ("r6", DAILY, 600), ("r1", HOURLY, 11), ("r3", HOURLY, 33),
    }  # fmt: skip
    assert _sql(db, "SELECT key, file_id, reason FROM bad_records") == {
        ("d5", DAILY, "negative"), (TORN, TORN, "bad_file"), ("r7", HOURLY, "not_a_number"),
    }  # fmt: skip
    # rows read as data: the Daily file's eight good ones; the Hourly file's r1, r3 and
    # the r6 the Daily file settled; none of the torn file
    assert _sql(db, "SELECT id, rows, bad FROM elf_files") == {
        (DAILY, 8, 0), (TORN, 0, 1), (HOURLY, 3, 0),
    }  # fmt: skip
    assert (sync.rows, sync.bad, sync.downloaded) == (11, 1, 3)
    assert {c[:10] for c in changed if c} == {"2026-10-06"}
    daily_notes = [n for n in sync.notes if n.startswith(f"EventLogFile {DAILY}")]
    assert daily_notes == [
        f"EventLogFile {DAILY}: 1 bad row(s), first at line 6: TOTAL_TOKENS = '-1' (negative)"
    ]
