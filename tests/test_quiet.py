"""A quiet night costs little: a run that only reads the org imports no REST-action,
delivery, template or retry machinery, asks once which Cases changed, and a re-run that
reuses the stored results reads only the findings it quotes — with the same answers as
reading them all."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from audit.config import load_config
from audit.engine.window import top_findings
from audit.pipeline import run_audit
from audit.store import Store
from connector.client import SalesforceClient
from connector.core import CoreSource
from tests.helpers import assert_matches_labels, make_config

UTC = timezone.utc
SINCE = datetime(2026, 10, 1, tzinfo=UTC)
UNTIL = datetime(2026, 10, 8, tzinfo=UTC)

#: what a run that reads the org and delivers nothing has no use for
_NOT_IMPORTED = (
    "smtplib", "jinja2",  # an email to build and send
    "tenacity",  # a transient failure to back off from
    "pygments",  # httpx's own command-line client
    "connector.data360",  # a source not configured
    "audit.report.render",  # `audit report`
)  # fmt: skip


def test_the_costliest_findings_are_those_of_the_whole_list_in_its_order(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    run_audit(cfg, since=SINCE, until=UNTIL)
    with Store.open(cfg.store.path) as store:
        every = store.findings_of_window((SINCE, UNTIL))
        assert len({f.wasted_usd for f in every}) < len(every)  # ties, broken by kind and key
        for n in (1, 5, len(every), len(every) + 3):
            top, count = store.costliest_findings_of_window((SINCE, UNTIL), n)
            assert count == len(every)
            assert top == top_findings(every, n)
        part = (SINCE, datetime(2026, 10, 3, tzinfo=UTC))
        top, count = store.costliest_findings_of_window(part, 5)
        assert count == len(store.findings_of_window(part)) < len(every)


def test_a_reused_run_quotes_the_findings_a_full_one_does(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    run_audit(cfg, since=SINCE, until=UNTIL)
    reused = run_audit(cfg, since=SINCE, until=UNTIL)
    full = run_audit(cfg, since=SINCE, until=UNTIL, full=True)
    assert reused.reused is not None and full.reused is None
    assert_matches_labels(reused.output, labels)
    assert reused.top_findings == full.top_findings and len(reused.top_findings) == 5
    with Store.open(cfg.store.path) as store:
        counts = [store.get_run(r.output["run_id"]) for r in (reused, full)]
    assert counts[0] is not None and counts[1] is not None
    assert counts[0]["findings_open"] == counts[1]["findings_open"] > 5


def test_a_reused_run_takes_the_budget_sums_its_basis_kept(
    tmp_path: Path, snapshot: Path, mock_org: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stored actions are those the basis was written with, so a reused run takes the
    periods' credits and the current period's daily credits from it instead of summing a
    month of actions again — and decides the budget as a full run does. A window grown
    into a new month, with `now` in it, sums only that month."""
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    until, nov, dec = (datetime(2026, 11, d, tzinfo=UTC) for d in (17, 1, 30))
    dec += timedelta(days=1)
    first = run_audit(cfg, since=SINCE, until=until, now=until)
    with Store.open(cfg.store.path) as store:
        october, november = store.credits_between(SINCE, nov), store.credits_between(nov, dec)
        daily = store.action_credits_by_day(SINCE, nov)
        basis = store.audit_basis()
    assert basis is not None and october > 0 and sum(daily.values()) == october
    assert basis["credits"] == {"2026-10": october, "2026-11": november}
    assert basis["daily_credits"] == {"2026-11": {}}  # `now`'s month: no action

    summed: list[tuple[str, datetime]] = []
    for name in ("credits_between", "action_credits_by_day"):
        real = getattr(Store, name)
        monkeypatch.setattr(Store, name, _noting(real, name, summed))
    again = until + timedelta(hours=1)
    reused = run_audit(cfg, since=SINCE, until=until, now=again)
    assert reused.reused is not None and summed == []
    grown = run_audit(cfg, since=SINCE, until=dec + timedelta(days=2), now=dec + timedelta(days=2))
    assert grown.reused is not None
    assert summed == [("credits_between", dec), ("action_credits_by_day", dec)]
    full = run_audit(cfg, since=SINCE, until=until, now=again, full=True)
    assert reused.output["budget"] == full.output["budget"]
    assert reused.output["budget"]["used_credits"] == first.output["budget"]["used_credits"]


