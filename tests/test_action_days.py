"""The AWU per day × agent × action that spike detection reads (`audit.store.action_days`)
is always what summing the stored actions gives: after a first run, a partial re-run, a
re-run that moves an action from a day outside its window, `--full`, a Data 360 run, and
the upgrade of a store that had none."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from audit.config import load_config
from audit.pipeline import run_audit
from audit.store import Store, migrate
from connector.mock.org import MockOrg
from connector.mock.server import serve
from fixtures.generator import generate_snapshot
from tests.helpers import make_config

UTC = timezone.utc
SINCE = datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = datetime(2026, 10, 8, tzinfo=UTC)
WIDE = datetime(2026, 11, 20, tzinfo=UTC)  # past every row of the snapshots

_SUMS_OF_ACTIONS = (
    "SELECT day, coalesce(agent_name, agent_id), action_name, sum(awu) FROM actions "
    "WHERE day IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)


def _sums(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the stored sums, the sums of the stored actions), both ordered."""
    with closing(sqlite3.connect(db)) as conn:
        stored = conn.execute("SELECT * FROM action_days ORDER BY 1, 2, 3").fetchall()
        return stored, conn.execute(_SUMS_OF_ACTIONS).fetchall()


def _assert_sums_of_the_actions(db: Path) -> None:
    stored, summed = _sums(db)
    assert stored == summed and stored


def _wire(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def test_every_kind_of_run_leaves_the_sums_of_its_actions(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    org, server = mock_org
    template = {k: v for k, v in org.records("AgentWorkItem")[0].items() if k != "Id"}
    template.update(SessionId__c="moved-session", CaseId__c=None, AgentName__c="MovedAgent")
    november = datetime(2026, 11, 10, 9, tzinfo=UTC)
    (moved,) = org.add_records(
        "AgentWorkItem",
        [{**template, "StartTime__c": _wire(november), "SystemModstamp": _wire(november)}],
    )
    cfg = load_config(make_config(tmp_path, snapshot, server))
    run_audit(cfg, since=SINCE, until=WIDE, now=WIDE)  # first run: October and November
    _assert_sums_of_the_actions(cfg.store.path)
    assert ("2026-11-10", "MovedAgent") in {row[:2] for row in _sums(cfg.store.path)[0]}

    # the record's start corrected into October: a run over October alone moves its
    # stored action out of 2026-11-10, a day outside that run's window
    org.update_record(
        "AgentWorkItem", moved, {"StartTime__c": _wire(SINCE + timedelta(days=2, hours=3))},
        system_modstamp=WIDE + timedelta(hours=1),
    )  # fmt: skip
    partial = run_audit(cfg, since=SINCE, until=UNTIL, now=WIDE + timedelta(hours=2))
    assert partial.reused is None
    _assert_sums_of_the_actions(cfg.store.path)
    assert ("2026-11-10", "MovedAgent") not in {row[:2] for row in _sums(cfg.store.path)[0]}

    full = run_audit(cfg, since=SINCE, until=UNTIL, now=WIDE + timedelta(hours=3), full=True)
    assert full.reused is None
    _assert_sums_of_the_actions(cfg.store.path)


def test_a_data360_run_leaves_the_sums_of_its_actions(tmp_path: Path) -> None:
    snap = tmp_path / "org"
    generate_snapshot(snap, seed=5, actions=300, days=5, start=date(2026, 10, 1), source="data360")
    with serve(MockOrg.from_snapshot(snap), tls_dir=tmp_path / "tls") as server:
        extra = '\n[source]\nkinds = ["data360"]\n'
        cfg = load_config(make_config(tmp_path, snap, server, extra=extra))
        run_audit(cfg, since=SINCE, until=UNTIL, now=WIDE)
    _assert_sums_of_the_actions(cfg.store.path)


def _action(i: int, day: str, awu: float, agent: str | None = "Agent") -> dict[str, Any]:
    return {
        "id": f"a{i}", "session_id": "s", "agent_name": agent, "agent_id": None,
        "action_name": "Search", "started_at": f"{day}T10:00:00.000Z", "day": day, "awu": awu,
    }  # fmt: skip


def test_a_day_an_action_left_is_summed_again_with_the_days_written(tmp_path: Path) -> None:
    october = (SINCE, datetime(2026, 11, 1, tzinfo=UTC))
    with Store.open(tmp_path / "s.db") as store:
        store.replace_actions(october, [_action(1, "2026-10-02", 1.5), _action(2, "2026-10-02", 2.0),
                                        _action(3, "2026-10-20", 3.0, agent=None)])  # fmt: skip
        store.refresh_daily_usage(october)
        assert store.awu_by_day_agent_action(date(2026, 10, 1), date(2026, 11, 1)) == [
            (date(2026, 10, 2), "Agent", "Search", 3.5),
            (date(2026, 10, 20), None, "Search", 3.0),
        ]
        # a window of one day takes a1 from 10-02 (moved) and leaves out a3 (deleted)
        day = (datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 6, tzinfo=UTC))
        store.replace_actions(day, [_action(1, "2026-10-05", 1.5)])
        store.delete_unwritten([("a3", "2026-10-20T10:00:00.000Z")])
        store.refresh_daily_usage(day)
        assert store.awu_by_day_agent_action(date(2026, 10, 1), date(2026, 11, 1)) == [
            (date(2026, 10, 2), "Agent", "Search", 2.0),
            (date(2026, 10, 5), "Agent", "Search", 1.5),
        ]
    _assert_sums_of_the_actions(tmp_path / "s.db")


@pytest.mark.parametrize("version", [1, 5])
def test_an_older_store_gets_the_sums_of_its_actions(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(sqlite_utils.Database(conn), target=version)
        conn.executemany(
            "INSERT INTO actions (id, agent_name, agent_id, action_name, awu, started_at, day) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [("a1", "A", None, "Search", 1.5, "2026-10-01T01:00:00.000Z", "2026-10-01"),
             ("a2", "A", None, "Search", 3.0, "2026-10-01T02:00:00.000Z", "2026-10-01"),
             ("a3", None, "0Xx1", "Quote", 1.0, "2026-10-02T01:00:00.000Z", "2026-10-02")],
        )  # fmt: skip
    with Store.open(path) as store:
        assert store.awu_by_day_agent_action(date(2026, 10, 1), date(2026, 10, 3)) == [
            (date(2026, 10, 1), "A", "Search", 4.5),
            (date(2026, 10, 2), "0Xx1", "Quote", 1.0),
        ]
    _assert_sums_of_the_actions(path)
