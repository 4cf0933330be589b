"""The connector against a real org's bad days, end to end: the real `audit run` (or
`run_audit` in-process where a test must act mid-sync) over the HTTPS mock org, with
faults switched on per test. Every test ends by comparing the store or the JSON with the
fixture generator's labels — expected values never come from the code under test."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from audit.config import load_config
from audit.pipeline import run_audit
from connector.errors import RateLimited
from connector.ids import to_18
from connector.mock.org import MockOrg, MockRequest
from connector.mock.server import RunningMockOrg, serve
from fixtures.generator import generate_snapshot
from tests.helpers import SCHEMA, CliResult, assert_matches_labels, invoke, labels_of, make_config

TABLES = ("actions", "findings", "daily_usage", "awi_records", "elf_events", "elf_files", "cases")
FAST = "[sync]\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\n"
API = "/services/data/"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small org dated in the past: 2 days from 2026-10-01 (plus the days around it)."""
    out = tmp_path_factory.mktemp("sync") / "org"
    generate_snapshot(out, seed=21, actions=300, days=2, start=date(2026, 10, 1))
    return out


@pytest.fixture(scope="module")
def labels(snap: Path) -> dict[str, Any]:
    return labels_of(snap)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An org whose data is recent (starts 10 days ago) for runs without a window."""
    out = tmp_path_factory.mktemp("live") / "org"
    start = datetime.now(timezone.utc).date() - timedelta(days=10)
    generate_snapshot(out, seed=23, actions=300, days=2, start=start)
    # nothing may lie in the future, or the sync (capped at its start) rightly skips it
    now = _iso(datetime.now(timezone.utc))
    for obj, field in (("AgentWorkItem", "SystemModstamp"), ("EventLogFile", "CreatedDate")):
        assert max(_sf_iso(r[field]) for r in _jsonl(out / "objects" / f"{obj}.jsonl")) < now
    return out


@contextmanager
def served(snapshot: Path, tmp: Path, **kwargs: Any) -> Iterator[tuple[MockOrg, RunningMockOrg]]:
    org = MockOrg.from_snapshot(snapshot, **kwargs)
    with serve(org, tls_dir=tmp / "tls") as server:
        yield org, server


@pytest.fixture(scope="module")
def clean(snap: Path, labels: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A clean run over the labels window: its JSON and store row counts, for comparison."""
    tmp = tmp_path_factory.mktemp("clean")
    with served(snap, tmp) as (_org, server):
        out = audit_ok(make_config(tmp, snap, server), window(labels))
    assert_matches(out, labels)
    jsonschema.validate(out, json.loads(SCHEMA.read_text()))
    return {"out": out, "counts": counts(tmp / "store.db")}


# ------------------------------------------------------------------------------ helpers


def window(labels: dict[str, Any]) -> tuple[str, str]:
    return labels["window"]["since"], labels["window"]["until"]


def audit(config: Path, win: tuple[str, str] | None = None) -> CliResult:
    args = ["run", "--config", str(config), "--json"]
    if win is not None:
        args += ["--since", win[0], "--until", win[1]]
    return invoke(*args)


