"""The command line as a user drives it: demo, fixtures, report, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from audit.report.labels import KIND_LABELS
from tests.helpers import invoke, labels_of


def test_demo_exits_zero_and_names_the_totals(tmp_path: Path) -> None:
    proc = invoke("demo", "--actions", "1500", cwd=tmp_path, env={"COLUMNS": "200"})
    assert proc.exit_code == 0, proc.stderr
    out = proc.stdout
    assert "Totals:" in out and "AWU" in out and "credits" in out
    for kind in ("CEILING_BREACH", "RETRY_LOOP", "REDUNDANT_RETRIEVAL"):
        assert kind in out
    assert "cheapest" in out and "Per conversation" in out and "Per user" in out
    db = tmp_path / "awu-audit-demo.db"
    assert db.exists() and (db.stat().st_mode & 0o777) == 0o600
    m = re.search(r"Totals: ([\d,]+) actions", out)
    assert m is not None and int(m.group(1).replace(",", "")) > 1000

    report = invoke("report", "--db", str(db), "--format", "json")
    assert report.exit_code == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["totals"]["actions"] == int(m.group(1).replace(",", ""))

    again = invoke("demo", "--actions", "1500", cwd=tmp_path, env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.stderr
    assert "Replacing the previous demo store" in again.stdout


def test_fixtures_command_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        proc = invoke("fixtures", "--out", str(tmp_path / name), "--seed", "5", "--actions", "300",
                       "--days", "2")
        assert proc.exit_code == 0, proc.stderr
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert labels_of(tmp_path / "a")["totals"]["actions"] > 0


def test_report_formats(config_path: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    proc = invoke("run", "--config", str(config_path), "--since", labels["window"]["since"],
                   "--until", labels["window"]["until"])
    assert proc.exit_code == 0, proc.stderr
    assert "Totals:" in proc.stdout
    md = invoke("report", "--config", str(config_path))
    assert md.exit_code == 0, md.stderr
    assert "## Findings" in md.stdout
    for kind, expected in labels["findings"].items():
        assert re.search(rf"\| {KIND_LABELS[kind]} \| {expected['count']} \|", md.stdout), kind
    html_out = tmp_path / "r.html"
    html = invoke("report", "--config", str(config_path), "--format", "html", "--out", str(html_out))
    assert html.exit_code == 0, html.stderr
    assert "<table>" in html_out.read_text()


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    cases = [
        (["run", "--config", str(tmp_path / "missing.toml")], 2, "config file not found"),
        (["run"], 2, "no config"),
        (["fixtures", "--out", str(tmp_path / "x"), "--start", "yesterday"], 2, "--start"),
        (["report", "--db", str(tmp_path / "none.db")], 2, "no store"),
        (["mock-org", "--data", str(tmp_path / "nothing"), "--tls-dir", str(tmp_path / "t")], 2,
         "no such directory"),
    ]
    for args, code, needle in cases:
        proc = invoke(*args, cwd=tmp_path)
        assert proc.exit_code == code, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_installed_console_script_exit_codes(tmp_path: Path) -> None:
    """The `audit` script pip installed, in its own process: the exit codes and the one
    stderr line a shell sees (everything else runs in-process through CliRunner)."""
    script = shutil.which("audit", path=str(Path(sys.executable).parent))
    assert script is not None, "the audit console script is not installed beside python"
    env = {k: v for k, v in os.environ.items() if k not in ("AWU_AUDIT_DEBUG", "AWU_AUDIT_CONFIG")}
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path, env=env)
    assert version.returncode == 0 and "version" in version.stdout, version.stderr
    missing = subprocess.run([script, "run", "--config", str(tmp_path / "missing.toml")],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert missing.returncode == 2
    assert missing.stdout == ""
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audit: error: ") and "config file not found" in lines[0]


def test_bad_window_is_exit_2(config_path: Path) -> None:
    proc = invoke("run", "--config", str(config_path), "--since", "2026-10-05", "--until", "2026-10-01")
    assert proc.exit_code == 2
    assert "--since must be before --until" in proc.stderr
    assert not (config_path.parent / "store.db").exists()
    proc = invoke("run", "--config", str(config_path), "--since", "last tuesday")
    assert proc.exit_code == 2 and "--since" in proc.stderr
    proc = invoke("run", "--config", str(config_path), "--until", "2026-10-01")
    assert proc.exit_code == 2 and "--until needs --since" in proc.stderr


def test_second_run_on_a_locked_store_says_so(config_path: Path, labels: dict[str, Any]) -> None:
    from audit.store import Store

    with Store.open(config_path.parent / "store.db") as store, store.lock():
        proc = invoke("run", "--config", str(config_path), "--since", labels["window"]["since"],
                       "--until", labels["window"]["until"], "--json")
    assert proc.exit_code == 2
    assert "another run holds the lock" in proc.stderr and proc.stdout == ""
    with Store.open(config_path.parent / "store.db") as store:
        assert store.count("actions") == 0 and store.count("runs") == 0


def test_schedule_once_runs_the_job_and_exits(config_path: Path) -> None:
    proc = invoke("schedule", "--config", str(config_path), "--once")
    assert proc.exit_code == 0, proc.stderr
    assert "ok:" in proc.stderr and "actions" in proc.stderr
    # the nightly job's log line carries a time and a level, like `audit run` piped
    assert re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z INFO run \S+ ok: ", proc.stderr), proc.stderr


def test_demo_on_the_data360_source(tmp_path: Path) -> None:
    proc = invoke("demo", "--source", "data360", "--actions", "800",
                   cwd=tmp_path, env={"COLUMNS": "200"})
    assert proc.exit_code == 0, proc.stderr
    assert re.search(r"Data 360: \d+ queries, [\d,]+ rows read", proc.stdout)
    # one source only: SOURCE_GAP cannot occur (SPEC §11)
    assert re.search(r"SOURCE_GAP\s*│\s*0\s*│", proc.stdout)
    assert (tmp_path / "awu-audit-demo.db").exists()


class _UnreachableFromAnotherRoot(Exception):
    """Like connector errors: not an AuditError, but carrying the same `exit_code`."""

    exit_code = 3


def test_errors_map_to_exit_codes_by_their_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import audit.cli

    def unreachable(config: str | None) -> None:
        raise _UnreachableFromAnotherRoot("login.example.com unreachable: check [salesforce] url")

    monkeypatch.setattr(audit.cli, "_load", unreachable)
    proc = invoke("run", "--config", "x.toml")
    assert proc.exit_code == 3 and proc.stdout == ""
    assert proc.stderr == "audit: error: login.example.com unreachable: check [salesforce] url\n"

    def bug(config: str | None) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(audit.cli, "_load", bug)
    proc = invoke("run", "--config", "x.toml")
    assert proc.exit_code == 4  # a bug, never 1 (SPEC §7)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unexpected KeyError" in lines[0] and "AWU_AUDIT_DEBUG=1" in lines[0]
    with pytest.raises(KeyError):  # AWU_AUDIT_DEBUG=1: the traceback, not the one line
        invoke("run", "--config", "x.toml", env={"AWU_AUDIT_DEBUG": "1"})
