"""A nightly job nothing stops and nothing fools (issue 11, part B).

Crash points: the real CLI in a subprocess, over the HTTPS mock org, with a loopback Slack
and an aiosmtpd SMTP server counting messages, vanishes (`os._exit`, what kill -9 does) right
after each phase — a sync page, the sync, actions, findings, the queued alerts, a channel
accepting an alert, a channel's delivery recorded — and a re-run must leave the store equal,
row for row, to a clean run's, with every alert queued once and delivered once (twice only in
the one at-least-once instant, recognisably).

Then: the run lock follows the file (symlink, hard link, relative path), the private key is
refused when others may read it, header-bound config values refuse CR/LF, SMTP login without
TLS is refused, redaction replaces whole secrets only, fail_on says why, and `audit report`
reads a store it cannot write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from audit.alerts import channels_from_config, email_message, slack_payload
from audit.alerts.redaction import redact
from audit.config import AlertsConfig, Config, EmailConfig
from audit.engine.alerts import Alert
from audit.errors import StoreError
from audit.store import TABLES, Store
from connector.mock.org import MockOrg
from connector.mock.server import RunningMockOrg, serve
from tests.helpers import (
    LoopbackSMTP,
    Mailbox,
    SlackServer,
    assert_matches_labels,
    invoke,
    make_config,
)

#: columns that name a run or carry a wall-clock time: they differ between any two runs,
#: so the row-for-row comparison leaves them out (and the `runs` table, one row per run)
RUN_COLUMNS = {
    "run_id", "first_seen_run", "last_seen_run", "resolved_run", "created_run",
    "delivered_run", "created_at", "delivered_at", "processed_at", "updated_at",
}
#: fields of a sync cursor document that hold the sync's start time (a cursor is capped at
#: it), which differs between any two runs
SYNC_CLOCK_FIELDS = ("synced_at", "synced_to")
#: the CLI with a crash point armed: `python -c CRASH_CLI PHASE NTH audit-args…`
CRASH_CLI = (
    "import sys; from audit import crashpoints; "
    "crashpoints.exit_at(sys.argv.pop(1), int(sys.argv.pop(1))); "
    "from audit.cli import main; main()"
)
KILLED = 137


# --------------------------------------------------------------------------- helpers


def _alerting_extra(labels: dict[str, Any], smtp_port: int) -> str:
    budget = round(labels["totals"]["credits"] / 0.8)  # 80 %: the 50 and 75 % thresholds
    return f"""
[budget]
credits = {budget}

[alerts.slack]
webhook_url_env = "TEST_SLACK_URL"

