"""End to end: a fleet of three mock orgs on loopback (different seeds, one a sandbox) and one
whose port is closed, audited by `audit fleet run` as Dask tasks — on a LocalCluster of two
worker processes, then on a separately started `dask scheduler` + `dask worker` — into a
Parquet lake that `audit fleet report` reads through DuckDB. Expected values come from each
org's fixture labels, never from the code under test."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from audit.demo import write_mock_config
from connector.mock.org import MockOrg
from connector.mock.server import serve
from fixtures.generator import generate_snapshot
from tests.helpers import (
    SCHEMA,
    assert_matches_labels,
    invoke,
    make_config,
    refusing_port,
    wait_until,
)

#: small orgs (the e2e proves the wiring; benchmarks/fleet.py measures the cost)
ORGS = {"acme": {"seed": 11}, "globex": {"seed": 12}, "initech-sbx": {"seed": 13, "sandbox": True}}
DOWN = "umbrella"
TOTAL_KEYS = ("actions", "billable_actions", "tokens", "awu", "reported_awu", "credits", "cost_usd")


@dataclass(frozen=True)
class Fleet:
    root: Path
    configs: dict[str, Path]
    labels: dict[str, dict[str, Any]]

    @property
    def window(self) -> tuple[str, str]:
        w = next(iter(self.labels.values()))["window"]
        return w["since"], w["until"]

    def file(self, lake: Path, name: str) -> Path:
        """A fleet file listing every org, with its lake at `lake`."""
        entries = "".join(
            f'\n[[orgs]]\nname = "{n}"\nconfig = "{c.relative_to(self.root).as_posix()}"\n'
            for n, c in self.configs.items()
        )
        path = self.root / name
        path.write_text(f'[fleet]\nlake = "{lake.as_posix()}"\nworkers = 2\n{entries}')
        return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    configs: dict[str, Path] = {}
    labels: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        for name, options in ORGS.items():
            snap = root / "snapshots" / name
            labels[name] = generate_snapshot(
                snap, actions=240, days=3, start=date(2026, 10, 1), **options
            )
            server = stack.enter_context(serve(MockOrg.from_snapshot(snap), tls_dir=root / "tls" / name))
            (root / name).mkdir()
            configs[name] = make_config(root / name, snap, server)
        # an org whose port refuses connections (bound, never listening)
        port = stack.enter_context(refusing_port())
        (root / DOWN).mkdir()
        first = root / "snapshots" / next(iter(ORGS))
        configs[DOWN] = write_mock_config(
            root / DOWN / "audit.toml", snapshot=first, url=f"https://127.0.0.1:{port}",
            ca_pem=root / "tls" / next(iter(ORGS)) / "ca.pem", store=root / DOWN / "store.db",
            extra="[sync]\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\n",
        )
        yield Fleet(root, configs, labels)


def _lake_files(lake: Path) -> dict[str, str]:
    """Every file of the lake, by relative path, with its sha256."""
    return {
        p.relative_to(lake).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.rglob("*")) if p.is_file()
    }


def _fleet_run(fleet: Fleet, fleet_file: Path, *options: str) -> tuple[dict[str, Any], str]:
    since, until = fleet.window
    proc = invoke("fleet", "run", "--fleet", str(fleet_file), "--since", since, "--until", until,
                  "--json", *options)
    assert proc.exit_code == 3, proc.stderr  # one org is down
    return json.loads(proc.stdout), proc.stderr


def _check_run(fleet: Fleet, out: dict[str, Any], stderr: str) -> None:
    """Three orgs match their own labels, the fourth failed with exit 3 and one line."""
    schema = json.loads(SCHEMA.read_text())
    assert list(out["orgs"]) == [*ORGS, DOWN]
    for name in ORGS:
        entry = out["orgs"][name]
        assert entry["exit_code"] == 0, entry
        jsonschema.validate(entry["run"], schema)
        assert entry["run"]["is_sandbox"] is fleet.labels[name]["is_sandbox"]
        assert_matches_labels(entry["run"], fleet.labels[name])
    down = out["orgs"][DOWN]
    assert set(down) == {"exit_code", "error"} and down["exit_code"] == 3
    assert down["error"] and "\n" not in down["error"]
    assert out["failed"] == [DOWN]
    for key in TOTAL_KEYS:
        expected = sum(fleet.labels[n]["totals"][key] for n in ORGS)
        assert out["totals"][key] == pytest.approx(expected), key
    # one progress line per org as it finishes or fails; the fleet's one-line error
    for name in ORGS:
        assert f"fleet: {name} done in" in stderr
    assert f"fleet: {DOWN} failed in" in stderr
    assert f"audit: error: 1 of 4 orgs failed: {DOWN}" in stderr


def _check_lake(fleet: Fleet, lake: Path) -> None:
    """`org=<name>/day=<day>/` for every day of the window, for the three orgs only; each
    day's actions are that day's labelled actions."""
    since, until = fleet.window
    days = sorted(d for d in fleet.labels["acme"]["daily"] if since[:10] <= d < until[:10])
    assert days
    import pyarrow.parquet as pq

    partitions = {p.relative_to(lake).as_posix() for p in lake.glob("org=*/day=*")}
    assert partitions == {f"org={n}/day={d}" for n in ORGS for d in days}
    for name in ORGS:
        for day in days:
            table = pq.read_table(lake / f"org={name}" / f"day={day}" / "actions.parquet")
            labelled = fleet.labels[name]["daily"][day]
            assert table.num_rows == labelled["actions"], (name, day)
            assert sum(table.column("awu").to_pylist()) == pytest.approx(labelled["awu"])
            assert "reported_awu" in table.column_names
            for other in ("findings", "daily_usage"):
                assert (lake / f"org={name}" / f"day={day}" / f"{other}.parquet").is_file()


def _check_report(fleet: Fleet, fleet_file: Path) -> dict[str, Any]:
    since, until = fleet.window
    proc = invoke("fleet", "report", "--fleet", str(fleet_file), "--since", since, "--until",
                  until, "--format", "json")
    assert proc.exit_code == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    assert set(report["orgs"]) == set(ORGS) and report["missing"] == [DOWN]
    for key in TOTAL_KEYS:
        expected = sum(fleet.labels[n]["totals"][key] for n in ORGS)
        assert report["totals"][key] == pytest.approx(expected), key
    for name in ORGS:
        block, labels = report["orgs"][name], fleet.labels[name]
        assert block["totals"] == pytest.approx(labels["totals"])
        assert {k: v["count"] for k, v in block["findings"].items()} == {
            k: v["count"] for k, v in labels["findings"].items()
        }
        assert {k: v["wasted_awu"] for k, v in block["findings"].items()} == pytest.approx(
            {k: v["wasted_awu"] for k, v in labels["findings"].items()}
        )
    return report


def test_fleet_on_a_local_cluster(fleet: Fleet) -> None:
    lake = fleet.root / "lake-local"
    fleet_file = fleet.file(lake, "local.toml")
    out, stderr = _fleet_run(fleet, fleet_file, "--workers", "2")
    assert "fleet: local Dask cluster tcp://127.0.0.1:" in stderr
    assert "fleet: Dask dashboard at http://127.0.0.1:" in stderr
    _check_run(fleet, out, stderr)
    _check_lake(fleet, lake)
    report = _check_report(fleet, fleet_file)
    ranked = report["ranking"]
    shares = [report["orgs"][n]["waste_share"] for n in ranked]
    assert sorted(ranked) == sorted(ORGS) and shares == sorted(shares, reverse=True)
    for fmt, marker in (("md", "# awu-audit fleet report"), ("html", "<h1>awu-audit fleet report")):
        page = fleet.root / f"report.{fmt}"
        proc = invoke("fleet", "report", "--fleet", str(fleet_file), "--format", fmt, "--out", str(page))
        assert proc.exit_code == 0, proc.stderr
        text = page.read_text()
        assert marker in text and all(name in text for name in ORGS)

    before = _lake_files(lake)
    again, _ = _fleet_run(fleet, fleet_file, "--workers", "2")
    assert _lake_files(lake) == before  # a second run changes nothing in the lake
    assert again["totals"] == out["totals"]


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A separately started `dask scheduler` and one `dask worker` on loopback, ports chosen
    by the OS (the scheduler writes its address to a scheduler file)."""
    scheduler_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m"]
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (tmp_path / "scheduler.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [*dask, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                 "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            ))
        wait_until(scheduler_file.exists, timeout=60, what="the dask scheduler")
        wait_until(lambda: "address" in scheduler_file.read_text(), timeout=10, what="its address")
        address = json.loads(scheduler_file.read_text())["address"]
        with (tmp_path / "worker.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [*dask, "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
                 "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            ))
        wait_until(lambda: (tmp_path / "worker.log").read_text().count("Registered to") >= 2,
                   timeout=60, what="two dask workers to register")
        yield address
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_fleet_on_an_existing_dask_cluster(fleet: Fleet, dask_cluster: str) -> None:
    lake = fleet.root / "lake-cluster"
    fleet_file = fleet.file(lake, "cluster.toml")
    out, stderr = _fleet_run(fleet, fleet_file, "--scheduler", dask_cluster)
    assert f"fleet: Dask scheduler {dask_cluster}, 2 workers" in stderr
    assert "local Dask cluster" not in stderr
    _check_run(fleet, out, stderr)
    _check_lake(fleet, lake)
    _check_report(fleet, fleet_file)
    before = _lake_files(lake)
    _fleet_run(fleet, fleet_file, "--scheduler", dask_cluster)
    assert _lake_files(lake) == before
