"""The fleet's parts without a cluster: the fleet file's validation (exit 2 naming every
problem, before any org runs), the fleet exit code, one org's task failing on its own, the
lake's replace-if-changed writes, the DuckDB report over a lake of known rows (also through
fsspec), and the single-org install staying free of Dask."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import invoke


def _fleet_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(body)
    return path


def _org_config(tmp_path: Path, name: str) -> Path:
    """A single-org config (its contents are the org's business, read when the org runs)."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[store]\npath = "{name}.db"\n')
    return path


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('[fleet]\nlake = "l"\nworkerz = 2\n[[orgs]]\nname = "a"\nconfig = "a.toml"\n', "fleet.workerz"),
        ('[fleet]\nlake = "l"\n[[orgs]]\nname = "a"\nconfig = "a.toml"\nport = 1\n', "orgs.port"),
        ('[fleet]\nlake = "l"\n[extra]\n[[orgs]]\nname = "a"\nconfig = "a.toml"\n', "unknown key extra"),
        ('[fleet]\nlake = "l"\n[[orgs]]\nname = "a"\nconfig = "a.toml"\n[[orgs]]\nname = "a"\nconfig = "a.toml"\n', "duplicate org name a"),
        ('[fleet]\nlake = "l"\n[[orgs]]\nname = "../etc"\nconfig = "a.toml"\n', "safe path segment"),
        ('[fleet]\nlake = "l"\nworkers = 0\n[[orgs]]\nname = "a"\nconfig = "a.toml"\n', "fleet.workers"),
        ('[[orgs]]\nname = "a"\nconfig = "a.toml"\n', "[fleet]"),
        ('[fleet]\nlake = "l"\n', "[[orgs]]"),
        ("[fleet\n", "not valid TOML"),
    ],
)
def test_a_bad_fleet_file_is_exit_2_naming_the_key(tmp_path: Path, body: str, named: str) -> None:
    _org_config(tmp_path, "a")
    proc = invoke("fleet", "run", "--fleet", str(_fleet_file(tmp_path, body)))
    assert proc.exit_code == 2
    assert proc.stderr.startswith("audit: error: ") and proc.stderr.count("\n") == 1
    assert named in proc.stderr
    assert not (tmp_path / "l").exists()


def test_missing_org_configs_are_all_named_before_any_org_runs(tmp_path: Path) -> None:
    _org_config(tmp_path, "present")
    body = '[fleet]\nlake = "lake"\n' + "".join(
        f'[[orgs]]\nname = "{n}"\nconfig = "{n}.toml"\n' for n in ("present", "gone", "lost")
    )
    proc = invoke("fleet", "run", "--fleet", str(_fleet_file(tmp_path, body)))
    assert proc.exit_code == 2
    assert "org gone: config file not found" in proc.stderr
    assert "org lost: config file not found" in proc.stderr
    assert not (tmp_path / "present.db").exists() and not (tmp_path / "lake").exists()
    assert invoke("fleet", "run", "--fleet", str(tmp_path / "nope.toml")).exit_code == 2


def test_fleet_exit_code() -> None:
    from audit.fleet.run import fleet_exit_code

    assert fleet_exit_code([0, 0]) == 0
    assert fleet_exit_code([0, 1]) == 1
    assert fleet_exit_code([1, 3]) == 3
    assert fleet_exit_code([0, 2]) == 3
    assert fleet_exit_code([4]) == 3


def test_one_org_with_a_bad_config_fails_alone(tmp_path: Path) -> None:
    """The task returns the org's failure (exit 2, one line) instead of raising."""
    from audit.fleet.task import OrgJob, audit_org

    bad = tmp_path / "bad.toml"
    bad.write_text("[salesforce]\nlogin_url = 42\n")
    outcome = audit_org(OrgJob("bad", bad, str(tmp_path / "lake")))
    assert outcome["exit_code"] == 2 and "salesforce.login_url" in outcome["error"]
    assert "run" not in outcome and not (tmp_path / "lake").exists()


def test_an_unreachable_scheduler_is_one_line_exit_3(tmp_path: Path) -> None:
    _org_config(tmp_path, "a")
    fleet = _fleet_file(tmp_path, '[fleet]\nlake = "l"\n[[orgs]]\nname = "a"\nconfig = "a.toml"\n')
    proc = invoke("fleet", "run", "--fleet", str(fleet), "--scheduler", "nonsense://nowhere")
    assert proc.exit_code == 3 and "cannot reach the Dask scheduler" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "a.db").exists()


def test_without_the_extra_the_fleet_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _org_config(tmp_path, "a")
    fleet = _fleet_file(tmp_path, '[fleet]\nlake = "l"\n[[orgs]]\nname = "a"\nconfig = "a.toml"\n')
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    proc = invoke("fleet", "run", "--fleet", str(fleet))
    assert proc.exit_code == 2 and "pip install 'awu-audit[fleet]'" in proc.stderr


