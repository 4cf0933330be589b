"""Quiet re-runs: stored results reused when nothing they depend on has changed.

A run's actions and findings are a function of the source rows, the settings the figures
depend on (rules, pricing, sources, field mapping, the org being a sandbox, this code —
its source, not just its version number) and the window. The store records what its
current results were computed from (`audit_basis`) and counts every page that changes a
source row (`inputs_version`). When a run asks for a window with the same start (to the
microsecond), no page has changed a row since, the settings are the same, and the stretch
the window may have grown by holds nothing a recomputation would read or rewrite (a source
row, a closing Case, a bad record or file, an action or open finding left by a wider run),
the stored results are exactly what recomputing would give — so the run reuses them
("0 days recomputed") and only decides budgets and alerts anew, as `now` moves. Families
audited side by side are never stored results: they are audited anew beside it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import audit
import connector
from audit.config import Config
from audit.engine.model import days_of, format_iso_ms, parse_sf_datetime
from audit.engine.pricing import PricingWhatIf, repriced
from audit.store import Store
from audit.store.actions import ceil_ms

__all__ = [
    "BudgetSums", "Reuse", "basis", "days_to_recompute", "reusable", "settings_fingerprint",
]  # fmt: skip

Window = tuple[datetime, datetime]


@functools.cache
def code_fingerprint() -> str:
    """The source of the code that turns stored rows into results (the `audit` and
    `connector` packages), with the package version: the version alone does not move when
    the code does (an upgrade from git, a fix in the rules)."""
    try:
        version = metadata.version("awu-audit")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed
        version = "unknown"
    digest = hashlib.sha256(version.encode())
    for package in (audit, connector):
        root = Path(package.__file__ or ".").parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root.parent).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def settings_fingerprint(cfg: Config, *, sandbox: bool) -> str:
    """What the stored figures depend on besides the rows and the window. Budgets and
    alert settings are not in it: budgets and alerts are decided anew every run."""
    parts = {
        "version": code_fingerprint(),
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
    context: str = "",
    sums: BudgetSums | None = None,
) -> dict[str, Any]:
    """What a run's stored results were computed from (`Store.set_audit_basis`);
    `context`: what else of the window its family's actions depend on (`Family.context`);
    `sums`: what its budget was decided from."""
    sums = sums or BudgetSums({}, {})
    return {
        "run_id": run_id,
        "window_start": format_iso_ms(window[0]),
        "window_end": format_iso_ms(window[1]),
        # to the microsecond: two windows a fraction of a millisecond apart are two windows
        "window_exact": [_exact(window[0]), _exact(window[1])],
        "inputs_version": inputs_version,
        "settings": settings,
        "totals": dict(totals),
        "context": context,
        "credits": dict(sums.credits),
        "daily_credits": {
            period: {day.isoformat(): c for day, c in days.items()}
            for period, days in sums.daily.items()
        },
    }


@dataclasses.dataclass(frozen=True)
class BudgetSums:
    """What the budget rules read from the stored actions (`audit.steps.budget_sums`): the
    credits of each budget period, and per day those of the period of `now` (the
    forecast's burn rate). Kept in the basis: a basis is written in every transaction that
    writes actions, so while it stands the stored actions — and their sums — are these."""

    credits: Mapping[str, float]  # period → credits
    daily: Mapping[str, Mapping[date, float]]  # period → day → credits


@dataclasses.dataclass(frozen=True)
class Reuse:
    """A stored run whose results answer this run's window unchanged."""

    run_id: str
    summary: dict[str, Any]  # that run's output (§7 block + analysis)
    totals: dict[str, Any]  # its totals, unrounded (what the alerts quote)
    context: str = ""  # its family's context (`basis`)
    #: what its budget was decided from
    sums: BudgetSums = BudgetSums({}, {})

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
    stored = found.get("window_exact")
    if not isinstance(stored, list) or len(stored) != 2:
        return None  # a basis from before the exact window was kept
    start, end = _exact(window[0]), _exact(window[1])
    if stored[0] != start or window[1] < datetime.fromisoformat(stored[1]):
        return None
    if end != stored[1]:
        # the stretch the window grew by, in the store's millisecond form: from the stored
        # end rounded down (an extra row there only costs a recomputation) to the new end
        # rounded up (a row stamped in its last millisecond is in the window)
        lo = format_iso_ms(datetime.fromisoformat(stored[1]))
        if store.rows_between(lo, ceil_ms(window[1])):
            return None
    run = store.get_run(str(found.get("run_id")))
    if not run or run.get("outcome") != "ok" or not isinstance(run.get("summary"), dict):
        return None
    summary = run["summary"]
    if "analysis" not in summary or "pricing" not in summary["analysis"]:
        return None
    totals = dict(found.get("totals") or summary["totals"])
    return Reuse(run["id"], summary, totals, str(found.get("context") or ""), _sums(found))


def _sums(found: Mapping[str, Any]) -> BudgetSums:
    """The basis's budget sums; none from a basis written before they were kept."""
    daily = found.get("daily_credits")
    return BudgetSums(
        _numbers(found.get("credits")),
        {
            str(period): {date.fromisoformat(d): c for d, c in _numbers(days).items()}
            for period, days in (daily.items() if isinstance(daily, dict) else ())
        },
    )


def _numbers(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _exact(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="microseconds")


def days_to_recompute(
    store: Store, cfg: Config, window: Window, *, sandbox: bool, context: str = ""
) -> list[str]:
    """The days of `window` whose stored actions may differ from what their rows give now:
    every day, unless the stored results were computed with these settings and `context`
    (what else of the window the actions depend on: `Family.context`); then the days
    the stored window did not cover whole, and those within a day of a day whose rows
    changed since (an action's rows lie within a day of its start)."""
    days = days_of(window)
    found = store.audit_basis()
    if not days or found is None:
        return days
    if found.get("settings") != settings_fingerprint(cfg, sandbox=sandbox):
        return days
    if str(found.get("context") or "") != context:
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