[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
starttls = false
from = "awu-audit@example.com"
to = ["finops@example.com"]
"""


def _window_args(labels: dict[str, Any]) -> list[str]:
    return ["--since", labels["window"]["since"], "--until", labels["window"]["until"]]


def store_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table but `runs`, row for row (sorted), without RUN_COLUMNS; the sync cursors'
    documents without their clock fields."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    with closing(sqlite3.connect(db)) as conn:
        for table in TABLES:
            if table == "runs":
                continue
            cursor = conn.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            keep = [i for i, n in enumerate(names) if n not in RUN_COLUMNS]
            rows = []
            for row in cursor.fetchall():
                values = [row[i] for i in keep]
                if table == "sync_state":
                    values = [_without_clock(v) if names[keep[j]] == "state" else v
                              for j, v in enumerate(values)]
                if table == "meta" and values[0] == "audit_basis":  # names the run
                    values[1] = json.dumps({**json.loads(values[1]), "run_id": None})
                rows.append(tuple(values))
            dump[table] = sorted(rows, key=repr)
    return dump


def _without_clock(state: str) -> str:
    doc = json.loads(state)
    return json.dumps({k: v for k, v in doc.items() if k not in SYNC_CLOCK_FIELDS},
                      sort_keys=True)


def run_outcomes(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return [r[0] for r in conn.execute("SELECT outcome FROM runs ORDER BY started_at")]


def table_count(db: Path, table: str) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def slack_alert_ids(slack: SlackServer) -> list[str]:
    """The alert id each Slack message carries in its context block."""
    ids = []
    for request in slack.requests:
        context = request["json"]["blocks"][-1]
        assert context["type"] == "context"
        (text,) = [e["text"] for e in context["elements"] if e["text"].startswith("alert id ")]
        ids.append(text.removeprefix("alert id "))
    return ids


@contextlib.contextmanager
def servers() -> Iterator[tuple[SlackServer, Mailbox, LoopbackSMTP]]:
    slack = SlackServer()
    slack.thread.start()
    box = Mailbox("127.0.0.1")
    smtp = LoopbackSMTP(box)
    smtp.start()
    try:
        yield slack, box, smtp
    finally:
        smtp.stop()
        slack.httpd.shutdown()
        slack.httpd.server_close()
        slack.thread.join(5)


@pytest.fixture(scope="module")
def org_server(snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMockOrg]:
    """One mock org for the module: the crash tests only read it."""
    with serve(MockOrg.from_snapshot(snapshot), tls_dir=tmp_path_factory.mktemp("tls")) as server:
        yield server


@pytest.fixture(scope="module")
def clean(snapshot: Path, org_server: RunningMockOrg, tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, Any]:
    """One clean run with both channels: its store rows, JSON, and the messages sent."""
    tmp = tmp_path_factory.mktemp("clean")
    labels = json.loads((snapshot / "labels.json").read_text())
    with servers() as (slack, box, _smtp):
        config = make_config(tmp, snapshot, org_server, extra=_alerting_extra(labels, box.port))
        proc = invoke("run", "--config", str(config), *_window_args(labels), "--json",
                      env={"TEST_SLACK_URL": slack.url})
        assert proc.exit_code == 0, proc.stderr
        out = json.loads(proc.stdout)
        slack_ids = slack_alert_ids(slack)
        mail_ids = [m["Message-ID"] for m in box.messages()]
    assert_matches_labels(out, labels)
    kinds = Counter(a["kind"] for a in out["budget"]["alerts_sent"])
    assert kinds["BUDGET_THRESHOLD"] == 2 and kinds["DIGEST"] == 1  # the night's digest
    assert len(slack_ids) == len(set(slack_ids)) == len(out["budget"]["alerts_sent"])
    assert len(mail_ids) == len(set(mail_ids)) == len(slack_ids)
    return {"rows": store_rows(tmp / "store.db"), "out": out, "slack_ids": slack_ids,
            "mail_ids": mail_ids}


# ------------------------------------------------------------------ crash points


#: phase → (n-th time reached, what the store holds right after the kill, Slack posts and
#: emails by then). Each alert goes to "email" before "slack" (channels in name order).
PHASES = {
    "sync-page": (2, "nothing audited", 0, 0),
    "synced": (1, "nothing audited", 0, 0),
    "actions": (1, "nothing audited", 0, 0),  # inside the decision transaction: rolled back
    "findings": (1, "nothing audited", 0, 0),  # likewise: the DIGEST is decided again
    "queued": (1, "decided", 0, 0),
    "delivered:email": (1, "decided", 0, 1),
    "sent:slack": (1, "decided", 1, 1),  # Slack accepted; the store never heard of it
    "delivered:slack": (1, "decided", 1, 1),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_killed_after_a_phase_the_rerun_ends_where_a_clean_run_does(
    phase: str, snapshot: Path, labels: dict[str, Any], org_server: RunningMockOrg,
    clean: dict[str, Any], tmp_path: Path,
) -> None:
    nth, expect, posts, mails = PHASES[phase]
    db = tmp_path / "store.db"
    with servers() as (slack, box, _smtp):
        config = make_config(tmp_path, snapshot, org_server, extra=_alerting_extra(labels, box.port))
        env = {**os.environ, "TEST_SLACK_URL": slack.url}
        env.pop("AWU_AUDIT_DEBUG", None)
        killed = subprocess.run(
            [sys.executable, "-c", CRASH_CLI, phase, str(nth), "run", "--config", str(config),
             *_window_args(labels), "--json"],
            capture_output=True, text=True, env=env, timeout=180,
        )
        assert killed.returncode == KILLED, killed.stderr
        assert killed.stdout == ""  # it died before printing anything
        assert run_outcomes(db) == ["running"]
        posts_at_kill, mails_at_kill = slack.posts, len(box.envelopes)
        if expect == "nothing audited":
            assert table_count(db, "actions") == table_count(db, "findings") == 0
            assert table_count(db, "alerts") == 0
        else:  # the decision transaction committed: findings and their alerts together
            assert table_count(db, "findings") == len(clean["rows"]["findings"])
            assert table_count(db, "alerts") == len(clean["rows"]["alerts"])
        assert (posts_at_kill, mails_at_kill) == (posts, mails)

        rerun = invoke("run", "--config", str(config), *_window_args(labels), "--json",
                       env={"TEST_SLACK_URL": slack.url})
        assert rerun.exit_code == 0, rerun.stderr
        out = json.loads(rerun.stdout)
        slack_ids = slack_alert_ids(slack)
        mail_ids = [m["Message-ID"] for m in box.messages()]

    assert_matches_labels(out, labels)
    assert run_outcomes(db) == ["interrupted", "ok"]
    rows = store_rows(db)  # row for row, run ids and clocks aside
    assert set(rows) == set(clean["rows"])
    for table, expected in clean["rows"].items():
        assert rows[table] == expected, table
    # every alert queued once, and delivered once per channel …
    assert sorted(set(slack_ids)) == sorted(clean["slack_ids"])
    assert sorted(set(mail_ids)) == sorted(clean["mail_ids"])
    assert len(mail_ids) == len(clean["mail_ids"])
    if phase == "sent:slack":
        # … but for the at-least-once instant: accepted, not yet recorded. The duplicate is
        # the same alert, and says so.
        assert len(slack_ids) == len(clean["slack_ids"]) + 1
        assert [i for i, n in Counter(slack_ids).items() if n > 1] == [slack_ids[0]]
    else:
        assert len(slack_ids) == len(clean["slack_ids"])


def test_the_digest_of_a_run_killed_after_its_findings_is_still_sent(
    snapshot: Path, labels: dict[str, Any], org_server: RunningMockOrg, tmp_path: Path,
) -> None:
    """Issue 11, defect 3: findings and the DIGEST that announces them commit together."""
    with servers() as (slack, box, _smtp):
        config = make_config(tmp_path, snapshot, org_server, extra=_alerting_extra(labels, box.port))
        env = {**os.environ, "TEST_SLACK_URL": slack.url}
        killed = subprocess.run(
            [sys.executable, "-c", CRASH_CLI, "findings", "1", "run", "--config", str(config),
             *_window_args(labels)], capture_output=True, text=True, env=env, timeout=180)
        assert killed.returncode == KILLED, killed.stderr
        rerun = invoke("run", "--config", str(config), *_window_args(labels), "--json",
                       env={"TEST_SLACK_URL": slack.url})
        assert rerun.exit_code == 0, rerun.stderr
        digests = [r["json"] for r in slack.requests if "DIGEST" in json.dumps(r["json"]["blocks"][-1])]
    assert len(digests) == 1
    expected_new = sum(v["count"] for v in labels["findings"].values())
    assert f"awu-audit found {expected_new} new findings" in json.dumps(digests[0])


# ------------------------------------------------------------ delivery identity


def _alert(kind: str = "BUDGET_THRESHOLD", threshold: float | None = 75.0) -> Alert:
    return Alert(kind=kind, period="2026-10", threshold=threshold, day=None,
                 title="Agentforce budget 2026-10: 75% reached", text="t")


def test_messages_carry_their_alert_id() -> None:
    alert = _alert()
    context = slack_payload(alert)["blocks"][-1]
    assert context["type"] == "context"
    assert {"type": "mrkdwn", "text": f"alert id {alert.id}"} in context["elements"]
    cfg = EmailConfig(smtp_host="h", from_addr="awu@example.com", to=("a@example.com",))
    first, again = email_message(alert, cfg, scope="org1"), email_message(alert, cfg, scope="org1")
    assert first["Message-ID"] == again["Message-ID"]  # the same alert twice: one id
    assert first["Message-ID"].endswith("@example.com>")
    assert first["X-Awu-Audit-Alert-Id"] == alert.id
    other = email_message(_alert(threshold=50.0), cfg, scope="org1")
    assert other["Message-ID"] != first["Message-ID"]
    assert email_message(alert, cfg, scope="org2")["Message-ID"] != first["Message-ID"]
    test = _alert(kind="TEST", threshold=None)
    assert email_message(test, cfg)["Message-ID"] != email_message(test, cfg)["Message-ID"]


# -------------------------------------------------------------------- the lock


@pytest.mark.parametrize("how", ["symlink", "hard link", "relative path"])
def test_the_lock_is_on_the_file_not_the_name(how: str, tmp_path: Path) -> None:
    real = tmp_path / "s.db"
    Store.open(real).close()
    if how == "symlink":
        other: Path = tmp_path / "link.db"
        other.symlink_to(real)
    elif how == "hard link":
        other = tmp_path / "sub" / "hard.db"
        other.parent.mkdir()
        os.link(real, other)
    else:
        other = Path("s.db")
    with contextlib.chdir(tmp_path), Store.open(real) as holder, holder.lock():
        with Store.open(other) as second, pytest.raises(StoreError) as info:
            with second.lock():
                pass
        assert str(info.value).startswith(f"another run holds the lock on {other}")
        if how != "hard link":  # the pid sits beside the resolved name; a hard link has its own
            assert f"(pid {os.getpid()})" in str(info.value)
    with contextlib.chdir(tmp_path), Store.open(other) as second, second.lock():
        pass  # released with the holder


def test_a_run_through_a_symlink_waits_for_the_run_on_the_file(
    snapshot: Path, labels: dict[str, Any], org_server: RunningMockOrg, tmp_path: Path,
    slack: SlackServer,
) -> None:
    config = make_config(tmp_path, snapshot, org_server, extra=(
        '[alerts.slack]\nwebhook_url_env = "TEST_SLACK_URL"\n'))
    link = tmp_path / "link.db"
    Store.open(tmp_path / "store.db").close()
    link.symlink_to(tmp_path / "store.db")
    with Store.open(link) as holder, holder.lock():
        proc = invoke("run", "--config", str(config), *_window_args(labels),
                      env={"TEST_SLACK_URL": slack.url})
    assert proc.exit_code == 2
    assert proc.stderr.strip().startswith("audit: error: another run holds the lock on ")
    assert slack.posts == 0


# ---------------------------------------------------------------- credentials


def _config_with_key(tmp_path: Path, snapshot: Path, server: RunningMockOrg, mode: int,
                     extra: str = "") -> Path:
    key = tmp_path / "keys" / "app.key"
    key.parent.mkdir(exist_ok=True)
    shutil.copyfile(snapshot / "app.key", key)
    os.chmod(key, mode)
    config = make_config(tmp_path, snapshot, server, extra=extra)
    text = config.read_text().replace((snapshot / "app.key").as_posix(), key.as_posix())
    config.write_text(text)
    return config


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o640, 0o604])
def test_a_private_key_others_can_read_is_refused(
    mode: int, snapshot: Path, labels: dict[str, Any], org_server: RunningMockOrg, tmp_path: Path,
) -> None:
    config = _config_with_key(tmp_path, snapshot, org_server, mode)
    proc = invoke("run", "--config", str(config), *_window_args(labels))
    assert proc.exit_code == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "salesforce.private_key_file" in line and "chmod 600" in line
    assert "PRIVATE KEY" not in proc.stderr
    assert not (tmp_path / "store.db").exists()  # refused before anything was written


def test_a_private_key_of_mode_0600_is_used(
    snapshot: Path, labels: dict[str, Any], org_server: RunningMockOrg, tmp_path: Path,
) -> None:
    config = _config_with_key(tmp_path, snapshot, org_server, 0o600)
    proc = invoke("run", "--config", str(config), *_window_args(labels), "--json")
    assert proc.exit_code == 0, proc.stderr
    assert_matches_labels(json.loads(proc.stdout), labels)


def test_fixture_and_demo_keys_are_private(snapshot: Path) -> None:
    assert os.stat(snapshot / "app.key").st_mode & 0o077 == 0


@pytest.mark.parametrize(("key", "value"), [
    ("from", "awu@example.com\\r\\nBcc: everyone@example.com"),
    ("from", "awu@example.com\\nSubject: hi"),
    ("to", ["ok@example.com", "x@example.com\\r\\nBcc: y@example.com"]),
    ("smtp_host", "relay.example.com\\r\\n"),
])
def test_line_breaks_in_header_bound_values_are_refused(
    key: str, value: Any, snapshot: Path, org_server: RunningMockOrg, tmp_path: Path,
) -> None:
    fields = {"smtp_host": "127.0.0.1", "from": "awu@example.com", "to": ["a@example.com"]}
    fields[key] = value
    lines = "\n".join(f"{k} = {json.dumps(v).replace(chr(92) * 2, chr(92))}"
                      for k, v in fields.items())
    config = make_config(tmp_path, snapshot, org_server, extra=f"\n[alerts.email]\n{lines}\n")
    for args in (["alerts", "test"], ["run"]):
        proc = invoke(*args, "--config", str(config))
        assert proc.exit_code == 2, (args, proc.stderr)
        (line,) = proc.stderr.strip().splitlines()
        assert f"alerts.email.{key}" in line and "CR/LF" in line


def test_smtp_login_without_tls_needs_saying_so(
    snapshot: Path, org_server: RunningMockOrg, tmp_path: Path,
) -> None:
    email = ('\n[alerts.email]\nsmtp_host = "127.0.0.1"\nfrom = "a@example.com"\n'
             'to = ["b@example.com"]\nstarttls = false\npassword_env = "TEST_SMTP_PASSWORD"\n')
    config = make_config(tmp_path, snapshot, org_server, extra=email)
    proc = invoke("alerts", "test", "--config", str(config))
    assert proc.exit_code == 2
    assert "allow_plaintext_login" in proc.stderr and "starttls" in proc.stderr
    allowed = make_config(tmp_path, snapshot, org_server, name="ok.toml",
                          extra=email + "allow_plaintext_login = true\n")
    proc = invoke("alerts", "test", "--config", str(allowed), env={"TEST_SMTP_PASSWORD": ""})
    assert proc.exit_code == 1  # validation passed; the unset password is the channel's error
    assert "email: TEST_SMTP_PASSWORD is not set" in proc.stdout


def test_plaintext_login_refused_for_a_config_built_in_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "long-enough-secret")
    base = {"smtp_host": "h", "from_addr": "a@example.com", "to": ("b@example.com",),
            "starttls": False, "password_env": "TEST_SMTP_PASSWORD"}
    _, errors = channels_from_config(Config(alerts=AlertsConfig(email=EmailConfig(**base))))
    assert "without STARTTLS refused" in errors["email"]
    channels, errors = channels_from_config(Config(alerts=AlertsConfig(
        email=EmailConfig(**{**base, "allow_plaintext_login": True}))))
    assert errors == {} and "email" in channels


def test_a_short_secret_is_refused_not_redacted_inside_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "p")
    cfg = Config(alerts=AlertsConfig(email=EmailConfig(
        smtp_host="h", from_addr="a@example.com", to=("b@example.com",),
        password_env="TEST_SMTP_PASSWORD")))
    channels, errors = channels_from_config(cfg)
    assert "email" not in channels
    assert errors["email"].startswith("TEST_SMTP_PASSWORD is shorter than 8 characters")
    assert "'p'" not in errors["email"]
    # redaction replaces whole secrets: a short one never inside a word
    assert redact("support ticket opened", ["p"]) == "support ticket opened"
    assert redact("login p refused", ["p"]) == "login <redacted> refused"
    secret = "hunter2hunter2"
    assert redact(f"auth failed for x{secret}y", [secret]) == "auth failed for x<redacted>y"


# -------------------------------------------------------------- exit codes


def test_fail_on_says_which_findings_and_how_many(
    snapshot: Path, labels: dict[str, Any], org_server: RunningMockOrg, tmp_path: Path,
) -> None:
    config = make_config(tmp_path, snapshot, org_server, extra='[run]\nfail_on = "high"\n')
    proc = invoke("run", "--config", str(config), *_window_args(labels), "--json")
    assert proc.exit_code == 1
    json.loads(proc.stdout)  # the JSON is still printed
    # the kinds the README calls high-severity, counted by the fixture's labels
    high = {k: labels["findings"][k]["count"] for k in ("CEILING_BREACH", "RETRY_LOOP", "AWU_MISMATCH")}
    assert all(high.values())
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"audit: error: {sum(high.values())} findings at or above run.fail_on = 'high': ")
    for kind, count in high.items():
        assert f"{count} {kind}" in line
    assert "NEAR_CEILING" not in line and "SOURCE_GAP" not in line


# ------------------------------------------------------ a read-only store


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Nobody may write `directory` or its files while the block runs: immutable (chattr +i)
    where that works — root ignores modes — else mode 0555/0444."""
    files = sorted(p for p in directory.iterdir() if p.is_file())
    immutable = shutil.which("chattr") is not None and subprocess.run(
        ["chattr", "+i", *map(str, files), str(directory)], capture_output=True).returncode == 0
    modes = {p: p.stat().st_mode for p in [*files, directory]}
    if not immutable:
        assert os.geteuid() != 0, "as root, a read-only store needs chattr +i"
        for p in files:
            os.chmod(p, 0o444)
        os.chmod(directory, 0o555)
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", *map(str, files), str(directory)], check=True)
        for p, mode in modes.items():
            os.chmod(p, mode)


def test_report_reads_a_store_it_cannot_write(
    snapshot: Path, labels: dict[str, Any], org_server: RunningMockOrg, tmp_path: Path,
) -> None:
    config = make_config(tmp_path, snapshot, org_server)
    assert invoke("run", "--config", str(config), *_window_args(labels)).exit_code == 0
    box = tmp_path / "ro"
    box.mkdir()
    db = box / "store.db"
    shutil.copyfile(tmp_path / "store.db", db)  # a closed store: no -wal, no -shm beside it
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in box.iterdir()}
    with read_only(box):
        proc = invoke("report", "--db", str(db), "--format", "json")
        with Store.open(db, readonly=True) as store, pytest.raises(StoreError):
            with store.transaction():
                store.set_run_summary("x", {})
    assert proc.exit_code == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["totals"]["actions"] == labels["totals"]["actions"]
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in box.iterdir()}
    assert after == before  # nothing created, nothing changed


def test_report_on_a_missing_store_is_one_line(tmp_path: Path) -> None:
    proc = invoke("report", "--db", str(tmp_path / "none.db"))
    assert proc.exit_code == 2
    assert proc.stderr.strip() == f"audit: error: no store at {tmp_path / 'none.db'}; run `audit run` first"
    assert not (tmp_path / "none.db").exists()
