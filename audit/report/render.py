"""The report document as HTML (inline SVG, inline script, no network), Markdown or JSON."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from audit.config import Config
from audit.errors import StoreError
from audit.report import labels
from audit.report.data import build_report, choose_window
from audit.report.figures import figures
from audit.report.settings import config_with_settings
from audit.store import Store

__all__ = ["recorded_config", "render_document", "render_report"]


def render_report(
    store_path: Path,
    fmt: str,
    *,
    cfg: Config | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """Read one window's report from the store at `store_path` and render it as `fmt`
    (html, md or json). Without `cfg` the rules, prices and budget the run recorded apply
    (the built-in ones when it recorded none)."""
    if not store_path.exists():
        raise StoreError(f"no store at {store_path}; run `audit run` first")
    now = now or datetime.now(timezone.utc)
    with Store.open(store_path, readonly=True) as store:
        window, run = choose_window(store, since=since, until=until, run_id=run_id, now=now)
        cfg = cfg or recorded_config(store, run)
        doc = build_report(store, cfg, window, run, now=now)
    return render_document(doc, fmt)


def recorded_config(store: Store, run: dict[str, Any] | None) -> Config:
    """The settings of `run` (else of the latest completed run) as a Config."""
    source = run or store.latest_completed_run() or {}
    text = source.get("summary")
    summary = json.loads(text) if isinstance(text, str) and text else {}
    return config_with_settings((summary.get("analysis") or {}).get("settings"))


def render_document(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2)
    env = Environment(
        loader=PackageLoader("audit", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    tz = doc["about"]["timezone"]
    env.filters.update(
        usd=labels.usd,
        awu=labels.awu,
        credits=labels.credits,
        when=lambda v: labels.local_time(v, tz),
        kind=lambda k: labels.KIND_LABELS.get(k, k),
        severity=lambda s: labels.SEVERITY_LABELS.get(s, s),
        num=lambda v: "—" if v is None else f"{v:,}",
        pct=lambda v: "—" if v is None else f"{100 * float(v):.1f} %",
    )
    env.globals.update(
        KIND_LABELS=labels.KIND_LABELS,
        PRICING_LABELS=labels.PRICING_LABELS,
    )
    if fmt == "html":
        return env.get_template("report.html.j2").render(doc=doc, charts=figures(doc))
    return env.get_template("report.md.j2").render(doc=doc)