def _noting(real: Any, name: str, calls: list[tuple[str, datetime]]) -> Any:
    def summing(store: Store, start: datetime, end: datetime) -> Any:
        calls.append((name, start))
        return real(store, start, end)

    return summing


def test_a_run_that_reads_the_org_imports_only_what_it_uses(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    """In its own process (what a fresh process imports is the point), first run and quiet
    re-run alike."""
    config = make_config(tmp_path, snapshot, mock_org[1])
    script = (
        "import atexit, json, sys\n"
        f"watched = {list(_NOT_IMPORTED)!r}\n"
        "atexit.register(lambda: sys.stderr.write('IMPORTED ' + json.dumps("
        "[m for m in watched if m in sys.modules]) + '\\n'))\n"
        "from audit.cli import main\n"
        "main()\n"
    )
    args = ["run", "--config", str(config), "--since", "2026-10-01", "--until", "2026-10-08"]
    for _ in ("first", "quiet"):
        proc = subprocess.run(
            [sys.executable, "-c", script, *args, "--json"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert_matches_labels(json.loads(proc.stdout), labels)
        imported = proc.stderr.rsplit("IMPORTED ", 1)[1].splitlines()[0]
        assert json.loads(imported) == []


def _case_queries(org: Any) -> list[str]:
    return [e.params["q"] for e in org.request_log.matching("/query") if "FROM Case" in e.params.get("q", "")]  # fmt: skip


def _audited(tmp_path: Path, snapshot: Path, server: Any) -> Any:
    """The config of a store one run audited the window into."""
    cfg = load_config(make_config(tmp_path, snapshot, server))
    run_audit(cfg, since=SINCE, until=UNTIL)
    return cfg


def _open_cases(store: Store, n: int) -> list[str]:
    linked = store.awi_case_ids((SINCE, UNTIL))
    return [c.id for c in store.cases(linked).values() if not c.is_closed][:n]


def test_cases_changed_since_the_last_run_are_found_with_one_query(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    org, cfg = mock_org[0], _audited(tmp_path, snapshot, mock_org[1])
    with Store.open(cfg.store.path) as store:
        (closing,) = _open_cases(store, 1)
    org.update_record("Case", closing, {"Status": "Closed", "IsClosed": True,
                                        "ClosedDate": "2026-10-09T10:00:00.000+0000"})  # fmt: skip
    org.request_log.clear()
    run_audit(cfg, since=SINCE, until=UNTIL)
    (query,) = _case_queries(org)
    assert "SystemModstamp >" in query and "Id IN" not in query
    with Store.open(cfg.store.path) as store:
        case = store.cases([closing])[closing]
    assert case.is_closed and case.status == "Closed" and case.closed_at is not None


def test_an_org_where_many_cases_changed_is_asked_for_the_known_ones_by_id(
    tmp_path: Path, snapshot: Path, mock_org: Any
) -> None:
    org, cfg = mock_org[0], _audited(tmp_path, snapshot, mock_org[1])
    with Store.open(cfg.store.path) as store:
        closing = _open_cases(store, 2)
        linked = store.awi_case_ids((SINCE, UNTIL))
    for at_once, by_id in ((1, True), (2, False)):
        # stamped after the Case sync before it, whatever second that one started in
        later = datetime.now(UTC) + timedelta(minutes=5)
        for case_id in closing:
            org.update_record("Case", case_id, {"Status": "Closed", "IsClosed": True}, later)
        org.request_log.clear()
        with SalesforceClient(cfg.connector) as client, Store.open(cfg.store.path) as store:
            source = CoreSource(client, cfg.connector, run_id="t", sync_start=datetime.now(UTC))
            source.changed_cases_at_once = at_once
            source.sync_related(store, linked)
            assert all(store.cases(closing)[c].is_closed for c in closing)
            assert source.cases == 2
        queries = _case_queries(org)
        assert len(queries) == (1 + -(-len(linked) // 200) if by_id else 1)
        assert all("Id IN" in q for q in queries[1:])
