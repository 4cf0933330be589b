"""The layering is a contract, checked on the source: data flows source → sink (store) →
engine → store → alerts/report, and each package imports only what its layer may."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: package → module prefixes it must never import
FORBIDDEN = {
    "connector": ("audit", "fixtures"),
    "audit/engine": ("audit.store", "audit.alerts", "audit.cli", "audit.pipeline", "connector",
                     "sqlite3", "sqlite_utils", "httpx", "requests"),
    "fixtures": ("audit", "connector"),
}
#: only the store speaks SQL (the mock org's Data 360 tenant runs its SQL on SQLite)
SQL_MODULES = ("sqlite3", "sqlite_utils")
SQL_ALLOWED = ("audit/store/", "connector/mock/data360")
MAX_FUNCTION_LINES = 60
#: one-pass functions that stay whole, and why
LONG_FUNCTIONS = {
    # one pass over a million actions: splitting it would walk them once per rule
    "audit/engine/rules.py:evaluate",
}
MAX_MODULE_LINES = 500
LONG_MODULES = {"connector/mock/soql.py"}  # the SOQL engine: tokenizer, parser, evaluator


def _modules(*roots: str) -> Iterator[Path]:
    for root in roots:
        yield from sorted((REPO / root).rglob("*.py"))


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_downward(package: str) -> None:
    bad = [
        f"{_rel(path)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if any(name == p or name.startswith(p + ".") for p in FORBIDDEN[package])
    ]
    assert bad == []


def test_only_the_store_speaks_sql() -> None:
    bad = [
        f"{_rel(path)} imports {name}"
        for path in _modules("audit", "connector", "fixtures")
        if not _rel(path).startswith(SQL_ALLOWED)
        for name in _imports(path)
        if name.split(".")[0] in SQL_MODULES
    ]
    assert bad == []


def test_functions_stay_short() -> None:
    long = []
    for path in _modules("audit", "connector"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                name = f"{_rel(path)}:{node.name}"
                if lines > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS:
                    long.append(f"{name} ({lines} lines)")
    assert long == []


def test_modules_stay_small() -> None:
    big = [
        f"{_rel(path)} ({n} lines)"
        for path in _modules("audit", "connector", "fixtures")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
        and _rel(path) not in LONG_MODULES
    ]
    assert big == []
