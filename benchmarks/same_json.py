"""Same input, same output: a fixed snapshot audited by the code on PYTHONPATH gives the
same `audit run --json` (run_id aside) and the same stored actions, findings and daily
usage as a saved reference. Run it once on the code before a change (`--save`), once after
(`--against`): a performance change must not move a single number.

The org: seed 3, 20,000 actions over 7 days, served by `audit mock-org` with a Daily file
re-published after the 60th download (so the second run has a changed day to redo).

Usage: python benchmarks/same_json.py --save before.json
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
        return out


def audit_twice(work: Path) -> dict[str, Any]:
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
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="awu-same-") as tmp:
        result = audit_twice(Path(tmp))
    if args.save:
        args.save.write_text(json.dumps(result, indent=1, sort_keys=True))
        print(f"saved {args.save}")
        return
    reference = json.loads(args.against.read_text())
    if reference == result:
        print("same --json and same stored actions, findings and daily usage")
        return
    for key in ("first", "second", "store"):
        if reference[key] != result[key]:
            a = json.dumps(reference[key], indent=1, sort_keys=True).splitlines()
            b = json.dumps(result[key], indent=1, sort_keys=True).splitlines()
            print(f"{key} differs:", *difflib.unified_diff(a, b, lineterm=""), sep="\n")
    raise SystemExit(1)


if __name__ == "__main__":
    main()
