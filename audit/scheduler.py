"""The nightly schedule: one audit job on `[schedule] cron` (APScheduler 3.x).

At most one run at a time, missed runs coalesced into one, each run's outcome logged as
one line, and SIGTERM/SIGINT let the current run finish before the process exits. Every
line is `progress.log_line`'s (ISO time, level, message), as `audit run` logs when piped:
a finished run at INFO, a failed one at ERROR, a stop signal at WARNING.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from audit.config import Config, ScheduleConfig
from audit.engine.alerts import one_line
from audit.errors import KNOWN_ERRORS, ConfigError
from audit.progress import log_line

__all__ = ["JOB_ID", "make_trigger", "add_audit_job", "run_job_logged", "run_scheduled"]

JOB_ID = "awu-audit"


class WallClockCronTrigger(CronTrigger):  # type: ignore[misc]  # APScheduler 3.x is untyped
    """A CronTrigger that fires at most once per local wall-clock time.

    When clocks go back, a local time such as 02:00 happens twice; plain CronTrigger fires
    at both. Like cron, this one skips fire times whose wall-clock time is not later than
    the previous fire time's.
    """

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        nxt: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        if previous_fire_time is None:
            return nxt
        prev_wall = _wall(previous_fire_time, self.timezone)
        for _ in range(100):  # bounded: each step moves past prev_wall on the wall clock
            if nxt is None or _wall(nxt, self.timezone) > prev_wall:
                break
            # Search again from the instant the wall clock passes prev_wall. (Asking with
            # previous_fire_time=nxt returns nxt again inside the repeated hour.)
            # (arithmetic in UTC: adding to a zoned datetime is wall-clock arithmetic)
            lag = prev_wall - _wall(nxt, self.timezone)
            probe = nxt.astimezone(timezone.utc) + lag + timedelta(microseconds=1)
            nxt = super().get_next_fire_time(None, probe)
        return nxt


def _wall(moment: datetime, tz: Any) -> datetime:
    """The naive local wall-clock time of an aware instant."""
    return moment.astimezone(tz).replace(tzinfo=None)


def make_trigger(schedule: ScheduleConfig) -> CronTrigger:
    """The trigger for `[schedule]`; ConfigError names the bad key."""
    try:
        tz = ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            f"config key schedule.timezone: unknown time zone {schedule.timezone!r} "
            '(use an IANA name such as "UTC" or "Europe/Paris")'
        ) from None
    try:
        return WallClockCronTrigger.from_crontab(schedule.cron, timezone=tz)
    except ValueError as exc:
        raise ConfigError(
            f"config key schedule.cron: {schedule.cron!r} is not a 5-field crontab "
            f"expression ({exc})"
        ) from None


def run_job_logged(job: Callable[[], str], log: Callable[[str], None]) -> None:
    """Run the job once and log its outcome as one line (INFO, or ERROR when it failed);
    never raises an Exception, so the scheduler keeps running and the next night runs."""
    try:
        summary = job()
    except KNOWN_ERRORS as exc:
        log(log_line("ERROR", f"audit run failed: {one_line(str(exc))}"))
    except Exception as exc:  # logged as one line; the next scheduled run still happens
        detail = one_line(str(exc))
        failed = f"audit run failed: {type(exc).__name__}" + (f": {detail}" if detail else "")
        log(log_line("ERROR", failed))
    else:
        log(log_line("INFO", one_line(summary)))


def add_audit_job(
    scheduler: BaseScheduler,
    job: Callable[[], str],
    *,
    trigger: BaseTrigger,
    misfire_grace_s: int,
    log: Callable[[str], None] = print,
    next_run_time: datetime | None = None,
) -> Job:
    """Add the one audit job: max_instances=1, coalesce=True, the configured grace time.

    `next_run_time` overrides the first fire time (e.g. now, to run at once).
    """
    kwargs: dict[str, Any] = {}
    if next_run_time is not None:
        kwargs["next_run_time"] = next_run_time
    return scheduler.add_job(
        run_job_logged,
        trigger=trigger,
        args=(job, log),
        id=JOB_ID,
        name="awu-audit run",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=misfire_grace_s,
        replace_existing=True,
        **kwargs,
    )


def run_scheduled(
    cfg: Config,
    job: Callable[[], str],
    *,
    once: bool = False,
    scheduler: BaseScheduler | None = None,
    log: Callable[[str], None] = print,
    run_now: bool = False,
) -> None:
    """Run `job` on `[schedule] cron` until SIGTERM/SIGINT; `once` runs it now and returns.

    `job` returns a one-line summary. In `once` mode its exceptions propagate (the CLI
    turns them into an exit code); on the schedule they are logged as one line. `run_now`
    adds an immediate first run before following the schedule. On SIGTERM/SIGINT the
    scheduler shuts down after the current run finishes (a second signal aborts it:
    the pipeline writes in transactions, so that is safe too).
    """
    trigger = make_trigger(cfg.schedule)
    if once:
        log(log_line("INFO", one_line(job())))
        return
    tz = trigger.timezone
    sched = scheduler or BackgroundScheduler(timezone=tz)
    now = datetime.now(timezone.utc)
    add_audit_job(
        sched,
        job,
        trigger=trigger,
        misfire_grace_s=cfg.schedule.misfire_grace_s,
        log=log,
        next_run_time=now if run_now else None,
    )
    first = now if run_now else trigger.get_next_fire_time(None, now)
    when = first.astimezone(tz).isoformat(timespec="seconds") if first else "never"
    log(
        log_line(
            "INFO",
            f"awu-audit scheduler started: cron {cfg.schedule.cron!r} "
            f"({cfg.schedule.timezone}); next run {when}",
        )
    )

    _serve_until_signalled(sched, log)


def _serve_until_signalled(sched: BaseScheduler, log: Callable[[str], None]) -> None:
    """Run the scheduler until SIGTERM/SIGINT, then let the current run finish.

    The handler only records the signal: raising from it could land while APScheduler
    hands a job to its worker thread, which swallows the exception and runs on; and it
    takes no lock (an Event would deadlock if the signal came while the main thread held
    it). The main thread polls the record and shuts the scheduler down outside the handler.
    """
    received: list[str] = []
    previous: dict[signal.Signals, Any] = {}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        for sig, handler in previous.items():  # a second signal now aborts
            signal.signal(sig, handler)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, request_stop)
    try:
        sched.start()
        while sched.running and not received:
            time.sleep(0.1)
        if received:
            stopping = f"{received[0]} received; stopping after the current run"
            log(log_line("WARNING", f"awu-audit scheduler: {stopping}"))
            if sched.running:
                sched.shutdown(wait=True)
            log(log_line("INFO", "awu-audit scheduler stopped"))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
