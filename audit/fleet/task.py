"""One org of the fleet, as one Dask task in a worker process: the same `run_audit` as
`audit run` (its own config, store, lock and alerts), then its audited window copied into the
lake. Never raises for an org's own failure — a refused login, an org that is down, a bad
config — it returns the failure, so one org never stops the others."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from audit.config import load_config
from audit.engine.alerts import one_line
from audit.engine.model import days_of, parse_sf_datetime
from audit.errors import AuditError
from audit.fleet.lake import Lake, OrgMeta, write_org_window
from audit.pipeline import run_audit
from audit.store import Store
from connector.errors import ConnectorError

__all__ = ["PROGRESS_TOPIC", "OrgJob", "audit_org"]

#: the Dask event topic a worker announces an org's start on
PROGRESS_TOPIC = "awu-audit-fleet"


@dataclass(frozen=True)
class OrgJob:
    name: str
    config: Path
    lake: str
    since: datetime | None = None
    until: datetime | None = None


def audit_org(job: OrgJob) -> dict[str, Any]:
    """Audit one org and write its window to the lake. Returns `{"name", "exit_code",
    "run" | "error", "seconds", "actions", "files_changed"}`."""
    started = time.monotonic()
    _announce(job.name)
    try:
        outcome = _audit_and_write(job)
    except (AuditError, ConnectorError) as exc:
        code = getattr(type(exc), "exit_code", 1)
        outcome = {"exit_code": code if code not in (0, 1) else 4, "error": _one_line(exc)}
    except Exception as exc:  # a bug in one org's run must not stop the fleet
        outcome = {"exit_code": 4, "error": f"unexpected {type(exc).__name__}: {_one_line(exc)}"}
    return {"name": job.name, **outcome, "seconds": round(time.monotonic() - started, 3)}


def _audit_and_write(job: OrgJob) -> dict[str, Any]:
    cfg = load_config(job.config)
    result = run_audit(cfg, since=job.since, until=job.until, trigger="fleet")
    out = result.output
    window = out["window"]
    meta = OrgMeta(
        org_id=out["org_id"],
        is_sandbox=bool(out["is_sandbox"]),
        budget_period=cfg.budget.period,
        budget_credits=float(cfg.budget.credits),
    )
    days = days_of((parse_sf_datetime(window["start"]), parse_sf_datetime(window["end"])))
    with Store.open(cfg.store.path) as store:
        changed = write_org_window(Lake(job.lake), job.name, days, store, meta)
    return {
        "exit_code": result.exit_code,
        "run": out,
        "actions": out["totals"]["actions"],
        "files_changed": changed,
    }


def _one_line(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__


def _announce(name: str) -> None:
    """Tell the client this org started (when running in a Dask worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(PROGRESS_TOPIC, {"org": name, "event": "started"})
