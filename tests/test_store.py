"""The SQLite store: file safety, migrations, the run lock, idempotent writes, findings."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
import sqlite_utils

from audit.errors import StoreError
from audit.store import (
    SCHEMA_VERSION,
    SYNC_STATE_VERSION,
    Store,
    map_errors,
    migrate,
    run_triggers,
)
from connector.sink import (
    AwiRecord,
    CaseRecord,
    D360Event,
    D360Session,
    D360Step,
    LogEvent,
    LogFileRecord,
    Page,
    SyncSink,
)

UTC = timezone.utc
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class F:
    """Stands in for audit.engine.rules.Finding (same attributes)."""

    id: str
    started_at: datetime
    kind: str = "CEILING_BREACH"
    key: str = ""
    severity: str = "high"
    session_id: str | None = "S1"
    agent: str | None = "Agent"
    action_name: str | None = "GetOrderHistory"
    action_ids: tuple[str, ...] = ("a1",)
    wasted_awu: float = 2.0
    wasted_usd: float = 0.2
    explanation: str = "An action used 22,000 tokens."
    detail: dict[str, Any] = field(default_factory=dict)


def _mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# Tests set up and look at rows on a connection of their own, never through the store's.
def _query(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def _write(path: Path, sql: str, params: Sequence[Any] = ()) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(sql, params)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "audit.db") as s:
        yield s


def _action(i: int, **extra: Any) -> dict[str, Any]:
    row = {
        "id": f"a{i:07d}",
        "session_id": f"s{i // 10}",
        "agent_name": "Agent",
        "action_name": "GetOrderHistory",
        "action_type": "Apex",
        "channel": "Text",
        "status": "Success",
        "tokens": 1000 + i,
        "reported_awu": 1.0,
        "action_input": '{"order": 1}',
        "started_at": f"2026-10-{1 + i % 28:02d}T12:00:00.000Z",
        "billable": True,
        "units": 1,
        "multiplier": 1.0,
        "awu": 1.0,
        "credits": 20.0,
        "cost_usd": 0.1,
        "day": f"2026-10-{1 + i % 28:02d}",
    }
    row.update(extra)
    return row


# --- opening ---------------------------------------------------------------------------------


def test_open_creates_a_private_wal_store(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "audit.db"
    with Store.open(path) as s:
        s.commit(Page(source="test", run_id="r1", cases=[_case("500x")]))
        assert _mode(path) == 0o600
        assert _mode(f"{path}-wal") == 0o600  # SQLite copies the database file's mode
        assert _query(path, "PRAGMA journal_mode") == [("wal",)]  # WAL is kept in the file
        assert s.schema_version == SCHEMA_VERSION
        assert s.path == path
        assert s.known_case_ids(["500x"]) == {"500x"}
    # the busy timeout is proved in test_a_locked_database_is_a_store_error


def test_open_makes_a_loose_existing_file_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    path.touch()
    os.chmod(path, 0o644)
    Store.open(path).close()
    assert _mode(path) == 0o600


def test_a_file_that_is_not_sqlite_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(StoreError, match=r"notes\.db is not an awu-audit store"):
        Store.open(path)


def test_another_applications_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE things (x)")
    conn.close()
    with pytest.raises(StoreError, match=r"other\.db is a SQLite database but not an awu-audit"):
        Store.open(path)


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    Store.open(path).close()
    _write(
        path, "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
    )
    with pytest.raises(StoreError) as info:
        Store.open(path)
    assert str(info.value) == (
        f"store {path} was written by a newer awu-audit (schema {SCHEMA_VERSION + 1}); "
        "upgrade awu-audit"
    )


def test_a_v1_store_is_upgraded_in_place_keeping_its_rows(tmp_path: Path) -> None:
    assert SCHEMA_VERSION >= 2
    path = tmp_path / "audit.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    assert migrate(db, target=1) == 1
    conn.execute("INSERT INTO actions (id, started_at, awu) VALUES ('a1', '2026-10-01T00:00:00.000Z', 3.0)")
    conn.execute("INSERT INTO findings (id, kind, key, status) VALUES ('f1', 'RETRY', 'a1', 'open')")
    conn.execute("INSERT INTO alerts (id, kind, period, threshold) VALUES ('x', 'BUDGET_THRESHOLD', '2026-10', 50)")
    conn.execute("INSERT INTO alert_deliveries (alert_id, channel) VALUES ('x', 'slack')")
    indexes_v1 = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "idx_findings_status_started_at" not in indexes_v1

    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.count("actions") == 1 and s.count("findings") == 1 and s.count("alerts") == 1
        assert _query(path, "SELECT awu FROM actions WHERE id = 'a1'") == [(3.0,)]
        indexes = {r[0] for r in _query(path, "SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"idx_findings_status_started_at", "idx_alert_deliveries_state"} <= indexes
    # opening again is a no-op
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION and s.count("actions") == 1


# --- writes ----------------------------------------------------------------------------------


def test_writes_are_idempotent_and_update_only_what_they_carry(store: Store) -> None:
    path = store.path
    file = ("2026-10-07T01:00:00.000Z", 1, "0AT1")
    page = Page(
        source="agentworkitem",
        run_id="r1",
        state={"cursor": "2026-10-06T12:00:00.000Z"},
        awi_records=[_awi(f"w{i:03d}", "2026-10-06T10:00:00.000Z", tokens=1000 + i) for i in range(50)],
        log_events=[_log(f"q{i:03d}", f"w{i:03d}", "2026-10-06T10:00:00.000Z", file) for i in range(50)],
        log_file=_log_file("0AT1", file[0]),
        cases=[_case("500A")],
        d360_events=[_d360_event("e1", "2026-10-06T10:00:00.000Z")],
        d360_sessions=[D360Session(id="sess-1", channel_type="Voice", voice_call_id=None, started_at=None)],
    )
    store.commit(page)
    first = _page_tables(path)
    store.commit(page)  # the same page again (a re-run, a retried request): same rows
    assert _page_tables(path) == first
    assert len(first["awi_records"]) == 50 and len(first["elf_events"]) == 50

    # a changed record replaces its stored copy in place
    store.commit(Page(source="agentworkitem", run_id="r2",
                      awi_records=[_awi("w003", "2026-10-06T10:00:00.000Z", tokens=1003, status="Error")]))
    assert _query(path, "SELECT status, tokens, started_at FROM awi_records WHERE id = 'w003'") == [
        ("Error", 1003, "2026-10-06T10:00:00.000Z")
    ]
    assert store.count("awi_records") == 50

    window = ("2026-10-01T00:00:00.000Z", "2026-11-01T00:00:00.000Z")
    store.replace_actions(window, [_action(i) for i in range(50)])
    actions = _query(path, "SELECT * FROM actions ORDER BY id")
    store.replace_actions(window, [_action(i) for i in range(50)])
    assert _query(path, "SELECT * FROM actions ORDER BY id") == actions and len(actions) == 50

    # a run's later writes change only the columns they carry
    store.start_run("r1", started_at="2026-10-07T02:00:00.000Z", window_start=None, window_end=None, trigger="schedule")
    store.set_run_window("r1", "2026-10-06T00:00:00.000Z", "2026-10-07T00:00:00.000Z")
    store.finish_run("r1", outcome="ok", ended_at="2026-10-07T02:05:00.000Z", records=10, summary={"a": 1})
    store.finish_run("r1", outcome="ok", ended_at="2026-10-07T02:06:00.000Z")
    store.set_run_summary("r1", {"b": 2})
    ((*columns, summary),) = _query(
        path,
        "SELECT started_at, trigger, window_start, window_end, outcome, ended_at, records, summary "
        "FROM runs WHERE id = 'r1'",
    )
    assert columns == ["2026-10-07T02:00:00.000Z", "schedule", "2026-10-06T00:00:00.000Z",
                       "2026-10-07T00:00:00.000Z", "ok", "2026-10-07T02:06:00.000Z", 10]
    assert json.loads(summary) == {"b": 2}


def test_datetimes_and_containers_are_stored_as_text_and_json(store: Store) -> None:
    path = store.path
    store.start_run(
        "r1",
        started_at=datetime(2026, 10, 6, 14, 3, 22, 123456, tzinfo=UTC),
        window_start=datetime(2026, 10, 6, 2, tzinfo=timezone(timedelta(hours=2))),
        window_end=datetime(2026, 10, 7, tzinfo=UTC),
        trigger="run",
    )
    store.finish_run(
        "r1",
        outcome="ok",
        ended_at=datetime(2026, 10, 6, 14, 5, tzinfo=UTC),
        summary={"totals": {"awu": 1.5}, "ids": ("a", "b")},
        is_sandbox=True,
    )
    ((started, window_start, ended, summary, sandbox),) = _query(
        path, "SELECT started_at, window_start, ended_at, summary, is_sandbox FROM runs"
    )
    assert started == "2026-10-06T14:03:22.123Z"
    assert window_start == "2026-10-06T00:00:00.000Z"  # +02:00 stored as UTC
    assert ended == "2026-10-06T14:05:00.000Z"
    assert json.loads(summary) == {"totals": {"awu": 1.5}, "ids": ["a", "b"]}
    assert sandbox == 1

    store.commit(Page(source="test", run_id="r1",
                      state={"cursor": datetime(2026, 10, 6, 12, tzinfo=UTC), "covered": ("2026-10-06",)}))
    ((state,),) = _query(path, "SELECT state FROM sync_state WHERE source = 'test'")
    assert json.loads(state) == {"cursor": "2026-10-06T12:00:00.000Z", "covered": ["2026-10-06"]}

    store.sync_findings(
        "r1",
        [F("f1", datetime(2026, 10, 6, 1, tzinfo=UTC), action_ids=("a2", "a3"), detail={"day": date(2026, 10, 6)})],
        window_start=datetime(2026, 10, 6, tzinfo=UTC),
        window_end=datetime(2026, 10, 7, tzinfo=UTC),
    )
    ((finding_started, action_ids, detail),) = _query(path, "SELECT started_at, action_ids, detail FROM findings")
    assert finding_started == "2026-10-06T01:00:00.000Z"
    assert json.loads(action_ids) == ["a2", "a3"] and json.loads(detail) == {"day": "2026-10-06"}


def test_a_window_of_100k_actions_is_stored_whole(store: Store) -> None:
    # how fast is measured by benchmarks/run.py (against a raw executemany), not here
    store.replace_actions(
        ("2026-10-01T00:00:00.000Z", "2026-11-01T00:00:00.000Z"), [_action(i) for i in range(100_000)]
    )
    assert store.count("actions") == 100_000
    oct1, nov1 = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    assert store.credits_between(oct1, nov1) == 100_000 * 20.0


def test_a_bad_column_outcome_or_row_is_a_store_error(store: Store) -> None:
    store.start_run("r1", started_at="2026-10-07T02:00:00.000Z", window_start=None, window_end=None, trigger="run")
    with pytest.raises(StoreError, match="invalid run outcome 'great'"):
        store.finish_run("r1", outcome="great")
    with pytest.raises(StoreError, match="runs has no column 'colour'"):
        store.finish_run("r1", outcome="ok", colour="red")
    with pytest.raises(StoreError, match="cannot store a value of type object"):
        store.finish_run("r1", outcome="ok", summary=object())
    run = store.get_run("r1")
    assert run is not None and run["outcome"] == "running" and run["ended_at"] is None

    with pytest.raises(StoreError, match="no column named colour"):
        store.commit(Page(source="test", run_id="r1", cases=[cast(CaseRecord, {**_case("500A"), "colour": "red"})]))
    with pytest.raises(StoreError, match="lacks its primary key column id"):
        store.commit(Page(source="test", run_id="r1", cases=[cast(CaseRecord, {"status": "New"})]))
    with pytest.raises(StoreError, match="unknown store table 'nope'"):
        store.count("nope")
    assert store.count("cases") == 0


def test_transaction_rolls_back_and_nests(store: Store) -> None:
    def cases() -> list[str]:
        return [r[0] for r in _query(store.path, "SELECT id FROM cases ORDER BY id")]

    with pytest.raises(RuntimeError):
        with store.transaction():
            store.commit(_cases_page("c1", cursor="2026-10-06T00:00:00.000Z"))
            raise RuntimeError("boom")
    assert cases() == [] and store.sync_state("test") is None

    with store.transaction():
        store.commit(_cases_page("c1"))
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.commit(_cases_page("c2"))
                raise RuntimeError("inner")
        store.commit(_cases_page("c3"))
    assert cases() == ["c1", "c3"]

    # a failing page inside a transaction leaves nothing of itself (its records written
    # before the bad row included) and the transaction goes on
    failing = Page(
        source="test",
        run_id="r1",
        state={"cursor": "2026-10-07T00:00:00.000Z"},
        awi_records=[_awi("w1", "2026-10-06T10:00:00.000Z")],
        log_file=cast(LogFileRecord, {**_log_file("0AT1", "2026-10-07T01:00:00.000Z"), "colour": "red"}),
    )
    with store.transaction():
        with pytest.raises(StoreError, match="no column named colour"):
            store.commit(failing)
        store.commit(_cases_page("c4"))
    assert cases() == ["c1", "c3", "c4"]
    assert store.awi_modstamps(["w1"]) == {} and store.sync_state("test") is None

    # … and when its error leaves the transaction, nothing of the transaction is kept
    with pytest.raises(StoreError, match="no column named colour"):
        with store.transaction():
            store.commit(_cases_page("c5", cursor="2026-10-06T00:00:00.000Z"))
            store.commit(failing)
    assert cases() == ["c1", "c3", "c4"]
    assert store.awi_modstamps(["w1"]) == {} and store.sync_state("test") is None


def test_replace_actions_replaces_only_the_window(store: Store) -> None:
    # one action per day 1..28
    store.replace_actions(("2026-10-01T00:00:00.000Z", "2026-11-01T00:00:00.000Z"), [_action(i) for i in range(28)])
    replaced = [_action(100, started_at="2026-10-05T00:00:00.000Z")]
    store.replace_actions((datetime(2026, 10, 3, tzinfo=UTC), "2026-10-06T00:00:00.000Z"), replaced)
    days = [r[0][:10] for r in _query(store.path, "SELECT started_at FROM actions ORDER BY started_at")]
    assert "2026-10-03" not in days and "2026-10-04" not in days
    assert days.count("2026-10-05") == 1 and "2026-10-06" in days and "2026-10-02" in days
    assert store.count("actions") == 28 - 3 + 1


def test_write_actions_of_reports_the_chunk_rows_it_did_not_write(store: Store) -> None:
    """A chunk's stored rows that a rewrite did not yield come back as unwritten — also when
    a row written with it lies outside the chunk (it does not count for the chunk) — and
    delete_unwritten drops those no later chunk wrote."""
    from audit.engine.awu import ActionCost
    from audit.engine.model import Action

    def action(i: int, started: datetime) -> Action:
        return Action(f"a{i}", "s1", "Get", "Apex", "Text", "Success", 10, started)

    cost = ActionCost(True, 1, 1.0, 1.0, 0.0, 20.0, 0.1)
    hour = (datetime(2026, 10, 2, 10, tzinfo=UTC), datetime(2026, 10, 2, 11, tzinfo=UTC))
    at = [hour[0] + timedelta(minutes=i) for i in range(10)]
    later = hour[1] + timedelta(minutes=5)

    def write(actions: list[Action]) -> list[tuple[str, str]]:
        return store.write_actions_of(hour, actions, {a.id: cost for a in actions}, {})

    assert write([action(i, at[i]) for i in range(4)]) == []
    assert write([action(i, at[i]) for i in range(4)]) == []  # the same rows again
    gone = write([action(i, at[i]) for i in range(3)])
    assert gone == [("a3", "2026-10-02T10:03:00.000Z")]
    store.delete_unwritten(gone)
    # a1 rewritten outside the chunk, a2 not at all: as many rows written as the chunk
    # holds after the write, yet a2 went unwritten
    assert write([action(0, at[0]), action(1, later)]) == [("a2", "2026-10-02T10:02:00.000Z")]
    store.delete_unwritten([("a2", "2026-10-02T10:02:00.000Z"), ("a1", "2026-10-02T10:01:00.000Z")])
    rows = _query(store.path, "SELECT id, started_at FROM actions ORDER BY id")
    assert rows == [("a0", "2026-10-02T10:00:00.000Z"), ("a1", "2026-10-02T11:05:00.000Z")]


def test_daily_usage_and_credits_by_day_half_open(store: Store) -> None:
    def usage(day: str, agent: str | None, credits: float) -> dict[str, Any]:
        return {"day": day, "agent": agent, "channel": "Text", "actions": 1, "credits": credits}

    store.replace_daily_usage(
        ["2026-10-01", "2026-10-02"],
        [usage("2026-10-01", "A", 20.0), usage("2026-10-01", None, 10.0), usage("2026-10-02", "A", 5.0)],
    )
    store.replace_daily_usage(["2026-11-01"], [usage("2026-11-01", "A", 99.0)])
    assert store.credits_by_day("2026-10-01", "2026-11-01") == {"2026-10-01": 30.0, "2026-10-02": 5.0}
    # replacing a day drops rows no longer present
    store.replace_daily_usage(["2026-10-01"], [usage("2026-10-01", "A", 40.0)])
    assert store.credits_by_day("2026-10-01", "2026-10-02") == {"2026-10-01": 40.0}
    store.replace_daily_usage(["2026-10-01"], [usage("2026-10-01", "A", 40.0)])
    assert store.count("daily_usage") == 3


# --- runs and sync state ---------------------------------------------------------------------


def test_run_lifecycle(store: Store) -> None:
    store.start_run(
        "r1",
        started_at=datetime(2026, 10, 7, 2, tzinfo=UTC),
        window_start="2026-10-06T00:00:00.000Z",
        window_end="2026-10-07T00:00:00.000Z",
        trigger="schedule",
    )
    assert store.get_run("r1")["outcome"] == "running"  # type: ignore[index]
    store.finish_run(
        "r1",
        outcome="ok",
        ended_at="2026-10-07T02:05:00.000Z",
        records=10,
        actions=9,
        summary={"totals": {"actions": 9}},
    )
    run = store.get_run("r1")
    assert run is not None
    assert run["outcome"] == "ok" and run["records"] == 10 and run["actions"] == 9
    assert run["summary"] == {"totals": {"actions": 9}}
    assert run["window_start"] == "2026-10-06T00:00:00.000Z" and run["trigger"] == "schedule"
    with pytest.raises(StoreError, match="invalid run outcome"):
        store.finish_run("r1", outcome="great")
    with pytest.raises(StoreError, match="runs has no column"):
        store.finish_run("r1", outcome="ok", colour=1)


def test_sync_state_is_versioned(store: Store) -> None:
    assert store.sync_state("agentworkitem") is None
    store.commit(Page(source="agentworkitem", run_id="r1", state={"cursor": "2026-10-06T00:00:00.000Z"}))
    assert store.sync_state("agentworkitem") == {"cursor": "2026-10-06T00:00:00.000Z"}
    _write(store.path, "UPDATE sync_state SET version = ?", (SYNC_STATE_VERSION - 1,))
    assert store.sync_state("agentworkitem") is None  # older shape: re-sync
    _write(store.path, "UPDATE sync_state SET version = ?", (SYNC_STATE_VERSION + 1,))
    with pytest.raises(StoreError, match="newer awu-audit"):
        store.sync_state("agentworkitem")


# --- the inter-process lock ------------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from audit.store import Store
    store = Store.open(sys.argv[1])
    with store.lock():
        store.start_run("r-dead", started_at="2026-10-07T02:00:00.000Z",
                        window_start="2026-10-06T00:00:00.000Z",
                        window_end="2026-10-07T00:00:00.000Z", trigger="schedule")
        print("locked", flush=True)
        time.sleep(60)
    """
)


