"""The run lock: an flock beside the store file that keeps two runs from writing at once.

The kernel releases it when the holding process dies, even by kill -9; whoever takes it
next marks the runs that process left 'running' as 'interrupted'.
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
        return Path(f"{self.path}.lock")

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
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.mark_interrupted_runs()
            yield self
        finally:
            self._release_lock()

    def _try_lock(self, wait_s: float) -> int | None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create lock file {self.lock_path}: {exc.strerror}") from None
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise StoreError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
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


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
