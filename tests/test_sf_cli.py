"""The official Salesforce CLI (`sf`, Node 22) against the mock org: a real client of
Salesforce's wire format accepts the mock (JWT login, queries with paging and
`columns=true`, describe, limits, a LogFile download).

`tests/install_sf_cli.sh` (via `tests/install_test_tools.sh`, the first step of `.ci/run`) installs Node 22 and the CLI
under ~/.cache/awu-audit/sf-cli from npm; AWU_SF_CLI_DIR points elsewhere. The CLI runs with
its home and config in a temp dir, telemetry and update checks off, trusting only the
mock's CA, with 127.0.0.1 its only reachable host. AWU_SKIP_SF_CLI=1 skips these tests
(for a developer without npm); nothing else does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.mock import MockOrg, RunningMockOrg, serve

CLI_DIR = Path(
    os.environ.get("AWU_SF_CLI_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "awu-audit" / "sf-cli"
)
BIN = CLI_DIR / "node_modules" / ".bin"
INSTALL_HINT = (
    f"the Salesforce CLI (Node 22 + sf) is not installed in {CLI_DIR}: run "
    "`bash tests/install_test_tools.sh` (the first step of .ci/run and of the README's test "
    "command), point AWU_SF_CLI_DIR at an install, or set AWU_SKIP_SF_CLI=1 to skip "
    "these tests"
)
PAGE_SIZE = 200  # small pages, so that a query of every AgentWorkItem pages
ALIAS = "mock"

if os.environ.get("AWU_SKIP_SF_CLI") == "1":
    pytest.skip("AWU_SKIP_SF_CLI=1: the Salesforce CLI tests are skipped", allow_module_level=True)


class SfCli:
    """Runs `sf` against one mock org, in a sandboxed home."""

    def __init__(self, home: Path, live: RunningMockOrg) -> None:
        self.live = live
        self.env = sf_environment(home, live.ca_pem)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["sf", *args], env=self.env, cwd=self.env["HOME"], capture_output=True,
            text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        if check:
            assert proc.returncode == 0, f"sf {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc

    def json(self, *args: str) -> Any:
        """`sf … --json`: the result object (the exit status checked)."""
        out = json.loads(self.run(*args, "--json").stdout)
        assert out["status"] == 0, out
        return out["result"]


def sf_environment(home: Path, ca_pem: Path) -> dict[str, str]:
    """The environment `sf` runs in: nothing of the user's home, no network but loopback."""
    keep = ("LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",  # Node 22 first
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        NODE_EXTRA_CA_CERTS=str(ca_pem),  # the mock's CA, and nothing else added
        SF_DISABLE_TELEMETRY="true",
        SFDX_DISABLE_TELEMETRY="true",
        SF_AUTOUPDATE_DISABLE="true",
        SFDX_AUTOUPDATE_DISABLE="true",
        SF_SKIP_NEW_VERSION_CHECK="true",
        SF_HIDE_RELEASE_NOTES="true",
        SF_HIDE_RELEASE_NOTES_FOOTER="true",
        SF_DISABLE_DNS_CHECK="true",
        SF_USE_PROGRESS_BAR="false",
        SF_DISABLE_AUTOUPDATE="true",
        NO_COLOR="1",
    )
    return env


