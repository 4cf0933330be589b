"""Same input, same output: a fixed snapshot audited by the code on PYTHONPATH gives the
same `audit run --json` (run_id aside), the same stored actions, findings and daily usage,
and the same report analysis and counts kept with each run as a saved reference. Run it
once on the code before a change (`--save`), once after (`--against`): a performance
change must not move a single number.

The org: seed 3, 20,000 actions over 7 days, served by `audit mock-org` with a Daily file
re-published after the 60th download (so the second run has a changed day to redo).

`--kinds` audits with those sources only (`[source] kinds`): `awi` (AgentWorkItem only),
`elf` (EventLogFile only) or `both` (the default); a reference holds the configurations it
was saved with, and `--against` runs those.

Usage: python benchmarks/same_json.py --save before.json [--kinds both,awi,elf]
       python benchmarks/same_json.py --against before.json
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import mock_org, write_config

PY = sys.executable
KINDS = {
    "both": '["agentworkitem", "eventlogfile"]',
    "awi": '["agentworkitem"]',
    "elf": '["eventlogfile"]',
}
TABLES = {
    "actions": "SELECT * FROM actions ORDER BY id",
    "findings": "SELECT id, kind, key, severity, status, session_id, agent, action_name, "
    "action_ids, started_at, wasted_awu, wasted_usd, explanation, detail FROM findings "
    "ORDER BY id",
    "daily_usage": "SELECT * FROM daily_usage ORDER BY day, agent, channel",
}


def digest(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        out: dict[str, Any] = {}
        for name, sql in TABLES.items():
            rows = conn.execute(sql).fetchall()
            out[name] = {"rows": len(rows), "sha256": hashlib.sha256(repr(rows).encode())
                         .hexdigest()}  # fmt: skip
        # what the report shows beyond --json, kept with each run (its `analysis`), and the
        # counts the run row keeps
        runs = conn.execute(
            "SELECT actions, findings_open, records, summary FROM runs ORDER BY started_at"
        ).fetchall()
        out["runs"] = [
            {"actions": a, "findings_open": f, "records": r,
             "analysis": json.loads(s or "{}").get("analysis")}
            for a, f, r, s in runs
        ]  # fmt: skip
        return out


def audit_twice(work: Path, kinds: str = "both") -> dict[str, Any]:
    snap = work / "org"
    subprocess.run(
        [PY, "-m", "audit.cli", "fixtures", "--out", str(snap), "--seed", "3", "--actions",
         "20000", "--days", "7", "--start", "2026-10-01"], check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    labels = json.loads((snap / "labels.json").read_text())
    since, until = labels["window"]["since"], labels["window"]["until"]
    result: dict[str, Any] = {}
    with mock_org(snap, work / "tls", faults="republish_after=60") as url:
        cfg = write_config(work / "c.toml", snap, url, work / "tls" / "ca.pem", work / "s.db")
        with cfg.open("a") as f:
            f.write(f"\n[source]\nkinds = {KINDS[kinds]}\n")
        for run in ("first", "second"):
            proc = subprocess.run(
                [PY, "-m", "audit.cli", "run", "--config", str(cfg), "--since", since,
                 "--until", until, "--json"], capture_output=True, text=True,
            )  # fmt: skip
            if proc.returncode not in (0, 1):
                raise SystemExit(f"{run} run failed: {proc.stderr}")
            output = json.loads(proc.stdout)
            output.pop("run_id")
            result[run] = output
    result["store"] = digest(work / "s.db")
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", type=Path)
    group.add_argument("--against", type=Path)
    ap.add_argument("--kinds", default="both", help="comma-separated: both, awi, elf")
    args = ap.parse_args()
    reference: dict[str, Any] = {}
    if args.against:
        saved = json.loads(args.against.read_text())
        # a reference saved before `--kinds` existed holds one configuration: both
        reference = saved if "both" in saved or "awi" in saved or "elf" in saved else {
            "both": saved}  # fmt: skip
    configs = list(reference) if args.against else args.kinds.split(",")
    result: dict[str, Any] = {}
    for kinds in configs:
        with tempfile.TemporaryDirectory(prefix="awu-same-") as tmp:
            result[kinds] = audit_twice(Path(tmp), kinds)
    if args.save:
        args.save.write_text(json.dumps(result, indent=1, sort_keys=True))
        print(f"saved {args.save} ({', '.join(configs)})")
        return
    same = True
    for kinds in configs:
        for key in ("first", "second", "store"):
            if reference[kinds][key] != result[kinds][key]:
                same = False
                a = json.dumps(reference[kinds][key], indent=1, sort_keys=True).splitlines()
                b = json.dumps(result[kinds][key], indent=1, sort_keys=True).splitlines()
                print(f"{kinds}: {key} differs:", *difflib.unified_diff(a, b, lineterm=""),
                      sep="\n")  # fmt: skip
    if not same:
        raise SystemExit(1)
    print(f"same --json and same stored actions, findings and daily usage ({', '.join(configs)})")


if __name__ == "__main__":
    main()
