"""The core audit in flat memory (audit.passes): a window reconciled in small chunks and
folded in small batches of whole sessions gives exactly what one big chunk and one big
batch give — and what the whole-window audit in memory gives — on an org whose sessions,
retry chains and log rows cross midnight and every chunk boundary.

The org is the session's generated snapshot, synced by a real `audit run` from the mock
org, then with each session moved (all its AgentWorkItem records and log rows alike) so
that it starts three minutes before a UTC midnight: the sessions' own timing, and so every
finding, is kept; only the days move.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from audit import passes
from audit.config import Config, load_config
from audit.engine.fold import WindowAudit, WindowFold
from audit.engine.model import Action
from audit.engine.sources.core import AWI_FIELDS, ELF_FIELDS, reconcile_tuples
from audit.engine.window import audit_window
from audit.store import Store
from connector.mock.org import MockOrg
from connector.mock.server import serve
from tests.helpers import invoke, labels_of, make_config

Window = tuple[datetime, datetime]
KINDS = {
    "both": {"agentworkitem", "eventlogfile"},
    "awi": {"agentworkitem"},
    "elf": {"eventlogfile"},
}
MS = timedelta(milliseconds=1)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _text(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def _move_sessions_to_midnight(db: Path) -> None:
    """Shift every session so that its first row (record or log row) starts at 23:57 of
    its day; rows without a session stay where they are."""
    with closing(sqlite3.connect(db)) as conn, conn:
        first: dict[str, str] = {}
        for table in ("awi_records", "elf_events"):
            for session, started in conn.execute(
                f"SELECT session_id, min(started_at) FROM {table} "
                "WHERE session_id IS NOT NULL GROUP BY session_id"
            ):
                first[session] = min(started, first.get(session, started))
        for session, started in first.items():
            t0 = _parse(started)
            target = t0.replace(hour=23, minute=57, second=0, microsecond=0)
            delta = target - t0
            for table in ("awi_records", "elf_events"):
                rows = conn.execute(
                    f"SELECT rowid, started_at FROM {table} WHERE session_id = ?", [session]
                ).fetchall()
                conn.executemany(
                    f"UPDATE {table} SET started_at = ? WHERE rowid = ?",
                    [(_text(_parse(s) + delta), rowid) for rowid, s in rows],
                )
        # log rows without a session follow their record, when they have one
        conn.execute(
            "UPDATE elf_events SET started_at = (SELECT a.started_at FROM awi_records a "
            "WHERE a.id = elf_events.work_item_id) WHERE session_id IS NULL AND EXISTS "
            "(SELECT 1 FROM awi_records a WHERE a.id = elf_events.work_item_id)"
        )
        # and some log rows are stamped minutes apart from their record (later, earlier)
        for every, moved in ((7, timedelta(minutes=4, seconds=50)), (11, timedelta(minutes=-3))):
            rows = conn.execute(
                "SELECT rowid, started_at FROM elf_events "
                f"WHERE work_item_id IS NOT NULL AND rowid % {every} = 0"
            ).fetchall()
            conn.executemany(
                "UPDATE elf_events SET started_at = ? WHERE rowid = ?",
                [(_text(_parse(t) + moved), rowid) for rowid, t in rows],
            )


@pytest.fixture(scope="module")
def midnight_org(
    snapshot: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path, Window]]:
    """(store, config, window): the synced snapshot with its sessions moved to midnight."""
    tmp = tmp_path_factory.mktemp("midnight")
    labels = labels_of(snapshot)
    with serve(MockOrg.from_snapshot(snapshot), tls_dir=tmp / "tls") as server:
        config = make_config(tmp, snapshot, server)
        proc = invoke(
            "run", "--config", str(config), "--since", labels["window"]["since"],
            "--until", labels["window"]["until"], "--json",
        )  # fmt: skip
        assert proc.exit_code == 0, proc.stderr
    db = config.parent / "store.db"
    _move_sessions_to_midnight(db)
    since, until = _parse(labels["window"]["since"]), _parse(labels["window"]["until"])
    # a window that does not start or end at midnight, its end with sub-millisecond digits
    yield db, config, (since + timedelta(hours=5), until + timedelta(days=1, microseconds=1500))


def _config(config: Path, kinds: set[str]) -> Config:
    cfg = load_config(config)
    return replace(cfg, source=replace(cfg.source, kinds=tuple(sorted(kinds))))


def _passes(
    db: Path, cfg: Config, window: Window, *, chunk: timedelta, batch: int
) -> tuple[WindowAudit, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Both passes over a copy of the store, as a run does them; the audit, the stored
    actions and the daily usage."""
    kinds = set(cfg.source.kinds)
    with Store.open(db) as store, store.transaction():
        passes.reconcile_days(
            store, window, rules=cfg.rules, pricing=cfg.pricing,
            use_awi="agentworkitem" in kinds, use_elf="eventlogfile" in kinds, chunk=chunk,
        )  # fmt: skip
        store.refresh_daily_usage(window)
        fold = WindowFold(
            window, rules=cfg.rules, pricing=cfg.pricing, sandbox=False,
            multi_source=len(kinds) == 2,
        )  # fmt: skip
        passes.fold_window(store, window, fold, batch=batch)
        audit = fold.finish()
    with closing(sqlite3.connect(db)) as conn:
        actions = conn.execute("SELECT * FROM actions ORDER BY id").fetchall()
        usage = conn.execute("SELECT * FROM daily_usage ORDER BY day, agent, channel").fetchall()
    return audit, actions, usage


