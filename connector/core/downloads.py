"""LogFile bodies one file ahead: while the sync parses and commits one file, the client's
worker thread streams the next file it will read into a temporary file of its own (on
disk, as every body is: a LogFile can be hundreds of MB).

Only one download is ever ahead, and it is started only after the previous one came back
whole, so the org sees the same requests in the same order as a sync that downloads each
file when it gets to it; a failed download ahead is raised where that sync would have
raised it.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO

from connector.client import SalesforceClient

__all__ = ["Body", "DownloadsAhead"]


@dataclass(frozen=True)
class Body:
    """One downloaded LogFile body; the caller closes `file`."""

    file: IO[bytes]
    size: int
    sha: str


class DownloadsAhead:
    """The downloads of one sync, in the order it reads the files: `take` one (downloaded
    ahead, or now), then `start_next` the following one while working on it."""

    def __init__(self, client: SalesforceClient, planned: Iterable[tuple[str, int | None]]):
        self._client = client
        #: (file Id, expected size) of the files still to download, in reading order
        self._planned = deque(planned)
        self._pending: tuple[str, int | None, Future[Body]] | None = None

    def take(self, file_id: str, expected: int | None) -> Body:
        """The body of `file_id` (checked against `expected` bytes): the one downloaded
        ahead if that is this file, else downloaded now. Raises what the download raised."""
        pending = self._pending
        if pending is not None and pending[:2] == (file_id, expected):
            self._pending = None
            return pending[2].result()
        if self._planned and self._planned[0] == (file_id, expected):
            self._planned.popleft()
        return download(self._client, file_id, expected)

    def start_next(self) -> None:
        """Start the next planned download in the worker thread, if none is ahead."""
        if self._pending is None and self._planned:
            file_id, expected = self._planned.popleft()
            future = self._client.ahead(lambda: download(self._client, file_id, expected))
            self._pending = (file_id, expected, future)

    def discard(self) -> None:
        """Drop the download ahead, if any (the sync ends early): not started, it never
        is; started, its body is closed when it is done. Does not wait."""
        pending, self._pending = self._pending, None
        self._planned.clear()
        if pending is not None and not pending[2].cancel():
            pending[2].add_done_callback(_close_body)


def download(client: SalesforceClient, file_id: str, expected: int | None) -> Body:
    """Stream one LogFile into a new temporary file (closed again if the download fails)."""
    with ExitStack() as on_failure:
        file = on_failure.enter_context(tempfile.TemporaryFile())
        size, sha = client.download_logfile(file_id, file, expected_size=expected)
        on_failure.pop_all()  # whole: the caller closes it
    return Body(file, size, sha)


def _close_body(future: Future[Body]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().file.close()
