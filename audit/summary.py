"""The human summary of a run (`audit run` without --json, `audit demo`), printed with rich."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from audit.pipeline import RunResult

__all__ = ["print_summary"]

_LABELS = {
    "flex": "Flex Credits",
    "per_conversation": "Per conversation",
    "per_user": "Per user",
}


def print_summary(result: RunResult, *, store_path: Path, console: Console | None = None) -> None:
    out = result.output
    con = console or Console()
    t = out["totals"]
    sandbox = " (sandbox)" if out["is_sandbox"] else ""
    con.print(
        f"[bold]awu-audit[/bold] org {out['org_id']}{sandbox}  window "
        f"{out['window']['start']} .. {out['window']['end']}"
    )
    con.print(
        f"Totals: {t['actions']:,} actions ({t['billable_actions']:,} billable), "
        f"{t['tokens']:,} tokens, {t['awu']:,.1f} AWU recomputed vs {t['reported_awu']:,.1f} "
        f"reported, {t['credits']:,.0f} credits, ${t['cost_usd']:,.2f}"
    )

    table = Table(title="Findings", show_lines=False)
    table.add_column("kind")
    table.add_column("count", justify="right")
    table.add_column("wasted AWU", justify="right")
    for kind, v in out["findings"].items():
        table.add_row(kind, f"{v['count']:,}", f"{v['wasted_awu']:,.1f}")
    con.print(table)

    if result.top_findings:
        con.print("[bold]Top waste[/bold]")
        for f in result.top_findings:
            con.print(f"  • [{f.severity}] {f.explanation}", markup=False)

    p = out["pricing"]
    prices = Table(title="What the same usage costs under each pricing model")
    prices.add_column("model")
    prices.add_column("USD", justify="right")
    for key, label in _LABELS.items():
        mark = "  ← cheapest" if p["cheapest"] == key else ""
        prices.add_row(label + mark, f"${p[f'{key}_usd']:,.2f}")
    con.print(prices)

    b = out["budget"]
    crossed = ", ".join(f"{x:g}%" for x in b["thresholds_crossed"]) or "none"
    depletion = f", forecast depletion {b['depletion_date']}" if b["depletion_date"] else ""
    con.print(
        f"Budget {b['period']}: {b['used_credits']:,.0f} of {b['credits']:,} credits "
        f"({b['used_pct']:.1f}%), thresholds crossed: {crossed}{depletion}"
    )
    s = out["sync"]
    con.print(
        f"Sync: {s['records']:,} records, {s['elf_files_downloaded']} log files downloaded, "
        f"{s['elf_files_skipped']} already known; {out['data_quality']['bad_records']} bad records"
    )
    if "data360_queries" in s:
        con.print(
            f"Data 360: {s['data360_queries']} queries, {s.get('data360_rows', 0):,} rows read "
            "(the audit's own Data Queries cost)"
        )
    for note in result.notes[:5]:
        con.print(f"  note: {note}", markup=False)
    con.print(f"Store: {store_path}")