def _whole_window(store: Store, cfg: Config, window: Window) -> tuple[list[Action], WindowAudit]:
    """The reference: the window's rows read whole (a day of margin) and audited at once."""
    kinds = set(cfg.source.kinds)
    awi_rows, log_rows = store.core_tuples(window, AWI_FIELDS, ELF_FIELDS)
    actions = reconcile_tuples(
        awi_rows.values(), log_rows, window=window,
        use_awi="agentworkitem" in kinds, use_elf="eventlogfile" in kinds,
    )  # fmt: skip
    cases = store.cases({a.case_id for a in actions if a.case_id})
    audit = audit_window(
        actions, window, rules=cfg.rules, pricing=cfg.pricing, sandbox=False,
        multi_source=len(kinds) == 2, cases=cases,
    )  # fmt: skip
    return actions, audit


def _read_back(db: Path, window: Window) -> list[Action]:
    with Store.open(db) as store:
        return sorted((a for a, _ in store.stored_actions_by_session(window)), key=lambda a: a.id)


def _records_with_logs_elsewhere(db: Path, chunk: timedelta) -> int:
    def piece(text: str) -> tuple[str, int]:
        t = _parse(text)
        midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return text[:10], (t - midnight) // chunk

    with closing(sqlite3.connect(db)) as conn:
        pairs = conn.execute(
            "SELECT a.started_at, e.started_at FROM awi_records a "
            "JOIN elf_events e ON e.work_item_id = a.id"
        ).fetchall()
    return sum(piece(a) != piece(e) for a, e in pairs)


def _days(ids: tuple[str, ...], by_id: dict[str, Action]) -> set[str]:
    return {by_id[i].started_at.date().isoformat() for i in ids}


