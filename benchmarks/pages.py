"""What one SOQL page costs the client, by path — run by hand, never in CI.

Pages one AgentWorkItem query of a cached benchmark org (`benchmarks/scale.py` generates
them), served by `audit mock-org` in its own process, through

- simple-salesforce: `Salesforce.query` then `query_more` on each nextRecordsUrl (requests,
  an OrderedDict per record), the path pages took before they moved to httpx;
- `SalesforceClient.query_pages`: httpx and `json.loads` under the connector's transport
  policy, the path every query takes now;

alternating, and prints per page this process's CPU time (what the run pays) and the wall
time (the mock's share included).

Usage: python benchmarks/pages.py [--actions 100000] [--rounds 3] [--seed 11] [--days 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import mock_org, snapshot, write_config

SOQL = (
    "SELECT Id, SessionId__c, AgentId__c, AgentName__c, ActionName__c, ActionType__c, "
    "Channel__c, Status__c, ErrorCode__c, PromptTokens__c, CompletionTokens__c, "
    "TokensConsumed__c, AwuCount__c, ActionInput__c, UserId__c, CaseId__c, StartTime__c, "
    "CreatedDate, SystemModstamp FROM AgentWorkItem ORDER BY SystemModstamp, Id"
)


def main() -> None:
    import requests
    from simple_salesforce.api import Salesforce

    from audit.config import load_config
    from connector.client import SalesforceClient

    ap = argparse.ArgumentParser()
    ap.add_argument("--actions", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--days", type=int, default=7)
    args = ap.parse_args()
    cache = Path(os.environ.get("AWU_BENCH_CACHE", Path.home() / ".cache/awu-audit/bench"))
    snap = snapshot(cache, args.seed, args.actions, args.days)
    with (
        tempfile.TemporaryDirectory(prefix="awu-pages-") as tmp,
        mock_org(snap, Path(tmp) / "tls") as url,
    ):
        cfg_path = write_config(
            Path(tmp) / "b.toml", snap, url, Path(tmp) / "tls" / "ca.pem", Path(tmp) / "b.db"
        )
        conn = load_config(cfg_path).connector
        with SalesforceClient(conn) as client:
            token = client.connect()
            session = requests.Session()
            session.trust_env = False  # SPEC §10: else the environment's CA bundle wins
            session.verify = str(conn.salesforce.ca_bundle)
            sf = Salesforce(
                instance_url=token.instance_url,
                session_id=token.access_token,
                session=session,
                version=conn.salesforce.api_version,
            )

            def simple_salesforce() -> tuple[int, int]:
                pages = rows = 0
                page = sf.query(SOQL)
                while True:
                    pages, rows = pages + 1, rows + len(page["records"])
                    if page["done"]:
                        return pages, rows
                    page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)

            def httpx_pages() -> tuple[int, int]:
                pages = rows = 0
                for page in client.query_pages(SOQL):
                    pages, rows = pages + 1, rows + len(page)
                return pages, rows

            paths: dict[str, Callable[[], tuple[int, int]]] = {
                "simple-salesforce": simple_salesforce,
                "httpx (query_pages)": httpx_pages,
            }
            cpu: dict[str, list[float]] = {name: [] for name in paths}
            wall: dict[str, list[float]] = {name: [] for name in paths}
            shape: dict[str, tuple[int, int]] = {}
            for _ in range(args.rounds):
                for name, fetch in paths.items():
                    c0, w0 = time.process_time(), time.perf_counter()
                    pages, rows = shape[name] = fetch()
                    cpu[name].append((time.process_time() - c0) / pages * 1e6)
                    wall[name].append((time.perf_counter() - w0) / pages * 1e6)
    load = os.getloadavg()[0]
    print(f"{args.actions:,}-action org, {args.rounds} rounds alternating; load {load:.2f}")
    for name in paths:
        pages, rows = shape[name]
        print(
            f"  {name:<20} {pages} pages, {rows:,} rows: CPU per page "
            f"{statistics.median(cpu[name]):,.0f} us (each round: "
            f"{', '.join(f'{x:,.0f}' for x in cpu[name])}), wall per page "
            f"{statistics.median(wall[name]):,.0f} us"
        )


if __name__ == "__main__":
    main()
