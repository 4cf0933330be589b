"""`audit fleet run`: every org of the fleet as one Dask task — on a `LocalCluster` of worker
processes on this machine by default, or on an existing cluster by scheduler address — with
one progress line per org as it starts, finishes or fails, and the fleet's --json object."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.errors import AuditError
from audit.fleet.config import FleetConfig
from audit.fleet.task import PROGRESS_TOPIC, OrgJob, audit_org

__all__ = ["FleetResult", "SchedulerUnreachable", "fleet_exit_code", "run_fleet", "sum_totals"]

Say = Callable[[str], None]

#: the §7 totals, summed over the orgs that succeeded
_TOTAL_KEYS = (
    "actions",
    "billable_actions",
    "tokens",
    "awu",
    "reported_awu",
    "credits",
    "cost_usd",
)


class SchedulerUnreachable(AuditError):
    """The Dask scheduler given by address does not answer: no org can run (exit 3)."""

    exit_code = 3


@dataclass(frozen=True)
class FleetResult:
    #: per org, in fleet-file order: {"exit_code", "run" | "error"}
    orgs: dict[str, dict[str, Any]]
    #: per org, the seconds its task took in its worker (audit + lake writes)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [name for name, o in self.orgs.items() if "error" in o]

    @property
    def tripped(self) -> list[str]:
        """Orgs whose findings tripped their own `[run] fail_on`."""
        return [name for name, o in self.orgs.items() if o["exit_code"] == 1]

    @property
    def exit_code(self) -> int:
        return fleet_exit_code(o["exit_code"] for o in self.orgs.values())

    @property
    def output(self) -> dict[str, Any]:
        runs = [o["run"] for o in self.orgs.values() if "run" in o]
        return {"orgs": self.orgs, "totals": sum_totals(runs), "failed": self.failed}


def fleet_exit_code(codes: Any) -> int:
    """0 when every org succeeded, 3 when any failed, else 1 when any tripped `fail_on`."""
    codes = list(codes)
    if any(c not in (0, 1) for c in codes):
        return 3
    return 1 if 1 in codes else 0


def sum_totals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for key in _TOTAL_KEYS:
        values = [r["totals"][key] for r in runs]
        totals[key] = (
            sum(values) if key.endswith(("actions", "tokens")) else round(sum(values, 0.0), 6)
        )
    return totals


def run_fleet(
    fleet: FleetConfig,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    say: Say = lambda line: None,
) -> FleetResult:
    """Run every org of `fleet` as a Dask task; never stops at one org's failure."""
    jobs = [OrgJob(o.name, o.config, fleet.lake, since, until) for o in fleet.orgs]
    address = scheduler or fleet.scheduler
    with _client(address, workers or fleet.workers, say) as client:
        outcomes = _run_jobs(client, jobs, fleet.max_concurrent or len(jobs), say)
    orgs = {}
    for job in jobs:
        o = outcomes[job.name]
        orgs[job.name] = (
            {"exit_code": o["exit_code"], "run": o["run"]}
            if "run" in o
            else {"exit_code": o["exit_code"], "error": o["error"]}
        )
    return FleetResult(orgs, {name: float(o.get("seconds", 0.0)) for name, o in outcomes.items()})


@contextmanager
def _client(address: str | None, workers: int, say: Say) -> Iterator[Any]:
    """A Dask client: of the scheduler at `address`, or of a new LocalCluster of `workers`
    single-threaded worker processes on loopback (a task whose worker dies is retried once:
    `allowed-failures` = 1)."""
    import dask
    from distributed import Client, LocalCluster

    if address:
        try:
            client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerUnreachable(
                f"cannot reach the Dask scheduler at {address}: {exc}"
            ) from None
        with client:
            workers_now = len(client.scheduler_info()["workers"])
            say(f"fleet: Dask scheduler {address}, {workers_now} workers")
            _say_dashboard(client, say)
            yield client
        return
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with (
            LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            Client(cluster) as client,  # type: ignore[no-untyped-call]
        ):
            say(f"fleet: local Dask cluster {cluster.scheduler_address}, {workers} workers")
            _say_dashboard(client, say)
            yield client


def _say_dashboard(client: Any, say: Say) -> None:
    if "dashboard" in client.scheduler_info().get("services", {}):
        say(f"fleet: Dask dashboard at {client.dashboard_link}")


def _run_jobs(client: Any, jobs: list[OrgJob], limit: int, say: Say) -> dict[str, dict[str, Any]]:
    """Submit at most `limit` orgs at a time; each finished one makes room for the next."""
    from distributed import as_completed

    done: dict[str, dict[str, Any]] = {}
    client.subscribe_topic(PROGRESS_TOPIC, lambda event: _on_started(event, done, say))
    pending = iter(jobs)
    by_key: dict[str, OrgJob] = {}

    def submit(job: OrgJob) -> Any:
        future = client.submit(
            audit_org,
            job,
            key=f"awu-audit-org-{job.name}-{uuid.uuid4().hex[:12]}",
            pure=False,
            retries=1,
        )
        by_key[future.key] = job
        return future

    first = [submit(job) for job in itertools.islice(pending, limit)]
    running = as_completed(first)  # type: ignore[no-untyped-call]
    for future in running:
        job = by_key[future.key]
        outcome = _outcome(future, job)
        done[job.name] = outcome
        say(_line(outcome))
        following = next(pending, None)
        if following is not None:
            running.add(submit(following))  # type: ignore[no-untyped-call]
    client.unsubscribe_topic(PROGRESS_TOPIC)
    return done


def _outcome(future: Any, job: OrgJob) -> dict[str, Any]:
    try:
        result: dict[str, Any] = future.result()
    except Exception as exc:  # the task itself failed: a worker died twice, a lost cluster
        text = " ".join(str(exc).split()) or type(exc).__name__
        return {
            "name": job.name,
            "exit_code": 4,
            "error": f"the Dask task failed: {text}",
            "seconds": 0.0,
        }
    return result


def _on_started(event: Any, done: dict[str, dict[str, Any]], say: Say) -> None:
    _, message = event
    name = message.get("org") if isinstance(message, dict) else None
    if name and name not in done:
        say(f"fleet: {name} started")


def _line(o: dict[str, Any]) -> str:
    name, seconds = o["name"], o.get("seconds", 0.0)
    if "error" in o:
        return f"fleet: {name} failed in {seconds:.1f} s (exit {o['exit_code']}): {o['error']}"
    tripped = " (fail_on tripped)" if o["exit_code"] == 1 else ""
    return f"fleet: {name} done in {seconds:.1f} s, {o['actions']:,} actions{tripped}"
