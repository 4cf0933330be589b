"""run_audit in-process with an explicit `now`: the current period's forecast and spike
alerts, fail_on, and sandbox pricing — the decisions the nightly job makes."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from audit.config import load_config
from audit.pipeline import run_audit
from audit.report import render_report
from tests.helpers import correct_a_mismatch, make_config


def _sql(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Read the store file directly (tests look at what was written, not through the store)."""
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()

UTC = timezone.utc
SINCE = datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = datetime(2026, 10, 8, tzinfo=UTC)
NOW = datetime(2026, 10, 8, 12, 0, tzinfo=UTC)  # October is the current period


def _flood(day: str, n: int) -> list[dict[str, Any]]:
    """n extra actions of one new agent and action on one day: a usage spike."""
    return [
        {
            "SessionId__c": f"SPIKE-{i // 10}", "AgentId__c": "0XxSPIKE0000001AAA",
            "AgentName__c": "SpikeAgent", "ActionName__c": "FloodAction", "ActionType__c": "Apex",
            "Channel__c": "Text", "Status__c": "Success", "TokensConsumed__c": 800.0,
            "PromptTokens__c": 600.0, "CompletionTokens__c": 200.0, "AwuCount__c": 1.0,
            "ActionInput__c": json.dumps({"n": i}), "UserId__c": "005000000000001AAA",
            "StartTime__c": f"{day}T12:{i // 60 % 60:02d}:{i % 60:02d}.000+0000",
            "CreatedDate": f"{day}T13:00:00.000+0000", "SystemModstamp": f"{day}T13:00:00.000+0000",
        }
        for i in range(n)
    ]


def test_forecast_and_spike_alerts_fire_once(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    org, server = mock_org
    org.add_records("AgentWorkItem", _flood("2026-10-07", 1200))
    budget = round(labels["totals"]["credits"] * 2.5)  # on track to run out mid-month
    cfg = load_config(make_config(tmp_path, snapshot, server, extra=f"[budget]\ncredits = {budget}\n"))

    result = run_audit(cfg, since=SINCE, until=UNTIL, now=NOW)
    depletion = result.output["budget"]["depletion_date"]
    assert depletion is not None and "2026-10-08" <= depletion < "2026-11-01"

    alerts = {r["kind"]: r for r in _sql(cfg.store.path, "SELECT * FROM alerts")}
    assert "FORECAST_DEPLETION" in alerts and alerts["FORECAST_DEPLETION"]["period"] == "2026-10"
    spike = alerts["SPIKE"]
    assert spike["day"] == "2026-10-07"
    assert "SpikeAgent" in spike["payload"] and "FloodAction" in spike["payload"]

    report = render_report(cfg.store.path, "md")
    assert f"the budget runs out on **{depletion}**" in report and "Forecast for 2026-10" in report

    run_audit(cfg, since=SINCE, until=UNTIL, now=NOW)
    kinds = [r["kind"] for r in _sql(cfg.store.path, "SELECT kind FROM alerts")]
    assert kinds.count("FORECAST_DEPLETION") == 1 and kinds.count("SPIKE") == 1


def test_fail_on_exits_1(tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any) -> None:
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1], extra='[run]\nfail_on = "high"\n'))
    assert labels["findings"]["CEILING_BREACH"]["count"] > 0  # a "high" finding exists
    assert run_audit(cfg, since=SINCE, until=UNTIL, now=NOW).exit_code == 1
    off = load_config(make_config(tmp_path, snapshot, mock_org[1], name="off.toml"))
    assert run_audit(off, since=SINCE, until=UNTIL, now=NOW).exit_code == 0


def test_findings_resolved_when_a_correction_undoes_them(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    org, server = mock_org
    cfg = load_config(make_config(tmp_path, snapshot, server))
    run_audit(cfg, since=SINCE, until=UNTIL)
    # the org corrects its reported AWU: the mismatch is gone on the next run
    key = correct_a_mismatch(org, labels)
    # the next run starts later (a sync only takes rows modified before its start)
    later = datetime.now(UTC) + timedelta(seconds=2)
    result = run_audit(cfg, since=SINCE, until=UNTIL, now=later)
    assert result.output["sync"]["records"] == 1
    assert result.output["findings"]["AWU_MISMATCH"]["count"] == labels["findings"]["AWU_MISMATCH"]["count"] - 1
    rows = _sql(cfg.store.path,
                "SELECT status, resolved_run FROM findings WHERE kind = 'AWU_MISMATCH' AND key = ?", (key,))
    assert rows and rows[0]["status"] == "resolved" and rows[0]["resolved_run"] == result.output["run_id"]