def _wait_for_line(proc: subprocess.Popen[str], expected: str, timeout: float = 10.0) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"subprocess did not print {expected!r} in {timeout} s"
    assert proc.stdout.readline().strip() == expected


def test_lock_held_by_another_process_then_released_by_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    Store.open(path).close()
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as proc:
        try:
            _wait_for_line(proc, "locked")
            with Store.open(path) as s:
                # the holder is alive: its run is not "interrupted"
                assert s.get_run("r-dead")["outcome"] == "running"  # type: ignore[index]
                with pytest.raises(StoreError) as info:
                    with s.lock():
                        pass
                assert str(info.value).startswith(f"another run holds the lock on {path}")
                assert f"pid {proc.pid}" in str(info.value)
                started = time.monotonic()
                with pytest.raises(StoreError, match="another run holds the lock"):
                    with s.lock(wait_s=0.3):
                        pass
                assert time.monotonic() - started >= 0.3

                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                with s.lock():
                    run = s.get_run("r-dead")
                    assert run is not None and run["outcome"] == "interrupted"
                    assert run["ended_at"] and "stopped before the run finished" in run["error"]
        finally:
            proc.kill()


def test_lock_is_reentrant_and_marks_abandoned_runs_at_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with Store.open(path) as s:
        with s.lock():
            with s.lock():
                s.start_run("r1", started_at="2026-10-07T02:00:00.000Z",
                            window_start="2026-10-06T00:00:00.000Z",
                            window_end="2026-10-07T00:00:00.000Z", trigger="cli")
            # still held by this Store after the inner block
            with Store.open(path) as other:
                assert other.get_run("r1")["outcome"] == "running"  # type: ignore[index]
                with pytest.raises(StoreError):
                    with other.lock():
                        pass
    # the process "died" without finish_run; the next open marks it
    with Store.open(path) as s:
        assert s.get_run("r1")["outcome"] == "interrupted"  # type: ignore[index]


