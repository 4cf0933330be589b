"""A run that says what it did: alerts sent and failed, where the usage is when the window
is empty, timestamped unwrapped log lines off a terminal, --quiet and --verbose, and JSON
numbers rounded to their meaning."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema

from audit.config import load_config
from audit.pipeline import run_audit
from tests.helpers import SCHEMA, assert_matches_labels, invoke, make_config

LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z (INFO|WARNING) \S")
SLACK_ON = '[alerts.slack]\nwebhook_url_env = "AWU_TEST_UNSET_WEBHOOK"\nenabled = true\n'


def test_failed_alerts_are_reported_and_the_run_still_exits_0(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    budget = f"[budget]\ncredits = {round(labels['totals']['credits'] * 1.5)}\n"  # 67 % used
    config = make_config(tmp_path, snapshot, mock_org[1], extra=SLACK_ON + budget)
    win = ["--since", labels["window"]["since"], "--until", labels["window"]["until"]]
    proc = invoke("run", "--config", str(config), *win, "--json")  # the variable is never set
    assert proc.exit_code == 0, proc.stderr
    out = json.loads(proc.stdout)
    jsonschema.validate(out, json.loads(SCHEMA.read_text()))
    failed = out["budget"]["alerts_failed"]
    assert out["budget"]["alerts_sent"] == []
    # the labels' credits cross the budget's 50 % threshold: that alert at least
    assert any(f["kind"] == "BUDGET_THRESHOLD" and f["threshold"] == 50 for f in failed)
    assert {f["channel"] for f in failed} == {"slack"}
    assert all(f["error"] == "AWU_TEST_UNSET_WEBHOOK is not set" for f in failed)
    assert all(LOG_LINE.match(line) for line in proc.stderr.splitlines()), proc.stderr
    assert "alert NOT sent: BUDGET_THRESHOLD 2026-10 50%" in proc.stderr

    again = invoke("run", "--config", str(config), *win)
    assert again.exit_code == 0, again.stderr
    assert re.search(r"^alert NOT sent: BUDGET_THRESHOLD 2026-10 50% → slack: "
                     r"AWU_TEST_UNSET_WEBHOOK is not set — will retry next run$", again.stdout, re.M)


def test_an_empty_window_says_where_the_usage_is(
    tmp_path: Path, snapshot: Path, labels: dict[str, Any], mock_org: Any
) -> None:
    """The fixtures are in October; a run in December audits the last 7 days: 0 actions,
    and the hint's --since/--until, used as printed, audit the labelled usage."""
    cfg = load_config(make_config(tmp_path, snapshot, mock_org[1]))
    now = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    result = run_audit(cfg, now=now)
    assert result.output["totals"]["actions"] == 0
    assert result.hint is not None and result.hint.startswith("0 actions in 2026-11-24..12-01;")
    m = re.search(r"use --since (\S+) --until (\S+)$", result.hint)
    assert m is not None, result.hint
    # the org's records span the labelled window (and a little around it, by design)
    assert m.group(1) <= labels["window"]["since"][:10] and m.group(2) >= labels["window"]["until"][:10]

    proc = invoke("run", "--config", str(cfg_path(tmp_path)), "--since", m.group(1),
                  "--until", m.group(2), "--json")
    assert proc.exit_code == 0, proc.stderr
    assert json.loads(proc.stdout)["totals"]["actions"] >= labels["totals"]["actions"]
    inside = invoke("run", "--config", str(cfg_path(tmp_path)), "--since", labels["window"]["since"],
                    "--until", labels["window"]["until"], "--json")
    assert_matches_labels(json.loads(inside.stdout), labels)

    # now the store has the usage: an empty window names the store's span
    empty = invoke("run", "--config", str(cfg_path(tmp_path)), "--since", "2026-11-24",
                   "--until", "2026-12-01")
    assert empty.exit_code == 0, empty.stderr
    assert re.search(r"^hint: 0 actions in 2026-11-24\.\.12-01; the store holds [\d,]+ source "
                     rf"records from {m.group(1)} to {m.group(2)}", empty.stdout, re.M), empty.stdout


def cfg_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.toml"


def test_off_a_terminal_stages_are_timestamped_lines_and_nothing_wraps(
    config_path: Path, labels: dict[str, Any]
) -> None:
    win = ["--since", labels["window"]["since"], "--until", labels["window"]["until"]]
    proc = invoke("run", "--config", str(config_path), *win)  # CliRunner: not a terminal
    assert proc.exit_code == 0, proc.stderr
    lines = proc.stdout.splitlines()
    stages = [line for line in lines if LOG_LINE.match(line)]
    assert len(stages) >= 3 and any("connecting" in s for s in stages)
    assert lines.index(stages[-1]) < next(i for i, line in enumerate(lines) if line.startswith("Totals:"))
    totals = next(line for line in lines if line.startswith("Totals:"))
    assert len(totals) > 100 and totals.endswith(f"${labels['totals']['cost_usd']:,.2f}")
    assert proc.stderr == ""

    quiet = invoke("run", "--config", str(config_path), *win, "--quiet")
    assert quiet.exit_code == 0, quiet.stderr
    assert quiet.stdout.splitlines()[0].startswith("run ") and " ok: " in quiet.stdout
    assert not any(LOG_LINE.match(line) for line in quiet.stdout.splitlines())
    assert len(quiet.stdout.splitlines()) <= 2

    verbose = invoke("run", "--config", str(config_path), *win, "--json", "--verbose")
    assert verbose.exit_code == 0, verbose.stderr
    json.loads(verbose.stdout)  # stdout stays one JSON object
    logged = [line for line in verbose.stderr.splitlines() if LOG_LINE.match(line)]
    assert len(logged) >= 2 and "connecting" in logged[0]

    both = invoke("run", "--config", str(config_path), "--quiet", "--verbose")
    assert both.exit_code == 2 and "--quiet and --verbose" in both.stderr


def test_json_numbers_are_rounded_to_their_meaning(config_path: Path, labels: dict[str, Any]) -> None:
    proc = invoke("run", "--config", str(config_path), "--since", labels["window"]["since"],
                  "--until", labels["window"]["until"], "--json")
    out = json.loads(proc.stdout)

    def decimals(x: float) -> int:
        text = repr(x)
        return len(text.split(".")[1]) if "." in text and "e" not in text else 0

    t = out["totals"]
    assert decimals(t["awu"]) <= 1 and decimals(t["reported_awu"]) <= 1
    assert decimals(t["credits"]) <= 2 and decimals(t["cost_usd"]) <= 2
    assert all(decimals(v["wasted_awu"]) <= 1 for v in out["findings"].values())
    assert all(decimals(out["pricing"][k]) <= 2 for k in ("flex_usd", "per_conversation_usd", "per_user_usd"))
    assert decimals(out["budget"]["used_credits"]) <= 2 and decimals(out["budget"]["used_pct"]) <= 2
    assert not re.search(r"\d\.\d{7,}", proc.stdout)
