"""The human summary of `audit run` names each finding kind in words beside its code; the
`--json` output keeps the codes alone (they are the contract)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.helpers import REPO, invoke


def _documented_labels() -> dict[str, str]:
    """Kind code → the name docs/findings.md says people see (not read from the code)."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+?) \|", (REPO / "docs" / "findings.md").read_text(), re.M)
    return dict(rows)


def test_summary_findings_table_shows_each_kind_in_words(config_path: Path, labels: dict[str, Any]) -> None:
    win = ["--since", labels["window"]["since"], "--until", labels["window"]["until"]]
    proc = invoke("run", "--config", str(config_path), *win)
    assert proc.exit_code == 0, proc.stderr
    words = _documented_labels()
    assert set(words) == set(labels["findings"])
    for kind, expected in labels["findings"].items():
        row = rf"│ {re.escape(words[kind])}\s*│ {kind}\s*│\s*{expected['count']:,} │\s*{expected['wasted_awu']:,.1f} │"
        assert re.search(row, proc.stdout), (kind, proc.stdout)

    as_json = invoke("run", "--config", str(config_path), *win, "--json")
    assert as_json.exit_code == 0, as_json.stderr
    out = json.loads(as_json.stdout)
    assert set(out["findings"]) == set(labels["findings"])  # codes, not words
