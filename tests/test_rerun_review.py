"""An independent review of quiet re-runs (issue 12): cases where reusing the stored results
must still give what `audit run --full` gives over the same store and window — the same
`--json` (run id, sync counts and the alerts this run delivered aside), the same stored
summary, and a store that ends the same. Each run here is checked against a twin: a copy of
the store taken just before it, recomputed with `full=True` at the same `now`."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from audit import crashpoints
from audit.config import Config, StoreConfig, load_config
from audit.pipeline import RunResult, run_audit
from connector.mock.org import MockOrg
from connector.mock.server import serve
from fixtures.generator import generate_snapshot
from tests.helpers import REPO, awi_row, correct_a_mismatch, make_config

UTC = timezone.utc
SINCE = datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = datetime(2026, 10, 8, tzinfo=UTC)
QUIET = UNTIL + timedelta(days=40)  # past every row and Case of the snapshot: 2026-11-17
LATER = QUIET + timedelta(days=9)  # 2026-11-26, same month

#: per run by nature: who ran, what this run's sync fetched, what this run delivered
_PER_RUN = ("run_id", "sync")
_PER_RUN_BUDGET = ("alerts_sent", "alerts_failed")


# -- the twin: the same run, recomputed on a copy of the store -------------------------------
def _copy_store(db: Path, to: Path) -> None:
    with closing(sqlite3.connect(db)) as src, closing(sqlite3.connect(to)) as dst:
        src.backup(dst)


def _comparable(output: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in output.items() if k not in _PER_RUN}
    if "budget" in out:
        out["budget"] = {k: v for k, v in out["budget"].items() if k not in _PER_RUN_BUDGET}
    if "sources" in out:
        out["sources"] = {name: _comparable(block) for name, block in out["sources"].items()}
    return out


def _stored(db: Path, run_id: str) -> dict[str, Any]:
    """What the run left in the store (its own id written as RUN; earlier ids are shared by
    the twins, whose stores were one file until this run)."""

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return [
            tuple("RUN" if v == run_id else v for v in row) for row in conn.execute(sql).fetchall()
        ]

    with closing(sqlite3.connect(db)) as conn:
        (summary,) = conn.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchone()
        return {
            "actions": rows("SELECT * FROM actions ORDER BY id"),
            "findings": rows("SELECT * FROM findings ORDER BY id"),
            "daily_usage": rows("SELECT * FROM daily_usage ORDER BY 1, 2, 3"),
            "action_days": rows("SELECT * FROM action_days ORDER BY 1, 2, 3"),
            "alerts": rows(
                "SELECT id, kind, period, threshold, day, title FROM alerts ORDER BY id"
            ),
            "summary": _comparable(json.loads(summary)),
        }


@dataclasses.dataclass
class Twins:
    reused: RunResult
    full: RunResult
    reused_store: dict[str, Any]
    full_store: dict[str, Any]

    def assert_same(self) -> None:
        assert _comparable(self.reused.output) == _comparable(self.full.output)
        for part in ("summary", "actions", "findings", "daily_usage", "action_days", "alerts"):
            assert self.reused_store[part] == self.full_store[part], part


def _twins(
    cfg: Config, tmp_path: Path, window: tuple[datetime, datetime] | None, now: datetime
) -> Twins:
    """`window` None: the nightly window (the store's audit start to `now`)."""
    copy = tmp_path / f"twin-{len(list(tmp_path.glob('twin-*')))}.db"
    _copy_store(cfg.store.path, copy)
    twin = dataclasses.replace(cfg, store=StoreConfig(path=copy))
    since, until = window or (None, None)
    reused = run_audit(cfg, since=since, until=until, now=now)
    full = run_audit(twin, since=since, until=until, now=now, full=True)
    assert full.reused is None
    return Twins(
        reused,
        full,
        _stored(cfg.store.path, reused.output["run_id"]),
        _stored(copy, full.output["run_id"]),
    )


def _awi(org: MockOrg, **fields: Any) -> str:
    """One more AgentWorkItem in the mock org, a copy of its first record (no Case)."""
    template = org.records("AgentWorkItem")[0]
    record = {k: v for k, v in template.items() if k != "Id"}
    record.update(SessionId__c="review-session", CaseId__c=None, **fields)
    (record_id,) = org.add_records("AgentWorkItem", [record])
    return record_id


def _wire(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


# -- the sound cases: the harness itself ----------------------------------------------------
def test_the_twin_harness_sees_a_plain_reuse_as_equal(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    run_audit(cfg, since=SINCE, until=QUIET, now=QUIET)
    twins = _twins(cfg, tmp_path, (SINCE, LATER), LATER)
    assert twins.reused.reused is not None
    twins.assert_same()


@pytest.mark.parametrize(
    "windows",
    [
        # a --since with a time: the first day is partial
        [(SINCE + timedelta(hours=6), QUIET), (SINCE + timedelta(hours=6), LATER)],
        # a wide run, a narrower one, the wide window again (its stretch holds the wide
        # run's actions of nothing: there are no rows past the snapshot)
        [(SINCE, LATER), (SINCE, QUIET), (SINCE, LATER)],
        # a window that shrinks, and another start with the same end
        [(SINCE, LATER), (SINCE, UNTIL - timedelta(days=2))],
        [(SINCE, UNTIL), (SINCE + timedelta(days=1), UNTIL)],
        # an --until with a time, grown by a quiet stretch
        [(SINCE, QUIET + timedelta(hours=7, minutes=3)), (SINCE, LATER)],
    ],
)
def test_window_sequences_end_as_a_recomputation_would(
    tmp_path: Path, snapshot: Path, mock_org: Any, windows: list[tuple[datetime, datetime]]
) -> None:
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    now = LATER
    for window in windows[:-1]:
        run_audit(cfg, since=window[0], until=window[1], now=now)
        now += timedelta(hours=1)
    _twins(cfg, tmp_path, windows[-1], now).assert_same()


@pytest.mark.parametrize(
    ("phase", "full"),
    [("actions", True), ("findings", True), ("queued", True), ("queued", False)],
)
def test_a_run_stopped_at_a_crash_point_leaves_a_store_that_reuses_right(
    tmp_path: Path, snapshot: Path, mock_org: Any, phase: str, full: bool
) -> None:
    """A run stopped inside its decision transaction leaves the previous basis; one stopped
    after it (`queued`) names itself in the basis but is not ok: neither may lead the next
    run to results other than a recomputation's."""
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    run_audit(cfg, since=SINCE, until=QUIET, now=QUIET)

    def stop(reached: str) -> None:
        if reached == phase:
            raise RuntimeError(f"stopped at {phase}")

    crashpoints.install(stop)
    try:
        with pytest.raises(RuntimeError):
            run_audit(cfg, since=SINCE, until=LATER, now=LATER, full=full)
    finally:
        crashpoints.install(None)
    twins = _twins(cfg, tmp_path, (SINCE, LATER), LATER + timedelta(hours=1))
    assert (twins.reused.reused is None) == (phase == "queued")
    twins.assert_same()


def test_budget_alerts_and_fail_on_of_a_reused_run_are_a_recomputation_s(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    """A small budget (thresholds crossed, alerts queued without a channel) and fail_on."""
    extra = '\n[budget]\ncredits = 20000\n\n[run]\nfail_on = "warning"\n'
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1], extra=extra))
    october = (datetime(2026, 10, 20, tzinfo=UTC), datetime(2026, 10, 30, tzinfo=UTC))
    first = run_audit(cfg, since=SINCE, until=october[0], now=QUIET)
    assert first.output["budget"]["thresholds_crossed"] and first.exit_code == 1
    twins = _twins(cfg, tmp_path, (SINCE, october[1]), LATER)
    assert twins.reused.reused is not None
    assert twins.reused.exit_code == twins.full.exit_code == 1
    assert twins.reused.fail_on_reason == twins.full.fail_on_reason
    twins.assert_same()


@pytest.mark.parametrize("hours", [1, 26])
def test_nightly_windows_end_as_a_recomputation_would(
    tmp_path: Path, snapshot: Path, mock_org: Any, hours: int
) -> None:
    """No --since: the window is the store's audit start to `now`."""
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    now = UNTIL + timedelta(hours=12)
    run_audit(cfg, now=now)
    run_audit(cfg, now=now + timedelta(hours=hours))
    twins = _twins(cfg, tmp_path, None, now + timedelta(hours=2 * hours))
    twins.assert_same()


def test_a_store_from_schema_v4_recomputes_once_then_reuses(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    """A v4 store with results (as v4 left it: no changed_days, no inputs version, no
    basis, no action_days) is recomputed by its first run under v5, and reused right after."""
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    run_audit(cfg, since=SINCE, until=QUIET, now=QUIET)
    with closing(sqlite3.connect(cfg.store.path)) as conn, conn:
        for table in ("changed_days", "action_days", "action_days_left"):
            conn.execute(f"DROP TABLE {table}")
        for trigger in ("actions_moved_day", "actions_deleted"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DELETE FROM meta WHERE key IN ('audit_basis', 'inputs_version')")
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    upgraded = run_audit(cfg, since=SINCE, until=QUIET, now=QUIET + timedelta(hours=1))
    assert upgraded.reused is None
    twins = _twins(cfg, tmp_path, (SINCE, LATER), LATER)
    assert twins.reused.reused is not None
    twins.assert_same()


# -- holes ----------------------------------------------------------------------------------
def test_a_code_change_is_a_settings_change(tmp_path: Path, snapshot: Path, mock_org: Any) -> None:
    """The fingerprint names the package version, which does not move when the code does
    (an upgrade from git, a fix in the rules): results computed by other code are reused.
    Here the other code bills 2 units at least per action; the current code is then run."""
    cfg_path = make_config(tmp_path, snapshot, mock_org[1])
    other = tmp_path / "other-code"
    shutil.copytree(REPO / "audit", other / "audit", ignore=shutil.ignore_patterns("__pycache__"))
    awu = other / "audit" / "engine" / "awu.py"
    text = awu.read_text()
    assert "units = max(1, math.ceil(max(action.tokens, 0)" in text
    awu.write_text(
        text.replace(
            "units = max(1, math.ceil(max(action.tokens, 0)",
            "units = max(2, math.ceil(max(action.tokens, 0)",
        )
    )
    script = (
        "from datetime import datetime; from audit.config import load_config; "
        "from audit.pipeline import run_audit; "
        f"run_audit(load_config({str(cfg_path)!r}), since=datetime.fromisoformat({SINCE.isoformat()!r}), "
        f"until=datetime.fromisoformat({UNTIL.isoformat()!r}), now=datetime.fromisoformat({QUIET.isoformat()!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(other)}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr

    cfg = load_config(cfg_path)
    twins = _twins(cfg, tmp_path, (SINCE, UNTIL), QUIET + timedelta(hours=1))
    twins.assert_same()


def test_a_bad_record_in_the_stretch_the_window_grew_by_is_counted(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    """The stretch check looks for source rows and closing Cases, not bad records: a record
    that cannot be data, dated in the stretch, is missing from the reused data_quality."""
    org, server = mock_org
    _awi(
        org,
        TokensConsumed__c=-5.0,
        StartTime__c=_wire(QUIET + timedelta(days=3)),
        CreatedDate=_wire(QUIET - timedelta(days=1)),
        SystemModstamp=_wire(QUIET - timedelta(days=1)),
    )
    cfg = load_config(make_config(tmp_path, snapshot, server))
    run_audit(cfg, since=SINCE, until=QUIET, now=QUIET)
    with closing(sqlite3.connect(cfg.store.path)) as conn:
        assert conn.execute(
            "SELECT count(*) FROM bad_records WHERE at >= ?", ("2026-11-17",)
        ).fetchone() == (1,)
    twins = _twins(cfg, tmp_path, (SINCE, LATER), LATER)
    twins.assert_same()


def test_an_action_whose_rows_left_the_stretch_leaves_the_store(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    """Stored actions (and their findings) in the stretch whose source rows are gone — a
    record that arrived unreadable leaves its table — stay in the store when the results are
    reused; a recomputation removes them, and the budget of their month drops. (The bad
    record is dated before the stretch: this is not the hole above.)"""
    org, server = mock_org
    start = QUIET + timedelta(days=3, hours=10)  # 2026-11-20T10:00
    record_id = _awi(
        org,
        TokensConsumed__c=500.0,
        PromptTokens__c=400.0,
        CompletionTokens__c=100.0,
        AwuCount__c=1.0,
        StartTime__c=_wire(start),
        CreatedDate=_wire(QUIET - timedelta(days=1)),  # 2026-11-16, before the stretch
        SystemModstamp=_wire(start + timedelta(hours=1)),
    )
    cfg = load_config(make_config(tmp_path, snapshot, server))
    wide = run_audit(cfg, since=SINCE, until=LATER, now=LATER)
    assert wide.output["budget"]["used_credits"] > 0  # the November action

    # corrected to an earlier start and an unreadable token count: a bad record of
    # 2026-11-16 (before the stretch), and the record leaves its table
    org.update_record(
        "AgentWorkItem", record_id,
        {"StartTime__c": _wire(QUIET - timedelta(days=1)), "TokensConsumed__c": -5.0},
        system_modstamp=LATER + timedelta(hours=1),
    )  # fmt: skip
    narrow = run_audit(cfg, since=SINCE, until=QUIET, now=LATER + timedelta(hours=2))
    assert narrow.reused is None
    twins = _twins(cfg, tmp_path, (SINCE, LATER), LATER + timedelta(hours=3))
    assert twins.full.output["budget"]["used_credits"] == 0
    twins.assert_same()


def test_a_sub_millisecond_until_is_another_window(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    """The basis keeps the window to the millisecond: an --until half a millisecond after
    an action's start takes that action in, yet reads as the stored window that left it out."""
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    starts = sorted(a["started_at"] for a in labels["actions"] if a["in_window"])
    edge = datetime.fromisoformat(starts[len(starts) // 2].replace("Z", "+00:00"))
    first = run_audit(cfg, since=SINCE, until=edge, now=UNTIL)
    twins = _twins(cfg, tmp_path, (SINCE, edge + timedelta(microseconds=500)), UNTIL)
    assert twins.full.output["totals"]["actions"] > first.output["totals"]["actions"]
    twins.assert_same()


# -- the side-by-side Data 360 block ----------------------------------------------------------
@pytest.fixture(scope="module")
def both_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    snap = tmp_path_factory.mktemp("d360-both") / "org"
    generate_snapshot(snap, seed=11, actions=600, days=5, start=date(2026, 10, 1), source="data360")
    return snap


_BOTH = '\n[source]\nkinds = ["agentworkitem", "eventlogfile", "data360"]\n'


def test_the_side_by_side_block_follows_a_grown_window(tmp_path: Path, both_snapshot: Path) -> None:
    """The other family's block was copied from the stored run: its window, months and
    per-user price stayed those of the shorter window (once Data 360 has been quiet for
    its settle window, such a re-run was reused)."""
    org = MockOrg.from_snapshot(both_snapshot)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        cfg = load_config(make_config(tmp_path, both_snapshot, server, extra=_BOTH))
        run_audit(cfg, since=SINCE, until=QUIET, now=QUIET)
        run_audit(cfg, since=SINCE, until=QUIET, now=QUIET + timedelta(days=3))
        twins = _twins(cfg, tmp_path, (SINCE, LATER), LATER)
        twins.assert_same()


def test_the_side_by_side_budget_follows_the_budget_settings(
    tmp_path: Path, both_snapshot: Path
) -> None:
    """Budget settings are outside the fingerprint because budgets are decided every run —
    but the other family's budget block was reused as stored."""
    org = MockOrg.from_snapshot(both_snapshot)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        cfg = load_config(make_config(tmp_path, both_snapshot, server, extra=_BOTH))
        run_audit(cfg, since=SINCE, until=UNTIL, now=QUIET)
        run_audit(cfg, since=SINCE, until=UNTIL, now=QUIET + timedelta(days=3))
        small = load_config(
            make_config(
                tmp_path, both_snapshot, server, name="small.toml",
                extra=_BOTH + "\n[budget]\ncredits = 500\n",
            )
        )  # fmt: skip
        twins = _twins(small, tmp_path, (SINCE, UNTIL), QUIET + timedelta(days=3, hours=1))
        twins.assert_same()


# -- days_to_recompute (not wired yet) --------------------------------------------------------
def test_days_to_recompute_keeps_the_day_a_row_moved_from(tmp_path: Path) -> None:
    """A corrected start time moves a record from 10-02 to 10-06: the stored action of 10-02
    is gone from what the rows give now, so 10-02 must be recomputed (its daily usage, its
    sessions) — but only the page's new day is recorded as changed."""
    from audit import reuse
    from audit.store import Store
    from connector.sink import Page

    cfg = Config()
    week = (SINCE, SINCE + timedelta(days=7))
    with Store.open(tmp_path / "s.db") as store:
        store.commit(
            Page("agentworkitem", "r", awi_records=[awi_row("A1", "2026-10-02T09:00:00.000Z", 5)])
        )
        settings = reuse.settings_fingerprint(cfg, sandbox=False)
        store.set_audit_basis(
            reuse.basis(
                "r1", week, inputs_version=store.inputs_version(), settings=settings, totals={}
            )
        )
        store.commit(
            Page("agentworkitem", "r", awi_records=[awi_row("A1", "2026-10-06T09:00:00.000Z", 5)])
        )
        assert "2026-10-02" in reuse.days_to_recompute(store, cfg, week, sandbox=False)


# -- Data 360 as the only family --------------------------------------------------------------
_D360 = '\n[source]\nkinds = ["data360"]\n'


@pytest.mark.parametrize("grown", [False, True])
def test_a_data360_rerun_ends_as_a_recomputation_would(
    tmp_path: Path, both_snapshot: Path, grown: bool
) -> None:
    org = MockOrg.from_snapshot(both_snapshot)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        cfg = load_config(make_config(tmp_path, both_snapshot, server, extra=_D360))
        run_audit(cfg, since=SINCE, until=QUIET, now=QUIET)
        run_audit(cfg, since=SINCE, until=QUIET, now=QUIET + timedelta(days=3))
        end = LATER if grown else QUIET
        twins = _twins(cfg, tmp_path, (SINCE, end), QUIET + timedelta(days=3, hours=1))
        assert twins.reused.reused is not None
        twins.assert_same()


def test_a_data360_rerun_names_the_objects_it_read(
    tmp_path: Path, both_snapshot: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The org moves its session object to another naming family (same rows): the run reads
    the new object, yet a reused run names the old one."""
    other = tmp_path_factory.mktemp("d360-std-dmo") / "org"
    generate_snapshot(
        other, seed=11, actions=600, days=5, start=date(2026, 10, 1), source="data360",
        family="std_dmo",
    )  # fmt: skip
    org = MockOrg.from_snapshot(both_snapshot)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        cfg = load_config(make_config(tmp_path, both_snapshot, server, extra=_D360))
        run_audit(cfg, since=SINCE, until=QUIET, now=QUIET)
        before = run_audit(cfg, since=SINCE, until=QUIET, now=QUIET + timedelta(days=3))
        name = before.output["data360"]["objects"]["session"]
        (moved,) = (other / "data360").glob("std__AiAgentSession*.jsonl")
        org.data360.drop_object(name)
        rows = [json.loads(line) for line in moved.read_text().splitlines() if line.strip()]
        org.data360.add_rows(moved.stem, rows)
        twins = _twins(cfg, tmp_path, (SINCE, QUIET), QUIET + timedelta(days=3, hours=1))
        assert twins.full.output["data360"]["objects"]["session"] == moved.stem
        twins.assert_same()


# -- partial recomputation: only the days whose rows changed are reconciled anew ---------------
def test_a_corrected_record_recomputes_its_days_only_and_ends_as_a_recomputation_would(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    org, server = mock_org
    cfg = load_config(make_config(tmp_path, snapshot, server))
    run_audit(cfg, since=SINCE, until=UNTIL)
    correct_a_mismatch(org, labels)
    later = datetime.now(UTC) + timedelta(seconds=2)  # a sync takes rows modified before it
    # the next night's window starts a day later: only the corrected day and its
    # neighbours are reconciled again, and the result is a full recomputation's
    twins = _twins(cfg, tmp_path, (SINCE + timedelta(days=1), UNTIL), later)
    twins.assert_same()
    assert twins.reused.output["sync"]["records"] == 1 and twins.reused.reused is None
    said = twins.reused.recomputed or ""
    assert said.startswith("recomputed ") and " of 6 days" in said
    assert 1 <= int(said.split()[1]) <= 3
    fixed = twins.reused.output["findings"]["AWU_MISMATCH"]["count"]
    assert fixed == twins.full.output["findings"]["AWU_MISMATCH"]["count"]


def test_a_window_that_moved_with_nothing_changed_reconciles_no_day_again(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    run_audit(cfg, since=SINCE, until=UNTIL, now=LATER)
    twins = _twins(cfg, tmp_path, (SINCE + timedelta(days=2), UNTIL), LATER + timedelta(hours=1))
    twins.assert_same()
    assert twins.reused.recomputed == "recomputed 0 of 5 days (the others unchanged since the last run)"
    assert twins.full.recomputed is None
