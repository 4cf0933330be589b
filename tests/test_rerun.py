"""Quiet re-runs: when nothing the audit reads changed, a run reuses the stored results —
and they are exactly what recomputing gives (checked against `--full`, the recomputation),
while any change (a source row, a setting, a window that gains rows) recomputes."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from audit.config import load_config
from audit.pipeline import RunResult, run_audit
from tests.helpers import assert_matches_labels, awi_row, correct_a_mismatch, invoke, make_config

UTC = timezone.utc
SINCE = datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = datetime(2026, 10, 8, tzinfo=UTC)
NOW = datetime(2026, 10, 8, 12, 0, tzinfo=UTC)
REUSED = "0 days recomputed"

#: what differs between two runs over the same data: who ran, what this run synced and sent
_PER_RUN = ("run_id", "sync", "budget")


def _same(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in a.items() if k not in _PER_RUN and b.get(k) != v}


def _reused(result: RunResult) -> bool:
    return result.reused is not None and REUSED in result.reused


def _stored(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What the engine wrote, run ids aside."""
    with closing(sqlite3.connect(db)) as conn:
        return {
            "actions": conn.execute("SELECT * FROM actions ORDER BY id").fetchall(),
            "findings": conn.execute(
                "SELECT id, kind, status, wasted_awu, detail FROM findings ORDER BY id"
            ).fetchall(),
            "daily_usage": conn.execute("SELECT * FROM daily_usage ORDER BY 1, 2, 3").fetchall(),
        }


def _summary(db: Path, run_id: str) -> dict[str, Any]:
    with closing(sqlite3.connect(db)) as conn:
        (text,) = conn.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchone()
    return dict(json.loads(text))


