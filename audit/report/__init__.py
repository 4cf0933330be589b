"""`audit report`: one window's usage, waste, budget and pricing from the store, as a
self-contained HTML page (inline SVG charts, a filterable findings table), Markdown, or
JSON with the `audit run --json` blocks for that window.

Modules: `data` (the report document for a window), `series` (what charts draw), `charts`
(SVG), `figures` (the report's charts), `labels` (human names and number formats),
`render` (templates).

The names below are imported on first use: every run imports `audit.report.settings`, and
with it this package, but only `audit report` needs the templates and charts."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audit.report.data import build_report, choose_window
    from audit.report.render import render_document, render_report

__all__ = ["build_report", "choose_window", "render_document", "render_report"]

_HOME = {
    "build_report": "audit.report.data",
    "choose_window": "audit.report.data",
    "render_document": "audit.report.render",
    "render_report": "audit.report.render",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
