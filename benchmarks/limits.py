"""Speed limits once asserted in the test suite, checked by hand (never in CI): tests
assert behaviour, a busy CI machine must not fail them for being slow.

- store: upserting 100,000 actions takes under 10 s;
- mock SOQL: filtering and sorting 200,000 AgentWorkItem rows and rendering the first
  page takes under 1.5 s.

Usage: python benchmarks/limits.py   (exit 1 when a limit is exceeded)
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audit.store import Store
from connector.mock.org import COMMON_FIELDS, KNOWN_FIELDS
from connector.mock.soql import Table, run_query


def _action(i: int) -> dict[str, Any]:
    day = f"2026-10-{1 + i % 28:02d}"
    return {
        "id": f"a{i:07d}", "session_id": f"s{i // 10}", "agent_name": "Agent",
        "action_name": "GetOrderHistory", "action_type": "Apex", "channel": "Text",
        "status": "Success", "tokens": 1000 + i, "reported_awu": 1.0,
        "action_input": '{"order": 1}', "started_at": f"{day}T12:00:00.000Z", "billable": True,
        "units": 1, "multiplier": 1.0, "awu": 1.0, "credits": 20.0, "cost_usd": 0.1, "day": day,
    }


def store_upsert_100k() -> Callable[[], None]:
    rows = [_action(i) for i in range(100_000)]
    tmp = Path(tempfile.mkdtemp(prefix="awu-bench-"))

    def run() -> None:
        with Store.open(tmp / "audit.db") as store:
            store.replace_actions(("2026-10-01T00:00:00.000Z", "2026-11-01T00:00:00.000Z"), rows)
            assert store.count("actions") == 100_000

    return run


def soql_200k_rows() -> Callable[[], None]:
    stamps = [f"2026-10-01T{h:02d}:{m:02d}:{s:02d}.000+0000"
              for h in range(24) for m in range(60) for s in range(60)]
    records = [{
        "Id": f"0BzPERF{i:08d}AAA",
        "CreatedDate": stamps[i % len(stamps)],
        "SystemModstamp": stamps[(i * 7) % 50000],
        "Status__c": "Error" if i % 7 == 0 else "Success",
        "TokensConsumed__c": float(i % 30000),
        "ActionInput__c": "{}",
    } for i in range(200_000)]
    fields = {**COMMON_FIELDS, **KNOWN_FIELDS.get("AgentWorkItem", {})}
    tables = {"agentworkitem": Table.build("AgentWorkItem", records, fields)}

    def run() -> None:
        result = run_query("SELECT Id, SystemModstamp, ActionInput__c FROM AgentWorkItem "
                           "WHERE SystemModstamp >= 2026-10-01T05:00:00Z AND Status__c != 'Error' "
                           "ORDER BY SystemModstamp, Id", tables)
        result.render(0, 2000, "62.0")

    return run


LIMITS: list[tuple[str, Callable[[], Callable[[], None]], float]] = [
    ("store: upsert 100k actions", store_upsert_100k, 10.0),
    ("mock SOQL: 200k rows filter+sort+first page", soql_200k_rows, 1.5),
]


def main() -> int:
    failed = 0
    for name, setup, limit in LIMITS:
        run = setup()  # building the data is not timed
        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
        ok = elapsed < limit
        failed += not ok
        print(f"{'ok  ' if ok else 'SLOW'} {name}: {elapsed:.2f} s (limit {limit:g} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
