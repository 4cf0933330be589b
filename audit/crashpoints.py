"""Named points of a run where a test can stop the process dead, to prove that a re-run
ends where a clean run would (the crash-point suite in tests/test_reliability.py).

The pipeline calls `reached(phase)` after each phase it commits; nothing happens unless a
hook was installed in this process (`install`, or `exit_at` for an `os._exit` at the n-th
time a phase is reached). Nothing reads the environment or the config: only code that
imports this module before running the CLI can arm it.

Phases, in run order:
    sync-page           a sync page (records + cursor) committed
    synced              every source synced
    actions             actions and daily usage written (inside the decision transaction)
    findings            findings upserted/resolved (inside the decision transaction)
    queued              the decision transaction committed: actions, findings, budget
                        state and the outbox rows that announce them
    sent:<channel>      a channel accepted an alert, before the store recorded it
    delivered:<channel> a channel's delivery recorded as sent
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, cast

from audit.store import Store
from connector.sink import Page, SyncSink

__all__ = ["checkpointed", "exit_at", "install", "reached"]

_hook: Callable[[str], None] | None = None


def install(hook: Callable[[str], None] | None) -> None:
    """Call `hook(phase)` at every crash point from now on (None disarms)."""
    global _hook
    _hook = hook


def reached(phase: str) -> None:
    if _hook is not None:
        _hook(phase)


def exit_at(phase: str, nth: int = 1, code: int = 137) -> None:
    """Make the process vanish (`os._exit`: no cleanup, no finally, no commit) the `nth`
    time `phase` is reached — what a kill -9 or a power cut does there."""
    seen = [0]

    def hook(reached_phase: str) -> None:
        if reached_phase == phase:
            seen[0] += 1
            if seen[0] == nth:
                os._exit(code)

    install(hook)


class _CheckpointedSink:
    """The store, with a crash point after each committed page; every other sink method
    is the store's own."""

    def __init__(self, store: Store):
        self._store = store

    def commit(self, page: Page) -> None:
        self._store.commit(page)
        reached("sync-page")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def checkpointed(store: Store) -> SyncSink:
    """`store` as the sink a source syncs into, with a crash point after each page."""
    return cast(SyncSink, _CheckpointedSink(store))
