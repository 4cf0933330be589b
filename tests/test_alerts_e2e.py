"""Alerts through the whole pipeline: `audit run` crosses budget thresholds, delivers to a
real HTTP stand-in for Slack and a real SMTP server, exactly once across runs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.helpers import SlackServer, invoke, make_config


def _run(config: Path, labels: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    proc = invoke("run", "--config", str(config), "--since", labels["window"]["since"],
                   "--until", labels["window"]["until"], "--json", env=env)
    assert proc.exit_code == 0, proc.stderr
    assert SECRET_PART not in proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


SECRET_PART = "xoxSECRET"


def test_thresholds_and_digest_delivered_exactly_once(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any,
    slack: SlackServer, smtp: Any,
) -> None:
    credits = labels["totals"]["credits"]
    budget = round(credits / 0.8)  # 80 % used: the 50 % and 75 % thresholds are crossed
    extra = f"""
[budget]
credits = {budget}

[alerts.slack]
webhook_url_env = "TEST_SLACK_URL"

[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
starttls = false
from = "awu-audit@example.com"
to = ["finops@example.com", "admin@example.com"]
"""
    config = make_config(tmp_path, snapshot, mock_org[1], extra=extra)
    env = {"TEST_SLACK_URL": slack.url}
    slack.script = [(500, {}, "server error")]  # Slack's first delivery fails

    first = _run(config, labels, env)
    assert first["budget"]["thresholds_crossed"] == [50, 75]
    kinds = Counter(a["kind"] for a in first["budget"]["alerts_sent"])
    assert kinds["BUDGET_THRESHOLD"] == 2 and kinds["DIGEST"] == 1
    assert {a["threshold"] for a in first["budget"]["alerts_sent"] if a["kind"] == "BUDGET_THRESHOLD"} == {50, 75}
    missing_slack = [a for a in first["budget"]["alerts_sent"] if "slack" not in a["channels"]]
    assert len(missing_slack) == 1 and missing_slack[0]["channels"] == ["email"]

    second = _run(config, labels, env)
    assert [(a["kind"], a["channels"]) for a in second["budget"]["alerts_sent"]] == [
        (missing_slack[0]["kind"], ["slack"])
    ]
    third = _run(config, labels, env)
    assert third["budget"]["alerts_sent"] == []

    # every alert reached each channel once: 1 failed + N accepted Slack posts, N emails
    n = len(first["budget"]["alerts_sent"])
    assert slack.posts == n + 1
    titles = Counter(r["json"]["text"].splitlines()[0] for r in slack.requests[1:])
    assert all(c == 1 for c in titles.values())
    messages = smtp.messages()
    assert len(messages) == n
    assert len({m["Subject"] for m in messages}) == n
    for m in messages:
        assert m["To"] == "finops@example.com, admin@example.com"
        assert m.get_body(preferencelist=("plain",)) is not None
        assert m.get_body(preferencelist=("html",)) is not None
    budget_msg = next(m for m in messages if "75" in m["Subject"])
    assert "75" in budget_msg.get_body(preferencelist=("plain",)).get_content()


def test_alerts_test_command_reports_each_channel(
    tmp_path: Path, snapshot: Path, mock_org: Any, slack: SlackServer, smtp: Any,
) -> None:
    extra = f"""
[alerts.slack]
webhook_url_env = "TEST_SLACK_URL"

[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
starttls = false
from = "awu-audit@example.com"
to = ["finops@example.com"]
"""
    config = make_config(tmp_path, snapshot, mock_org[1], extra=extra)
    ok = invoke("alerts", "test", "--config", str(config), env={"TEST_SLACK_URL": slack.url})
    assert ok.exit_code == 0, ok.stderr
    assert "slack: ok" in ok.stdout and "email: ok" in ok.stdout
    missing = invoke("alerts", "test", "--config", str(config), env={"TEST_SLACK_URL": ""})
    assert missing.exit_code == 1
    assert "TEST_SLACK_URL" in missing.stdout and "email: ok" in missing.stdout
