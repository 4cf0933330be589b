"""The human summary of a run (`audit run` without --json, `audit demo`), printed with rich
(imported when something is printed: `audit run --json` logs plain lines)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.engine.findings import KIND_LABELS
from audit.pipeline import RunResult
from audit.progress import log_line

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["alert_lines", "log_what_it_did", "make_console", "print_quiet", "print_summary"]

_LABELS = {
    "flex": "Flex Credits",
    "per_conversation": "Per conversation",
    "per_user": "Per user",
}


def make_console(*, stderr: bool = False) -> Console:
    """A console that never wraps a line when it writes to a file or a pipe (a log line
    cut at 80 columns mid-value is unreadable)."""
    from rich.console import Console

    con = Console(stderr=stderr)
    if not con.is_terminal:
        con = Console(stderr=stderr, soft_wrap=True, width=max(con.width, 200))
    return con


def alert_lines(result: RunResult) -> list[str]:
    """What the run's alerting did: each alert sent (to which channels) and each delivery
    that failed (and why; retried by the next run)."""
    b = result.output["budget"]
    lines = [f"alert sent: {_alert_name(a)} → {', '.join(a['channels'])}" for a in b["alerts_sent"]]
    lines += [
        f"alert NOT sent: {_alert_name(a)} → {a['channel']}: {a['error']} — will retry next run"
        for a in b.get("alerts_failed", [])
    ]
    return lines


def _alert_name(a: dict[str, object]) -> str:
    name = f"{a['kind']} {a.get('period') or ''}".strip()
    if a.get("threshold") is not None:
        name += f" {a['threshold']}%"
    if a.get("day"):
        name += f" ({a['day']})"
    return name


def log_what_it_did(result: RunResult, write: Callable[[str], None]) -> None:
    """The alert lines and the hint as timestamped log lines (beside `--json` output)."""
    for said in (result.reused, result.recomputed):
        if said:
            write(log_line("INFO", said))
    for line in alert_lines(result):
        write(log_line("WARNING" if line.startswith("alert NOT") else "INFO", line))
    if result.hint:
        write(log_line("WARNING", f"hint: {result.hint}"))


def print_quiet(result: RunResult, *, console: Console | None = None) -> None:
    """--quiet: the one summary line, and only what needs attention."""
    con = console or make_console()
    con.print(result.summary_line(), markup=False, highlight=False)
    for line in alert_lines(result):
        if line.startswith("alert NOT sent"):
            con.print(line, markup=False, highlight=False)
    if result.hint:
        con.print(f"hint: {result.hint}", markup=False, highlight=False)


def print_summary(
    result: RunResult,
    *,
    store_path: Path,
    console: Console | None = None,
    all_notes: bool = False,
) -> None:
    out = result.output
    con = console or make_console()
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

    from rich.table import Table

    table = Table(title="Findings", show_lines=False)
    table.add_column("finding")
    table.add_column("kind")
    table.add_column("count", justify="right")
    table.add_column("wasted AWU", justify="right")
    for kind, v in out["findings"].items():
        label = KIND_LABELS.get(kind, kind)
        table.add_row(label, kind, f"{v['count']:,}", f"{v['wasted_awu']:,.1f}")
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

    _print_budget_and_sync(con, out)
    for said in (result.reused, result.recomputed):
        if said:
            con.print(said, markup=False, highlight=False)
    _print_attention(con, result, all_notes)
    con.print(f"Store: {store_path}")


def _print_budget_and_sync(con: Console, out: dict[str, Any]) -> None:
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


def _print_attention(con: Console, result: RunResult, all_notes: bool) -> None:
    """Alerts sent and failed, the empty-window hint, the source notes."""
    for line in alert_lines(result) or ["alerts: none sent this run"]:
        con.print(line, markup=False, highlight=False)
    if result.hint:
        con.print(f"hint: {result.hint}", markup=False, highlight=False)
    notes = result.notes if all_notes else result.notes[:5]
    for note in notes:
        con.print(f"  note: {note}", markup=False)
    if len(result.notes) > len(notes):
        con.print(f"  … {len(result.notes) - len(notes)} more notes (--verbose shows them)")