# --- findings --------------------------------------------------------------------------------


def test_sync_findings_resolves_and_reopens_with_the_same_id(store: Store) -> None:
    ws, we = datetime(2026, 10, 6, tzinfo=UTC), datetime(2026, 10, 7, tzinfo=UTC)
    f1 = F("f1", datetime(2026, 10, 6, 1, tzinfo=UTC), detail={"tokens": 22000})
    f2 = F("f2", datetime(2026, 10, 6, 2, tzinfo=UTC), kind="RETRY", action_ids=("a2", "a3"))
    outside = F("f0", datetime(2026, 10, 5, 23, tzinfo=UTC))

    changes = store.sync_findings("r1", [f1, f2], window_start=ws, window_end=we)
    assert changes.new_ids == ["f1", "f2"] and not changes.reopened_ids and not changes.resolved_ids
    store.sync_findings("r0", [outside], window_start=ws.replace(day=5), window_end=ws)

    # a re-run with the same findings changes nothing
    changes = store.sync_findings("r2", [f1, f2], window_start=ws, window_end=we)
    assert changes.new_ids == [] and changes.resolved_ids == []
    assert store.count("findings") == 3

    # a correction removes f2: resolved by r3; f0 (outside the window) untouched
    changes = store.sync_findings("r3", [f1], window_start=ws, window_end=we)
    assert changes.resolved_ids == ["f2"]
    assert [f["id"] for f in store.open_findings()] == ["f0", "f1"]
    assert _query(store.path, "SELECT status, resolved_run FROM findings WHERE id='f2'") == [("resolved", "r3")]

    # f2 reappears: same id, reopened, first_seen_run kept
    changes = store.sync_findings("r4", [f1, f2], window_start=ws, window_end=we)
    assert changes.reopened_ids == ["f2"] and changes.new_ids == []
    row = _query(
        store.path, "SELECT status, first_seen_run, last_seen_run, resolved_run FROM findings WHERE id='f2'"
    )
    assert row == [("open", "r1", "r4", None)]

    retry = store.open_findings(kind="RETRY", window=(ws, we))
    assert len(retry) == 1 and retry[0]["action_ids"] == ["a2", "a3"]
    assert store.open_findings(kind="CEILING_BREACH", window=(ws, we))[0]["detail"] == {"tokens": 22000}
    assert store.count("findings") == 3


