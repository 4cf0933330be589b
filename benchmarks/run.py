"""awu-audit benchmarks: run by hand (`make bench`), never in CI.

Each figure is printed with its ratio to a baseline measured in the same run on the same
data, so results compare across machines:

- sync+audit: the whole `run_audit` over the HTTPS mock org, against the baseline of just
  reading the snapshot's files from disk (JSON lines + CSV) — how much the pipeline costs
  over touching the data once;
- rules: `evaluate()` (all eight findings) against recomputing every action's AWU alone —
  what finding the waste costs over the arithmetic floor;
- re-run: a second `run_audit` right after the first (nothing to download) against the first;
- store writes: `replace_actions` of N actions and `commit` of a page of N AgentWorkItem
  records, each against a raw `executemany` of the same tuples into the same table of a
  fresh store file, in one transaction — what the store's write path costs over SQLite's.

Usage: python benchmarks/run.py [--actions N] [--days D] [--store-rows N]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, cast

from audit.config import load_config
from audit.demo import write_mock_config
from audit.engine.awu import recompute_awu
from audit.engine.rules import evaluate
from audit.engine.sources.core import reconcile
from audit.pipeline import run_audit
from audit.store import Store
from connector.sink import AwiRecord, Page
from fixtures.generator import generate_snapshot


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def read_snapshot(snap: Path) -> int:
    n = 0
    for path in (snap / "objects").glob("*.jsonl"):
        with path.open() as fh:
            n += sum(1 for line in fh if json.loads(line))
    for path in (snap / "logfiles").glob("*.csv"):
        with path.open(newline="") as fh:
            n += sum(1 for _ in csv.reader(fh))
    return n


def raw_executemany(path: Path, table: str, rows: Sequence[Mapping[str, Any]]) -> float:
    """Seconds to insert `rows`, already tuples, into `table` of a fresh store file with one
    prepared statement in one transaction (the store's own journal and sync settings)."""
    Store.open(path).close()  # the schema, WAL
    columns = list(rows[0])
    tuples = [tuple(r[c] for c in columns) for r in rows]
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous = NORMAL")

        def insert() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, tuples)
            conn.execute("COMMIT")

        seconds, _ = timed(insert)
    return seconds


def bench_action(i: int) -> dict[str, Any]:
    day = f"2026-10-{1 + i % 28:02d}"
    return {
        "id": f"a{i:07d}", "session_id": f"s{i // 10}", "agent_name": "Agent",
        "action_name": "GetOrderHistory", "action_type": "Apex", "channel": "Text",
        "status": "Success", "tokens": 1000 + i, "reported_awu": 1.0,
        "action_input": '{"order": 1}', "started_at": f"{day}T12:00:00.000Z", "billable": 1,
        "units": 1, "multiplier": 1.0, "awu": 1.0, "credits": 20.0, "cost_usd": 0.1, "day": day,
    }  # fmt: skip


def bench_awi(i: int) -> AwiRecord:
    row: dict[str, Any] = dict.fromkeys(AwiRecord.__annotations__)
    stamp = f"2026-10-{1 + i % 28:02d}T12:00:00.000Z"
    row.update(id=f"w{i:07d}", session_id=f"s{i // 10}", agent_name="Agent", tokens=1000 + i,
               started_at=stamp, created_date=stamp, system_modstamp=stamp)  # fmt: skip
    return cast(AwiRecord, row)


