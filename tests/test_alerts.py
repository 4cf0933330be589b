"""Alerts: the outbox, and real Slack-like HTTP and SMTP servers on 127.0.0.1."""

from __future__ import annotations

import logging
import sqlite3
import ssl
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from audit.alerts import (
    Channel,
    EmailChannel,
    SlackChannel,
    already_sent_thresholds,
    channels_from_config,
    deliver_pending,
    enqueue,
    send_test,
    slack_payload,
)
from audit.config import AlertsConfig, Config, EmailConfig, SlackConfig
from audit.engine.alerts import Alert, alert_id, budget_threshold_alert, digest_alert
from audit.errors import DeliveryError
from audit.store import Store
from tests.helpers import SLACK_SECRET, LoopbackSMTP, Mailbox, SlackServer, refusing_port

UTC = timezone.utc
NOW = datetime(2026, 10, 7, 2, 0, tzinfo=UTC)
SECRET = SLACK_SECRET
PASSWORD = "pa55-SECRET-word"


# --- a TLS SMTP server (Slack and plain SMTP stand-ins: conftest.py) ---------------------


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[Mailbox, Path]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"alerts" and data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    box = Mailbox("127.0.0.1")
    controller = LoopbackSMTP(
        box,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield box, ca_file
    finally:
        controller.stop()


def _email_cfg(box: Mailbox, **extra: Any) -> EmailConfig:
    values: dict[str, Any] = {
        "smtp_host": box.host,
        "smtp_port": box.port,
        "starttls": False,
        "from_addr": "awu-audit@example.com",
        "to": ("finops@example.com", "admin@example.com"),
        "timeout_s": 5.0,
    }
    values.update(extra)
    return EmailConfig(**values)


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "audit.db") as s:
        yield s


def _threshold(t: float) -> Alert:
    return budget_threshold_alert(
        "2026-10",
        t,
        used_credits=80_000,
        budget_credits=100_000,
        top_findings=("A retry loop of GetOrderHistory ran 7 times in session S1 <b>.",),
    )


@dataclass(frozen=True)
class F:
    id: str
    kind: str
    wasted_usd: float
    explanation: str
    started_at: datetime = NOW
    wasted_awu: float = 1.0
    key: str = ""
    severity: str = "high"
    session_id: str | None = None
    agent: str | None = None
    action_name: str | None = None
    action_ids: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


class Recorder:
    name = "email"

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)


class Crash:
    """A process dying between two channels (not an Exception: nothing catches it)."""

    name = "email"

    def send(self, alert: Alert) -> None:
        raise KeyboardInterrupt


def _deliveries(store: Store) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(store.path)) as conn:
        return conn.execute(
            "SELECT channel, state, attempts, last_error, delivered_run FROM alert_deliveries "
            "ORDER BY channel"
        ).fetchall()


# --- ids and builders ------------------------------------------------------------------------


def test_alert_id_is_deterministic_per_kind_period_threshold_day() -> None:
    assert _threshold(75).id == _threshold(75.0).id == alert_id("BUDGET_THRESHOLD", "2026-10", 75, None)
    assert _threshold(75).id != _threshold(90).id
    assert len({_threshold(50).id, budget_threshold_alert("2026-11", 50, used_credits=1, budget_credits=2).id}) == 2
    with pytest.raises(ValueError):
        Alert("NOPE", "2026-10", None, None, "t", "x")


def test_digest_is_quiet_and_summarises_the_night() -> None:
    assert digest_alert("2026-10-07", []) is None
    findings = [F(f"f{i}", "RETRY", wasted_usd=i / 10, explanation=f"Retry chain {i}.") for i in range(7)]
    findings.append(F("c1", "CEILING_BREACH", wasted_usd=0.05, explanation="A breach."))
    alert = digest_alert("2026-10-07", findings, totals={"actions": 1200, "awu": 1300.0, "credits": 26000.0, "cost_usd": 130.0})
    assert alert is not None
    assert alert.kind == "DIGEST" and alert.day == "2026-10-07" and alert.period == "2026-10"
    assert alert.title == "awu-audit: 8 new findings on 2026-10-07"
    assert dict(alert.fields) == {"RETRY": "7 · $2.10 wasted", "CEILING_BREACH": "1 · $0.05 wasted"}
    assert alert.top_findings == tuple(f"Retry chain {i}." for i in (6, 5, 4, 3, 2))
    assert "1,200 actions" in alert.text and "26,000 credits ($130.00)" in alert.text
    again = digest_alert("2026-10-07", findings[:1])
    assert again is not None and again.id == alert.id  # one digest per day


# --- Slack -----------------------------------------------------------------------------------


