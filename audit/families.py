"""The source families an audit can run, each a connector source (how the org is read)
paired with the engine module that turns its stored rows into actions. The pipeline loops
over the configured families and never asks which one it holds. Data 360's modules are
imported only when it is configured."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from audit import passes, reuse
from audit.config import Config
from audit.engine.fold import WindowFold, costs_and_fingerprints
from audit.engine.model import Action
from audit.engine.rules import retrieval_by_name
from audit.engine.window import EXAMPLES, SourceQuality, WindowAudit, audit_window
from audit.store import Store
from connector.client import SalesforceClient
from connector.core import CoreSource
from connector.source import Source, day_floor

if TYPE_CHECKING:
    from connector.data360 import Data360Source

__all__ = ["CoreFamily", "Data360Family", "Family", "open_families", "source_quality"]

Progress = Callable[[str, int, "int | None"], None]
Window = tuple[datetime, datetime]


class Family(Protocol):
    source: Source
    #: whether Salesforce's own consumption view is read beside this family's audit
    reads_vendor_view: bool

    def prepare(self, store: Store, window: Window) -> None:
        """What the audit of `window` needs from the org beyond the sync (the Cases its
        actions link to): network calls, made before the run's transaction."""
        ...

    def audit(
        self,
        store: Store,
        window: Window,
        *,
        sandbox: bool,
        cost_factor: float | None,
        days: list[str] | None = None,
    ) -> WindowAudit:
        """Audit `window`. With a `cost_factor` (the primary family, inside the run's
        transaction) the window's actions replace the stored ones — dollars times it —
        and its daily usage is summed anew; without one nothing is written. `days`: the
        days whose actions are reconciled anew (None: all; the others' stored actions are
        what their rows still give — `days_to_recompute`)."""
        ...

    def days_to_recompute(self, store: Store, window: Window, *, sandbox: bool) -> list[str] | None:
        """The days of `window` whose stored actions may be stale (None: all of them)."""
        ...

    def context(self, store: Store, window: Window) -> str:
        """What the family's actions of `window` depend on beyond their own days' rows and
        the settings (kept with the results, so a later run knows when it moved)."""
        ...

    def bad_files(self, store: Store, window: Window) -> int: ...

    def extra_output(self, audit: WindowAudit) -> dict[str, Any]: ...

    def extra_output_reused(self, saved: dict[str, Any]) -> dict[str, Any]:
        """`extra_output` of a run whose stored results are reused (`saved`: its output),
        with what this run read itself."""
        ...


class CoreFamily:
    """AgentWorkItem and/or EventLogFile, reconciled into one action each (SPEC §3.3) —
    in two passes over the store that never hold the window's actions (`audit.passes`).
    Always the primary family: its audit always writes the window's actions."""

    reads_vendor_view = False

    def __init__(self, source: CoreSource, cfg: Config):
        self.source: Source = source
        self.cfg = cfg
        self.kinds = set(cfg.source.kinds)
        #: pass 1's chunk and pass 2's batch (bounds of memory, not of results)
        self.chunk = passes.CHUNK
        self.batch = passes.BATCH
        self._awi = "agentworkitem" in self.kinds
        self._context: tuple[Window, str] | None = None

    def prepare(self, store: Store, window: Window) -> None:
        if "agentworkitem" in self.kinds:  # only AgentWorkItem records link to a Case
            self.source.sync_related(store, store.awi_case_ids(window))

    def days_to_recompute(self, store: Store, window: Window, *, sandbox: bool) -> list[str] | None:
        if store.audit_basis() is None:
            return None  # nothing stored to keep
        context = self.context(store, window)
        return reuse.days_to_recompute(store, self.cfg, window, sandbox=sandbox, context=context)

    def context(self, store: Store, window: Window) -> str:
        """The agent names log-only actions take (read around the whole window; once per
        window: the sync is over when it is asked)."""
        if self._context is None or self._context[0] != window:
            names = sorted(store.agent_names_for(window).items()) if self._awi else []
            self._context = (window, hashlib.sha256(json.dumps(names).encode()).hexdigest()[:20])
        return self._context[1]

    def audit(
        self,
        store: Store,
        window: Window,
        *,
        sandbox: bool,
        cost_factor: float | None,
        days: list[str] | None = None,
    ) -> WindowAudit:
        cfg = self.cfg
        passes.reconcile_days(
            store,
            window,
            rules=cfg.rules,
            pricing=cfg.pricing,
            use_awi="agentworkitem" in self.kinds,
            use_elf="eventlogfile" in self.kinds,
            cost_factor=1.0 if cost_factor is None else cost_factor,
            days=days,
            chunk=self.chunk,
        )
        store.refresh_daily_usage(window)
        fold = WindowFold(
            window,
            rules=cfg.rules,
            pricing=cfg.pricing,
            sandbox=sandbox,
            multi_source={"agentworkitem", "eventlogfile"} <= self.kinds,
        )
        passes.fold_window(store, window, fold, batch=self.batch)
        return fold.finish(source_quality(store, window, sorted(self.kinds)))

    def bad_files(self, store: Store, window: Window) -> int:
        return store.bad_log_files(day_floor(window[0]), window[1])

    def extra_output(self, audit: WindowAudit) -> dict[str, Any]:
        return {}

    def extra_output_reused(self, saved: dict[str, Any]) -> dict[str, Any]:
        return {}


