"""End to end: fixtures → mock org over HTTPS → the real `audit run --json` → the store.
Expected values come from the fixture generator's labels, never from the code under test."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.helpers import SCHEMA, assert_matches_labels, invoke, labels_of, make_config

TABLES = ("actions", "findings", "daily_usage", "awi_records", "elf_events", "elf_files")


def _counts(db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(db)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def _run_json(config: Path, labels: dict[str, Any]) -> dict[str, Any]:
    proc = invoke(
        "run", "--config", str(config), "--since", labels["window"]["since"],
        "--until", labels["window"]["until"], "--json",
    )
    assert proc.exit_code == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_run_json_matches_labels_and_is_idempotent(config_path: Path, labels: dict[str, Any], mock_org: Any) -> None:
    org, _ = mock_org
    out = _run_json(config_path, labels)
    jsonschema.validate(out, json.loads(SCHEMA.read_text()))

    assert out["org_id"] == labels["organization_id"]
    assert out["is_sandbox"] is labels["is_sandbox"]
    assert_matches_labels(out, labels)
    assert out["sync"]["elf_files_downloaded"] > 0

    db = config_path.parent / "store.db"
    first = _counts(db)
    assert first["actions"] == labels["totals"]["actions"]

    org.request_log.clear()
    again = _run_json(config_path, labels)
    assert _counts(db) == first
    assert again["totals"] == out["totals"]
    assert again["findings"] == out["findings"]
    # the second run downloads no log file and fetches no unchanged record
    assert again["sync"]["elf_files_downloaded"] == 0
    assert again["sync"]["records"] == 0
    assert not org.request_log.matching("/LogFile")


def test_daily_usage_matches_labels(config_path: Path, labels: dict[str, Any]) -> None:
    _run_json(config_path, labels)
    with closing(sqlite3.connect(config_path.parent / "store.db")) as conn:
        rows = conn.execute("SELECT day, sum(actions), sum(awu) FROM daily_usage GROUP BY day").fetchall()
    got = {d: (n, awu) for d, n, awu in rows}
    for day, expected in labels["daily"].items():
        if day < labels["window"]["since"][:10] or day >= labels["window"]["until"][:10]:
            continue
        assert got[day][0] == expected["actions"], day
        assert got[day][1] == pytest.approx(expected["awu"]), day


def test_sub_window_counts_only_its_actions(config_path: Path, labels: dict[str, Any]) -> None:
    since, until = "2026-10-02T06:30:00Z", "2026-10-04T00:00:00Z"
    proc = invoke("run", "--config", str(config_path), "--since", since, "--until", until, "--json")
    assert proc.exit_code == 0, proc.stderr
    out = json.loads(proc.stdout)
    inside = [a for a in labels["actions"] if since[:19] <= a["started_at"][:19] < until[:19]]
    assert out["totals"]["actions"] == len(inside)
    assert out["totals"]["awu"] == pytest.approx(sum(a["awu"] for a in inside))


@pytest.mark.parametrize("seed", [2, 3])
def test_other_seeds_match_labels(tmp_path: Path, seed: int) -> None:
    from datetime import date

    from connector.mock.org import MockOrg
    from connector.mock.server import serve
    from fixtures.generator import generate_snapshot

    snap = tmp_path / "org"
    generate_snapshot(snap, seed=seed, actions=800, days=5, start=date(2026, 9, 28))
    labels = labels_of(snap)
    with serve(MockOrg.from_snapshot(snap), tls_dir=tmp_path / "tls") as server:
        out = _run_json(make_config(tmp_path, snap, server), labels)
    assert {k: out["totals"][k] for k in labels["totals"]} == pytest.approx(labels["totals"])
    assert {k: v["count"] for k, v in out["findings"].items()} == {
        k: v["count"] for k, v in labels["findings"].items()
    }
    assert {k: v["wasted_awu"] for k, v in out["findings"].items()} == pytest.approx(
        {k: v["wasted_awu"] for k, v in labels["findings"].items()}
    )