def test_slack_receives_block_kit(store: Store, slack: SlackServer) -> None:
    alert = _threshold(75)
    enqueue(store, [alert], ["slack"], "r1", NOW)
    sent = deliver_pending(store, {"slack": SlackChannel(slack.url)}, "r1", NOW)
    assert sent == [{"kind": "BUDGET_THRESHOLD", "period": "2026-10", "threshold": 75, "channels": ["slack"]}]
    assert slack.posts == 1
    body = slack.requests[0]["json"]
    assert body == slack_payload(alert)
    blocks = body["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Agentforce budget 2026-10: 75% reached"}}
    field_texts = [f["text"] for b in blocks if "fields" in b for f in b["fields"]]
    assert "*Used*\n80,000 of 100,000 credits (80.0%)" in field_texts
    assert all(f["type"] == "mrkdwn" for b in blocks if "fields" in b for f in b["fields"])
    top = [b for b in blocks if b.get("text", {}).get("text", "").startswith("*Top findings*")]
    assert top and "session S1 &lt;b&gt;." in top[0]["text"]["text"]  # mrkdwn-escaped
    assert blocks[-1]["type"] == "context"
    assert body["text"].startswith("Agentforce budget 2026-10: 75% reached") and "http" not in body["text"]
    assert _deliveries(store) == [("slack", "sent", 1, None, "r1")]


def test_500_then_200_delivers_exactly_once_across_two_runs(store: Store, slack: SlackServer) -> None:
    slack.script = [(500, {}, "internal error")]
    enqueue(store, [_threshold(50)], ["slack"], "r1", NOW)
    channels = {"slack": SlackChannel(slack.url)}
    assert deliver_pending(store, channels, "r1", NOW) == []
    ((_, state, attempts, error, _),) = _deliveries(store)
    assert (state, attempts) == ("failed", 1)
    assert error == "Slack webhook answered HTTP 500; will retry next run"

    # the next run: enqueue again (no-op) and deliver
    assert enqueue(store, [_threshold(50)], ["slack"], "r2", NOW) == []
    sent = deliver_pending(store, channels, "r2", NOW)
    assert sent == [{"kind": "BUDGET_THRESHOLD", "period": "2026-10", "threshold": 50, "channels": ["slack"]}]
    assert deliver_pending(store, channels, "r3", NOW) == []
    assert slack.posts == 2  # one refused, one accepted: delivered exactly once
    assert _deliveries(store) == [("slack", "sent", 2, None, "r2")]


def test_429_retry_after_is_honoured(store: Store, slack: SlackServer) -> None:
    slack.script = [(429, {"Retry-After": "1"}, "rate_limited")]
    slept: list[float] = []
    enqueue(store, [_threshold(90)], ["slack"], "r1", NOW)
    sent = deliver_pending(store, {"slack": SlackChannel(slack.url, sleep=slept.append)}, "r1", NOW)
    assert slept == [1.0]
    assert sent and sent[0]["channels"] == ["slack"] and slack.posts == 2


def test_429_with_a_long_retry_after_is_left_for_the_next_run(slack: SlackServer) -> None:
    slack.script = [(429, {"Retry-After": "600"}, "rate_limited")]
    slept: list[float] = []
    with pytest.raises(DeliveryError, match="HTTP 429, Retry-After 600 s"):
        SlackChannel(slack.url, sleep=slept.append).send(_threshold(50))
    assert slept == [] and slack.posts == 1


def test_the_webhook_url_never_appears_in_errors_or_logs(
    store: Store, slack: SlackServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for status, body in [(404, "no_service"), (500, ""), (403, f"forbidden {SECRET}")]:
        slack.script = [(status, {}, body)]
        with pytest.raises(DeliveryError) as info:
            SlackChannel(slack.url).send(_threshold(50))
        texts.append(str(info.value))
        assert info.value.__cause__ is None
    assert texts[0] == "Slack webhook refused the message: HTTP 404 no_service"
    with refusing_port() as port:
        closed = f"http://127.0.0.1:{port}/services/{SECRET}"
        with pytest.raises(DeliveryError, match="Slack webhook unreachable") as info:
            SlackChannel(closed, timeout=2).send(_threshold(50))
    texts.append(str(info.value))
    assert info.value.__suppress_context__  # the httpx exception (and its URL) is dropped
    assert repr(SlackChannel(closed)) == "SlackChannel(<webhook redacted>)"

    enqueue(store, [_threshold(50)], ["slack"], "r1", NOW)
    deliver_pending(store, {"slack": SlackChannel(closed, timeout=2)}, "r1", NOW)
    texts += [str(row) for row in _deliveries(store)]
    texts += [r.getMessage() for r in caplog.records]
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)  # httpx did log
    for text in texts:
        assert "SECRETtoken" not in text and "B0AUDIT" not in text, text