def test_a_quiet_rerun_reuses_exactly_what_recomputing_gives(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    first = run_audit(cfg, since=SINCE, until=UNTIL)
    assert not _reused(first)
    stored = _stored(cfg.store.path)

    again = run_audit(cfg, since=SINCE, until=UNTIL)
    assert _reused(again)
    assert_matches_labels(again.output, labels)
    assert again.output["sync"]["records"] == 0
    assert _same(again.output, first.output) == {}
    assert _stored(cfg.store.path) == stored
    with closing(sqlite3.connect(cfg.store.path)) as conn:
        seen = {r[0] for r in conn.execute("SELECT last_seen_run FROM findings WHERE status = 'open'")}
    assert seen == {again.output["run_id"]}

    full = run_audit(cfg, since=SINCE, until=UNTIL, full=True)
    assert not _reused(full)
    assert _same(full.output, again.output) == {}
    reused_analysis = _summary(cfg.store.path, again.output["run_id"])["analysis"]
    full_analysis = _summary(cfg.store.path, full.output["run_id"])["analysis"]
    assert {k: v for k, v in reused_analysis.items() if k != "forecast"} == {
        k: v for k, v in full_analysis.items() if k != "forecast"
    }


def test_a_window_grown_by_an_empty_stretch_is_reused_with_its_months_repriced(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    quiet_from = UNTIL + timedelta(days=40)  # past every row and Case of the snapshot
    run_audit(cfg, since=SINCE, until=quiet_from, now=quiet_from)
    later = quiet_from + timedelta(days=9)
    grown = run_audit(cfg, since=SINCE, until=later, now=later)
    assert _reused(grown)
    full = run_audit(cfg, since=SINCE, until=later, now=later, full=True)
    assert not _reused(full)
    assert _same(grown.output, full.output) == {}
    assert grown.output["window"]["end"] == "2026-11-26T00:00:00.000Z"
    g = _summary(cfg.store.path, grown.output["run_id"])["analysis"]["pricing"]
    f = _summary(cfg.store.path, full.output["run_id"])["analysis"]["pricing"]
    assert g == f and g["months"] > 1.8  # October and most of November
    # … and a stretch that holds a row is not empty: back to the snapshot's last day
    assert not _reused(run_audit(cfg, since=SINCE, until=UNTIL - timedelta(days=1), now=later))


def test_a_new_row_a_setting_or_another_start_recomputes(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    org, server = mock_org
    cfg = load_config(make_config(tmp_path, snapshot, server))
    run_audit(cfg, since=SINCE, until=UNTIL)

    other_start = run_audit(cfg, since=SINCE + timedelta(days=1), until=UNTIL)
    assert not _reused(other_start)
    assert _reused(run_audit(cfg, since=SINCE + timedelta(days=1), until=UNTIL))

    stricter = load_config(
        make_config(tmp_path, snapshot, server, name="strict.toml", extra="[rules]\ntoken_ceiling = 9000\n")
    )
    changed = run_audit(stricter, since=SINCE + timedelta(days=1), until=UNTIL)
    assert not _reused(changed)

    correct_a_mismatch(org, labels)
    later = datetime.now(UTC) + timedelta(seconds=2)  # a sync takes rows modified before it
    corrected = run_audit(stricter, since=SINCE + timedelta(days=1), until=UNTIL, now=later)
    assert corrected.output["sync"]["records"] == 1
    assert not _reused(corrected)


def test_the_cli_says_it_reused_and_full_recomputes(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    config = str(make_config(tmp_path, snapshot, mock_org[1]))
    window = ("--since", labels["window"]["since"], "--until", labels["window"]["until"])
    first = invoke("run", "--config", config, *window, "--json")
    assert first.exit_code == 0 and REUSED not in first.stderr
    second = invoke("run", "--config", config, *window, "--json")
    assert second.exit_code == 0 and REUSED in second.stderr
    full = invoke("run", "--config", config, *window, "--json", "--full")
    assert full.exit_code == 0 and REUSED not in full.stderr
    assert _same(json.loads(second.stdout), json.loads(full.stdout)) == {}


def test_only_a_page_that_changes_a_row_counts_and_its_days_are_kept(tmp_path: Path) -> None:
    from audit.store import Store
    from connector.sink import Page

    def page(*rows: dict[str, Any]) -> Page:
        return Page("agentworkitem", "r", awi_records=list(rows))  # type: ignore[arg-type]

    with Store.open(tmp_path / "s.db") as store:
        assert store.inputs_version() == 0
        store.commit(
            page(
                awi_row("A1", "2026-10-01T09:00:00.000Z", 10),
                awi_row("A2", "2026-10-03T09:00:00.000Z", 10),
            )
        )
        assert store.inputs_version() == 1
        assert store.days_changed_since(0, "2026-10-01", "2026-10-31") == ["2026-10-01", "2026-10-03"]
        store.commit(page(awi_row("A1", "2026-10-01T09:00:00.000Z", 10)))  # re-delivered as it is: no change
        assert store.inputs_version() == 1
        store.commit(page(awi_row("A2", "2026-10-03T09:00:00.000Z", 11)))  # corrected
        assert store.inputs_version() == 2
        assert store.days_changed_since(1, "2026-10-01", "2026-10-31") == ["2026-10-03"]
        assert store.days_changed_since(2, "2026-10-01", "2026-10-31") == []


def test_days_to_recompute_are_the_changed_days_their_neighbours_and_the_uncovered(
    tmp_path: Path,
) -> None:
    from audit import reuse
    from audit.config import Config
    from audit.store import Store
    from connector.sink import Page

    cfg = Config()
    oct_ = [datetime(2026, 10, d, tzinfo=UTC) for d in range(1, 12)]
    week = (oct_[0], oct_[7])  # 10-01 .. 10-07
    with Store.open(tmp_path / "s.db") as store:
        assert reuse.days_to_recompute(store, cfg, week, sandbox=False) == [
            f"2026-10-0{d}" for d in range(1, 8)
        ]  # nothing stored yet: every day
        store.commit(Page("agentworkitem", "r", awi_records=[awi_row("A1", "2026-10-02T09:00:00.000Z", 5)]))  # type: ignore[list-item]
        settings = reuse.settings_fingerprint(cfg, sandbox=False)
        store.set_audit_basis(
            reuse.basis("r1", week, inputs_version=store.inputs_version(), settings=settings, totals={})
        )
        assert reuse.days_to_recompute(store, cfg, week, sandbox=False) == []
        # the next night: the window moved a day, and a record of 10-05 was corrected
        store.commit(Page("agentworkitem", "r", awi_records=[awi_row("A5", "2026-10-05T09:00:00.000Z", 5)]))  # type: ignore[list-item]
        next_week = (oct_[1], oct_[8])  # 10-02 .. 10-08
        assert reuse.days_to_recompute(store, cfg, next_week, sandbox=False) == [
            "2026-10-04", "2026-10-05", "2026-10-06", "2026-10-08"
        ]
        # other settings: every day again
        sandbox = reuse.days_to_recompute(store, cfg, next_week, sandbox=True)
        assert sandbox == [f"2026-10-0{d}" for d in range(2, 9)]