# --- the connector's sink and what the engine reads -------------------------------------------


def _awi(i: str, started_at: str, **extra: Any) -> AwiRecord:
    row: dict[str, Any] = {c: None for c in AwiRecord.__annotations__}
    row.update(id=i, session_id="S1", started_at=started_at, system_modstamp=started_at)
    row.update(extra)
    return cast(AwiRecord, row)


def _log(request_id: str, work_item_id: str | None, started_at: str, file: tuple[str, int, str]) -> LogEvent:
    row: dict[str, Any] = {c: None for c in LogEvent.__annotations__}
    created, sequence, file_id = file
    row.update(
        request_id=request_id, work_item_id=work_item_id, started_at=started_at,
        file_created_date=created, file_sequence=sequence, file_id=file_id, tokens=100,
    )
    return cast(LogEvent, row)


def _log_file(file_id: str, created: str, *, bad: int = 0, log_date: str = "2026-10-06T00:00:00.000Z") -> LogFileRecord:
    return LogFileRecord(
        id=file_id, log_date=log_date, interval="Daily", sequence=1, created_date=created,
        rows=1, sha256="ab" * 32, bytes=10, bad=bad, error="truncated" if bad else None,
        processed_at="2026-10-07T02:00:00.000Z", run_id="r1",
    )


