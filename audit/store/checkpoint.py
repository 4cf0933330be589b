"""Write-ahead-log checkpoints in a thread of their own.

A WAL store appends every commit to its `-wal` file; a checkpoint copies those pages into
the database file and syncs both. By default SQLite checkpoints inside the commit that
pushes the log past 1,000 pages, so a run writing a million rows stops every few megabytes
to copy and fsync. Here the committing connection only wakes a `Checkpointer`, whose own
connection runs passive checkpoints while the run goes on (SQLite releases the GIL while
it copies and syncs, so the second core does it). Durability is unchanged: commits and
checkpoints sync exactly as `synchronous = NORMAL` says; only who waits for them moves.

The committing connection keeps a backstop (`BACKSTOP_PAGES`): should the thread fall
behind, SQLite checkpoints in the commit as before, so the log stays bounded.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import urllib.parse

__all__ = ["BACKSTOP_PAGES", "Checkpointer"]

#: the committing connection checkpoints itself only past this many log pages (~40 MB)
BACKSTOP_PAGES = 10_000
#: the most often the thread checkpoints: commits in between are copied together. Measured
#: at 100k actions, the thread's own CPU is 0.25 s at a 0.05 s pause, 0.15 s at 0.5 s and
#: 0.12 s at 1 s (the same hot pages are copied again by every checkpoint).
_PAUSE_S = 0.5


class Checkpointer:
    """Passive checkpoints of the store at `path` after commits, from a daemon thread.

    `committed()` after each commit (cheap: it sets an event, starting the thread the first
    time); `stop()` before the store closes. A checkpoint that fails is left to the next
    one or to the committing connection's backstop: it is never an error of the run.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def committed(self) -> None:
        if self._thread is None and not self._stop.is_set():
            thread = threading.Thread(target=self._run, name="awu-store-checkpoint", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no new thread (interpreter shutting down): the commit
                return  # stands, and the committing connection's backstop checkpoints
            self._thread = thread
        self._wake.set()

    def stop(self) -> None:
        """Let a checkpoint under way finish, then end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            # mode=rw: a store moved or deleted meanwhile is not created again (empty, and
            # with the default mode) — the thread just has nothing to checkpoint
            conn = sqlite3.connect(
                f"file:{urllib.parse.quote(self._path)}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error:
            return  # the committing connection's backstop checkpoints instead
        try:
            while self._wake.wait() and not self._stop.is_set():
                self._wake.clear()
                # busy or gone: the next commit wakes another attempt
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if self._stop.wait(_PAUSE_S):
                    return
        finally:
            conn.close()
