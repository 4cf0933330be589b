"""`audit report`: one window per report, the run's numbers for that window, every format a
superset of the one below it (HTML ⊇ Markdown ⊇ the run summary)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from audit.report.labels import KIND_LABELS, PRICING_LABELS
from tests.helpers import SCHEMA, assert_matches_labels, invoke

_BLOCKS = ("totals", "findings", "budget", "pricing")


def _run_json(config: Path, since: str, until: str) -> dict[str, Any]:
    proc = invoke("run", "--config", str(config), "--since", since, "--until", until, "--json")
    assert proc.exit_code == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _report(config: Path, *args: str) -> str:
    proc = invoke("report", "--config", str(config), *args)
    assert proc.exit_code == 0, proc.stderr
    return proc.stdout


def _comparable(block: dict[str, Any]) -> dict[str, Any]:
    """A §7 budget block without what depends on the moment (alerts of this run)."""
    return {k: v for k, v in block.items() if k not in ("alerts_sent", "alerts_failed")}


def test_report_json_is_the_run_json_of_its_window(config_path: Path, labels: dict[str, Any]) -> None:
    since, until = labels["window"]["since"], labels["window"]["until"]
    run = _run_json(config_path, since, until)
    by_run = json.loads(_report(config_path, "--format", "json", "--run", run["run_id"][:10]))
    by_dates = json.loads(_report(config_path, "--format", "json", "--since", since, "--until", until))
    default = json.loads(_report(config_path, "--format", "json"))
    for doc in (by_run, by_dates, default):
        assert doc["window"]["since"] == run["window"]["start"]
        assert doc["window"]["until"] == run["window"]["end"]
        for key in ("totals", "findings", "pricing"):
            assert doc[key] == run[key], key
        assert _comparable(doc["budget"]) == _comparable(run["budget"])
        assert set(doc["budget"]) >= set(run["budget"])
        assert doc["data_quality"]["bad_records"] == run["data_quality"]["bad_records"]
        # the same blocks validate against the run-output schema's definitions
        schema = json.loads(SCHEMA.read_text())
        for key in _BLOCKS:
            jsonschema.validate(doc[key], {**schema["properties"][key], "$defs": schema["$defs"]})
        # ground truth: the fixture generator's labels, not the code under test
        assert_matches_labels({**doc, "data_quality": run["data_quality"]}, labels)


def test_one_window_per_report(config_path: Path, labels: dict[str, Any]) -> None:
    """A later run over an empty window does not mix into the report of an earlier one,
    and the report of the empty window says where the usage is."""
    first = _run_json(config_path, labels["window"]["since"], labels["window"]["until"])
    empty = _run_json(config_path, "2026-11-24", "2026-12-01")
    assert empty["totals"]["actions"] == 0

    latest = json.loads(_report(config_path, "--format", "json"))
    assert latest["window"]["since"].startswith("2026-11-24")
    assert latest["totals"]["actions"] == 0
    assert all(v["count"] == 0 for v in latest["findings"].values())
    assert latest["details"]["findings_list"] == []
    md = _report(config_path)
    assert "No action in this window" in md and f"{labels['totals']['actions']:,}" in md

    earlier = json.loads(_report(config_path, "--format", "json", "--run", first["run_id"]))
    assert earlier["totals"] == first["totals"]
    assert {k: v["count"] for k, v in earlier["findings"].items()} == {
        k: v["count"] for k, v in labels["findings"].items()
    }
    assert len(earlier["details"]["findings_list"]) == sum(
        v["count"] for v in labels["findings"].values()
    )


def _md_cells(md: str) -> list[str]:
    cells = []
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            row = line.strip().strip("|").replace("\\|", "\x00").split("|")
            cells += [c.strip().replace("\x00", "|") for c in row if c.strip()]
    return cells


def _text(page: str) -> str:
    page = re.sub(r"<script.*?</script>|<style.*?</style>|<svg.*?</svg>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_markdown_holds_the_run_summary_and_html_holds_the_markdown(
    config_path: Path, labels: dict[str, Any], tmp_path: Path
) -> None:
    since, until = labels["window"]["since"], labels["window"]["until"]
    run = invoke("run", "--config", str(config_path), "--since", since, "--until", until)
    assert run.exit_code == 0, run.stderr
    md = _report(config_path)
    t = labels["totals"]
    # what the run's summary says, the Markdown says
    for needle in (f"{t['actions']:,} actions", f"{t['tokens']:,} tokens", f"{t['awu']:,.1f} AWU",
                   f"${t['cost_usd']:,.2f}", f"{t['credits']:,.0f} Flex Credits"):
        assert needle in md, needle
    for kind, expected in labels["findings"].items():
        assert re.search(rf"^\| {KIND_LABELS[kind]} \| {expected['count']} \| "
                         rf"{expected['wasted_awu']:,.1f} \|", md, flags=re.M), kind
    for key, label in PRICING_LABELS.items():
        assert re.search(rf"^\| {label}( \(cheapest\))? \| \${labels['pricing'][key + '_usd']:,.2f} \|",
                         md, flags=re.M), key
    assert f"Cheapest: **{PRICING_LABELS[labels['pricing']['cheapest']]}**" in md
    assert f"{labels['data_quality']['bad_records']} bad records" in md
    # conversation lengths in numeric order, not string order
    buckets = re.findall(r"^\| (0|1-5|6-10|11-20|21-50|51\+) \| [\d,]+ \|$", md, flags=re.M)
    assert buckets == ["0", "1-5", "6-10", "11-20", "21-50", "51+"]

    out = tmp_path / "r.html"
    invoke("report", "--config", str(config_path), "--format", "html", "--out", str(out))
    page = out.read_text()
    text = _text(page)
    missing = [c for c in _md_cells(md) if c not in text]
    assert missing == [], missing[:10]
    for section in ("Summary", "Budget", "Daily spend by agent", "Recomputed vs reported",
                    "Findings and waste", "Tokens per action", "Conversation lengths",
                    "Pricing models", "Findings, costliest first", "Data quality", "Method"):
        assert f"<h2>{section}</h2>" in page, section
    assert len(page) < 1_500_000
    assert not re.search(r"""(src|href)=["']https?:""", page)  # nothing from the network


def test_report_json_numbers_carry_no_float_noise(config_path: Path, labels: dict[str, Any]) -> None:
    _run_json(config_path, labels["window"]["since"], labels["window"]["until"])
    text = _report(config_path, "--format", "json")
    noisy = re.findall(r"\d+\.\d{7,}", text)
    assert noisy == []


@pytest.mark.parametrize(("args", "needle"), [
    (["--run", "nosuchrun"], "no completed run"),
    (["--since", "2026-10-05", "--until", "2026-10-01"], "--since must be before --until"),
    (["--until", "2026-10-01"], "--until needs --since"),
    (["--since", "yesterday"], "--since must be an ISO date"),
])
def test_bad_report_options_are_one_line(config_path: Path, labels: dict[str, Any],
                                         args: list[str], needle: str) -> None:
    _run_json(config_path, labels["window"]["since"], labels["window"]["until"])
    proc = invoke("report", "--config", str(config_path), *args)
    assert proc.exit_code == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