@pytest.mark.parametrize("kinds", sorted(KINDS))
def test_small_chunks_and_batches_equal_one_big_batch_and_the_whole_window(
    midnight_org: tuple[Path, Path, Window], tmp_path: Path, kinds: str
) -> None:
    db, config, window = midnight_org
    cfg = _config(config, KINDS[kinds])
    big_db, small_db = tmp_path / "big.db", tmp_path / "small.db"
    shutil.copy(db, big_db)
    shutil.copy(db, small_db)

    with Store.open(db, readonly=True) as store:
        reference_actions, reference = _whole_window(store, cfg, window)
    by_id = {a.id: a for a in reference_actions}
    # the org is what this test is about: sessions and retry chains across midnight
    sessions: dict[str, set[str]] = {}
    for a in reference_actions:
        if a.session_id:
            sessions.setdefault(a.session_id, set()).add(a.started_at.date().isoformat())
    assert sum(len(days) > 1 for days in sessions.values()) > 50
    if kinds != "elf":  # log files carry no input: no chain without AgentWorkItem
        chains = [f for f in reference.findings if f.kind in ("RETRY", "RETRY_LOOP")]
        assert sum(len(_days(f.action_ids, by_id)) > 1 for f in chains) >= 3
    long = [f for f in reference.findings if f.kind == "LONG_CONVERSATION"]
    assert any(len(_days(f.action_ids, by_id)) > 1 for f in long)
    if kinds != "awi":  # actions only the log files hold, and one over several rows
        assert sum(a.source == "elf" for a in reference_actions) > 10
    if kinds == "both":  # records whose log rows are stamped in another 7-minute chunk
        assert _records_with_logs_elsewhere(db, timedelta(minutes=7)) > 10

    big, big_rows, big_usage = _passes(big_db, cfg, window, chunk=timedelta(days=1), batch=10**9)
    small, small_rows, small_usage = _passes(
        small_db, cfg, window, chunk=timedelta(minutes=7), batch=3
    )
    # small chunks and batches: the same stored rows and the same audit, to the last bit
    assert small_rows == big_rows
    assert small_usage == big_usage
    assert small == big
    # … and the same as the whole window audited in memory at once
    assert big.findings == reference.findings
    assert big.totals == reference.totals
    assert big.what_if == reference.what_if
    assert big.analysis == reference.analysis
    assert (big.bad_records, big.bad_record_count) == (
        reference.bad_records,
        reference.bad_record_count,
    )
    assert big.actions == len(reference_actions) > 1000
    stored = _read_back(big_db, window)
    assert stored == sorted((replace(a, action_input=None) for a in reference_actions),
                            key=lambda a: a.id)  # fmt: skip


def test_only_the_days_asked_for_are_recomputed(
    midnight_org: tuple[Path, Path, Window], tmp_path: Path
) -> None:
    """Pass 1 over some days rewrites those days' actions only (a changed day's redo)."""
    db, config, window = midnight_org
    cfg = _config(config, KINDS["both"])
    copy = tmp_path / "s.db"
    shutil.copy(db, copy)
    _passes(copy, cfg, window, chunk=timedelta(hours=1), batch=1000)
    with closing(sqlite3.connect(copy)) as conn, conn:
        conn.execute("UPDATE actions SET awu = -1")
    day = passes.chunks_of(window)[30][0].date().isoformat()
    with Store.open(copy) as store, store.transaction():
        written = passes.reconcile_days(
            store, window, rules=cfg.rules, pricing=cfg.pricing, use_awi=True, use_elf=True,
            days=[day],
        )  # fmt: skip
    with closing(sqlite3.connect(copy)) as conn:
        redone = conn.execute("SELECT day, count(*) FROM actions WHERE awu != -1 GROUP BY day")
        assert dict(redone.fetchall()) == {day: written}
    assert written > 100


def test_chunks_cover_the_window_once() -> None:
    start = datetime(2026, 10, 1, 5, 30, tzinfo=timezone.utc)
    end = datetime(2026, 10, 3, 2, 0, 0, 1500, tzinfo=timezone.utc)
    chunks = passes.chunks_of((start, end), chunk=timedelta(hours=7))
    assert chunks[0] == (start, datetime(2026, 10, 1, 7, tzinfo=timezone.utc))
    assert chunks[-1] == (datetime(2026, 10, 3, tzinfo=timezone.utc), end)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    # every chunk inside one UTC day
    assert all(c0.date() == (c1 - MS).date() for c0, c1 in chunks)
    only = passes.chunks_of((start, end), ["2026-10-02"], chunk=timedelta(hours=7))
    assert only == [c for c in chunks if c[0].date().isoformat() == "2026-10-02"]
    assert len(only) == 4
