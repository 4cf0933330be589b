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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from audit.errors import StoreError
from audit.store import (
    SCHEMA_VERSION,
    SYNC_STATE_VERSION,
    Store,
    migrate,
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
        s.upsert("cases", [{"id": "500x", "status": "New", "is_closed": False}], "id")
        assert _mode(path) == 0o600
        assert _mode(f"{path}-wal") == 0o600  # SQLite copies the database file's mode
        assert s.db.journal_mode == "wal"
        assert s.db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s.db.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert s.schema_version == SCHEMA_VERSION
        assert s.path == path


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
    with Store.open(path) as s:
        s.db.conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
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
        assert s.db.conn.execute("SELECT awu FROM actions WHERE id = 'a1'").fetchone()[0] == 3.0
        indexes = {r[0] for r in s.db.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"idx_findings_status_started_at", "idx_alert_deliveries_state"} <= indexes
    # opening again is a no-op
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION and s.count("actions") == 1


# --- writes ----------------------------------------------------------------------------------


def test_upsert_is_idempotent_and_updates_only_given_columns(store: Store) -> None:
    rows = [_action(i) for i in range(50)]
    assert store.upsert("actions", rows, "id") == 50
    store.upsert("actions", rows, "id")
    assert store.count("actions") == 50
    store.upsert("actions", [{"id": "a0000003", "status": "Error"}], "id")
    row = store.db.conn.execute(
        "SELECT status, tokens, started_at FROM actions WHERE id = 'a0000003'"
    ).fetchone()
    assert row == ("Error", 1003, "2026-10-04T12:00:00.000Z")
    assert store.count("actions") == 50


def test_upsert_converts_datetimes_and_containers(store: Store) -> None:
    store.upsert(
        "runs",
        [
            {
                "id": "r1",
                "started_at": datetime(2026, 10, 6, 14, 3, 22, 123456, tzinfo=UTC),
                "summary": {"totals": {"awu": 1.5}, "ids": ("a", "b")},
                "is_sandbox": True,
            }
        ],
        "id",
    )
    started, summary, sandbox = store.db.conn.execute(
        "SELECT started_at, summary, is_sandbox FROM runs"
    ).fetchone()
    assert started == "2026-10-06T14:03:22.123Z"
    assert json.loads(summary) == {"totals": {"awu": 1.5}, "ids": ["a", "b"]}
    assert sandbox == 1


def test_upsert_of_100k_rows(store: Store) -> None:
    """How fast this is: benchmarks/limits.py (by hand, not CI)."""
    rows = [_action(i) for i in range(100_000)]
    store.upsert("actions", rows, "id")
    assert store.count("actions") == 100_000


def test_bad_table_or_column_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown store table"):
        store.upsert("nope", [{"id": 1}], "id")
    with pytest.raises(StoreError, match="no column named colour"):
        store.upsert("cases", [{"id": "1", "colour": "red"}], "id")
    with pytest.raises(StoreError, match="lacks its primary key column id"):
        store.upsert("cases", [{"status": "New"}], "id")
    assert store.count("cases") == 0


def test_transaction_rolls_back_and_nests(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.upsert("cases", [{"id": "c1"}], "id")
            raise RuntimeError("boom")
    assert store.count("cases") == 0

    with store.transaction():
        store.upsert("cases", [{"id": "c1"}], "id")
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.upsert("cases", [{"id": "c2"}], "id")
                raise RuntimeError("inner")
        store.upsert("cases", [{"id": "c3"}], "id")
    ids = [r[0] for r in store.db.conn.execute("SELECT id FROM cases ORDER BY id")]
    assert ids == ["c1", "c3"]


def test_replace_window_replaces_only_the_window(store: Store) -> None:
    store.upsert("actions", [_action(i) for i in range(28)], "id")  # one per day 1..28
    replaced = [_action(100, started_at="2026-10-05T00:00:00.000Z")]
    store.replace_window(
        "actions",
        datetime(2026, 10, 3, tzinfo=UTC),
        "2026-10-06T00:00:00.000Z",
        replaced,
        "id",
    )
    days = [r[0][:10] for r in store.db.conn.execute("SELECT started_at FROM actions ORDER BY started_at")]
    assert "2026-10-03" not in days and "2026-10-04" not in days
    assert days.count("2026-10-05") == 1 and "2026-10-06" in days and "2026-10-02" in days
    assert store.count("actions") == 28 - 3 + 1


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
    assert store.get_sync_state("agentworkitem") is None
    store.set_sync_state("agentworkitem", {"cursor": "2026-10-06T00:00:00.000Z"}, "r1")
    assert store.get_sync_state("agentworkitem") == {"cursor": "2026-10-06T00:00:00.000Z"}
    store.db.conn.execute("UPDATE sync_state SET version = ?", (SYNC_STATE_VERSION - 1,))
    assert store.get_sync_state("agentworkitem") is None  # older shape: re-sync
    store.db.conn.execute("UPDATE sync_state SET version = ?", (SYNC_STATE_VERSION + 1,))
    with pytest.raises(StoreError, match="newer awu-audit"):
        store.get_sync_state("agentworkitem")


# --- the inter-process lock ------------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import signal, sys
    from audit.store import Store
    store = Store.open(sys.argv[1])
    with store.lock():
        store.start_run("r-dead", started_at="2026-10-07T02:00:00.000Z",
                        window_start="2026-10-06T00:00:00.000Z",
                        window_end="2026-10-07T00:00:00.000Z", trigger="schedule")
        print("locked", flush=True)
        signal.pause()  # hold the lock until killed
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
    row = store.db.conn.execute("SELECT status, resolved_run FROM findings WHERE id='f2'").fetchone()
    assert row == ("resolved", "r3")

    # f2 reappears: same id, reopened, first_seen_run kept
    changes = store.sync_findings("r4", [f1, f2], window_start=ws, window_end=we)
    assert changes.reopened_ids == ["f2"] and changes.new_ids == []
    row = store.db.conn.execute(
        "SELECT status, first_seen_run, last_seen_run, resolved_run FROM findings WHERE id='f2'"
    ).fetchone()
    assert row == ("open", "r1", "r4", None)

    retry = store.open_findings(kind="RETRY", window=(ws, we))
    assert len(retry) == 1 and retry[0]["action_ids"] == ["a2", "a3"]
    assert store.open_findings(kind="CEILING_BREACH", window=(ws, we))[0]["detail"] == {"tokens": 22000}
    assert store.count("findings") == 3