def _d360_event(i: str, started_at: str, **extra: Any) -> D360Event:
    row: dict[str, Any] = {c: None for c in D360Event.__annotations__}
    row.update(id=i, request_id=f"req-{i}", started_at=started_at, tool_name="Lookup", session_id="sess-1")
    row.update(extra)
    return cast(D360Event, row)


def _case(i: str) -> CaseRecord:
    return CaseRecord(id=i, status="New", is_closed=0, closed_at=None)


def _cases_page(*ids: str, cursor: str | None = None) -> Page:
    return Page(
        source="test", run_id="r1", state=None if cursor is None else {"cursor": cursor},
        cases=[_case(i) for i in ids],
    )


#: the tables a page writes, and the columns of sync_state a commit sets (not its clock)
_PAGE_TABLES = {
    "awi_records": "SELECT * FROM awi_records ORDER BY id",
    "elf_events": "SELECT * FROM elf_events ORDER BY request_id",
    "elf_files": "SELECT * FROM elf_files ORDER BY id",
    "cases": "SELECT * FROM cases ORDER BY id",
    "d360_events": "SELECT * FROM d360_events ORDER BY id",
    "d360_steps": "SELECT * FROM d360_steps ORDER BY id",
    "d360_sessions": "SELECT * FROM d360_sessions ORDER BY id",
    "sync_state": "SELECT source, version, state, run_id FROM sync_state ORDER BY source",
}


