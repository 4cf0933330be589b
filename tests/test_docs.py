"""The README and docs/ are the whole documentation of a clone: every link stays inside the
repository and resolves, the `--json` schema ships in docs/, the report's picture is there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

from tests.helpers import REPO, SCHEMA

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_links_stay_inside_the_repository_and_resolve() -> None:
    bad = []
    for page in _pages():
        for target in LINK.findall(page.read_text()):
            path = target.split("#", 1)[0]
            if re.match(r"^[a-z]+:", target):
                bad.append(f"{page.name}: {target} leaves the repository")
                continue
            resolved = (page.parent / path).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                bad.append(f"{page.name}: {target} does not resolve inside the repository")
    assert bad == []
    assert "../shared" not in (REPO / "README.md").read_text()


def test_the_json_schema_ships_in_docs() -> None:
    assert SCHEMA == REPO / "docs" / "run-output.schema.json"
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "alerts_failed" in schema["properties"]["budget"]["properties"]


def test_the_readme_shows_the_report() -> None:
    assert "![" in (REPO / "README.md").read_text() and "docs/report.png" in (REPO / "README.md").read_text()
    assert (REPO / "docs" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (REPO / "docs" / "screenshot.py").exists()
