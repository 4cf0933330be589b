"""`audit report`: findings and usage from the store as HTML, Markdown or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from audit.engine.rules import KINDS
from audit.errors import StoreError
from audit.store import Store

__all__ = ["build_report", "render_report"]


def build_report(store: Store, *, top: int = 20) -> dict[str, Any]:
    """Everything a report shows, read from the store (no network)."""
    last = store.latest_completed_run()
    if last is None:
        raise StoreError(f"{store.path} holds no completed run yet; run `audit run` first")
    by_kind = {k: {"count": 0, "wasted_awu": 0.0, "wasted_usd": 0.0} for k in KINDS}
    for r in store.open_findings_by_kind():
        by_kind[r["kind"]] = {
            "count": r["n"],
            "wasted_awu": round(r["awu"] or 0, 6),
            "wasted_usd": round(r["usd"] or 0, 6),
        }
    top_findings = [
        {
            k: r[k]
            for k in (
                "kind",
                "severity",
                "agent",
                "action_name",
                "wasted_awu",
                "wasted_usd",
                "explanation",
                "started_at",
            )
        }
        for r in store.top_open_findings(top)
    ]
    daily = store.usage_by_day()
    summary = json.loads(last["summary"]) if last.get("summary") else {}
    analysis = summary.pop("analysis", {})
    return {
        "run": {
            k: last.get(k)
            for k in (
                "id",
                "started_at",
                "ended_at",
                "window_start",
                "window_end",
                "org_id",
                "is_sandbox",
            )
        },
        "last_run": summary,
        "findings": by_kind,
        "top_findings": top_findings,
        "analysis": analysis,
        "daily_usage": daily,
    }


def render_report(store_path: Path, fmt: str) -> str:
    if not store_path.exists():
        raise StoreError(f"no store at {store_path}; run `audit run` first")
    with Store.open(store_path, readonly=True) as store:
        data = build_report(store)
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True)
    env = Environment(
        loader=PackageLoader("audit", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("report.html.j2" if fmt == "html" else "report.md.j2")
    return template.render(**data)
