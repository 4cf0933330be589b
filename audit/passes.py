"""The core audit in flat memory (issue 12): two passes over the store, neither holding the
window's actions.

Pass 1 (`reconcile_days`) reconciles the window a chunk at a time — a UTC day cut into
`chunk`-long pieces — reading exactly the source rows the chunk's actions are built from
(`Store.core_chunk`), and writes each chunk's actions with their recomputed costs and input
fingerprints before reading the next. It takes the days to recompute (default: all the
window's), so a run can redo only the days whose inputs changed.

Pass 2 (`fold_window`) reads the window's stored actions back ordered by session, cuts them
into batches of whole sessions (~`batch` actions each; one session is never split) and
folds each batch into the window's findings and figures (`engine.fold.WindowFold`): the
rules that look across actions look inside one session, so the result is the whole
window's. Memory is bounded by a chunk, a batch and the findings (packed while the
batches go by, ~150 bytes each: `engine.packed`) — not by the window.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from audit.config import PricingConfig, RulesConfig
from audit.engine.awu import CostTable
from audit.engine.fold import WindowFold, costs_and_fingerprints
from audit.engine.model import Action, days_of
from audit.engine.sources.core import AWI_FIELDS, ELF_FIELDS, reconcile_tuples
from audit.store import Store

__all__ = ["CHUNK", "BATCH", "chunks_of", "fold_window", "reconcile_days"]

Window = tuple[datetime, datetime]

#: pass 1 reads and writes the window this much of a day at a time
CHUNK = timedelta(hours=1)
#: pass 2 audits about this many actions at a time (whole sessions)
BATCH = 20_000


def chunks_of(
    window: Window, days: Sequence[str] | None = None, chunk: timedelta = CHUNK
) -> list[Window]:
    """The window cut at UTC midnights and each day into `chunk`-long pieces from its
    midnight, clipped to the window; `days` (YYYY-MM-DD) keeps those days' pieces only."""
    start, end = window
    wanted = set(days_of(window) if days is None else days)
    pieces: list[Window] = []
    for day in days_of(window):
        if day not in wanted:
            continue
        midnight = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
        piece = midnight
        while piece < midnight + timedelta(days=1):
            nxt = min(piece + chunk, midnight + timedelta(days=1))
            lo, hi = max(piece, start), min(nxt, end)
            if lo < hi:
                pieces.append((lo, hi))
            piece = nxt
    return pieces


def reconcile_days(
    store: Store,
    window: Window,
    *,
    rules: RulesConfig,
    pricing: PricingConfig,
    use_awi: bool,
    use_elf: bool,
    cost_factor: float = 1.0,
    days: Sequence[str] | None = None,
    chunk: timedelta = CHUNK,
) -> int:
    """Pass 1: the actions that start in `days` of `window` (default: every day of it)
    reconciled from the stored source rows and written, a chunk at a time; the stored
    actions of those days that are no longer there deleted. Returns how many were written."""
    names = store.agent_names_for(window) if use_awi else {}
    cost_table = CostTable(rules, pricing)
    written = 0
    unwritten: list[tuple[str, str]] = []
    # one unit of the store for every chunk, not a savepoint each: inside the run's
    # transaction, a savepoint per chunk made SQLite copy again every index page an earlier
    # chunk had changed (the chunks write into the same few index pages)
    with _no_cycle_collection(), store.together():
        for piece in chunks_of(window, days, chunk):
            awi_rows, record_tokens, log_rows = store.core_chunk(
                piece, AWI_FIELDS, ELF_FIELDS, use_awi=use_awi, use_elf=use_elf
            )
            actions = reconcile_tuples(
                awi_rows, log_rows, window=piece, use_awi=use_awi, use_elf=use_elf,
                names=names, record_tokens=record_tokens,
            )  # fmt: skip
            del awi_rows, record_tokens, log_rows
            costs, fingerprints = costs_and_fingerprints(actions, rules, pricing, cost_table)
            unwritten += store.write_actions_of(
                piece, actions, costs, fingerprints, cost_factor=cost_factor
            )
            written += len(actions)
        store.delete_unwritten(unwritten)
    return written


def fold_window(store: Store, window: Window, fold: WindowFold, *, batch: int = BATCH) -> None:
    """Pass 2: the window's stored actions folded in, a batch of whole sessions at a time,
    each with the stored Cases its actions link to."""
    with _no_cycle_collection():
        for actions, fingerprints in _session_batches(store, window, batch):
            cases = store.cases(sorted({a.case_id for a in actions if a.case_id}))
            fold.add(actions, cases, fingerprints=fingerprints)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The passes make and drop millions of small objects that hold no reference cycles
    (actions, rows, tuples; reference counting frees them): left on, the cyclic collector
    scans every live object again and again for nothing — 15–20 % of pass 2 measured at
    100k and 1M actions. It is switched back on (if it was) when the pass ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _session_batches(
    store: Store, window: Window, batch: int
) -> Iterator[tuple[list[Action], dict[str, str | None]]]:
    actions: list[Action] = []
    fingerprints: dict[str, str | None] = {}
    previous: str | None = None
    for action, fp in store.stored_actions_by_session(window):
        session = action.session_id
        if len(actions) >= batch and (session is None or session != previous):
            yield actions, fingerprints
            actions, fingerprints = [], {}
        actions.append(action)
        fingerprints[action.id] = fp
        previous = session
    if actions:
        yield actions, fingerprints
