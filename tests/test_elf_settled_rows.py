"""Log files are read newest first, a LogDate day at a time; a row of an older file whose
REQUEST_ID a newer file of its day already gave is read no further than its REQUEST_ID.
What is stored must stay what SPEC §3.2 says (the newest copy decides: a good copy is the
event, a bad copy a bad record), whatever the older copy holds; a torn older file is still
a bad file, because its CSV is still parsed whole."""

from __future__ import annotations

import io
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from audit.store import Store
from connector.core.eventlogfile import EventLogFileSync
from connector.logfiles import BadLogFile, parse_logfile
from tests.helpers import LogFilesOrg, log_csv, log_row

DAY = "2026-10-06T00:00:00.000Z"
DAILY, HOURLY, TORN = "0ATD00000000001AAA", "0ATH00000000001AAA", "0ATT00000000001AAA"


# the newer (Daily) file: r1 good, r2 bad, r3 good
BODIES = {
    DAILY: log_csv([log_row("r1", "100"), log_row("r2", "-5"), log_row("r3", "300")]),
    # the older (Hourly) file: r1 bad (a newer good copy), r2 good (a newer bad copy),
    # r3 good (a newer good copy), r4 bad and r5 good (no newer copy)
    HOURLY: log_csv(
        [
            log_row(r, t)
            for r, t in (("r1", "lots"), ("r2", "200"), ("r3", "999"), ("r4", "-7"), ("r5", "500"))
        ]
    ),
    # an older file torn after a row the newer file settled: an unterminated quote
    TORN: log_csv([log_row("r1", "100")], tail='EventLogFile,"torn\n'),
}
CREATED = {
    DAILY: "2026-10-07T02:00:00.000Z",
    HOURLY: "2026-10-06T07:00:00.000Z",
    TORN: "2026-10-06T06:00:00.000Z",
}


@pytest.fixture
def synced(tmp_path: Path) -> tuple[Path, EventLogFileSync]:
    sync = LogFilesOrg(BODIES, CREATED, DAY, DAILY).elf_sync()
    with Store.open(tmp_path / "s.db") as store:
        sync.sync(store, None)
    return tmp_path / "s.db", sync


def _sql(db: Path, sql: str) -> set[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return set(conn.execute(sql).fetchall())


def test_the_newest_copy_decides_what_is_stored(synced: tuple[Path, EventLogFileSync]) -> None:
    db, _ = synced
    assert _sql(db, "SELECT request_id, file_id, tokens FROM elf_events") == {
        ("r1", DAILY, 100), ("r3", DAILY, 300), ("r5", HOURLY, 500),
    }  # fmt: skip
    assert _sql(db, "SELECT key, file_id, reason FROM bad_records") == {
        ("r2", DAILY, "negative"), ("r4", HOURLY, "negative"), (TORN, TORN, "bad_file"),
    }  # fmt: skip


def test_rows_count_and_notes_of_each_file(synced: tuple[Path, EventLogFileSync]) -> None:
    db, sync = synced
    # rows read as data: the Daily file's two good rows; the Hourly file's good r5 and the
    # three rows the Daily file settled (r4 is bad); the torn file none
    assert _sql(db, "SELECT id, rows, bad FROM elf_files") == {
        (DAILY, 2, 0), (HOURLY, 4, 0), (TORN, 0, 1),
    }  # fmt: skip
    hourly = [n for n in sync.notes if n.startswith(f"EventLogFile {HOURLY}")]
    assert hourly == [f"EventLogFile {HOURLY}: 1 bad row(s), first at line 5: TOTAL_TOKENS = '-7' "
                      "(negative)"]  # fmt: skip
    assert any(n.startswith(f"EventLogFile {TORN}: CSV does not parse") for n in sync.notes)


def test_a_settled_row_is_not_checked_an_unsettled_one_is() -> None:
    body = log_csv([log_row("r1", "lots"), log_row("r2", "lots")])
    rows = list(parse_logfile(io.BytesIO(body), None, settled=lambda rid: rid == "r1"))
    assert [(r.line, r.request_id, r.event, r.bad is None) for r in rows[:1]] == [
        (2, "r1", None, True)
    ]
    assert rows[1].event is None and rows[1].bad is not None
    assert rows[1].bad.field == "TOTAL_TOKENS"


def test_a_file_torn_after_settled_rows_is_still_torn() -> None:
    with pytest.raises(BadLogFile, match="does not parse"):
        list(parse_logfile(io.BytesIO(BODIES[TORN]), None, settled=lambda rid: True))
