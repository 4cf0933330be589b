"""`audit fleet run|report`: the fleet's command group (Dask and DuckDB are imported only
when a fleet command runs, so `audit --help` stays lean)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from audit.cli_errors import FindingsFailed, SalesforceUnreachable, friendly_errors
from audit.errors import ConfigError

__all__ = ["fleet"]


# -- the fleet: many orgs on Dask, one Parquet lake (audit/fleet) ------------------------------
@click.group()
def fleet() -> None:
    """Many orgs: audited as Dask tasks into one Parquet lake, reported from the lake."""


@fleet.command("run")
@click.option(
    "--fleet",
    "fleet_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Fleet file (TOML): [fleet] lake, workers, scheduler; [[orgs]] name, config.",
)
@click.option("--since", help="Window start for every org (ISO date or datetime).")
@click.option("--until", help="Window end (exclusive).")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes.")
@click.option("--scheduler", help="An existing Dask scheduler, e.g. tcp://host:8786.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
@friendly_errors
def fleet_run(
    fleet_file: str,
    since: str | None,
    until: str | None,
    workers: int | None,
    scheduler: str | None,
    as_json: bool,
) -> None:
    """Audit every org of the fleet (one Dask task each) and write the lake."""
    from audit.fleet import require_fleet_extra
    from audit.fleet.config import load_fleet
    from audit.pipeline import parse_when

    spec = load_fleet(fleet_file)
    s = parse_when(since, "--since") if since else None
    u = parse_when(until, "--until") if until else None
    if u is not None and s is None:
        raise ConfigError("--until needs --since")
    require_fleet_extra("distributed", "pyarrow")
    from audit.fleet.run import run_fleet

    result = run_fleet(
        spec,
        since=s,
        until=u,
        workers=workers,
        scheduler=scheduler,
        say=lambda line: click.echo(line, err=True),
    )
    if as_json:
        click.echo(json.dumps(result.output))
    else:
        ok = len(result.orgs) - len(result.failed)
        click.echo(f"fleet: {ok} of {len(result.orgs)} orgs audited into {spec.lake}")
    if result.failed:
        raise SalesforceUnreachable(
            f"{len(result.failed)} of {len(result.orgs)} orgs failed: {', '.join(result.failed)}"
        )
    if result.tripped:
        raise FindingsFailed(f"findings at or above run.fail_on in: {', '.join(result.tripped)}")


@fleet.command("report")
@click.option("--fleet", "fleet_file", required=True, type=click.Path(dir_okay=False))
@click.option("--since", help="Window start (ISO date or datetime). Default: the whole lake.")
@click.option("--until", help="Window end (exclusive).")
@click.option(
    "--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@friendly_errors
def fleet_report(
    fleet_file: str, since: str | None, until: str | None, fmt: str, out: str | None
) -> None:
    """The fleet view, read from the lake alone (DuckDB)."""
    from audit.fleet import require_fleet_extra
    from audit.fleet.config import load_fleet
    from audit.pipeline import parse_when

    spec = load_fleet(fleet_file)
    s = parse_when(since, "--since") if since else None
    u = parse_when(until, "--until") if until else None
    require_fleet_extra("duckdb")
    from audit.fleet.report import fleet_report as build
    from audit.fleet.report import render

    text = render(build(spec, since=s, until=u), fmt)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text)