def audit_ok(config: Path, win: tuple[str, str] | None = None) -> dict[str, Any]:
    proc = audit(config, win)
    assert proc.exit_code == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def audit_fails(config: Path, code: int, win: tuple[str, str] | None = None) -> str:
    """Runs expecting exit `code`; returns the one line on stderr."""
    proc = audit(config, win)
    assert proc.exit_code == code, (proc.exit_code, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one clear line, never a traceback
    assert "Traceback" not in proc.stderr
    return lines[0]


def assert_matches(out: dict[str, Any], labels: dict[str, Any], *, bad_records: int | None = None,
                   findings_delta: dict[str, int] | None = None) -> None:
    assert out["org_id"] == labels["organization_id"]
    assert out["is_sandbox"] is labels["is_sandbox"]
    assert out["window"] == {"start": _iso_z(labels["window"]["since"]),
                             "end": _iso_z(labels["window"]["until"])}
    assert_matches_labels(out, labels, bad_records=bad_records, findings_delta=findings_delta)


def expected_totals(labels: dict[str, Any], start: str, end: str) -> dict[str, Any]:
    """Totals of the labelled actions that started in [start, end) (any window)."""
    acts = [a for a in labels["actions"] if start <= a["started_at"] < end]
    awu = sum(a["awu"] for a in acts)
    credits = awu * labels["pricing_defaults"]["credits_per_awu"]
    cost = credits * labels["pricing_defaults"]["usd_per_credit"]
    if labels["is_sandbox"]:
        cost *= 1 - labels["pricing_defaults"]["sandbox_discount"]
    return {"actions": len(acts), "billable_actions": sum(1 for a in acts if a["billable"]),
            "tokens": sum(a["tokens"] for a in acts), "awu": awu,
            "reported_awu": sum(a["reported_awu"] for a in acts), "credits": credits,
            "cost_usd": cost}


def comparable(out: dict[str, Any]) -> dict[str, Any]:
    """A run's JSON minus what differs between runs over the same data."""
    return {k: v for k, v in out.items() if k not in ("run_id", "sync")}


def counts(db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(db)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def sync_state(db: Path, source: str) -> dict[str, Any]:
    rows = query(db, "SELECT state FROM sync_state WHERE source = ?", source)
    return json.loads(rows[0][0]) if rows else {}


def api_calls(org: MockOrg) -> list[Any]:
    return [e for e in org.request_log if e.path.startswith(API)]


def downloads(org: MockOrg) -> list[str]:
    """Ids of the EventLogFiles whose body was requested, in order."""
    return [e.path.split("/")[-2] for e in org.request_log if e.path.endswith("/LogFile")]


def records_served(org: MockOrg, sobject: str) -> int:
    """Records the org returned for queries of `sobject`, all pages (the client pages one
    query to its end before the next, so a nextRecordsUrl page is the last query's)."""
    total, soql = 0, ""
    for e in org.request_log:
        if "/query" not in e.path:
            continue
        soql = e.params.get("q", soql)
        if e.records is not None and f"FROM {sobject} " in soql:
            total += e.records
    return total


def after_calls(org: MockOrg, actions: dict[int, Callable[[], None]],
                match: Callable[[MockRequest], bool] = lambda r: r.path.startswith(API)) -> None:
    """Run actions[n] once the n-th matching request has been answered."""
    seen = [0]
    lock = threading.Lock()

    def hook(req: MockRequest, page_no: int | None) -> None:
        if not match(req):
            return
        with lock:
            seen[0] += 1
            n = seen[0]
        if n in actions:
            actions[n]()

    org.on_request = hook


def is_download(req: MockRequest) -> bool:
    return req.path.endswith("/LogFile")


def copy(snapshot: Path, tmp: Path) -> Path:
    dest = tmp / "org-copy"
    shutil.copytree(snapshot, dest)
    return dest


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _sf_iso(value: str) -> str:
    """`2026-10-06T14:03:22.000+0000` → `2026-10-06T14:03:22.000Z` (sortable with ours)."""
    return value.replace("+0000", "Z")


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _iso_z(text: str) -> str:
    """`2026-10-01T00:00:00Z` → `2026-10-01T00:00:00.000Z`."""
    return text.replace("Z", ".000Z") if "." not in text else text


def _sf(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def csv_rows(path: Path | bytes) -> tuple[list[str], list[dict[str, str]]]:
    text = path.decode() if isinstance(path, bytes) else path.read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return header, [dict(zip(header, row, strict=False)) for row in reader if row]


def csv_bytes(header: list[str], rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row[c] for c in header])
    return buf.getvalue().encode()


def elf_records(snapshot: Path) -> list[dict[str, Any]]:
    return _jsonl(snapshot / "objects" / "EventLogFile.jsonl")


def assert_elf_files_match_snapshot(db: Path, snapshot: Path, labels: dict[str, Any]) -> None:
    """Every stored log file: rows and sha256 exactly those of the file the org holds."""
    stored = query(db, "SELECT id, rows, sha256, bytes, bad FROM elf_files")
    assert stored
    for file_id, rows, sha, size, bad in stored:
        body = (snapshot / "logfiles" / f"{file_id}.csv").read_bytes()
        assert sha == hashlib.sha256(body).hexdigest(), file_id
        assert size == len(body), file_id
        if file_id in labels["elf"]["bad_file_ids"]:
            assert (bad, rows) == (1, 0), file_id
        else:
            assert (bad, rows) == (0, len(csv_rows(body)[1])), file_id


# ------------------------------------------------- 1. token expiry: renewed when refused


def test_token_expiry_is_renewed_when_refused(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    with served(snap, tmp_path) as (org, server):
        org.faults.expire_token_after(7)
        out = audit_ok(make_config(tmp_path, snap, server), window(labels))
    assert_matches(out, labels)
    log = org.request_log.entries()
    tokens = [i for i, e in enumerate(log) if e.path == "/services/oauth2/token"]
    refused = [i for i, e in enumerate(log) if e.status == 401]
    assert len(refused) >= 3
    assert len(tokens) == 1 + len(refused)  # one new token per refusal, never on a timer
    for i in refused:  # each refusal: a new token at once, then the same call succeeds
        assert log[i + 1].path == "/services/oauth2/token" and log[i + 1].status == 200
        assert log[i + 2].path == log[i].path and log[i + 2].status == 200
    assert len(api_calls(org)) <= 8 * len(tokens)  # no refresh loop


# --------------------------------------- 2. transient bursts, and the daily limit (fail)


def test_503_lock_row_and_429_bursts_mid_sync(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    with served(snap, tmp_path) as (org, server):
        f = org.faults
        after_calls(org, {
            2: lambda: f.unavailable(3),        # during the queries
            6: lambda: f.lock_row(2),
            12: lambda: f.rate_limit(4),        # during the LogFile downloads
            20: lambda: f.unavailable(2),
            25: lambda: f.lock_row(3, status=409),
        })
        out = audit_ok(make_config(tmp_path, snap, server), window(labels))
    assert_matches(out, labels)
    statuses = [e.status for e in api_calls(org)]
    assert statuses.count(503) == 5 and statuses.count(429) == 4
    assert statuses.count(400) == 2 and statuses.count(409) == 3
    assert_elf_files_match_snapshot(tmp_path / "store.db", snap, labels)


def test_burst_longer_than_the_retries_fails_bounded(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    with served(snap, tmp_path) as (org, server):
        org.faults.unavailable(1000)
        config = make_config(tmp_path, snap, server, extra=FAST + "max_retries = 3\n")
        line = audit_fails(config, 3, window(labels))
    assert "503" in line and "after 3 retries" in line
    assert len(api_calls(org)) == 4
    assert not (tmp_path / "store.db").exists()


def test_daily_api_limit_at_start_fails_at_once(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    with served(snap, tmp_path) as (org, server):
        org.faults.daily_limit()
        line = audit_fails(make_config(tmp_path, snap, server), 3, window(labels))
    assert "REQUEST_LIMIT_EXCEEDED" in line
    assert len(api_calls(org)) == 1  # 403 is not retried
    assert not (tmp_path / "store.db").exists()


def test_daily_api_limit_mid_run_writes_nothing_half(
    snap: Path, labels: dict[str, Any], clean: dict[str, Any], tmp_path: Path
) -> None:
    since, until = window(labels)
    first_day = (since, (datetime.fromisoformat(since.replace("Z", "+00:00")) + timedelta(days=1))
                 .strftime("%Y-%m-%dT%H:%M:%SZ"))
    db = tmp_path / "store.db"
    with served(snap, tmp_path) as (org, server):
        config = make_config(tmp_path, snap, server)
        audit_ok(config, first_day)
        before = counts(db)

        org.request_log.clear()
        after_calls(org, {3: org.faults.daily_limit}, match=is_download)
        line = audit_fails(config, 3, (since, until))
        assert "REQUEST_LIMIT_EXCEEDED" in line
        # the 4th download was refused (not retried), and nothing came after it
        assert [e.status for e in api_calls(org) if e.path.endswith("/LogFile")] == [200, 200, 200, 403]
        assert [e.status for e in api_calls(org)].count(403) == 1
        assert api_calls(org)[-1].status == 403

        after = counts(db)
        for table in ("actions", "findings", "daily_usage"):
            assert after[table] == before[table], table  # no half-audited window
        assert after["elf_files"] >= before["elf_files"]
        assert_elf_files_match_snapshot(db, snap, labels)  # whole files only
        outcomes = [r[0] for r in query(db, "SELECT outcome FROM runs ORDER BY started_at")]
        assert outcomes == ["ok", "failed"]

        org.faults.daily_limit(False)
        org.on_request = None
        out = audit_ok(config, (since, until))
    assert_matches(out, labels)
    assert comparable(out) == comparable(clean["out"])
    assert counts(db) == clean["counts"]


# ------------------------------------------------------------------------ 3. API reserve


def test_api_reserve_stops_before_the_orgs_budget(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    with served(snap, tmp_path) as (org, server):
        org.faults.api_usage(13_600, 15_000)  # 9.3 % left, the reserve is 10 %
        line = audit_fails(make_config(tmp_path, snap, server), 3, window(labels))
    assert "sync.api_reserve_pct" in line and "10%" in line
    assert len(api_calls(org)) == 1  # the first answer told us; no call after it
    assert not (tmp_path / "store.db").exists()


def test_api_reserve_reached_mid_run(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    with served(snap, tmp_path) as (org, server):
        config = make_config(tmp_path, snap, server, extra=FAST + "api_reserve_pct = 25\n")
        after_calls(org, {4: lambda: org.faults.api_usage(11_300, 15_000)}, match=is_download)
        line = audit_fails(config, 3, window(labels))
        assert "sync.api_reserve_pct" in line and "25%" in line
        # the 5th download's answer reported 24.7 % left: it was the last call made
        assert len(downloads(org)) == 5
        assert api_calls(org)[-1].path.endswith("/LogFile")
    db = tmp_path / "store.db"
    assert counts(db)["actions"] == 0
    assert_elf_files_match_snapshot(db, snap, labels)
    assert query(db, "SELECT outcome FROM runs") == [("failed",)]


# ---------------------------------------------------------------- 4. LogFile cut midway


def test_logfile_cut_midway_is_retried_and_recorded(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    since, until = window(labels)
    biggest = max((r for r in elf_records(snap) if since <= _sf_iso(r["LogDate"]) < until),
                  key=lambda r: r["LogFileLength"])["Id"]
    with served(snap, tmp_path) as (org, server):
        org.faults.cut_logfile(2, file_id=biggest)
        out = audit_ok(make_config(tmp_path, snap, server), window(labels))
    assert_matches(out, labels)
    assert downloads(org).count(biggest) == 3  # cut, cut, whole
    assert len(downloads(org)) == len(set(downloads(org))) + 2
    db = tmp_path / "store.db"
    assert_elf_files_match_snapshot(db, snap, labels)
    assert query(db, "SELECT count(*) FROM elf_files WHERE id = ?", biggest) == [(1,)]


# ------------------------------------------------------------ 5. re-published log files


def _action_rows(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    by_action: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if row["WORK_ITEM_ID"]:
            by_action.setdefault(to_18(row["WORK_ITEM_ID"]) or "", []).append(row)
    return by_action


def _quiet_action(labels: dict[str, Any], rows: list[dict[str, str]], taken: set[str]) -> str:
    """An in-window action with a record and exactly one log row, and no SOURCE_GAP."""
    gaps = set(labels["findings"]["SOURCE_GAP"]["keys"])
    info = {a["key"]: a for a in labels["actions"]}
    for key, mine in sorted(_action_rows(rows).items()):
        a = info.get(key)
        if a and a["source"] == "both" and a["in_window"] and len(mine) == 1 \
                and key not in gaps and key not in taken:
            return key
    raise AssertionError("no quiet action in this file")


def _latest_per_request(snapshot: Path) -> dict[str, dict[str, str]]:
    """The winning copy of each REQUEST_ID (latest CreatedDate, Sequence, Id)."""
    best: dict[str, tuple[tuple[str, int, str], dict[str, str]]] = {}
    for rec in elf_records(snapshot):
        order = (_sf_iso(rec["CreatedDate"]), rec.get("Sequence", 0), rec["Id"])
        header, rows = csv_rows(snapshot / "logfiles" / f"{rec['Id']}.csv")
        if header != rec["LogFileFieldNames"].split(","):
            continue  # the BAD_RECORD file
        for row in rows:
            if row["REQUEST_ID"] not in best or best[row["REQUEST_ID"]][0] < order:
                best[row["REQUEST_ID"]] = (order, row)
    return {k: v[1] for k, v in best.items()}


VALUES = ("STATUS", "PROMPT_TOKENS", "COMPLETION_TOKENS", "TOTAL_TOKENS", "AWU_COUNT")


def test_republished_files_replace_rows_by_request_id(
    snap: Path, labels: dict[str, Any], clean: dict[str, Any], tmp_path: Path
) -> None:
    since, until = window(labels)
    files = elf_records(snap)
    winners = _latest_per_request(snap)

    def current(rec: dict[str, Any]) -> bool:  # every row already the winning copy's values
        header, rows = csv_rows(snap / "logfiles" / f"{rec['Id']}.csv")
        return header == rec["LogFileFieldNames"].split(",") and all(
            all(row[c] == winners[row["REQUEST_ID"]][c] for c in VALUES) for row in rows)

    in_window = [r for r in files if since <= _sf_iso(r["LogDate"]) < until and current(r)]
    daily = next(r for r in in_window if r["Interval"] == "Daily")
    hourly = next(r for r in sorted(in_window, key=lambda r: -r["LogFileLength"])
                  if r["Interval"] == "Hourly" and r["LogDate"][:10] != daily["LogDate"][:10])

    now = datetime.now(timezone.utc)
    db = tmp_path / "store.db"
    with served(snap, tmp_path) as (org, server):
        config = make_config(tmp_path, snap, server)
        audit_ok(config, (since, until))
        first = counts(db)

        # (a) a new EventLogFile record for the same day: one row changed, one row dropped,
        # one new row (a second REQUEST_ID of an action: still one action)
        header, rows = csv_rows(snap / "logfiles" / f"{daily['Id']}.csv")
        changed_a = _quiet_action(labels, rows, set())
        grown = _quiet_action(labels, rows, {changed_a})
        new_rows = []
        for row in rows:
            if to_18(row["WORK_ITEM_ID"]) == changed_a:
                row = {**row, "TOTAL_TOKENS": str(int(row["TOTAL_TOKENS"]) + 7)}
            new_rows.append(row)
            if to_18(row["WORK_ITEM_ID"]) == grown:
                added = {**row, "REQUEST_ID": "4zNewRowOfARepublish0", "PROMPT_TOKENS": "3",
                         "COMPLETION_TOKENS": "2", "TOTAL_TOKENS": "5"}
                new_rows.append(added)
        keep = {changed_a, grown}
        dropped = new_rows.pop(next(i for i in range(len(new_rows) - 1, -1, -1)
                                    if to_18(new_rows[i]["WORK_ITEM_ID"]) not in keep))
        new_id = org.add_logfile({
            "EventType": "AgentAction", "LogDate": daily["LogDate"], "Interval": "Daily",
            "Sequence": daily["Sequence"], "CreatedDate": _sf(now - timedelta(hours=1)),
        }, csv_bytes(header, new_rows))

        # (b) the same Id re-published with a later CreatedDate: one row changed
        h_header, h_rows = csv_rows(snap / "logfiles" / f"{hourly['Id']}.csv")
        changed_b = _quiet_action(labels, h_rows, {changed_a, grown})
        h_new = [{**r, "TOTAL_TOKENS": str(int(r["TOTAL_TOKENS"]) + 3)}
                 if to_18(r["WORK_ITEM_ID"]) == changed_b else r for r in h_rows]
        republished = {k: v for k, v in hourly.items() if k not in ("LogFileLength", "LogFileFieldNames")}
        org.add_logfile({**republished, "CreatedDate": _sf(now - timedelta(minutes=30))},
                        csv_bytes(h_header, h_new))

        org.request_log.clear()
        out = audit_ok(config, (since, until))
        hourly_id = to_18(hourly["Id"])
        assert hourly_id is not None
        assert sorted(downloads(org)) == sorted([new_id, hourly_id])
        assert out["sync"]["elf_files_downloaded"] == 2 and out["sync"]["records"] == 0

        # changed rows replaced, the dropped row kept, the new row added, nothing counted twice
        assert_matches(out, labels, findings_delta={"SOURCE_GAP": 3})
        assert counts(db)["elf_events"] == first["elf_events"] + 1
        [(elf_tokens,)] = query(db, "SELECT elf_tokens FROM actions WHERE id = ?", grown)
        assert elf_tokens == next(a for a in labels["actions"] if a["key"] == grown)["tokens"] + 5
        assert counts(db)["actions"] == first["actions"] == labels["totals"]["actions"]
        for key, file_id, delta in ((changed_a, new_id, 7), (changed_b, to_18(hourly["Id"]), 3)):
            [(tokens, where)] = query(db, "SELECT tokens, file_id FROM elf_events WHERE work_item_id = ?", key)
            assert where == file_id
            original = next(a for a in labels["actions"] if a["key"] == key)["tokens"]
            assert tokens == original + delta
        kept = query(db, "SELECT file_id FROM elf_events WHERE request_id = ?", dropped["REQUEST_ID"])
        assert kept and kept[0][0] != new_id
        assert query(db, "SELECT created_date FROM elf_files WHERE id = ?", to_18(hourly["Id"])) == [
            (_sf_iso(_sf(now - timedelta(minutes=30))),)]

        # and a third run has nothing left to fetch
        org.request_log.clear()
        again = audit_ok(config, (since, until))
        assert downloads(org) == [] and again["sync"]["records"] == 0
        assert again["findings"] == out["findings"] and again["totals"] == out["totals"]


# ------------------------------------------------------- 6. hourly files appearing late


def test_late_hourly_file_is_taken_in_within_the_settle_window(live: Path, tmp_path: Path) -> None:
    labels = labels_of(live)
    work = copy(live, tmp_path)
    files = elf_records(work)
    republished_days = {r["LogDate"][:10] for r in files if r["Id"] in labels["elf"]["republished_ids"]}
    candidates = [r for r in files if r["Interval"] == "Hourly"
                  and r["Id"] not in labels["elf"]["bad_file_ids"]
                  and r["LogDate"][:10] not in republished_days]
    newest = max(r["CreatedDate"] for r in files)
    late = max((r for r in candidates if r["CreatedDate"] < newest), key=lambda r: r["CreatedDate"])
    others = [r for r in files if r["Id"] != late["Id"]]
    cursor = max(_sf_iso(r["CreatedDate"]) for r in others)
    assert _sf_iso(late["CreatedDate"]) < cursor  # late: before what the first run saw …
    settle = datetime.fromisoformat(cursor.replace("Z", "+00:00")) - timedelta(hours=24)
    assert _sf_iso(late["CreatedDate"]) > _iso(settle)  # … but inside the settle window

    # the first run sees neither the late file nor its rows anywhere else: take them out of
    # the day's Daily file too (its rows reach the store only through the late file)
    late_csv = (work / "logfiles" / f"{late['Id']}.csv").read_bytes()
    late_ids = {r["REQUEST_ID"] for r in csv_rows(late_csv)[1]}
    daily = next(r for r in others if r["Interval"] == "Daily" and r["LogDate"][:10] == late["LogDate"][:10])
    header, rows = csv_rows(work / "logfiles" / f"{daily['Id']}.csv")
    body = csv_bytes(header, [r for r in rows if r["REQUEST_ID"] not in late_ids])
    (work / "logfiles" / f"{daily['Id']}.csv").write_bytes(body)
    daily["LogFileLength"] = float(len(body))
    _write_jsonl(work / "objects" / "EventLogFile.jsonl", others)
    (work / "logfiles" / f"{late['Id']}.csv").unlink()

    db = tmp_path / "store.db"
    with served(work, tmp_path) as (org, server):
        config = make_config(tmp_path, work, server, extra=FAST + "initial_days = 12\n")
        first = audit_ok(config)
        assert counts(db)["elf_events"] == labels["elf"]["distinct_request_ids"] - len(late_ids)

        org.add_logfile(late, late_csv)  # published hours late, with its original CreatedDate
        org.request_log.clear()
        out = audit_ok(config)
    assert downloads(org) == [to_18(late["Id"])]
    assert out["sync"]["elf_files_downloaded"] == 1 and out["sync"]["records"] == 0
    assert counts(db)["elf_events"] == labels["elf"]["distinct_request_ids"]
    start, end = out["window"]["start"], out["window"]["end"]
    assert first["window"]["start"] == start
    assert out["totals"] == pytest.approx(expected_totals(labels, start, end))
    [(rows_stored, sha)] = query(db, "SELECT rows, sha256 FROM elf_files WHERE id = ?", to_18(late["Id"]))
    assert rows_stored == len(late_ids) and sha == hashlib.sha256(late_csv).hexdigest()


# ------------------------------------- 7. rows committed during a sync at a page's edge


def test_rows_at_a_page_edge_and_committed_late_are_not_missed(
    snap: Path, labels: dict[str, Any], tmp_path: Path
) -> None:
    work = copy(snap, tmp_path)
    path = work / "objects" / "AgentWorkItem.jsonl"
    records = sorted(_jsonl(path), key=lambda r: (r["SystemModstamp"], r["Id"]))
    n = len(records)
    edge_ts = records[-1]["SystemModstamp"]
    for r in records[-30:]:
        r["SystemModstamp"] = edge_ts  # 30 rows share one timestamp across the page edge
    records.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
    _write_jsonl(path, records)
    edge = datetime.fromisoformat(_sf_iso(edge_ts).replace("Z", "+00:00"))
    since, until = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in window(labels))
    template = {k: v for k, v in records[0].items() if k not in ("Id", "CreatedDate", "SystemModstamp")}
    late = [  # outside the audited window: the labels' totals must not move
        {**template, "SessionId__c": f"late-{i}", "StartTime__c": _sf(until + timedelta(hours=2, minutes=i)),
         "CreatedDate": edge_ts, "SystemModstamp": edge_ts} for i in range(3)]
    late[2]["Id"] = to_18("1AWzzzzzzzzzzzz")  # sorts after every Id; the others sort before

    db = tmp_path / "store.db"
    with served(work, tmp_path, page_size=n - 15) as (org, server):
        # every record is newer than the first sync's start: one keyset query pages them all
        cfg = load_config(make_config(tmp_path, work, server, extra=FAST + "initial_days = 30\n"))
        inserted: list[str] = []

        def mid_paging(req: MockRequest, page_no: int | None) -> None:
            if page_no == 0 and "FROM AgentWorkItem WHERE SystemModstamp" in req.query.get("q", "") \
                    and not inserted:
                inserted.extend(org.add_records("AgentWorkItem", late))
                org.faults.daily_limit()  # and the run dies before the next page

        org.on_request = mid_paging
        with pytest.raises(RateLimited):
            run_audit(cfg, since=since, until=until, now=edge + timedelta(seconds=30))
        assert counts(db)["awi_records"] == n - 15
        cursor = sync_state(db, "agentworkitem")["cursor"]
        assert cursor["ts"] == _sf_iso(edge_ts) and cursor["id"] == to_18(records[n - 16]["Id"])

        org.faults.daily_limit(False)
        org.on_request = None
        second = run_audit(cfg, since=since, until=until, now=edge + timedelta(minutes=1)).output
        assert_matches(second, labels)
        assert second["sync"]["records"] == 15 + 3  # the rest of the edge, and the late rows
        got = {r[0] for r in query(db, "SELECT id FROM awi_records")}
        assert got == {to_18(r["Id"]) for r in records} | set(inserted)
        assert len(got) == n + 3

        org.request_log.clear()
        third = run_audit(cfg, since=since, until=until, now=edge + timedelta(minutes=20)).output
        assert third["sync"]["records"] == 0 and third["totals"] == second["totals"]
        assert counts(db)["awi_records"] == n + 3


# --------------------------------------------------------------- 8. kill -9, then re-run


@pytest.mark.parametrize("stage", ["awi-page", "logfile"])
def test_kill_9_mid_run_then_rerun_equals_a_clean_run(
    snap: Path, labels: dict[str, Any], clean: dict[str, Any], tmp_path: Path, stage: str
) -> None:
    reached, release = threading.Event(), threading.Event()
    seen = [0]

    def hold(req: MockRequest, page_no: int | None) -> None:
        hit = (stage == "logfile" and is_download(req)) or (
            stage == "awi-page" and page_no is not None and page_no >= 1)
        if hit:
            seen[0] += 1
            if seen[0] == 3:
                reached.set()
                release.wait(20)  # hold the answer until the process is dead

    db = tmp_path / "store.db"
    with served(snap, tmp_path, page_size=60) as (org, server):
        config = make_config(tmp_path, snap, server)
        org.on_request = hold
        since, until = window(labels)
        proc = subprocess.Popen(
            [sys.executable, "-m", "audit.cli", "run", "--config", str(config), "--since", since,
             "--until", until, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ},
        )
        try:
            assert reached.wait(60), "the run never got there"
            proc.kill()  # SIGKILL: no cleanup of any kind
            proc.communicate(timeout=30)
        finally:
            release.set()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == -9
        org.on_request = None
        assert query(db, "SELECT outcome FROM runs") == [("running",)]
        mid = counts(db)
        assert mid["actions"] == 0 and mid["findings"] == 0
        if stage == "awi-page":  # pages 0-2 committed, page 3 never arrived
            assert (mid["awi_records"], mid["elf_files"]) == (3 * 60, 0)
        else:  # every record, and the two files before the one held
            assert (mid["awi_records"], mid["elf_files"]) == (clean["counts"]["awi_records"], 2)

        out = audit_ok(config, (since, until))
    assert_matches(out, labels)
    assert comparable(out) == comparable(clean["out"])
    assert counts(db) == clean["counts"]
    assert [r[0] for r in query(db, "SELECT outcome FROM runs ORDER BY started_at")] == ["interrupted", "ok"]
    assert_elf_files_match_snapshot(db, snap, labels)


# ------------------------------------------------ 9. a second run right after the first


def test_second_run_fetches_nothing(snap: Path, labels: dict[str, Any], clean: dict[str, Any],
                                    tmp_path: Path) -> None:
    with served(snap, tmp_path) as (org, server):
        config = make_config(tmp_path, snap, server)
        first = audit_ok(config, window(labels))
        assert first["sync"]["elf_files_downloaded"] > 0 and first["sync"]["records"] > 0
        assert records_served(org, "AgentWorkItem") == first["sync"]["records"]
        org.request_log.clear()
        again = audit_ok(config, window(labels))
    assert downloads(org) == []
    assert records_served(org, "AgentWorkItem") == 0 and records_served(org, "EventLogFile") == 0
    assert again["sync"] == {"records": 0, "elf_files_downloaded": 0, "elf_files_skipped": 0}
    assert comparable(again) == comparable(first) == comparable(clean["out"])


# ---------------------------------------------------------------------- 10. field mapping


def test_mapped_fields_the_org_lacks_are_named_at_once(snap: Path, labels: dict[str, Any],
                                                       tmp_path: Path) -> None:
    extra = '[fields.AgentWorkItem]\ntokens = "TotalTokens__c"\nsession_id = "Conversation__c"\n' \
            'channel = "channel__C"\n'
    with served(snap, tmp_path) as (org, server):
        line = audit_fails(make_config(tmp_path, snap, server, extra=extra), 2, window(labels))
    assert "TotalTokens__c" in line and "Conversation__c" in line
    assert "channel__C" not in line  # API names compare case-insensitively
    assert "[fields.AgentWorkItem]" in line
    assert org.request_log.matching("/sobjects/AgentWorkItem/describe")
    assert not [e for e in org.request_log.matching("/query") if "AgentWorkItem" in e.params.get("q", "")]
    assert not (tmp_path / "store.db").exists()


def test_an_org_with_other_field_names_matches_labels(snap: Path, labels: dict[str, Any],
                                                      tmp_path: Path) -> None:
    work = copy(snap, tmp_path)
    path = work / "objects" / "AgentWorkItem.jsonl"
    renames = {"TokensConsumed__c": "Total_Tokens__c", "SessionId__c": "Conversation__c",
               "AwuCount__c": "Billed_AWU__c"}
    _write_jsonl(path, [{renames.get(k, k): v for k, v in r.items()} for r in _jsonl(path)])
    extra = '[fields.AgentWorkItem]\ntokens = "total_tokens__C"\nsession_id = "Conversation__c"\n' \
            'reported_awu = "Billed_AWU__c"\n'
    with served(work, tmp_path) as (org, server):
        out = audit_ok(make_config(tmp_path, work, server, extra=extra), window(labels))
    assert_matches(out, labels)
    soql = [e.params["q"] for e in org.request_log.matching("/query") if "FROM AgentWorkItem" in e.params.get("q", "")]
    assert soql and all("Total_Tokens__c" in q and "TokensConsumed__c" not in q for q in soql)


# ------------------------------------------------------------------------ 11. bad input


@pytest.mark.parametrize(("case", "code", "needle"), [
    ("missing consumer_key", 2, "salesforce.consumer_key"),
    ("malformed TOML", 2, "audit.toml"),
    ("private key missing", 2, "salesforce.private_key_file"),
    ("private key not PEM", 2, "salesforce.private_key_file"),
    ("private key a directory", 2, "salesforce.private_key_file"),
    ("wrong consumer key", 3, "client identifier invalid"),
    ("wrong username", 3, "user hasn't approved this consumer"),
])
def test_bad_input_fails_with_one_line_and_writes_nothing(
    snap: Path, labels: dict[str, Any], tmp_path: Path, case: str, code: int, needle: str
) -> None:
    with served(snap, tmp_path) as (org, server):
        config = make_config(tmp_path, snap, server)
        text = config.read_text()
        org_json = json.loads((snap / "org.json").read_text())
        key_line = next(line for line in text.splitlines() if line.startswith("private_key_file"))
        if case == "missing consumer_key":
            text = "\n".join(line for line in text.splitlines() if not line.startswith("consumer_key"))
        elif case == "malformed TOML":
            text = text.replace("[store]", "[store")
        elif case == "private key missing":
            text = text.replace(key_line, f'private_key_file = "{(tmp_path / "nope.key").as_posix()}"')
        elif case == "private key not PEM":
            (tmp_path / "bad.key").write_text("not a key\n")
            text = text.replace(key_line, f'private_key_file = "{(tmp_path / "bad.key").as_posix()}"')
        elif case == "private key a directory":
            text = text.replace(key_line, f'private_key_file = "{tmp_path.as_posix()}"')
        elif case == "wrong consumer key":
            text = text.replace(org_json["consumer_key"], "3MVG9someoneElsesApp")
        elif case == "wrong username":
            text = text.replace(org_json["username"], "intruder@example.com")
        config.write_text(text)
        line = audit_fails(config, code, window(labels))
    assert needle in line, line
    if code == 3:
        assert len(org.request_log.matching("/services/oauth2/token")) == 1  # not retried
        assert not api_calls(org)
    else:
        assert not org.request_log.entries()
    assert "BEGIN" not in line and "PRIVATE" not in line
    assert not (tmp_path / "store.db").exists()


# ------------------------------------------------- 12. only Daily files; API below 37.0


def test_org_with_daily_files_only(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    work = copy(snap, tmp_path)
    files = elf_records(work)
    hourly = {r["Id"] for r in files if r["Interval"] == "Hourly"}
    assert set(labels["elf"]["bad_file_ids"]) <= hourly
    _write_jsonl(work / "objects" / "EventLogFile.jsonl", [r for r in files if r["Id"] not in hourly])
    with served(work, tmp_path) as (org, server):
        out = audit_ok(make_config(tmp_path, work, server), window(labels))
    # the BAD_RECORD file was an Hourly one: it is gone with them
    assert_matches(out, labels, bad_records=labels["data_quality"]["bad_records"]
                   - len(labels["elf"]["bad_file_ids"]))
    assert not set(downloads(org)) & {to_18(i) for i in hourly}


def test_api_version_without_interval_and_sequence(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    """An org answering API 36.0 at most: EventLogFile has no Interval and no Sequence."""
    work = copy(snap, tmp_path)
    org_json = json.loads((work / "org.json").read_text())
    org_json["api_version"] = "36.0"
    (work / "org.json").write_text(json.dumps(org_json))
    since, until = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in window(labels))
    with served(work, tmp_path) as (org, server):
        config = make_config(tmp_path, work, server)
        text = config.read_text()
        assert 'api_version = "36.0"' in text
        cfg = load_config(config)
        assert cfg.salesforce.api_version == "36.0"
        out = run_audit(cfg, since=since, until=until).output
    assert_matches(out, labels)
    paths = [e.path for e in api_calls(org)]
    assert paths and all(p.startswith("/services/data/v36.0/") for p in paths)
    elf_soql = [e.params["q"] for e in org.request_log.matching("/query") if "FROM EventLogFile" in e.params.get("q", "")]
    assert elf_soql and not any("Interval" in q or "Sequence" in q for q in elf_soql)
    assert {r[0] for r in query(tmp_path / "store.db", "SELECT DISTINCT interval FROM elf_files")} == {None}


def test_api_version_36_from_the_command_line(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    work = copy(snap, tmp_path)
    org_json = json.loads((work / "org.json").read_text())
    org_json["api_version"] = "36.0"
    (work / "org.json").write_text(json.dumps(org_json))
    with served(work, tmp_path) as (_org, server):
        out = audit_ok(make_config(tmp_path, work, server), window(labels))
    assert_matches(out, labels)


# -------------------------------------------------------------------------- 13. sandbox


def test_sandbox_org_halves_the_cost(snap: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    generate_snapshot(sandbox, seed=21, actions=300, days=2, start=date(2026, 10, 1), sandbox=True)
    sb_labels = labels_of(sandbox)
    # the labels already reflect it: same usage, half the dollars
    assert sb_labels["is_sandbox"] is True
    assert sb_labels["totals"]["awu"] == labels["totals"]["awu"]
    assert sb_labels["totals"]["credits"] == labels["totals"]["credits"]
    assert sb_labels["totals"]["cost_usd"] == pytest.approx(labels["totals"]["cost_usd"] / 2)
    assert sb_labels["pricing"]["flex_usd"] == pytest.approx(labels["pricing"]["flex_usd"] / 2)
    assert sb_labels["pricing"]["per_user_usd"] == pytest.approx(labels["pricing"]["per_user_usd"])
    with served(sandbox, tmp_path) as (_org, server):
        out = audit_ok(make_config(tmp_path, sandbox, server), window(sb_labels))
    assert out["is_sandbox"] is True
    assert_matches(out, sb_labels)
    assert query(tmp_path / "store.db", "SELECT is_sandbox FROM runs") == [(1,)]


# ------------------------------- 14. no window: the last initial_days, then a backfill


def test_run_without_window_then_backfill_leaves_the_cursor(live: Path, tmp_path: Path) -> None:
    labels = labels_of(live)
    since = labels["window"]["since"]
    db = tmp_path / "store.db"
    with served(live, tmp_path) as (org, server):
        config = make_config(tmp_path, live, server, extra=FAST + "initial_days = 10\n")
        first = audit_ok(config)
        start, end = first["window"]["start"], first["window"]["end"]
        today = datetime.now(timezone.utc).date()
        assert start == f"{today - timedelta(days=10)}T00:00:00.000Z" == _iso_z(since)
        assert first["totals"] == pytest.approx(expected_totals(labels, start, end))
        assert first["totals"]["actions"] > labels["totals"]["actions"]  # the days after, too
        awi_before, elf_before = sync_state(db, "agentworkitem"), sync_state(db, "eventlogfile")
        assert awi_before["cursor"] and elf_before["created_cursor"]

        # right after: nothing to fetch
        org.request_log.clear()
        again = audit_ok(config)
        assert downloads(org) == [] and records_served(org, "AgentWorkItem") == 0
        assert again["sync"]["records"] == 0 and again["sync"]["elf_files_downloaded"] == 0
        assert again["window"]["start"] == start and again["totals"] == first["totals"]

        # a backfill of the days before: fetched, audited, and the cursors stay put
        older = (f"{today - timedelta(days=13)}", f"{today - timedelta(days=10)}")
        back = audit_ok(config, older)
        lo, hi = f"{older[0]}T00:00:00.000Z", f"{older[1]}T00:00:00.000Z"
        assert back["window"] == {"start": lo, "end": hi}
        expected = expected_totals(labels, lo, hi)
        assert expected["actions"] > 0
        assert back["totals"] == pytest.approx(expected)
        awi_after, elf_after = sync_state(db, "agentworkitem"), sync_state(db, "eventlogfile")
        assert awi_after["cursor"] == awi_before["cursor"]
        assert awi_after["since_bound"] == awi_before["since_bound"]
        assert elf_after["created_cursor"] == elf_before["created_cursor"]
        assert awi_after["covered"] == [[lo, awi_before["since_bound"]]]

        # and the nightly run after the backfill still fetches nothing
        org.request_log.clear()
        last = audit_ok(config)
        assert downloads(org) == [] and last["sync"]["records"] == 0
        assert last["totals"] == first["totals"]


@pytest.mark.parametrize("days_ago", [10, 11, 12])
def test_rerun_of_a_window_straddling_the_initial_bound_downloads_nothing(
    tmp_path: Path, days_ago: int
) -> None:
    """Log files created just before the first run's initial bound belong to the backfill,
    not to the nightly settle re-check: a second run of the same window downloads none."""
    start = datetime.now(timezone.utc).date() - timedelta(days=days_ago)
    snap = tmp_path / "org"
    generate_snapshot(snap, seed=4, actions=300, days=3, start=start)
    snap_labels = labels_of(snap)
    with served(snap, tmp_path) as (org, server):
        config = make_config(tmp_path, snap, server)
        first = audit_ok(config, window(snap_labels))
        assert first["sync"]["elf_files_downloaded"] > 0
        org.request_log.clear()
        second = audit_ok(config, window(snap_labels))
    assert second["sync"]["elf_files_downloaded"] == 0
    assert not org.request_log.matching("/LogFile")
    assert second["totals"] == first["totals"]
