"""The mock org's SOQL engine on a big table, as a ratio to plain Python doing the same
filter, sort and first page over the same rows (run by hand, never in CI).

Usage: python benchmarks/soql.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from connector.mock.org import KNOWN_FIELDS
from connector.mock.sobjects import COMMON_FIELDS
from connector.mock.soql import Table, run_query

QUERY = (
    "SELECT Id, SystemModstamp, ActionInput__c FROM AgentWorkItem "
    "WHERE SystemModstamp >= 2026-10-01T05:00:00Z AND Status__c != 'Error' "
    "ORDER BY SystemModstamp, Id"
)


def records(n: int) -> list[dict[str, Any]]:
    stamps = [f"2026-10-01T{h:02d}:{m:02d}:{s:02d}.000+0000"
              for h in range(24) for m in range(60) for s in range(60)]  # fmt: skip
    return [
        {
            "Id": f"0BzPERF{i:08d}AAA",
            "CreatedDate": stamps[i % len(stamps)],
            "SystemModstamp": stamps[(i * 7) % 50000],
            "Status__c": "Error" if i % 7 == 0 else "Success",
            "TokensConsumed__c": float(i % 30000),
            "ActionInput__c": "{}",
        }
        for i in range(n)
    ]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    rows = records(parser.parse_args().rows)
    fields = {**COMMON_FIELDS, **KNOWN_FIELDS.get("AgentWorkItem", {})}
    tables = {"agentworkitem": Table.build("AgentWorkItem", rows, fields)}

    def plain() -> None:  # the baseline: the same work with no parser, planner or typing
        kept = [r for r in rows
                if r["SystemModstamp"] >= "2026-10-01T05:00:00" and r["Status__c"] != "Error"]
        kept.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
        _ = [{k: r[k] for k in ("Id", "SystemModstamp", "ActionInput__c")} for r in kept[:2000]]

    def mock() -> None:
        run_query(QUERY, tables).render(0, 2000, "62.0")

    base, soql = timed(plain), timed(mock)
    print(f"baseline  plain Python filter+sort+page  {base:7.3f} s   1.00x  ({len(rows):,} rows)")
    print(f"mock SOQL same query, first page        {soql:7.3f} s  {soql / base:5.2f}x")


if __name__ == "__main__":
    main()
