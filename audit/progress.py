"""How a run shows its progress: rich bars on a terminal; elsewhere (a log file, cron, a
pipe) one timestamped line per stage and a progress line every few seconds, never wrapped;
nothing with --quiet."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

__all__ = ["StageLog", "log_line"]

Write = Callable[[str], None]


def log_line(level: str, message: str, *, now: datetime | None = None) -> str:
    """`2026-12-01T15:55:13Z INFO message` — ISO time (UTC), level, the message on one line."""
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    text = " ".join(message.split())
    return f"{when.strftime('%Y-%m-%dT%H:%M:%SZ')} {level} {text}"


class StageLog:
    """A progress callback (stage, done, total) that writes log lines: one when a stage
    starts, then one every `every_s` seconds while it moves."""

    def __init__(
        self,
        write: Write,
        *,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._write = write
        self._every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = self._clock()
        last = self._last.get(stage)
        if last is None:
            self._last[stage] = now
            self._write(log_line("INFO", stage))
        elif now - last >= self._every_s:
            self._last[stage] = now
            of = f"/{total:,}" if total else ""
            self._write(log_line("INFO", f"{stage}: {done:,}{of}"))

    def info(self, message: str) -> None:
        self._write(log_line("INFO", message))

    def warning(self, message: str) -> None:
        self._write(log_line("WARNING", message))
