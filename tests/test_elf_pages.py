"""A log file's rows go to the store a page at a time (a Daily file of a large org holds a
whole day), all of a file's pages in one transaction: whatever the page size, the store ends
as SPEC §3.2 says, and a file found torn after pages of it were handed over leaves nothing
behind — not its rows, and not its REQUEST_IDs settling the older files of its day."""

from __future__ import annotations

import csv
import hashlib
import io
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import pytest

from audit.store import Store
from connector.config import ConnectorConfig
from connector.core import eventlogfile
from connector.core.eventlogfile import EventLogFileSync
from connector.logfiles import ELF_COLUMNS

DAY = "2026-10-06T00:00:00.000Z"
DAILY, TORN, HOURLY = "0ATD00000000002AAA", "0ATT00000000002AAA", "0ATH00000000002AAA"


def _row(request_id: str, tokens: str, hour: int = 6) -> dict[str, str]:
    return {
        **{c: "" for c in ELF_COLUMNS},
        "EVENT_TYPE": "AgentAction",
        "TIMESTAMP_DERIVED": f"2026-10-06T{hour:02d}:00:00.000Z",
        "REQUEST_ID": request_id,
        "ACTION_NAME": "LookupAccount",
        "TOTAL_TOKENS": tokens,
    }


def _csv(rows: list[dict[str, str]], tail: str = "") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ELF_COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in ELF_COLUMNS])
    return (out.getvalue() + tail).encode()


BODIES = {
    # the newest file: eight good rows, a bad one among them, and r6 again (newer copy)
    DAILY: _csv(
        [_row(f"d{i}", str(10 * i), hour=i) for i in range(1, 5)]
        + [_row("d5", "-1"), _row("r6", "600")]
        + [_row(f"d{i}", str(10 * i), hour=i) for i in range(6, 9)]
    ),
    # newer than the Hourly file but torn after five good rows (two pages and more of 2)
    TORN: _csv([_row(f"r{i}", "7") for i in range(1, 6)], tail='EventLogFile,"torn\n'),
    # the oldest: r1 and r3 (also in the torn file), r6 (also in the Daily file), r7 bad
    HOURLY: _csv([_row("r1", "11"), _row("r3", "33"), _row("r6", "66"), _row("r7", "x")]),
}
CREATED = {
    DAILY: "2026-10-07T02:00:00.000Z",
    TORN: "2026-10-06T08:00:00.000Z",
    HOURLY: "2026-10-06T07:00:00.000Z",
}


class _Org:
    """The files' listing and bodies, as the connector's client hands them over."""

    def describe(self, sobject: str) -> dict[str, Any]:
        names = ("Id", "EventType", "LogDate", "Interval", "Sequence", "CreatedDate",
                 "LogFileLength", "LogFileFieldNames")  # fmt: skip
        return {"fields": [{"name": n} for n in names]}

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        return [
            {"Id": i, "EventType": "AgentAction", "LogDate": DAY,
             "Interval": "Daily" if i == DAILY else "Hourly", "Sequence": 1,
             "CreatedDate": CREATED[i], "LogFileLength": len(body),
             "LogFileFieldNames": ",".join(ELF_COLUMNS)}
            for i, body in BODIES.items()
        ]  # fmt: skip

    def download_logfile(
        self, file_id: str, sink: IO[bytes], *, expected_size: int | None = None
    ) -> tuple[int, str]:
        body = BODIES[file_id]
        sink.write(body)
        return len(body), hashlib.sha256(body).hexdigest()


def _sql(db: Path, sql: str) -> set[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return set(conn.execute(sql).fetchall())


@pytest.mark.parametrize("page_rows", [1, 2, 3, eventlogfile.PAGE_ROWS])
def test_pages_of_any_size_store_what_one_page_would(
    page_rows: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eventlogfile, "PAGE_ROWS", page_rows)
    changed: list[str | None] = []
    sync = EventLogFileSync(
        _Org(),  # type: ignore[arg-type]  # duck-typed: the three calls the sync makes
        ConnectorConfig(),
        "run1",
        datetime(2026, 10, 8, tzinfo=timezone.utc),
        lambda stage, done, total: None,
        changed.append,
    )
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
