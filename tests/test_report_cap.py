"""The report's findings table at scale: HTML and Markdown list the costliest findings up to a
cap and say how many there are in all and how to export every one; the per-kind totals and
the JSON keep all of them."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path
from typing import Any

from audit.report import render_report
from audit.report.labels import KIND_LABELS
from audit.report.render import FINDINGS_TABLE_CAP
from tests.helpers import invoke


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| day |")]


def test_a_window_with_more_findings_than_the_cap_lists_the_costliest(
    config_path: Path, labels: dict[str, Any], tmp_path: Path
) -> None:
    since, until = labels["window"]["since"], labels["window"]["until"]
    proc = invoke("run", "--config", str(config_path), "--since", since, "--until", until, "--json")
    assert proc.exit_code == 0, proc.stderr
    run = json.loads(proc.stdout)
    total = sum(v["count"] for v in labels["findings"].values())  # ground truth
    cap = 7
    assert total > cap
    store = config_path.parent / "store.db"

    md = render_report(store, "md", findings_cap=cap)
    listed = _section(md, "Findings, costliest first")
    rows = _table_rows(listed)
    assert len(rows) == cap
    sentence = re.search(r"^The (\d+) costliest of ([\d,]+) findings in this window.*`(audit export [^`]+)`",
                         listed, flags=re.M)
    assert sentence is not None, listed
    assert int(sentence.group(1)) == cap and int(sentence.group(2).replace(",", "")) == total

    # the command the sentence gives exports every finding of the window
    args = shlex.split(sentence.group(3))
    out = tmp_path / "all.csv"
    args[args.index("--out") + 1] = str(out)
    exported = invoke(*args[1:], "--config", str(config_path))
    assert exported.exit_code == 0, exported.stderr
    every = list(csv.DictReader(out.read_text().splitlines()))
    assert len(every) == total
    # … and the table lists the costliest of them, highest first
    shown = [float(r.split("|")[7].strip().lstrip("$").replace(",", "")) for r in rows]
    assert shown == sorted((round(float(r["wasted_usd"]), 2) for r in every), reverse=True)[:cap]

    # the per-kind totals count ALL findings: they equal the run's --json and the labels
    totals = _section(md, "Findings")
    for kind, block in run["findings"].items():
        assert block["count"] == labels["findings"][kind]["count"]
        assert re.search(rf"^\| {KIND_LABELS[kind]} \| {block['count']} \| {block['wasted_awu']:,.1f} \|",
                         totals, flags=re.M), kind

    page = render_report(store, "html", findings_cap=cap)
    assert page.count('<tr data-kind="') == cap
    assert f"The {cap} costliest of {total:,} findings in this window" in page
    assert f"--since {run['window']['start']} --until {run['window']['end']}" in page

    # JSON keeps every finding whatever the cap, with the run's totals
    doc = json.loads(render_report(store, "json", findings_cap=cap))
    assert len(doc["details"]["findings_list"]) == total
    assert doc["findings"] == run["findings"] and doc["totals"] == run["totals"]


def test_under_the_cap_every_finding_is_listed(config_path: Path, labels: dict[str, Any]) -> None:
    proc = invoke("run", "--config", str(config_path), "--since", labels["window"]["since"],
                  "--until", labels["window"]["until"], "--json")
    assert proc.exit_code == 0, proc.stderr
    total = sum(v["count"] for v in labels["findings"].values())
    assert FINDINGS_TABLE_CAP == 200 and total <= FINDINGS_TABLE_CAP
    md = invoke("report", "--config", str(config_path)).stdout
    listed = _section(md, "Findings, costliest first")
    assert f"All {total:,} findings of this window, costliest first." in listed
    assert len(_table_rows(listed)) == total and "audit export" not in listed
