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

__all__ = [
    "FINDINGS_TABLE_CAP",
    "findings_table",
    "recorded_config",
    "render_document",
    "render_report",
]

#: how many findings the HTML and Markdown tables list, the costliest first (a month of a
#: large org has tens of thousands); the per-kind totals count all of them, the JSON lists
#: all of them, and `audit export --format csv --table findings` writes all of them
FINDINGS_TABLE_CAP = 200


def render_report(
    store_path: Path,
    fmt: str,
    *,
    cfg: Config | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
    findings_cap: int | None = None,
) -> str:
    """Read one window's report from the store at `store_path` and render it as `fmt`
    (html, md or json). Without `cfg` the rules, prices and budget the run recorded apply
    (the built-in ones when it recorded none). The findings table lists the
    `findings_cap` (default FINDINGS_TABLE_CAP) costliest findings."""
    if not store_path.exists():
        raise StoreError(f"no store at {store_path}; run `audit run` first")
    now = now or datetime.now(timezone.utc)
    with Store.open(store_path, readonly=True) as store:
        window, run = choose_window(store, since=since, until=until, run_id=run_id, now=now)
        cfg = cfg or recorded_config(store, run)
        doc = build_report(store, cfg, window, run, now=now)
    return render_document(doc, fmt, findings_cap=findings_cap)


def recorded_config(store: Store, run: dict[str, Any] | None) -> Config:
    """The settings of `run` (else of the latest completed run) as a Config."""
    source = run or store.latest_completed_run() or {}
    text = source.get("summary")
    summary = json.loads(text) if isinstance(text, str) and text else {}
    return config_with_settings((summary.get("analysis") or {}).get("settings"))


def findings_table(doc: dict[str, Any], cap: int | None = None) -> dict[str, Any]:
    """What the findings table lists: the first `cap` findings of the document (they come
    costliest first), how many there are in all, and the command that exports them all."""
    cap = FINDINGS_TABLE_CAP if cap is None else max(0, cap)
    listed: list[dict[str, Any]] = doc["details"]["findings_list"]
    window = doc["window"]
    export = (
        "audit export --format csv --table findings "
        f"--since {window['since']} --until {window['until']} --out findings.csv"
    )
    return {
        "rows": listed[:cap],
        "total": len(listed),
        "capped": len(listed) > cap,
        "export": export,
    }


def render_document(doc: dict[str, Any], fmt: str, *, findings_cap: int | None = None) -> str:
    """`doc` as html, md or json; JSON keeps every finding, the other two list the
    `findings_cap` costliest (default FINDINGS_TABLE_CAP, read at call time)."""
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
    table = findings_table(doc, findings_cap)
    if fmt == "html":
        return env.get_template("report.html.j2").render(doc=doc, charts=figures(doc), table=table)
    return env.get_template("report.md.j2").render(doc=doc, table=table)
