"""The `audit` command line. Thin by design: parse options, call the library, and turn
library errors into one clear line on stderr with the SPEC §7 exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click

from audit.cli_errors import (
    CliError,
    FindingsFailed,
    friendly_errors,
)
from audit.errors import ConfigError

__all__ = ["main", "cli", "CliError"]

F = TypeVar("F", bound=Callable[..., Any])


def _fail_on_tripped(fail_on: str, reason: str | None = None) -> FindingsFailed:
    """Exit 1, saying which findings tripped `[run] fail_on` and how many."""
    return FindingsFailed(
        reason or f"findings at or above run.fail_on = {fail_on!r} (listed in the summary / --json)"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="awu-audit")
def cli() -> None:
    """awu-audit: an independent auditor for Salesforce Agentforce consumption."""


def _load(config: str | None) -> Any:
    from audit.config import load_config

    path = config or os.environ.get("AWU_AUDIT_CONFIG") or "awu-audit.toml"
    if config is None and not Path(path).exists():
        raise ConfigError(
            "no config: pass --config FILE (see config.example.toml) or set AWU_AUDIT_CONFIG"
        )
    return load_config(path)


def _progress(
    enabled: bool, *, log: bool = False, log_to_stderr: bool = True
) -> AbstractContextManager[Callable[[str, int, int | None], None]]:
    from audit.progress import progress_display

    return progress_display(
        enabled, log=log, write=lambda line: click.echo(line, err=log_to_stderr)
    )


@cli.command()
@click.option("--config", "config", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option(
    "--since", help="Window start: ISO date (00:00Z) or datetime. Default: from the cursor."
)
@click.option("--until", help="Window end (exclusive). Default: now.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print exactly one JSON object (its schema: docs/run-output.schema.json).",
)
@click.option("--quiet", "-q", is_flag=True, help="One summary line and what needs attention.")
@click.option("--verbose", "-v", is_flag=True, help="Stage lines even on a terminal; every note.")
@click.option(
    "--full",
    is_flag=True,
    help="Recompute the window even when nothing changed since the stored results.",
)
@friendly_errors
def run(
    config: str | None, since: str | None, until: str | None, as_json: bool, quiet: bool,
    verbose: bool, full: bool,
) -> None:  # fmt: skip
    """One audit: sync, recompute, findings, budgets, alerts."""
    from audit.pipeline import parse_when, run_audit
    from audit.summary import log_what_it_did, print_quiet, print_summary

    if quiet and verbose:
        raise ConfigError("--quiet and --verbose contradict each other: pass one")
    cfg = _load(config)
    s = parse_when(since, "--since") if since else None
    u = parse_when(until, "--until") if until else None
    # --json keeps stdout for the one object and stderr for errors: stage lines only when asked
    show = verbose or not (quiet or as_json)
    with _progress(show, log=verbose, log_to_stderr=as_json) as progress:
        result = run_audit(cfg, since=s, until=u, progress=progress, full=full)
    if as_json:
        click.echo(json.dumps(result.output, sort_keys=False))
        if not quiet:  # the JSON stays alone on stdout; what it did is logged on stderr
            log_what_it_did(result, lambda line: click.echo(line, err=True))
    elif quiet:
        print_quiet(result)
    else:
        print_summary(result, store_path=cfg.store.path, all_notes=verbose)
    if result.exit_code:
        raise _fail_on_tripped(cfg.run.fail_on, result.fail_on_reason)


@cli.command()
@click.option(
    "--db",
    "db_path",
    default="awu-audit-demo.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite store to write.",
)
@click.option("--actions", default=5000, show_default=True, help="Size of the generated org.")
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--source",
    type=click.Choice(["agentworkitem", "data360"]),
    default="agentworkitem",
    show_default=True,
    help="Audit AgentWorkItem + event logs, or Data 360.",
)
@click.option("--keep", type=click.Path(file_okay=False), help="Leave the org and a config here.")
@click.option("--keep-port", default=8443, show_default=True, type=click.IntRange(1, 65535),
              help="The port the kept config expects the mock org on.")  # fmt: skip
@friendly_errors
def demo(
    db_path: str, actions: int, seed: int, source: str, keep: str | None, keep_port: int
) -> None:
    """Generate an org, serve it from a mock Salesforce on loopback, audit it, print the summary."""
    from audit.demo import run_demo

    kept = Path(keep) if keep else None
    run_demo(
        Path(db_path), actions=actions, seed=seed, source=source, keep=kept, keep_port=keep_port
    )


@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Snapshot directory.")
@click.option("--seed", default=1, show_default=True)
@click.option("--actions", default=2000, show_default=True)
@click.option("--days", default=7, show_default=True)
@click.option("--start", default="2026-10-01", show_default=True, help="First day (ISO date).")
@click.option("--sandbox", is_flag=True, help="Mark the org as a sandbox.")
@click.option("--api-version", default="62.0", show_default=True)
@click.option(
    "--source",
    type=click.Choice(["agentworkitem", "data360"]),
    default="agentworkitem",
    show_default=True,
    help="data360: also write the scenario in Data 360 shape (data360/, labels_data360.json).",
)
@click.option(
    "--family",
    type=click.Choice(["ssot", "std_dmo", "std"]),
    default="ssot",
    show_default=True,
    help="Data 360 object naming family of session tracing.",
)
@friendly_errors
def fixtures(
    out: str,
    seed: int,
    actions: int,
    days: int,
    start: str,
    sandbox: bool,
    api_version: str,
    source: str,
    family: str,
) -> None:
    """Write a deterministic synthetic org snapshot with ground-truth labels."""
    from fixtures.generator import generate_snapshot

    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise ConfigError(f"--start must be an ISO date, got {start!r}") from None
    if actions < 1 or days < 1:
        raise ConfigError("--actions and --days must be at least 1")
    try:
        with _progress(True) as progress:
            labels = generate_snapshot(
                Path(out),
                seed=seed,
                actions=actions,
                days=days,
                start=first,
                sandbox=sandbox,
                api_version=api_version,
                source=source,
                family=family,
                progress=lambda done, total: progress("generating actions", done, total),
            )
    except (ValueError, FileExistsError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    t = labels["totals"]
    click.echo(
        f"wrote {out}: {t['actions']} actions in window {labels['window']['since']} .. "
        f"{labels['window']['until']}, {labels['elf']['files']} log files; "
        f"labels in {out}/labels.json"
        + (
            f"; Data 360 ({family}) labels in {out}/labels_data360.json"
            if source == "data360"
            else ""
        )
    )


@cli.command("mock-org")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Snapshot directory.")
@click.option("--port", default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--tls-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Where ca.pem is written once the port accepts connections.",
)
@click.option(
    "--faults",
    default="",
    help='Fault spec "key=N,...", keys: expire_token_after, unavailable, lock_row, '
    "lock_row_status, rate_limit, daily_limit, api_used, api_max, api_usage (N/M), cut_logfile, "
    "cut_logfile_id, republish_after, republish_id, republish_same_id, late_hourly, "
    "insert_at_page_edge (README: Development).",
)
@click.option(
    "--page-size",
    default=2000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Records per query page.",
)
@friendly_errors
def mock_org(data: str, port: int, tls_dir: str, faults: str, page_size: int) -> None:
    """Serve an org snapshot at https://127.0.0.1:PORT until Ctrl-C."""
    from connector.mock.server import main as serve_main

    try:
        serve_main(Path(data), port, Path(tls_dir), faults, page_size=page_size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@cli.command()
@click.option("--config", "config", type=click.Path(dir_okay=False))
@click.option("--once", is_flag=True, help="Run the job now and exit (for cron/systemd).")
@friendly_errors
def schedule(config: str | None, once: bool) -> None:
    """Run the audit on [schedule] cron (APScheduler), until SIGTERM/Ctrl-C."""
    from audit.pipeline import run_audit
    from audit.scheduler import run_scheduled

    cfg = _load(config)
    results: list[Any] = []

    def job() -> str:
        result = run_audit(cfg, trigger="schedule", lock_wait_s=60.0)
        results.append(result)
        return result.summary_line()

    run_scheduled(cfg, job, once=once, log=lambda line: click.echo(line, err=True))
    if once and results and results[-1].exit_code:
        raise _fail_on_tripped(cfg.run.fail_on, results[-1].fail_on_reason)


def _window_options(fn: F) -> F:
    """--db, --since, --until, --run: the store and the one window of a report or export."""
    for option in (
        click.option("--run", "run_id", help="The window of this run (id or unique prefix)."),
        click.option("--until", help="Window end, exclusive. Default with --since: now."),
        click.option("--since", help="Window start (ISO date or datetime). Default: last run's."),
        click.option(
            "--db", "db_path", type=click.Path(dir_okay=False), help="Read this store instead."
        ),
    ):
        fn = option(fn)
    return fn


@cli.command()
@click.option("--config", "config", type=click.Path(dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["html", "md", "json"]), default="md", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@_window_options
@friendly_errors
def report(
    config: str | None,
    fmt: str,
    out: str | None,
    db_path: str | None,
    since: str | None,
    until: str | None,
    run_id: str | None,
) -> None:
    """One window's usage, waste, budget and pricing from the store, as HTML, Markdown or
    JSON (default window: the latest completed run's)."""
    from audit.report import render_report

    store, window = _store_and_window(config, db_path, since, until, run_id)
    _write_or_echo(render_report(store, fmt, **window), out)


def _store_and_window(
    config: str | None, db_path: str | None, since: str | None, until: str | None, run: str | None
) -> tuple[Path, dict[str, Any]]:
    """The store to read, and the config and window arguments of a report or export: with
    --db alone, the settings the run recorded apply (cfg None)."""
    from audit.pipeline import parse_when

    cfg = None if db_path and not config else _load(config)
    store = Path(db_path) if db_path else cfg.store.path if cfg else Path("awu-audit.db")
    return store, {
        "cfg": cfg,
        "since": parse_when(since, "--since") if since else None,
        "until": parse_when(until, "--until") if until else None,
        "run_id": run,
    }


def _write_or_echo(text: str, out: str | None) -> None:
    if out:
        try:
            Path(out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror}") from None
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text)


@cli.command("export")
@click.option("--config", "config", type=click.Path(dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["focus", "csv"]), default="focus", show_default=True
)
@click.option(
    "--table",
    type=click.Choice(["findings", "actions", "daily_usage"]),
    help="With --format csv: the table to write.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="F.csv or F.parquet.")
@_window_options
@friendly_errors
def export_cmd(
    config: str | None,
    db_path: str | None,
    fmt: str,
    table: str | None,
    out: str,
    since: str | None,
    until: str | None,
    run_id: str | None,
) -> None:
    """One window's usage as FinOps FOCUS 1.2 (CSV or Parquet by --out's extension), or a
    store table as CSV."""
    from audit.export import export

    store, window = _store_and_window(config, db_path, since, until, run_id)
    rows, (start, end) = export(store, Path(out), fmt=fmt, table=table, **window)
    click.echo(f"wrote {out}: {rows:,} rows for {start.isoformat()} .. {end.isoformat()}", err=True)


@cli.group()
def alerts() -> None:
    """Alert channels."""


@alerts.command("test")
@click.option("--config", "config", type=click.Path(dir_okay=False))
@friendly_errors
def alerts_test(config: str | None) -> None:
    """Send a test message to each configured channel and say which worked."""
    from audit.alerts import send_test

    cfg = _load(config)
    results = send_test(cfg)
    if not results:
        raise ConfigError("no alert channels configured ([alerts.slack] / [alerts.email])")
    failed = []
    for channel, outcome in sorted(results.items()):
        click.echo(f"{channel}: {outcome}")
        if outcome != "ok":
            failed.append(channel)
    if failed:
        raise FindingsFailed(f"alert channel test failed: {', '.join(failed)} (see above)")


from audit.fleet.cli import fleet  # noqa: E402  (registered last: its own module)

cli.add_command(fleet)


def main() -> None:
    _skip_httpx_cli()
    cli(prog_name="audit")


def _skip_httpx_cli() -> None:
    """httpx imports its own command-line client (click, rich's progress and syntax views,
    pygments: ~30 ms, a tenth of a run that finds nothing new) whenever rich is installed,
    and this program never calls it. A None entry in sys.modules makes that optional import
    fail the way httpx allows for (it then defines a stub `httpx.main`): in this process
    only, and only before httpx is imported."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


if __name__ == "__main__":  # pragma: no cover
    main()
