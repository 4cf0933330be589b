"""Copies of one REQUEST_ID in several log files (Hourly and Daily overlap, re-published
files): whatever the order the files reach the store in — oldest first, newest first (as
the connector now processes them), or an older one read again after a newer one — the
store ends as SPEC §3.2 says: the newest file holding the row decides, a good copy is the
event, a bad copy leaves a bad record and no event."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, cast

import pytest

from audit.store import Store
from connector.sink import BadRecord, LogEvent, LogFileRecord, Page

# three files, oldest to newest (CreatedDate, then Sequence, then Id)
FILES = [
    ("2026-10-06T05:00:00.000Z", 1, "0AThourly"),
    ("2026-10-07T02:00:00.000Z", 1, "0ATdaily1"),
    ("2026-10-07T02:00:00.000Z", 2, "0ATdaily2"),
]
# what each file holds of a row: nothing, a good copy or a bad copy — every combination
CASES = list(itertools.product(("-", "good", "bad"), repeat=len(FILES)))


def _rid(case: int) -> str:
    return f"r{case:02d}"


def _page(f: int) -> Page:
    created, sequence, file_id = FILES[f]
    events: list[LogEvent] = []
    bad: list[BadRecord] = []
    for case, holds in enumerate(CASES):
        at = f"2026-10-06T{case % 24:02d}:00:00.000Z"
        if holds[f] == "good":
            row: dict[str, Any] = {c: None for c in LogEvent.__annotations__}
            row.update(request_id=_rid(case), started_at=at, tokens=100 + f,
                       file_created_date=created, file_sequence=sequence, file_id=file_id)
            events.append(cast(LogEvent, row))
        elif holds[f] == "bad":
            bad.append({"source": "eventlogfile", "key": _rid(case), "reason": "negative",
                        "field": "TOTAL_TOKENS", "detail": "TOTAL_TOKENS = -5",
                        "record_id": _rid(case), "file_id": file_id, "line": case + 2, "at": at})
    record = LogFileRecord(
        id=file_id, log_date="2026-10-06T00:00:00.000Z", interval="Daily", sequence=sequence,
        created_date=created, rows=len(events), sha256="ab" * 32, bytes=10, bad=0, error=None,
        processed_at="2026-10-07T03:00:00.000Z", run_id="r1",
    )  # fmt: skip
    return Page("eventlogfile", "r1", log_events=events, log_file=record, bad_records=bad)


def _expected() -> tuple[set[tuple[str, str, int]], set[tuple[str, str]]]:
    """From SPEC §3.2 alone: the newest file holding a copy decides."""
    rows, bad = set(), set()
    for case, holds in enumerate(CASES):
        newest = max((f for f, h in enumerate(holds) if h != "-"), default=None)
        if newest is None:
            continue
        if holds[newest] == "good":
            rows.add((_rid(case), FILES[newest][2], 100 + newest))
        else:
            bad.add((_rid(case), FILES[newest][2]))
    return rows, bad


def _state(store: Store) -> tuple[set[tuple[str, str, int]], set[tuple[str, str]]]:
    db = store._db  # the test reads the tables directly
    rows = {tuple(r) for r in db.execute("SELECT request_id, file_id, tokens FROM elf_events")}
    bad = {tuple(r) for r in db.execute("SELECT key, file_id FROM bad_records")}
    return cast(Any, rows), cast(Any, bad)


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(FILES)))))
def test_the_newest_copy_wins_whatever_the_order_files_arrive_in(
    order: tuple[int, ...], tmp_path: Path
) -> None:
    with Store.open(tmp_path / "s.db") as store:
        for f in order:
            store.commit(_page(f))
        assert _state(store) == _expected()


def test_an_older_file_read_again_after_newer_ones_changes_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        for f in (0, 1, 2, 0, 1):
            store.commit(_page(f))
        assert _state(store) == _expected()
