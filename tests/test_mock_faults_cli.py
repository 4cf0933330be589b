"""The mutation faults switched on from the command line: `audit mock-org --faults …` runs
in its own process and the real `audit run --json` runs twice against it. Expected values
come from the snapshot and its labels, never from the code under test."""

from __future__ import annotations

import csv
import io
import json
import os
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from audit.demo import write_mock_config
from connector.ids import to_18
from fixtures.generator import generate_snapshot
from tests.helpers import REPO, invoke, labels_of, wait_until

FAST = "[sync]\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\n"
START_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small org a month old: older than a first run's initial 7 days, so a windowed run
    backfills it whole, and a run without a window reaches it with `initial_days = 60`."""
    out = tmp_path_factory.mktemp("faults-cli") / "org"
    start = datetime.now(timezone.utc).date() - timedelta(days=30)
    generate_snapshot(out, seed=31, actions=300, days=2, start=start)
    return out


# ------------------------------------------------------------------------------ helpers


@contextmanager
def mock_org_process(snapshot: Path, tmp: Path, *args: str) -> Iterator[tuple[str, Path]]:
    """`audit mock-org` in a subprocess on a port the OS picks; yields (url, ca.pem) once it
    says it is serving (its first line on stdout, printed after the port accepts)."""
    tls, log_path = tmp / "tls", tmp / "mock-org.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "audit.cli", "mock-org", "--data", str(snapshot), "--port",
             "0", "--tls-dir", str(tls), *args],
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO,
            env={k: v for k, v in os.environ.items() if k != "AWU_AUDIT_DEBUG"},
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
            assert ready, "mock org never said it was serving"
            line = proc.stdout.readline().strip()
            assert line.startswith("mock org serving ") and " at https://127.0.0.1:" in line, (
                line, log_path.read_text())
            url = line.split(" at ", 1)[1].split(" ", 1)[0]
            assert (tls / "ca.pem").exists()
            yield url, tls / "ca.pem"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()  # type: ignore[union-attr]


def config_for(tmp: Path, snapshot: Path, url: str, ca_pem: Path, extra: str = "") -> Path:
    return write_mock_config(tmp / "audit.toml", snapshot=snapshot, url=url, ca_pem=ca_pem,
                             store=tmp / "store.db", extra=FAST + extra)


def audit_ok(config: Path, win: tuple[str, str] | None = None) -> dict[str, Any]:
    args = ["run", "--config", str(config), "--json"]
    if win is not None:
        args += ["--since", win[0], "--until", win[1]]
    proc = invoke(*args)
    assert proc.exit_code == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def next_second() -> None:
    """Wait until the wall clock is in a later whole second: records the mock (its own
    process, on the real clock) created during a run are then older than the next run's
    (whole-second) query bound. A bounded poll on the clock the two processes share."""
    this_second = int(time.time())
    wait_until(lambda: int(time.time()) > this_second, timeout=5, what="the next second")


def window(labels: dict[str, Any]) -> tuple[str, str]:
    return labels["window"]["since"], labels["window"]["until"]


def in_window(log_date: str, labels: dict[str, Any]) -> bool:
    """Whether a log file's day (LogDate is a midnight) lies in the labels' window."""
    since, until = window(labels)
    return since[:10] <= log_date[:10] < until[:10]


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def count(db: Path, table: str) -> int:
    return int(query(db, f"SELECT count(*) FROM {table}")[0][0])


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8")))
    header = next(reader)
    return header, [dict(zip(header, row, strict=False)) for row in reader if row]


def finding_counts(out: dict[str, Any]) -> dict[str, int]:
    return {k: v["count"] for k, v in out["findings"].items()}


# ------------------------------------------------------- 1. a log file re-published


def _file_to_republish(snap: Path, labels: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """An in-window Daily file whose rows all hold their final values and whose first row
    with a WORK_ITEM_ID is a one-row action with no finding: the fault changes that row
    and appends a copy of it, so the expected change is known exactly."""
    files = jsonl(snap / "objects" / "EventLogFile.jsonl")
    good = [f for f in files if f["Id"] not in labels["elf"]["bad_file_ids"]]
    best: dict[str, tuple[tuple[str, int, str], dict[str, str]]] = {}
    for f in good:
        order = (f["CreatedDate"], f.get("Sequence", 0), f["Id"])
        for row in csv_rows(snap / "logfiles" / f"{f['Id']}.csv")[1]:
            if row["REQUEST_ID"] not in best or best[row["REQUEST_ID"]][0] < order:
                best[row["REQUEST_ID"]] = (order, row)
    rows_per_action: dict[str, int] = {}
    for _, row in best.values():
        key = to_18(row["WORK_ITEM_ID"]) if row["WORK_ITEM_ID"] else row["REQUEST_ID"]
        rows_per_action[key or ""] = rows_per_action.get(key or "", 0) + 1
    flagged = {k for v in labels["findings"].values() for k in v["keys"]}
    quiet = {a["key"] for a in labels["actions"] if a["source"] == "both" and a["in_window"]
             and a["key"] not in flagged and rows_per_action.get(a["key"]) == 1}
    for f in sorted(good, key=lambda f: (f["LogDate"], f["Id"])):
        if f["Interval"] != "Daily" or not in_window(f["LogDate"], labels):
            continue
        rows = csv_rows(snap / "logfiles" / f"{f['Id']}.csv")[1]
        if any(best[r["REQUEST_ID"]][1] != r for r in rows):
            continue  # a later copy of some row wins: a re-publish would change it too
        first = next(r for r in rows if r["WORK_ITEM_ID"])
        if to_18(first["WORK_ITEM_ID"]) in quiet:
            return f, first
    raise AssertionError("no Daily file fits; pick another seed")


def test_republish_after_from_the_command_line(snap: Path, tmp_path: Path) -> None:
    labels = labels_of(snap)
    daily, row = _file_to_republish(snap, labels)
    action = next(a for a in labels["actions"] if a["key"] == to_18(row["WORK_ITEM_ID"]))
    db = tmp_path / "store.db"
    with mock_org_process(snap, tmp_path, "--faults",
                          f"republish_after=1,republish_id={daily['Id']}") as (url, ca):
        config = config_for(tmp_path, snap, url, ca)
        first = audit_ok(config, window(labels))
        next_second()
        second = audit_ok(config, window(labels))

    assert {k: first["totals"][k] for k in labels["totals"]} == pytest.approx(labels["totals"])
    assert finding_counts(first) == {k: v["count"] for k, v in labels["findings"].items()}
    # the second run downloads exactly the re-published file, and no record
    assert second["sync"]["elf_files_downloaded"] == 1 and second["sync"]["records"] == 0
    snapshot_ids = {f["Id"] for f in jsonl(snap / "objects" / "EventLogFile.jsonl")}
    [(new_id, log_date, rows)] = [r for r in query(db, "SELECT id, log_date, rows FROM elf_files")
                                  if r[0] not in snapshot_ids]
    assert log_date == daily["LogDate"].replace("+0000", "Z")
    assert rows == len(csv_rows(snap / "logfiles" / f"{daily['Id']}.csv")[1]) + 1

    # the changed row: tokens +1000 in the log, so the sources now disagree on its action
    [(tokens, file_id)] = query(db, "SELECT tokens, file_id FROM elf_events WHERE request_id = ?",
                                row["REQUEST_ID"])
    assert (tokens, file_id) == (int(row["TOTAL_TOKENS"]) + 1000, new_id)
    # the new row: one more action, in the logs only
    original = {r["REQUEST_ID"] for r in csv_rows(snap / "logfiles" / f"{daily['Id']}.csv")[1]}
    added = {r[0] for r in query(db, "SELECT request_id FROM elf_events WHERE file_id = ?", new_id)}
    [request_id] = added - original
    assert request_id.startswith("4MockRepublish")
    [(work_item, session)] = query(db, "SELECT work_item_id, session_id FROM elf_events "
                                       "WHERE request_id = ?", request_id)
    assert work_item is None and session != row["SESSION_KEY"]
    delta = {k: second["totals"][k] - first["totals"][k] for k in
             ("actions", "billable_actions", "tokens", "awu", "reported_awu")}
    assert delta == pytest.approx({"actions": 1, "billable_actions": int(action["billable"]),
                                   "tokens": int(row["TOTAL_TOKENS"]), "awu": action["awu"],
                                   "reported_awu": float(row["AWU_COUNT"])})
    expected = finding_counts(first)
    expected["SOURCE_GAP"] += 2  # the changed action, and the log-only one
    assert finding_counts(second) == expected


# --------------------------------------------------------- 2. Hourly files arriving late


def test_late_hourly_from_the_command_line(snap: Path, tmp_path: Path) -> None:
    labels = labels_of(snap)
    files = jsonl(snap / "objects" / "EventLogFile.jsonl")
    hourly = {f["Id"] for f in files if f["Interval"] == "Hourly"}
    db = tmp_path / "store.db"
    # the first run lists EventLogFiles twice (its window, then what is new): both miss them
    with mock_org_process(snap, tmp_path, "--faults", "late_hourly=2") as (url, ca):
        config = config_for(tmp_path, snap, url, ca)
        first = audit_ok(config, window(labels))
        stored_first = {r[0] for r in query(db, "SELECT id FROM elf_files")}
        events_first = count(db, "elf_events")
        next_second()
        second = audit_ok(config, window(labels))

    assert hourly and not stored_first & hourly
    assert stored_first == {f["Id"] for f in files if f["Interval"] == "Daily"
                            and in_window(f["LogDate"], labels)}
    # every late file arrives with today's CreatedDate: the second run takes them all in
    assert second["sync"]["elf_files_downloaded"] == len(hourly) and second["sync"]["records"] == 0
    assert {r[0] for r in query(db, "SELECT id FROM elf_files WHERE interval = 'Hourly'")} == hourly
    created = {r[0] for r in query(db, "SELECT created_date FROM elf_files WHERE interval = 'Hourly'")}
    assert min(created) > labels["window"]["until"]
    # the window's Daily files already held its rows: there the Hourly copies replace rows
    # by REQUEST_ID, never add; the other days' Hourly rows come in beside them
    def request_ids(file_ids: set[str]) -> set[str]:
        return {r["REQUEST_ID"] for i in file_ids - set(labels["elf"]["bad_file_ids"])
                for r in csv_rows(snap / "logfiles" / f"{i}.csv")[1]}

    stored = {r[0] for r in query(db, "SELECT request_id FROM elf_events")}
    assert stored == request_ids(stored_first) | request_ids(hourly)
    assert len(stored) == count(db, "elf_events") > events_first == len(request_ids(stored_first))
    assert {k: first["totals"][k] for k in labels["totals"]} == pytest.approx(labels["totals"])

    # a late file carries today's CreatedDate, so its copy of a row wins. Where it differs
    # from the Daily copy (the generator's stale rows, which a re-published Daily corrected
    # before the late files arrived) the log-only actions' totals move by exactly that
    by_id = {f["Id"]: f for f in files}
    daily: dict[str, tuple[tuple[str, int, str], dict[str, str]]] = {}
    for i in stored_first:
        f = by_id[i]
        for r in csv_rows(snap / "logfiles" / f"{i}.csv")[1]:
            order = (f["CreatedDate"], f.get("Sequence", 0), i)
            if r["REQUEST_ID"] not in daily or daily[r["REQUEST_ID"]][0] < order:
                daily[r["REQUEST_ID"]] = (order, r)
    log_only = {a["key"] for a in labels["actions"] if a["source"] == "elf" and a["in_window"]}
    stale = [(daily[r["REQUEST_ID"]][1], r)
             for i in hourly - set(labels["elf"]["bad_file_ids"])
             for r in csv_rows(snap / "logfiles" / f"{i}.csv")[1]
             if r["REQUEST_ID"] in daily
             and (to_18(r["WORK_ITEM_ID"]) if r["WORK_ITEM_ID"] else r["REQUEST_ID"]) in log_only]
    tokens = sum(int(h["TOTAL_TOKENS"]) - int(d["TOTAL_TOKENS"]) for d, h in stale)
    awu = sum(float(h["AWU_COUNT"]) - float(d["AWU_COUNT"]) for d, h in stale)
    assert second["totals"]["actions"] == labels["totals"]["actions"]
    assert second["totals"]["tokens"] == labels["totals"]["tokens"] + tokens
    assert second["totals"]["reported_awu"] == pytest.approx(labels["totals"]["reported_awu"] + awu)


# ------------------------------------------- 3. rows inserted at the edge of a query page


def test_insert_at_page_edge_from_the_command_line(snap: Path, tmp_path: Path) -> None:
    work = tmp_path / "org"
    shutil.copytree(snap, work)
    path = work / "objects" / "AgentWorkItem.jsonl"
    records = sorted(jsonl(path), key=lambda r: (r["SystemModstamp"], r["Id"]))
    n, page = len(records), len(records) - 20
    edge_ts = records[-1]["SystemModstamp"]
    for r in records[page - 5:]:  # the first page ends 5 rows into a run of equal stamps
        r["SystemModstamp"] = edge_ts
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    inserted = 4
    db = tmp_path / "store.db"
    with mock_org_process(work, tmp_path, "--page-size", str(page), "--faults",
                          f"insert_at_page_edge={inserted}") as (url, ca):
        config = config_for(tmp_path, work, url, ca, extra="initial_days = 60\n")
        first = audit_ok(config)
        assert first["sync"]["records"] == n and count(db, "awi_records") == n
        second = audit_ok(config)
        third = audit_ok(config)

    assert second["sync"]["records"] == inserted  # fetched by the next run …
    assert third["sync"]["records"] == 0  # … and never again
    assert count(db, "awi_records") == n + inserted
    new = query(db, "SELECT id, system_modstamp, session_id FROM awi_records WHERE id NOT IN "
                    f"({','.join('?' * n)})", *(to_18(r["Id"]) for r in records))
    assert len(new) == inserted
    assert all(i > max(to_18(r["Id"]) or "" for r in records) for i, _, _ in new)
    assert {ts for _, ts, _ in new} == {edge_ts.replace("+0000", "Z")}
    assert len({s for _, _, s in new}) == inserted
    assert second["totals"]["actions"] == first["totals"]["actions"] + inserted
