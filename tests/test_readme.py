"""The README's first two commands are what a newcomer types; keep them true."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _shell_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_readme_starts_with_demo_then_test_command() -> None:
    blocks = _shell_blocks((REPO / "README.md").read_text())
    demo, tests = blocks[0], blocks[1]
    assert demo.endswith("audit demo") and "pip install" in demo
    assert "pytest" in tests
    extras = re.search(r"pip install -q -e '\.\[([a-z,]+)\]'", tests)
    assert extras and "test" in extras.group(1).split(","), "the test command installs [test]"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    tests = _shell_blocks((REPO / "README.md").read_text())[1]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    commands = [line for line in ci if line and not line.startswith(("#", "set ", "cd "))]
    assert commands == [tests]


def test_config_example_lists_every_key() -> None:
    import dataclasses

    from audit.config import Config, load_config

    cfg = load_config(REPO / "config.example.toml")  # valid as shipped
    assert cfg.alerts.slack is not None
    text = (REPO / "config.example.toml").read_text()
    for section in dataclasses.fields(Config):
        if section.name in ("awi_fields", "path", "alerts"):
            continue
        value = getattr(cfg, section.name)
        assert f"[{section.name}]" in text, section.name
        for f in dataclasses.fields(value):
            assert re.search(rf"^#? ?{f.name} = ", text, flags=re.M), f"{section.name}.{f.name}"


def test_every_command_and_option_in_the_readme_table_exists() -> None:
    """Each `audit …` row of the Commands table names a real command and real options."""
    import click

    from audit.cli import cli

    text = (REPO / "README.md").read_text()
    table = text.split("## Commands", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `audit ([^`]+)` \|", table, flags=re.M)
    assert len(rows) >= 7
    for row in rows:
        words = row.split()
        group: click.Command = cli
        name_parts = []
        while words and isinstance(group, click.Group) and words[0] in group.commands:
            group = group.commands[words.pop(0)]
            name_parts.append(group.name)
        assert name_parts, row
        known = {opt for p in group.params for opt in getattr(p, "opts", [])}
        for option in re.findall(r"--[a-z][a-z-]*", row):
            assert option in known, f"audit {' '.join(name_parts)}: {option} is not an option"
