"""The store's write-ahead log is checkpointed by a thread of its own (audit/store/checkpoint.py):
a run's commits wake it, the committing connection does not copy or sync the log itself below
its backstop, and closing the store ends the thread and leaves no log behind."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from audit.store import Store
from audit.store.checkpoint import BACKSTOP_PAGES

_BLOB = 6 * 1024 * 1024  # ~1,500 pages: over SQLite's default 1,000, under the backstop


def _thread_of(store: Store) -> threading.Thread | None:
    return store._checkpoints._thread


def _write_blob(store: Store) -> None:
    with store.transaction():
        store._execute("INSERT INTO meta (key, value) VALUES ('blob', ?)", ["x" * _BLOB])


def test_the_committing_connection_leaves_checkpoints_to_the_backstop(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    try:
        pages = store._tuples("PRAGMA wal_autocheckpoint")[0][0]
        assert pages == BACKSTOP_PAGES > 1000
    finally:
        store.close()


def test_a_commit_is_copied_into_the_database_file_by_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store.open(path)
    try:
        before = path.stat().st_size
        _write_blob(store)
        thread = _thread_of(store)
        assert thread is not None and thread.is_alive(), "a commit starts the checkpoint thread"
        # the blob's pages reach the database file only through a checkpoint; the committing
        # connection's own is past the backstop, so the thread made it
        deadline = time.monotonic() + 10
        while path.stat().st_size < before + _BLOB and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= before + _BLOB
    finally:
        store.close()


def test_closing_the_store_ends_the_thread_and_the_log(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store.open(path)
    _write_blob(store)
    thread = _thread_of(store)
    assert thread is not None
    store.close()
    assert not thread.is_alive()
    assert not Path(f"{path}-wal").exists()
    with sqlite3.connect(path) as conn:  # everything committed is in the file
        assert conn.execute("SELECT length(value) FROM meta WHERE key = 'blob'").fetchone() == (
            _BLOB,
        )


def test_a_store_that_only_reads_starts_no_thread(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store.open(path).close()
    with Store.open(path, readonly=True) as store:
        store.count("actions")
        assert _thread_of(store) is None


def test_a_store_moved_away_is_not_created_again_by_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store.open(path)
    try:
        store._checkpoints.stop()  # as if no commit had started it yet (the run lock held)
        store._checkpoints = type(store._checkpoints)(str(path))
        path.rename(tmp_path / "moved.db")
        _write_blob(store)
        thread = _thread_of(store)
        assert thread is not None
        store._checkpoints.stop()
        assert not path.exists()
    finally:
        store.close()