def test_the_single_org_cli_does_not_import_the_fleet_stack() -> None:
    code = (
        "import sys\nfrom audit.cli import cli\n"
        "for args in (['--help'], ['fleet', '--help'], ['fleet', 'run', '--help']):\n"
        "    try:\n        cli(args)\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('dask', 'distributed', 'duckdb', 'pyarrow') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# -- the lake and the report over known rows ---------------------------------------------------


def test_a_lake_file_is_written_only_when_its_bytes_change(tmp_path: Path) -> None:
    from audit.fleet.lake import Lake

    lake = Lake(str(tmp_path / "lake"))
    assert lake.put_if_changed("org=a/day=2026-10-01/x.parquet", b"one") is True
    target = tmp_path / "lake" / "org=a" / "day=2026-10-01" / "x.parquet"
    stamp = target.stat().st_mtime_ns
    assert lake.put_if_changed("org=a/day=2026-10-01/x.parquet", b"one") is False
    assert target.stat().st_mtime_ns == stamp
    assert lake.put_if_changed("org=a/day=2026-10-01/x.parquet", b"two") is True
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["x.parquet"]  # no temp file left


def _action(i: int, day: str, hour: int, awu: float, reported: float) -> dict[str, Any]:
    return {"id": f"a{i}", "started_at": f"{day}T{hour:02d}:00:00.000Z", "billable": 1,
            "tokens": 1000 * i, "awu": awu, "reported_awu": reported, "credits": awu * 20,
            "cost_usd": awu * 0.1}


def _write_known_lake(root: str) -> None:
    """Two orgs, two days, rows the test knows (ground truth is this data, not the code)."""
    from audit.fleet.lake import _ORG_SCHEMA, TABLES, Lake, _parquet

    lake = Lake(root)
    rows = {
        ("a", "2026-10-01"): [_action(1, "2026-10-01", 3, 1.0, 1.0), _action(2, "2026-10-01", 20, 3.0, 2.0)],
        ("a", "2026-10-02"): [_action(3, "2026-10-02", 1, 1.5, 1.5)],
        ("b", "2026-10-01"): [_action(4, "2026-10-01", 12, 2.0, 2.0)],
    }
    findings = {("a", "2026-10-01"): [{"id": "f1", "kind": "CEILING_BREACH", "key": "a2",
                                       "started_at": "2026-10-01T20:00:00.000Z", "wasted_awu": 2.0,
                                       "wasted_usd": 0.2}]}
    for (org, day), actions in rows.items():
        lake.put_if_changed(f"org={org}/day={day}/actions.parquet", _parquet(actions, TABLES["actions"]))
        lake.put_if_changed(f"org={org}/day={day}/findings.parquet",
                            _parquet(findings.get((org, day), []), TABLES["findings"]))
    for org in ("a", "b"):
        meta = {"org_id": f"00D{org}", "is_sandbox": org == "b", "budget_period": "month",
                "budget_credits": 1000.0}
        lake.put_if_changed(f"org={org}/org.parquet", _parquet([meta], _ORG_SCHEMA))


@pytest.mark.parametrize("remote", [False, True], ids=["local", "fsspec-memory"])
def test_the_report_sums_the_lake_for_its_window(tmp_path: Path, remote: bool) -> None:
    from audit.fleet.config import FleetConfig, FleetOrg
    from audit.fleet.report import fleet_report
    from audit.pipeline import parse_when

    root = f"memory://fleet-{tmp_path.name}" if remote else str(tmp_path / "lake")
    _write_known_lake(root)
    orgs = (FleetOrg("a", tmp_path / "a.toml"), FleetOrg("b", tmp_path / "b.toml"),
            FleetOrg("c", tmp_path / "c.toml"))
    fleet = FleetConfig(lake=root, orgs=orgs)

    whole = fleet_report(fleet)
    assert whole["totals"]["actions"] == 4 and whole["totals"]["awu"] == pytest.approx(7.5)
    assert whole["orgs"]["a"]["totals"]["reported_awu"] == pytest.approx(4.5)
    assert whole["orgs"]["a"]["findings"]["CEILING_BREACH"] == {"count": 1, "wasted_awu": 2.0}
    assert whole["orgs"]["a"]["budget"] == {"period": "2026-10", "credits": 1000.0,
                                            "used_credits": 110.0, "used_pct": 11.0}
    assert whole["orgs"]["b"]["is_sandbox"] is True and whole["missing"] == ["c"]
    assert whole["ranking"] == ["a", "b"] and whole["top_waste"][0]["key"] == "a2"

    # half-open on started_at, across a day boundary: 2026-10-01T12:00 .. 2026-10-02T00:00
    part = fleet_report(fleet, since=parse_when("2026-10-01T12:00:00Z", "s"),
                        until=parse_when("2026-10-02", "u"))
    assert part["orgs"]["a"]["totals"]["actions"] == 1 and part["totals"]["actions"] == 2
    assert part["totals"]["awu"] == pytest.approx(5.0)
    assert json.loads(json.dumps(part)) == part


def test_a_report_of_an_empty_lake_says_run_first(tmp_path: Path) -> None:
    _org_config(tmp_path, "a")
    fleet = _fleet_file(tmp_path, '[fleet]\nlake = "l"\n[[orgs]]\nname = "a"\nconfig = "a.toml"\n')
    proc = invoke("fleet", "report", "--fleet", str(fleet), "--format", "json")
    assert proc.exit_code == 2 and "run `audit fleet run` first" in proc.stderr


