"""Plain helpers shared by the tests: labels, configs, the `audit` command line run
in-process, bounded waits, and real Slack/SMTP stand-ins on 127.0.0.1.

Fixtures live in conftest.py; test files import helpers from here, never from conftest.py
or from one another."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from audit.cli import cli
from audit.demo import write_mock_config
from connector.mock.server import RunningMockOrg

__all__ = [
    "REPO",
    "SCHEMA",
    "SLACK_SECRET",
    "CliResult",
    "LoopbackSMTP",
    "Mailbox",
    "SlackServer",
    "assert_matches_labels",
    "invoke",
    "labels_of",
    "make_config",
    "refusing_port",
    "wait_until",
]

REPO = Path(__file__).resolve().parent.parent

# the `--json` schema ships with the code (docs/), so a clone validates against its own copy
SCHEMA = REPO / "docs" / "run-output.schema.json"


# --- fixture labels ----------------------------------------------------------------------


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
    # dollars in the JSON are rounded to the cent (a sandbox's half price can end in ½ cent)
    expected_totals = {k: pytest.approx(v, abs=0.005) if k.endswith("_usd") else pytest.approx(v)
                       for k, v in labels["totals"].items()}
    assert {k: out["totals"][k] for k in labels["totals"]} == expected_totals
    delta = findings_delta or {}
    assert {k: v["count"] for k, v in out["findings"].items()} == {
        k: v["count"] + delta.get(k, 0) for k, v in labels["findings"].items()
    }
    assert {k: v["wasted_awu"] for k, v in out["findings"].items()} == pytest.approx(
        {k: v["wasted_awu"] for k, v in labels["findings"].items()}
    )
    expected_bad = labels["data_quality"]["bad_records"] if bad_records is None else bad_records
    assert out["data_quality"]["bad_records"] == expected_bad
    for key in ("flex_usd", "per_conversation_usd", "per_user_usd"):  # JSON dollars: cents
        assert out["pricing"][key] == pytest.approx(labels["pricing"][key], abs=0.005), key
    assert out["pricing"]["cheapest"] == labels["pricing"]["cheapest"]


# --- org changes and stored rows ------------------------------------------------------------


def correct_a_mismatch(org: Any, labels: Mapping[str, Any]) -> str:
    """The org corrects the reported AWU of the first AWU_MISMATCH action of the labels to
    the recomputed one: that finding is gone on the next sync. Returns the record's id."""
    key = str(labels["findings"]["AWU_MISMATCH"]["keys"][0])
    action = next(a for a in labels["actions"] if a["key"] == key)
    org.update_record("AgentWorkItem", key, {"AwuCount__c": float(action["awu"])})
    return key


def awi_row(record_id: str, started_at: str, tokens: int) -> dict[str, Any]:
    """One AgentWorkItem row in logical names, as a sync page carries it to the store."""
    return {
        "id": record_id, "session_id": "S1", "agent_id": None, "agent_name": None,
        "action_name": "Lookup", "action_type": "Apex", "channel": "Text", "status": "Success",
        "error_code": None, "prompt_tokens": None, "completion_tokens": None, "tokens": tokens,
        "reported_awu": 1.0, "action_input": "{}", "user_id": None, "case_id": None,
        "started_at": started_at, "created_date": started_at, "system_modstamp": started_at,
    }  # fmt: skip


# --- configs -----------------------------------------------------------------------------


def make_config(
    tmp_path: Path, snap: Path, server: RunningMockOrg, *, extra: str = "", name: str = "audit.toml"
) -> Path:
    """A config for the mock org `server` with fast retries, its store in `tmp_path`."""
    fast_retries = "\n[sync]\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\n" if "[sync]" not in extra else ""
    return write_mock_config(
        tmp_path / name, snapshot=snap, url=server.url, ca_pem=server.ca_pem,
        store=tmp_path / "store.db", extra=fast_retries + extra,
    )


# --- the command line, in-process --------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def invoke(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> CliResult:
    """`audit ARGS` in this process through click's CliRunner, as a user's shell would see
    it: the same exit code, stdout and stderr (click 8.2+ keeps stderr apart). The
    environment is changed only for the call (AWU_AUDIT_DEBUG unset unless `env` sets it);
    `cwd` is the working directory for the call."""
    runner = CliRunner()
    full_env: dict[str, str | None] = {"AWU_AUDIT_DEBUG": None, **(env or {})}
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = runner.invoke(cli, list(args), env=full_env, prog_name="audit",
                               catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


# --- waiting -----------------------------------------------------------------------------


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds (a bound, not a pace)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.01)


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections while the block runs: bound, so no other
    test worker can take it, but never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# --- a Slack stand-in --------------------------------------------------------------------

