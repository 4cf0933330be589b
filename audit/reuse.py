"""Quiet re-runs: stored results reused when nothing they depend on has changed.

A run's actions and findings are a function of the source rows, the settings the figures
depend on (rules, pricing, sources, field mapping, the org being a sandbox, this code's
version) and the window. The store records what its current results were computed from
(`audit_basis`) and counts every page that changes a source row (`inputs_version`). When
a run asks for a window with the same start, no page has changed a row since, the settings
are the same, and the stretch the window may have grown by holds no source row and no
closing Case, the stored results are exactly what recomputing would give — so the run
reuses them ("0 days recomputed") and only decides budgets and alerts anew, as `now` moves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from importlib import metadata
from typing import Any

from audit.config import Config
from audit.engine.model import days_of, format_iso_ms, parse_sf_datetime
from audit.engine.pricing import PricingWhatIf, repriced
from audit.store import Store

__all__ = ["Reuse", "basis", "days_to_recompute", "reusable", "settings_fingerprint"]

Window = tuple[datetime, datetime]


def settings_fingerprint(cfg: Config, *, sandbox: bool) -> str:
    """What the stored figures depend on besides the rows and the window. Budgets and
    alert settings are not in it: budgets and alerts are decided anew every run."""
    try:
        version = metadata.version("awu-audit")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed
        version = "unknown"
    parts = {
        "version": version,
        "rules": dataclasses.asdict(cfg.rules),
        "pricing": dataclasses.asdict(cfg.pricing),
        "sources": list(cfg.source.kinds),
        "data360": dataclasses.asdict(cfg.data360),
        "awi_fields": dict(sorted(cfg.awi_fields.items())),
        "sandbox": sandbox,
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def basis(
    run_id: str,
    window: Window,
    *,
    inputs_version: int,
    settings: str,
    totals: Mapping[str, Any],
) -> dict[str, Any]:
    """What a run's stored results were computed from (`Store.set_audit_basis`)."""
    return {
        "run_id": run_id,
        "window_start": format_iso_ms(window[0]),
        "window_end": format_iso_ms(window[1]),
        "inputs_version": inputs_version,
        "settings": settings,
        "totals": dict(totals),
    }


@dataclasses.dataclass(frozen=True)
class Reuse:
    """A stored run whose results answer this run's window unchanged."""

    run_id: str
    summary: dict[str, Any]  # that run's output (§7 block + analysis)
    totals: dict[str, Any]  # its totals, unrounded (what the alerts quote)

    def what_if(self, cfg: Config, window: Window) -> PricingWhatIf:
        """The pricing what-if over `window`: the stored one, with the months (and so the
        per-user price and the cheapest model) of a window that may have grown."""
        return repriced(
            self.summary["analysis"]["pricing"],
            cfg.pricing,
            window_start=window[0],
            window_end=window[1],
        )


def reusable(store: Store, cfg: Config, window: Window, *, sandbox: bool) -> Reuse | None:
    """The stored results, when recomputing `window` would give them again; else None."""
    found = store.audit_basis()
    if found is None or found.get("inputs_version") != store.inputs_version():
        return None
    if found.get("settings") != settings_fingerprint(cfg, sandbox=sandbox):
        return None
    start, end = format_iso_ms(window[0]), format_iso_ms(window[1])
    stored_end = str(found.get("window_end"))
    if found.get("window_start") != start or end < stored_end:
        return None
    if end > stored_end and store.rows_between(stored_end, end):
        return None
    run = store.get_run(str(found.get("run_id")))
    if not run or run.get("outcome") != "ok" or not isinstance(run.get("summary"), dict):
        return None
    summary = run["summary"]
    if "analysis" not in summary or "pricing" not in summary["analysis"]:
        return None
    return Reuse(run["id"], summary, dict(found.get("totals") or summary["totals"]))


def days_to_recompute(store: Store, cfg: Config, window: Window, *, sandbox: bool) -> list[str]:
    """The days of `window` whose stored actions may differ from what their rows give now:
    every day, unless the stored results were computed with these settings; then the days
    the stored window did not cover whole, and those within a day of a day whose rows
    changed since (an action's rows lie within a day of its start)."""
    days = days_of(window)
    found = store.audit_basis()
    if not days or found is None:
        return days
    if found.get("settings") != settings_fingerprint(cfg, sandbox=sandbox):
        return days
    stored = (parse_sf_datetime(found["window_start"]), parse_sf_datetime(found["window_end"]))
    near = _shift(days[0], -1), _shift(days[-1], 1)
    changed = set(store.days_changed_since(int(found["inputs_version"]), *near))
    touched = changed | {_shift(d, 1) for d in changed} | {_shift(d, -1) for d in changed}
    return [d for d in days if d in touched or not _covered(d, window, stored)]


def _shift(day: str, n: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=n)).isoformat()


def _covered(day: str, window: Window, stored: Window) -> bool:
    """Whether the stored window covered the part of `day` that `window` holds."""
    start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    lo, hi = max(start, window[0]), min(start + timedelta(days=1), window[1])
    return stored[0] <= lo and hi <= stored[1]