@pytest.fixture(scope="module")
def sf_snapshot(snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's snapshot, accepting the audience `sf` puts in its JWT (production's
    login URL, as a real org does)."""
    if not (BIN / "sf").exists() or not (BIN / "node").exists():
        pytest.fail(INSTALL_HINT)
    copy = tmp_path_factory.mktemp("sf-org") / "org"
    shutil.copytree(snapshot, copy)
    info = json.loads((copy / "org.json").read_text())
    info["accept_auds"] = ["https://login.salesforce.com"]
    (copy / "org.json").write_text(json.dumps(info))
    return copy


@pytest.fixture(scope="module")
def live(sf_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMockOrg]:
    org = MockOrg.from_snapshot(sf_snapshot, page_size=PAGE_SIZE)
    with serve(org, tls_dir=tmp_path_factory.mktemp("sf-tls")) as running:
        yield running


@pytest.fixture(scope="module")
def sf(live: RunningMockOrg, sf_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> SfCli:
    """`sf`, logged in to the mock org once for the module (`sf org login jwt`)."""
    cli = SfCli(tmp_path_factory.mktemp("sf-home"), live)
    info = json.loads((sf_snapshot / "org.json").read_text())
    login = cli.run(
        "org", "login", "jwt", "--client-id", info["consumer_key"],
        "--jwt-key-file", str(sf_snapshot / "app.key"), "--username", info["username"],
        "--instance-url", live.url, "--alias", ALIAS,
    )
    assert f"Successfully authorized {info['username']}" in login.stdout
    return cli


def records_of(snap: Path, sobject: str) -> list[dict[str, Any]]:
    lines = (snap / "objects" / f"{sobject}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# ------------------------------------------------------------------------ the tests


def test_login_jwt_stores_the_org(sf: SfCli, sf_snapshot: Path) -> None:
    info = json.loads((sf_snapshot / "org.json").read_text())
    shown = sf.json("org", "display", "--target-org", ALIAS)
    assert shown["username"] == info["username"]
    assert shown["instanceUrl"] == sf.live.url
    assert shown["id"][:15] == info["organization_id"][:15]
    assert shown["connectedStatus"] == "Connected"
    # the token request went out chunked and was understood; nothing was retried
    log = sf.live.org.request_log
    assert [e.status for e in log.matching("/services/oauth2/token")] == [200]
    organization = [e for e in log.matching("/query") if "FROM Organization" in e.params.get("q", "")]
    assert organization and {e.status for e in organization} == {200}
    # the CLI keeps its auth in the temp home it was given
    assert (Path(sf.env["HOME"]) / ".sfdx" / f"{info['username']}.json").is_file()


def test_data_query_table_with_a_parent_relationship(sf: SfCli, sf_snapshot: Path) -> None:
    info = json.loads((sf_snapshot / "org.json").read_text())
    out = sf.run("data", "query", "--target-org", ALIAS, "--query",
                 "SELECT Id, Name, IsSandbox, CreatedBy.Username FROM Organization").stdout
    assert "CREATEDBY.USERNAME" in out.upper()
    assert info["username"] in out and info["organization_id"][:15] in out
    assert "Total number of records retrieved: 1." in out


def test_data_query_json_pages_through_every_record(sf: SfCli, sf_snapshot: Path) -> None:
    expected = sorted((r["Id"], r["TokensConsumed__c"]) for r in records_of(sf_snapshot, "AgentWorkItem"))
    assert len(expected) > 2 * PAGE_SIZE
    sf.live.org.request_log.clear()
    result = sf.json("data", "query", "--target-org", ALIAS, "--query",
                     "SELECT Id, TokensConsumed__c FROM AgentWorkItem ORDER BY Id")
    assert result["totalSize"] == len(expected) and result["done"] is True
    got = [(r["Id"], r["TokensConsumed__c"]) for r in result["records"]]
    assert sorted(got) == expected
    pages = [e for e in sf.live.org.request_log.matching("/query/") if e.records is not None]
    assert len(pages) == -(-len(expected) // PAGE_SIZE) - 1  # every nextRecordsUrl followed


def test_data_query_json_of_cases(sf: SfCli, sf_snapshot: Path) -> None:
    cases = {r["Id"]: r for r in records_of(sf_snapshot, "Case")}
    result = sf.json("data", "query", "--target-org", ALIAS, "--query",
                     "SELECT Id, Status, IsClosed FROM Case WHERE IsClosed = true")
    closed = {i for i, r in cases.items() if r["IsClosed"]}
    assert {r["Id"] for r in result["records"]} == closed
    assert all(r["attributes"]["type"] == "Case" for r in result["records"])


def test_sobject_describe(sf: SfCli) -> None:
    described = sf.json("sobject", "describe", "--target-org", ALIAS, "--sobject", "AgentWorkItem")
    assert described["name"] == "AgentWorkItem" and described["keyPrefix"] == "0Bz"
    fields = {f["name"]: f for f in described["fields"]}
    assert fields["TokensConsumed__c"]["type"] == "double"
    assert fields["ActionInput__c"]["filterable"] is False


def test_limits_api_display(sf: SfCli) -> None:
    used, total = sf.live.org.faults.usage()
    limits = {row["name"]: row for row in sf.json("limits", "api", "display", "--target-org", ALIAS)}
    assert limits["DailyApiRequests"]["max"] == total
    assert 0 < total - limits["DailyApiRequests"]["remaining"] <= used + 1
    assert limits["DataStorageMB"]["max"] > 0


def test_api_request_rest_downloads_a_log_file(sf: SfCli, sf_snapshot: Path, tmp_path: Path) -> None:
    elf = next(r for r in records_of(sf_snapshot, "EventLogFile") if r.get("Interval") == "Daily")
    expected = (sf_snapshot / "logfiles" / f"{elf['Id']}.csv").read_bytes()
    version = json.loads((sf_snapshot / "org.json").read_text())["api_version"]
    target = tmp_path / "log.csv"
    sf.run("api", "request", "rest", "--target-org", ALIAS, "--stream-to-file", str(target),
           f"/services/data/v{version}/sobjects/EventLogFile/{elf['Id']}/LogFile")
    assert target.read_bytes() == expected