SLACK_SECRET = "T0AWU/B0AUDIT/xoxSECRETtokenVALUE"


class SlackServer:
    """A real HTTP server: records each POST, answers from a script (default 200 ok)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append({"path": self.path, "json": json.loads(body)})
                status, headers, text = server.script.pop(0) if server.script else (200, {}, "ok")
                payload = text.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/services/{SLACK_SECRET}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def posts(self) -> int:
        return len(self.requests)


# --- an SMTP server ----------------------------------------------------------------------


@dataclass
class Mailbox:
    host: str
    port: int = 0  # set once the server listens
    envelopes: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(e.original_content, policy=email.policy.default)
            for e in self.envelopes
        ]


class LoopbackSMTP(Controller):  # type: ignore[misc]
    """aiosmtpd's Controller on a port the OS picks when it binds (`port=0`): no window
    between finding a free port and binding it, which a parallel test worker could take."""

    def __init__(self, box: Mailbox, **kwargs: Any) -> None:
        super().__init__(box, hostname=box.host, port=0, **kwargs)
        self.box = box

    def _trigger_server(self) -> None:
        # the server is bound by now; aiosmtpd connects to self.port to finish starting
        self.port = self.box.port = int(self.server.sockets[0].getsockname()[1])
        super()._trigger_server()


# --- log files handed straight to the EventLogFile sync ----------------------------------


def log_row(request_id: str, tokens: str, hour: int = 6) -> dict[str, str]:
    """One AgentAction log row of 2026-10-06 (`hour` o'clock), every other column empty."""
    from connector.logfiles import ELF_COLUMNS

    return {
        **{c: "" for c in ELF_COLUMNS},
        "EVENT_TYPE": "AgentAction",
        "TIMESTAMP_DERIVED": f"2026-10-06T{hour:02d}:00:00.000Z",
        "REQUEST_ID": request_id,
        "ACTION_NAME": "LookupAccount",
        "TOTAL_TOKENS": tokens,
    }


def log_csv(rows: list[dict[str, str]], tail: str = "") -> bytes:
    """A log file's body: the header, `rows`, then `tail` as it is (e.g. a torn line)."""
    import csv
    import io

    from connector.logfiles import ELF_COLUMNS

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ELF_COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in ELF_COLUMNS])
    return (out.getvalue() + tail).encode()


@dataclass
class LogFilesOrg:
    """The AgentAction log files of one `day` (`bodies`: id → body, `created`: id →
    CreatedDate; `daily` is the Daily one, the others Hourly), as the connector's client
    lists and hands them over — duck-typed: the three calls the sync makes."""

    bodies: Mapping[str, bytes]
    created: Mapping[str, str]
    day: str
    daily: str

    def describe(self, sobject: str) -> dict[str, Any]:
        names = ("Id", "EventType", "LogDate", "Interval", "Sequence", "CreatedDate",
                 "LogFileLength", "LogFileFieldNames")  # fmt: skip
        return {"fields": [{"name": n} for n in names]}

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        from connector.logfiles import ELF_COLUMNS

        return [
            {"Id": i, "EventType": "AgentAction", "LogDate": self.day,
             "Interval": "Daily" if i == self.daily else "Hourly", "Sequence": 1,
             "CreatedDate": self.created[i], "LogFileLength": len(body),
             "LogFileFieldNames": ",".join(ELF_COLUMNS)}
            for i, body in self.bodies.items()
        ]  # fmt: skip

    def elf_sync(self, on_changed: Callable[[str | None], None] = lambda started_at: None) -> Any:
        """The EventLogFile sync of run `run1` over these files, as of 2026-10-08."""
        from datetime import datetime, timezone

        from connector.config import ConnectorConfig
        from connector.core.eventlogfile import EventLogFileSync

        return EventLogFileSync(
            self,  # type: ignore[arg-type]
            ConnectorConfig(),
            "run1",
            datetime(2026, 10, 8, tzinfo=timezone.utc),
            lambda stage, done, total: None,
            on_changed,
        )

    def download_logfile(self, file_id: str, sink: Any, *, expected_size: int | None = None) -> tuple[int, str]:
        import hashlib

        body = self.bodies[file_id]
        sink.write(body)
        return len(body), hashlib.sha256(body).hexdigest()