def _page_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {table: _query(path, sql) for table, sql in _PAGE_TABLES.items()}


def test_the_store_is_a_sync_sink(store: Store) -> None:
    _: SyncSink = store  # checked by mypy (also in audit/store/__init__.py)
    protocol = {n for n in vars(SyncSink) if not n.startswith("_")}
    assert protocol and all(callable(getattr(store, n)) for n in protocol)


def test_commit_stores_a_page_and_its_cursor_together(store: Store) -> None:
    page = Page(
        source="agentworkitem",
        run_id="r1",
        state={"cursor": "2026-10-06T12:00:00.000Z"},
        awi_records=[_awi("w1", "2026-10-06T10:00:00.000Z"), _awi("w2", "2026-10-06T11:00:00.000Z")],
        cases=[CaseRecord(id="500A", status="Closed", is_closed=1, closed_at="2026-10-06T13:00:00.000Z")],
    )
    store.commit(page)
    assert store.sync_state("agentworkitem") == {"cursor": "2026-10-06T12:00:00.000Z"}
    assert store.awi_modstamps(["w1", "w2", "w9"]) == {
        "w1": "2026-10-06T10:00:00.000Z", "w2": "2026-10-06T11:00:00.000Z",
    }
    assert store.known_case_ids(["500A", "500B"]) == {"500A"}
    case = store.cases(["500A", "500B"])["500A"]
    assert case.is_closed and case.closed_at == datetime(2026, 10, 6, 13, tzinfo=UTC)

    # a page without a cursor leaves the cursor alone; a failing page stores nothing
    store.commit(Page(source="agentworkitem", run_id="r2", awi_records=[_awi("w1", "2026-10-06T10:00:00.000Z", system_modstamp="X")]))
    assert store.awi_modstamps(["w1"]) == {"w1": "X"}
    broken = Page(
        source="agentworkitem",
        run_id="r3",
        state={"cursor": "2026-10-07T00:00:00.000Z"},
        awi_records=[_awi("w3", "2026-10-06T12:00:00.000Z")],
        log_file=cast(LogFileRecord, {**_log_file("0AT1", "2026-10-07T01:00:00.000Z"), "colour": "red"}),
    )
    with pytest.raises(StoreError, match="no column named colour"):
        store.commit(broken)
    assert store.awi_modstamps(["w3"]) == {}
    assert store.sync_state("agentworkitem") == {"cursor": "2026-10-06T12:00:00.000Z"}
    assert store.log_file_created("0AT1") is None


def test_a_log_row_replaces_its_stored_copy_only_from_a_newer_file(store: Store) -> None:
    daily = ("2026-10-07T01:00:00.000Z", 1, "0AT-daily")
    hourly = ("2026-10-06T13:00:00.000Z", 1, "0AT-hourly")
    later_seq = ("2026-10-07T01:00:00.000Z", 2, "0AT-daily-2")
    at = "2026-10-06T12:00:00.000Z"
    store.commit(Page(source="eventlogfile", run_id="r1", log_events=[_log("q1", "w1", at, daily)],
                      log_file=_log_file("0AT-daily", daily[0])))
    assert store.log_file_created("0AT-daily") == daily[0]
    store.commit(Page(source="eventlogfile", run_id="r1", log_events=[_log("q1", "w1", at, hourly)]))
    _, logs = store.core_rows((datetime(2026, 10, 6, tzinfo=UTC), datetime(2026, 10, 7, tzinfo=UTC)))
    assert [r["file_id"] for r in logs] == ["0AT-daily"]  # the older hourly file lost
    store.commit(Page(source="eventlogfile", run_id="r1", log_events=[_log("q1", "w1", at, later_seq)]))
    _, logs = store.core_rows((datetime(2026, 10, 6, tzinfo=UTC), datetime(2026, 10, 7, tzinfo=UTC)))
    assert [r["file_id"] for r in logs] == ["0AT-daily-2"]