class Data360Family:
    """Data 360 usage events × steps × sessions (SPEC §11): one source, so no SOURCE_GAP;
    retrieval decided by `[rules] retrieval_actions` (Data 360 has no action type). Its
    window's actions are held in memory and audited as one batch of the fold (it is not the
    large-org path)."""

    reads_vendor_view = True

    def __init__(self, source: Data360Source, cfg: Config):
        self.source: Source = source
        self._d360 = source
        self.cfg = cfg

    def actions(self, store: Store, window: Window) -> list[Action]:
        from audit.engine.sources import data360 as d360_engine

        return d360_engine.actions_from_rows(
            store.d360_rows(window), voice_multiplier=self.cfg.pricing.voice_multiplier
        )

    def prepare(self, store: Store, window: Window) -> None:
        return None

    def days_to_recompute(self, store: Store, window: Window, *, sandbox: bool) -> list[str] | None:
        return None  # held in memory whole: every day, every run

    def context(self, store: Store, window: Window) -> str:
        return ""

    def audit(
        self,
        store: Store,
        window: Window,
        *,
        sandbox: bool,
        cost_factor: float | None,
        days: list[str] | None = None,
    ) -> WindowAudit:
        from audit.engine.sources import data360 as d360_engine

        cfg = self.cfg
        actions = self.actions(store, window)
        if cost_factor is not None:
            costs, fingerprints = costs_and_fingerprints(actions, cfg.rules, cfg.pricing)
            store.replace_actions_of(window, actions, costs, fingerprints, cost_factor=cost_factor)
            store.refresh_daily_usage(window)
        return audit_window(
            actions,
            window,
            rules=cfg.rules,
            pricing=cfg.pricing,
            sandbox=sandbox,
            multi_source=False,
            is_retrieval=retrieval_by_name(cfg.rules.retrieval_actions),
            quality=source_quality(store, window, ["data360"]),
            cases=store.cases(sorted({a.case_id for a in actions if a.case_id})),
            extra=d360_engine.unmetered_counts(actions),
        )

    def bad_files(self, store: Store, window: Window) -> int:
        return 0

    def extra_output(self, audit: WindowAudit) -> dict[str, Any]:
        """The objects read and the unmetered calls (billable-but-unmetered reported)."""
        return {"data360": {"objects": self._d360.schema.as_json(), **audit.extra}}

    def extra_output_reused(self, saved: dict[str, Any]) -> dict[str, Any]:
        """The stored unmetered counts, beside the objects this run's discovery read."""
        counts = {k: v for k, v in dict(saved.get("data360") or {}).items() if k != "objects"}
        return {"data360": {"objects": self._d360.schema.as_json(), **counts}}


def source_quality(store: Store, window: Window, sources: list[str]) -> SourceQuality:
    """The bad records `sources` stored for `window` — dated from the window's first day,
    as log files are (a log file is dated by its LogDate, a day or an hour)."""
    dated = (day_floor(window[0]), window[1])
    return SourceQuality(
        by_reason=store.bad_record_counts(dated, sources),
        examples=store.bad_records(dated, sources, limit=EXAMPLES),
    )


def open_families(
    cfg: Config,
    client: SalesforceClient,
    closing: ExitStack,
    *,
    run_id: str,
    now: datetime,
    progress: Progress,
) -> list[Family]:
    """The configured families, AgentWorkItem/ELF first: the first is the one stored,
    budgeted and alerted on; any other is audited beside it (SPEC §11)."""
    families: list[Family] = []
    conn = cfg.connector
    if set(cfg.source.kinds) & {"agentworkitem", "eventlogfile"}:
        core = CoreSource(client, conn, run_id=run_id, sync_start=now, progress=progress)
        families.append(CoreFamily(core, cfg))
    if "data360" in cfg.source.kinds:
        from connector.data360 import Data360Client, Data360Source

        d360_client = closing.enter_context(Data360Client(conn))
        d360 = Data360Source(d360_client, conn, run_id=run_id, sync_start=now, progress=progress)
        families.append(Data360Family(d360, cfg))
    return families
