"""Shared test fixtures: generated org snapshots, the mock org on loopback HTTPS, configs,
and a runner for the real `audit` command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from audit.demo import write_mock_config
from connector.mock.org import MockOrg
from connector.mock.server import RunningMockOrg, serve
from fixtures.generator import generate_snapshot

REPO = Path(__file__).resolve().parent.parent

# Hypothesis keeps its example store outside the working tree (no files left in a checkout)
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "awu-audit-hypothesis")
# the contract lives in ../shared; a copy beside the tests keeps a lone checkout testable
SCHEMA = next(
    p for p in (REPO.parent / "shared" / "run-output.schema.json",
                REPO / "tests" / "run-output.schema.json") if p.exists()
)


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One org for the session (seed 1, 1,500 actions, 7 days from 2026-10-01)."""
    out = tmp_path_factory.mktemp("snap") / "org"
    generate_snapshot(out, seed=1, actions=1500, days=7, start=date(2026, 10, 1))
    return out


def labels_of(snap: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((snap / "labels.json").read_text())
    return result


def assert_matches_labels(
    out: dict[str, Any],
    labels: dict[str, Any],
    *,
    bad_records: int | None = None,
    findings_delta: dict[str, int] | None = None,
) -> None:
    """A run's §7 totals, findings, data quality and pricing equal the fixture's labels
    (`findings_delta` adds to expected counts where a test injected findings itself)."""
    assert {k: out["totals"][k] for k in labels["totals"]} == pytest.approx(labels["totals"])
    delta = findings_delta or {}
    assert {k: v["count"] for k, v in out["findings"].items()} == {
        k: v["count"] + delta.get(k, 0) for k, v in labels["findings"].items()
    }
    assert {k: v["wasted_awu"] for k, v in out["findings"].items()} == pytest.approx(
        {k: v["wasted_awu"] for k, v in labels["findings"].items()}
    )
    expected_bad = labels["data_quality"]["bad_records"] if bad_records is None else bad_records
    assert out["data_quality"]["bad_records"] == expected_bad
    for key in ("flex_usd", "per_conversation_usd", "per_user_usd"):
        assert out["pricing"][key] == pytest.approx(labels["pricing"][key]), key
    assert out["pricing"]["cheapest"] == labels["pricing"]["cheapest"]


@pytest.fixture
def labels(snapshot: Path) -> dict[str, Any]:
    return labels_of(snapshot)


@pytest.fixture
def mock_org(snapshot: Path, tmp_path: Path) -> Iterator[tuple[MockOrg, RunningMockOrg]]:
    """A fresh mock org per test (faults and request log start clean)."""
    org = MockOrg.from_snapshot(snapshot)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        yield org, server


def make_config(
    tmp_path: Path, snap: Path, server: RunningMockOrg, *, extra: str = "", name: str = "audit.toml"
) -> Path:
    fast_retries = "\n[sync]\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\n" if "[sync]" not in extra else ""
    return write_mock_config(
        tmp_path / name, snapshot=snap, url=server.url, ca_pem=server.ca_pem,
        store=tmp_path / "store.db", extra=fast_retries + extra,
    )


@pytest.fixture
def config_path(tmp_path: Path, snapshot: Path, mock_org: tuple[MockOrg, RunningMockOrg]) -> Path:
    return make_config(tmp_path, snapshot, mock_org[1])


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The real command line in a subprocess (what a user types)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("AWU_AUDIT_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "audit.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=env.get("CWD") if env else None,
    )