def test_missing_webhook_env_is_a_channel_error_not_a_crash(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWU_SLACK_WEBHOOK_URL", raising=False)
    cfg = Config(alerts=AlertsConfig(slack=SlackConfig()))
    channels, errors = channels_from_config(cfg)
    assert channels == {} and errors == {"slack": "AWU_SLACK_WEBHOOK_URL is not set"}
    enqueue(store, [_threshold(50)], ["slack"], "r1", NOW)
    assert deliver_pending(store, channels, "r1", NOW, channel_errors=errors) == []
    assert _deliveries(store) == [("slack", "failed", 1, "AWU_SLACK_WEBHOOK_URL is not set", None)]
    assert send_test(cfg) == {"slack": "AWU_SLACK_WEBHOOK_URL is not set"}


# --- the outbox ------------------------------------------------------------------------------


def test_two_thresholds_in_one_night_are_each_sent_once(store: Store, slack: SlackServer) -> None:
    mail = Recorder()
    channels: dict[str, Channel] = {"slack": SlackChannel(slack.url), "email": mail}
    created = enqueue(store, [_threshold(50), _threshold(75)], ["slack", "email"], "r1", NOW)
    assert len(created) == 2 and already_sent_thresholds(store, "2026-10") == {50.0, 75.0}
    sent = deliver_pending(store, channels, "r1", NOW)
    assert sent == [
        {"kind": "BUDGET_THRESHOLD", "period": "2026-10", "threshold": 50, "channels": ["slack", "email"]},
        {"kind": "BUDGET_THRESHOLD", "period": "2026-10", "threshold": 75, "channels": ["slack", "email"]},
    ]
    # the next night crosses nothing new: nothing is re-created or re-sent
    assert enqueue(store, [_threshold(50), _threshold(75)], ["slack", "email"], "r2", NOW) == []
    assert deliver_pending(store, channels, "r2", NOW) == []
    assert slack.posts == 2 and [a.threshold for a in mail.sent] == [50.0, 75.0]
    assert store.count("alerts") == 2 and store.count("alert_deliveries") == 4


def test_a_crash_between_channels_does_not_resend_the_first(store: Store, slack: SlackServer) -> None:
    enqueue(store, [_threshold(100)], ["slack", "email"], "r1", NOW)
    with pytest.raises(KeyboardInterrupt):
        deliver_pending(store, {"slack": SlackChannel(slack.url), "email": Crash()}, "r1", NOW)
    assert slack.posts == 1
    mail = Recorder()
    sent = deliver_pending(store, {"slack": SlackChannel(slack.url), "email": mail}, "r2", NOW)
    assert sent == [{"kind": "BUDGET_THRESHOLD", "period": "2026-10", "threshold": 100, "channels": ["email"]}]
    assert slack.posts == 1 and len(mail.sent) == 1


def test_a_digest_is_enqueued_once_per_day(store: Store) -> None:
    mail = Recorder()
    night = [F("f1", "RETRY", 0.3, "Retry chain.")]
    digest = digest_alert("2026-10-07", night)
    assert digest is not None
    enqueue(store, [digest], ["email"], "r1", NOW)
    enqueue(store, [digest_alert("2026-10-07", night * 2)], ["email"], "r2", NOW)  # type: ignore[list-item]
    sent = deliver_pending(store, {"email": mail}, "r2", NOW)
    assert sent == [{"kind": "DIGEST", "period": "2026-10", "day": "2026-10-07", "channels": ["email"]}]
    assert len(mail.sent) == 1


# --- email -----------------------------------------------------------------------------------


def test_email_arrives_with_text_and_html_parts(smtp: Mailbox) -> None:
    alert = Alert(
        kind="BUDGET_THRESHOLD",
        period="2026-10",
        threshold=75.0,
        day=None,
        title="Budget <script>alert(1)</script> 75%",
        text="Usage reached 75%.\n\nSecond paragraph & more.",
        fields=(("Used", "75,000 credits"),),
        top_findings=("A <b>retry</b> loop.",),
    )
    EmailChannel(_email_cfg(smtp)).send(alert)
    (envelope,) = smtp.envelopes
    assert envelope.mail_from == "awu-audit@example.com"
    assert envelope.rcpt_tos == ["finops@example.com", "admin@example.com"]
    (msg,) = smtp.messages()
    assert msg["Subject"] == "[awu-audit] Budget <script>alert(1)</script> 75%"
    assert msg["To"] == "finops@example.com, admin@example.com"
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    assert "Usage reached 75%." in text and "75,000 credits" in text and "A <b>retry</b> loop." in text
    markup = html.get_content()
    assert "&lt;script&gt;" in markup and "<script>" not in markup
    assert "A &lt;b&gt;retry&lt;/b&gt; loop." in markup and "<p style=\"margin: 0.4em 0;\">Second paragraph &amp; more.</p>" in markup


def test_email_over_starttls_with_login(tls_smtp: tuple[Mailbox, Path]) -> None:
    box, ca_file = tls_smtp
    cfg = _email_cfg(box, starttls=True, ca_bundle=ca_file)
    EmailChannel(cfg, password=PASSWORD, username="alerts").send(_threshold(50))
    assert len(box.envelopes) == 1

    with pytest.raises(DeliveryError) as info:
        EmailChannel(cfg, password="wrong-" + PASSWORD, username="alerts").send(_threshold(50))
    assert str(info.value) == f"email via 127.0.0.1:{box.port} failed: authentication refused (535)"

    # without the private CA the certificate is not trusted
    with pytest.raises(DeliveryError, match="TLS certificate not trusted"):
        EmailChannel(_email_cfg(box, starttls=True), password=PASSWORD, username="alerts").send(_threshold(50))


def test_email_errors_name_host_and_port_never_the_password(smtp: Mailbox) -> None:
    with refusing_port() as port, pytest.raises(DeliveryError) as info:
        EmailChannel(_email_cfg(Mailbox("127.0.0.1", port)), password=PASSWORD, username="u").send(_threshold(50))
    assert str(info.value) == f"email via 127.0.0.1:{port} failed: Connection refused"
    # the plain server offers no STARTTLS
    with pytest.raises(DeliveryError, match=f"email via 127.0.0.1:{smtp.port} failed: server does not support") as info:
        EmailChannel(_email_cfg(smtp, starttls=True), password=PASSWORD, username="u").send(_threshold(50))
    assert PASSWORD not in str(info.value)


def test_send_test_reaches_every_channel(
    smtp: Mailbox, slack: SlackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWU_TEST_WEBHOOK", slack.url)
    cfg = Config(
        alerts=AlertsConfig(
            slack=SlackConfig(webhook_url_env="AWU_TEST_WEBHOOK"), email=_email_cfg(smtp)
        )
    )
    assert send_test(cfg, now=NOW) == {"email": "ok", "slack": "ok"}
    assert slack.requests[0]["json"]["blocks"][0]["text"]["text"] == "awu-audit test alert"
    assert smtp.messages()[0]["Subject"] == "[awu-audit] awu-audit test alert"


def test_email_credentials_come_from_the_environment(smtp: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWU_SMTP_PASSWORD", raising=False)
    # a loopback relay without TLS: the plaintext login is asked for explicitly
    cfg = Config(alerts=AlertsConfig(email=_email_cfg(
        smtp, password_env="AWU_SMTP_PASSWORD", allow_plaintext_login=True)))
    assert channels_from_config(cfg)[1] == {"email": "AWU_SMTP_PASSWORD is not set"}
    monkeypatch.setenv("AWU_SMTP_PASSWORD", PASSWORD)
    channels, errors = channels_from_config(cfg)
    assert errors == {} and isinstance(channels["email"], EmailChannel)
    assert PASSWORD not in repr(channels["email"])


# --- what the review of the restructure found -------------------------------------------------
@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://hooks.slack.com/services/T0/B0/x", True),
        ("http://127.0.0.1:9/hook", True),
        ("http://localhost:9/hook", True),
        ("http://hooks.slack.com/services/T0/B0/x", False),  # the secret in clear text
        ("ftp://hooks.slack.com/x", False),
    ],
)
def test_a_webhook_url_goes_in_clear_text_only_to_this_machine(
    monkeypatch: pytest.MonkeyPatch, url: str, accepted: bool
) -> None:
    monkeypatch.setenv("AWU_TEST_HOOK", url)
    cfg = Config(alerts=AlertsConfig(slack=SlackConfig(webhook_url_env="AWU_TEST_HOOK")))
    channels, errors = channels_from_config(cfg)
    assert ("slack" in channels) is accepted
    assert ("slack" in errors) is not accepted
    assert url not in " ".join(errors.values())  # the error never repeats the secret


def test_a_channel_that_breaks_unexpectedly_is_one_result_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWU_TEST_HOOK", "https://hooks.example.invalid/x")

    def broken(self: Any, alert: Any) -> None:
        raise RuntimeError("a bug in a channel")

    monkeypatch.setattr(SlackChannel, "send", broken)
    cfg = Config(alerts=AlertsConfig(slack=SlackConfig(webhook_url_env="AWU_TEST_HOOK")))
    assert send_test(cfg) == {"slack": "slack failed unexpectedly (RuntimeError)"}