def test_core_rows_reads_a_day_of_margin_and_follows_references(store: Store) -> None:
    day = ("2026-10-07T01:00:00.000Z", 1, "0AT1")
    store.commit(Page(
        source="test",
        run_id="r1",
        awi_records=[
            _awi("in", "2026-10-06T10:00:00.000Z"),
            _awi("margin", "2026-10-05T02:00:00.000Z"),
            _awi("far", "2026-09-20T00:00:00.000Z"),  # referenced by an in-window log row
            _awi("farther", "2026-09-01T00:00:00.000Z"),  # referenced by nothing
        ],
        log_events=[
            _log("q-in", "far", "2026-10-06T09:00:00.000Z", day),
            _log("q-old", "in", "2026-09-30T00:00:00.000Z", day),  # an old row of an in-window record
            _log("q-out", "farther", "2026-09-02T00:00:00.000Z", day),
        ],
    ))
    awi, logs = store.core_rows((datetime(2026, 10, 6, tzinfo=UTC), datetime(2026, 10, 7, tzinfo=UTC)))
    assert set(awi) == {"in", "margin", "far"}
    assert awi["in"]["session_id"] == "S1" and isinstance(awi["in"], dict)
    assert sorted(r["request_id"] for r in logs) == ["q-in", "q-old"]


def test_d360_rows_join_events_sessions_and_steps(store: Store) -> None:
    store.commit(Page(
        source="data360",
        run_id="r7",
        state={"cursor": {"ts": "2026-10-06T11:00:00.000Z", "id": "e2"}},
        d360_events=[_d360_event("e1", "2026-10-06T10:00:00.000Z"), _d360_event("e2", "2026-10-06T11:00:00.000Z", session_id=None)],
        d360_steps=[
            D360Step(id="st1", request_id="req-e1", interaction_id=None, step_type="ACTION", prev_step_id=None,
                     input_text='{"q": 1}', error_text=None, started_at="2026-10-06T10:00:00.000Z"),
            D360Step(id="st2", request_id="req-e1", interaction_id=None, step_type="ACTION", prev_step_id=None,
                     input_text=None, error_text="boom", started_at="2026-10-06T10:00:01.000Z"),
        ],
        d360_sessions=[D360Session(id="sess-1", channel_type="Voice", voice_call_id=None, started_at=None)],
    ))
    rows = store.d360_rows((datetime(2026, 10, 6, tzinfo=UTC), datetime(2026, 10, 6, 10, 30, tzinfo=UTC)))
    assert sorted((r["id"], r["step_id"], r["channel_type"]) for r in rows) == [("e1", "st1", "Voice"), ("e1", "st2", "Voice")]
    assert {r["run_id"] for r in rows} == {"r7"}
    assert {r["input_text"] for r in rows} == {'{"q": 1}', None}
    (late,) = store.d360_rows((datetime(2026, 10, 6, 10, 30, tzinfo=UTC), datetime(2026, 10, 7, tzinfo=UTC)))
    assert late["id"] == "e2" and late["step_id"] is None and late["channel_type"] is None

    assert store.known_d360_step_requests(["req-e1", "req-e2"]) == {"req-e1"}
    assert store.known_d360_sessions(["sess-1", "sess-2"]) == {"sess-1"}
    stored = store.stored_d360_events(["e1", "e9"])
    assert set(stored) == {"e1"} and "run_id" not in stored["e1"]
    assert stored["e1"] == _d360_event("e1", "2026-10-06T10:00:00.000Z")
    assert store.sync_state("data360") == {"cursor": {"ts": "2026-10-06T11:00:00.000Z", "id": "e2"}}


def test_bad_log_files_are_counted_by_log_date(store: Store) -> None:
    for i, (bad, log_date) in enumerate([(1, "2026-10-06T00:00:00.000Z"), (1, "2026-10-05T00:00:00.000Z"), (0, "2026-10-06T00:00:00.000Z")]):
        store.commit(Page(source="eventlogfile", run_id="r1", log_file=_log_file(f"0AT{i}", "2026-10-07T01:00:00.000Z", bad=bad, log_date=log_date)))
    assert store.bad_log_files(datetime(2026, 10, 6, tzinfo=UTC), datetime(2026, 10, 7, tzinfo=UTC)) == 1


def test_queries_on_many_ids_are_chunked(store: Store) -> None:
    # well above SQLite's old 999 host-parameter limit, so every IN (...) must be chunked
    ids = [f"w{i:05d}" for i in range(2_345)]
    case_ids = [f"500{i:05d}" for i in range(2_345)]
    store.commit(Page(source="test", run_id="r1", awi_records=[_awi(i, "2026-10-06T10:00:00.000Z") for i in ids],
                      cases=[_case(i) for i in case_ids]))
    assert len(store.awi_modstamps([*ids, "nope"])) == 2_345
    assert store.known_case_ids([*case_ids[::2], "nope"]) == set(case_ids[::2])
    assert store.known_case_ids(case_ids) == set(case_ids)
    assert set(store.cases([*case_ids, "nope"])) == set(case_ids)


# --- actions and what is summed from them ------------------------------------------------------


