"""How a run shows its progress: rich bars on a terminal; elsewhere (a log file, cron, a
pipe) one timestamped line per stage and a progress line every few seconds, never wrapped;
nothing with --quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

__all__ = ["StageLog", "log_line", "progress_display"]

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


@contextmanager
def progress_display(
    enabled: bool, *, log: bool, write: Write
) -> Iterator[Callable[[str, int, int | None], None]]:
    """Progress for long work: rich bars on stderr when it is a terminal; one timestamped
    line per stage (and one every few seconds while it moves) through `write` when it is
    not, or when `log` is set; nothing when not `enabled`."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    if log or not sys.stderr.isatty():
        yield StageLog(write, every_s=1.0 if log else 5.0)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    tasks: dict[str, Any] = {}
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:

        def update(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update
