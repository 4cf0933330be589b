"""Shared test fixtures: generated org snapshots, the mock org on loopback HTTPS, configs,
and Slack/SMTP stand-ins. Plain helpers live in tests/helpers.py."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from connector.mock.org import MockOrg
from connector.mock.server import RunningMockOrg, serve
from fixtures.generator import generate_snapshot
from tests.helpers import LoopbackSMTP, Mailbox, SlackServer, labels_of, make_config

# Hypothesis keeps its example store outside the working tree (no files left in a checkout)
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "awu-audit-hypothesis")


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One org for the session (seed 1, 1,500 actions, 7 days from 2026-10-01)."""
    out = tmp_path_factory.mktemp("snap") / "org"
    generate_snapshot(out, seed=1, actions=1500, days=7, start=date(2026, 10, 1))
    return out


@pytest.fixture
def labels(snapshot: Path) -> dict[str, Any]:
    return labels_of(snapshot)


@pytest.fixture
def mock_org(snapshot: Path, tmp_path: Path) -> Iterator[tuple[MockOrg, RunningMockOrg]]:
    """A fresh mock org per test (faults and request log start clean)."""
    org = MockOrg.from_snapshot(snapshot)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        yield org, server


@pytest.fixture
def config_path(tmp_path: Path, snapshot: Path, mock_org: tuple[MockOrg, RunningMockOrg]) -> Path:
    return make_config(tmp_path, snapshot, mock_org[1])


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    server = SlackServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(5)


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    box = Mailbox("127.0.0.1")
    controller = LoopbackSMTP(box)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