def store_write_figures(root: Path, n: int) -> None:
    """`replace_actions` and `commit` of `n` rows against a raw executemany of the same rows."""
    actions = [bench_action(i) for i in range(n)]
    t_raw = raw_executemany(root / "raw-actions.db", "actions", actions)
    with Store.open(root / "store-actions.db") as store:
        window = ("2026-10-01T00:00:00.000Z", "2026-11-01T00:00:00.000Z")
        t_store, _ = timed(lambda: store.replace_actions(window, actions))
        assert store.count("actions") == n
    print(f"baseline  raw executemany, actions  {t_raw:8.2f} s   1.00x ({n:,} rows)")
    print(f"store: replace_actions              {t_store:8.2f} s  {t_store / t_raw:5.2f}x")

    records = [bench_awi(i) for i in range(n)]
    t_raw = raw_executemany(root / "raw-awi.db", "awi_records", records)
    with Store.open(root / "store-awi.db") as store:
        page = Page(source="bench", run_id="r1", state={"cursor": "x"}, awi_records=records)
        t_store, _ = timed(lambda: store.commit(page))
        assert store.count("awi_records") == n
    print(f"baseline  raw executemany, records  {t_raw:8.2f} s   1.00x ({n:,} rows)")
    print(f"store: commit(Page) of the records  {t_store:8.2f} s  {t_store / t_raw:5.2f}x")


@contextlib.contextmanager
def mock_org_process(snap: Path, tls_dir: Path) -> Iterator[str]:
    """`audit mock-org` in a subprocess on a free port; yields its URL once ca.pem exists."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "audit.cli",
            "mock-org",
            "--data",
            str(snap),
            "--port",
            str(port),
            "--tls-dir",
            str(tls_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tls_dir / "ca.pem").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mock org did not start: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            time.sleep(0.05)
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--actions", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--store-rows", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="awu-bench-") as tmp:
        root = Path(tmp)
        store_write_figures(root, args.store_rows)
        snap = root / "org"
        t_gen, labels = timed(
            lambda: generate_snapshot(
                snap, seed=11, actions=args.actions, days=args.days, start=date(2026, 9, 1)
            )
        )
        t_read, rows = timed(lambda: read_snapshot(snap))
        print(
            f"snapshot: {labels['totals']['actions']:,} actions, {rows:,} rows on disk; "
            f"generated in {t_gen:.2f} s"
        )
        print(f"baseline  read snapshot files      {t_read:8.2f} s   1.00x")

        # the mock org runs in its own process, as Salesforce would: the figures below are
        # the auditor's own cost, not the mock's
        with mock_org_process(snap, root / "tls") as url:
            cfg = load_config(
                write_mock_config(
                    root / "bench.toml",
                    snapshot=snap,
                    url=url,
                    ca_pem=root / "tls" / "ca.pem",
                    store=root / "bench.db",
                )
            )
            since = datetime.fromisoformat(labels["window"]["since"].replace("Z", "+00:00"))
            until = datetime.fromisoformat(labels["window"]["until"].replace("Z", "+00:00"))
            cpu0 = time.process_time()
            t_run, result = timed(lambda: run_audit(cfg, since=since, until=until))
            cpu_run = time.process_time() - cpu0
            t_rerun, _ = timed(lambda: run_audit(cfg, since=since, until=until))
        assert result.output["totals"]["actions"] == labels["totals"]["actions"]
        n = result.output["totals"]["actions"]
        print(
            f"sync+audit over HTTPS mock          {t_run:8.2f} s  {t_run / t_read:5.2f}x "
            f"({n / t_run:,.0f} actions/s; auditor CPU {cpu_run:.2f} s = {cpu_run / t_read:.2f}x)"
        )
        print(
            f"re-run, nothing new                 {t_rerun:8.2f} s  "
            f"{t_rerun / t_run:5.2f}x of first run"
        )

        with Store.open(root / "bench.db") as store:
            awi_rows, elf_rows = store.core_rows((since, until))
        actions = reconcile(awi_rows.values(), elf_rows, window=(since, until))
        t_floor, _ = timed(lambda: [recompute_awu(a, cfg.rules, cfg.pricing) for a in actions])
        t_rules, res = timed(lambda: evaluate(actions, cfg.rules, cfg.pricing))
        print(f"baseline  recompute AWU only        {t_floor:8.3f} s   1.00x")
        print(
            f"rules: all eight findings           {t_rules:8.3f} s  {t_rules / t_floor:5.2f}x "
            f"({len(res.findings):,} findings)"
        )
    print(f"done at {datetime.now(timezone.utc):%Y-%m-%d %H:%M}Z")


if __name__ == "__main__":
    main()
