"""`audit report`: one window's usage, waste, budget and pricing from the store, as a
self-contained HTML page (inline SVG charts, a filterable findings table), Markdown, or
JSON with the `audit run --json` blocks for that window.

Modules: `data` (the report document for a window), `series` (what charts draw), `charts`
(SVG), `figures` (the report's charts), `labels` (human names and number formats),
`render` (templates)."""

from __future__ import annotations

from audit.report.data import build_report, choose_window
from audit.report.render import render_document, render_report

__all__ = ["build_report", "choose_window", "render_document", "render_report"]
