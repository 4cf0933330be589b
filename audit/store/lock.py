"""The run lock: an flock on the store's database file itself, so two runs never write at
once however the file is reached — by a symlink, a hard link or a relative path all lead
to the same inode, and the lock is the inode's. (A lock file named after the path, as
before, let a run through `s.db` and one through a link to it both proceed.)

flock and SQLite's own POSIX record locks are independent on a local filesystem, so this
lock never blocks a reader; SQLite's WAL needs a local filesystem anyway. The holder's pid
is written, for the error message only, to `<resolved path>.lock`.

The kernel releases the lock when the holding process dies, even by kill -9; whoever takes
it next marks the runs that process left 'running' as 'interrupted'.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from audit.errors import StoreError
from audit.store.runs import Runs

__all__ = ["RunLock"]


class RunLock(Runs):
    def __init__(self, db: sqlite_utils.Database, path: Path):
        super().__init__(db, path)
        self._lock_fd: int | None = None
        self._lock_depth = 0

    @property
    def lock_path(self) -> Path:
        """Where the holder's pid is written (beside the resolved file: one per store)."""
        return Path(f"{os.path.realpath(self.path)}.lock")

    @contextlib.contextmanager
    def lock(self, wait_s: float = 0.0) -> Iterator[RunLock]:
        """Hold the store's inter-process run lock; re-entrant within this Store.

        Waits up to `wait_s` for another holder, then raises StoreError. On acquiring it,
        runs a killed process left 'running' are marked 'interrupted'.
        """
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield self
            finally:
                self._lock_depth -= 1
            return
        fd = self._try_lock(wait_s)
        if fd is None:
            holder = _read_pid(self.lock_path)
            suffix = f" (pid {holder})" if holder else ""
            raise StoreError(f"another run holds the lock on {self.path}{suffix}")
        self._lock_fd = fd
        self._lock_depth = 1
        try:
            _write_pid(self.lock_path)
            self.mark_interrupted_runs()
            yield self
        finally:
            self._release_lock()

    def _try_lock(self, wait_s: float) -> int | None:
        try:  # the database file itself: its inode is the same under every name
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise StoreError(f"cannot open {self.path} to lock it: {exc.strerror}") from None
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.close(fd)
                return None
            time.sleep(min(0.05, remaining))

    def _release_lock(self) -> None:
        fd, self._lock_fd, self._lock_depth = self._lock_fd, None, 0
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _mark_interrupted_if_idle(self) -> None:
        # At open: only when no other process holds the lock (else its run is live).
        if self._lock_depth:
            return
        fd = self._try_lock(0.0)
        if fd is None:
            return
        try:
            self.mark_interrupted_runs()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def close(self) -> None:
        if self._lock_fd is not None:
            self._release_lock()
        super().close()


def _write_pid(path: Path) -> None:
    """Best effort: the pid only makes the "another run holds the lock" line clearer."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