def test_credits_and_spike_rows_from_actions(store: Store) -> None:
    rows = [
        _action(1, started_at="2026-10-01T10:00:00.000Z", day="2026-10-01", credits=20.0, awu=1.0),
        _action(2, started_at="2026-10-01T11:00:00.000Z", day="2026-10-01", credits=40.0, awu=2.0, agent_name=None, agent_id="0Xx1"),
        _action(3, started_at="2026-10-02T10:00:00.000Z", day="2026-10-02", credits=5.0, awu=0.25),
        _action(4, started_at="2026-11-01T10:00:00.000Z", day="2026-11-01", credits=99.0),
    ]
    oct1, nov1 = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    window = (oct1, datetime(2026, 12, 1, tzinfo=UTC))
    store.replace_actions(window, rows)
    store.refresh_daily_usage(window)  # the spike rows are summed with the daily usage
    assert store.credits_between(oct1, nov1) == 65.0
    assert store.credits_between(nov1, nov1) == 0.0
    assert store.action_credits_by_day(oct1, nov1) == {date(2026, 10, 1): 60.0, date(2026, 10, 2): 5.0}
    assert sorted(store.awu_by_day_agent_action(date(2026, 10, 1), date(2026, 10, 2))) == [
        (date(2026, 10, 1), "0Xx1", "GetOrderHistory", 2.0),
        (date(2026, 10, 1), "Agent", "GetOrderHistory", 1.0),
    ]
    usage = store.usage_of_days(["2026-10-01"])
    assert [(u["agent"], u["actions"], u["credits"]) for u in usage] == [("0Xx1", 1, 40.0), ("Agent", 1, 20.0)]
    assert store.usage_of_days([]) == []


# --- runs, reports and errors --------------------------------------------------------------


def test_run_window_and_summary(store: Store) -> None:
    store.start_run("r1", started_at="2026-10-07T02:00:00.000Z", window_start=None, window_end=None, trigger="run")
    store.set_run_window("r1", datetime(2026, 10, 6, tzinfo=UTC), datetime(2026, 10, 7, tzinfo=UTC))
    store.set_run_summary("r1", {"totals": {"awu": 1.5}})
    store.merge_run_summary("r1", vendor={"units": 3})
    store.finish_run("r1", outcome="ok", ended_at="2026-10-07T02:05:00.000Z")
    run = store.get_run("r1")
    assert run is not None and run["window_start"] == "2026-10-06T00:00:00.000Z"
    assert run["summary"] == {"totals": {"awu": 1.5}, "vendor": {"units": 3}}
    latest = store.latest_completed_run()
    assert latest is not None and latest["id"] == "r1"
    assert json.loads(latest["summary"]) == run["summary"]


def test_run_triggers_reads_a_store_without_opening_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with Store.open(path) as s:
        s.start_run("r1", started_at="2026-10-07T02:00:00.000Z", window_start=None, window_end=None, trigger="demo")
    assert run_triggers(path) == {"demo"}
    other = tmp_path / "notes.db"
    other.write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(StoreError, match="is not an awu-audit store"):
        run_triggers(other)


def test_every_sqlite_error_leaves_the_store_as_a_one_line_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        with map_errors(tmp_path / "a.db"):
            raise sqlite3.OperationalError("database is locked")
    assert str(info.value) == f"store {tmp_path / 'a.db'}: database is locked"
    assert info.value.__suppress_context__

    path = tmp_path / "audit.db"
    s = Store.open(path)
    s.close()
    with pytest.raises(StoreError, match=r"^store .*audit\.db: "):
        s.cases(["500A"])  # reading a closed store: sqlite3.ProgrammingError inside
    with pytest.raises(StoreError, match=r"^store .*audit\.db: "):
        s.credits_between(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


def _attempt(write: Callable[[], object]) -> tuple[float, BaseException | None]:
    """How long `write` took, and what it raised."""
    started = time.monotonic()
    try:
        write()
    except BaseException as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def test_a_locked_database_is_a_store_error(tmp_path: Path) -> None:
    # Another connection holds the write lock past the store's busy timeout: a write waits
    # for it (at least a second), then fails as a StoreError. The store has no public knob
    # for its busy timeout, so the two writes wait side by side, on two stores of the file.
    path = tmp_path / "audit.db"
    with Store.open(path) as runs, Store.open(path) as sink:
        writes = {
            "start_run": lambda: runs.start_run(
                "r1", started_at="2026-10-07T02:00:00.000Z", window_start=None, window_end=None, trigger="run"
            ),
            "commit": lambda: sink.commit(
                Page(source="test", run_id="r1", awi_records=[_awi("w1", "2026-10-06T10:00:00.000Z")])
            ),
        }
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with ThreadPoolExecutor(max_workers=len(writes)) as pool:
                futures = {name: pool.submit(_attempt, write) for name, write in writes.items()}
                outcomes = {name: future.result(timeout=120) for name, future in futures.items()}
        finally:
            blocker.close()
        for name, (waited, error) in outcomes.items():
            assert isinstance(error, StoreError), name
            assert "database is locked" in str(error) and str(path) in str(error), name
            assert waited >= 1.0, name  # it waited for the lock before giving up
        assert runs.get_run("r1") is None and sink.awi_modstamps(["w1"]) == {}
        # the lock released, the same stores write again
        for write in writes.values():
            write()
        assert runs.get_run("r1") is not None and set(sink.awi_modstamps(["w1"])) == {"w1"}
