"""The nightly schedule: trigger arithmetic with an explicit now, job policy, signals."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from audit.config import Config, ScheduleConfig
from audit.errors import ConfigError, StoreError
from audit.scheduler import add_audit_job, make_trigger, run_scheduled
from tests.helpers import wait_until

UTC = timezone.utc
REPO = Path(__file__).resolve().parents[1]
#: `audit run`'s piped log line: ISO time (UTC), level, message
LOG_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z) (INFO|WARNING|ERROR) (\S.*)$")


def _logged(line: str) -> tuple[str, str]:
    """(level, message) of one scheduler log line; fails unless it has a time and level."""
    m = LOG_LINE.match(line)
    assert m is not None, f"not a timestamped log line: {line!r}"
    when = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=5), line  # the time it was logged
    return m.group(2), m.group(3)


def _fire_times(cron: str, tz: str, start: datetime, n: int) -> list[datetime]:
    trigger = make_trigger(ScheduleConfig(cron=cron, timezone=tz))
    times: list[datetime] = []
    prev, now = None, start
    for _ in range(n):
        nxt = trigger.get_next_fire_time(prev, now)
        assert nxt is not None
        times.append(nxt.astimezone(UTC))
        prev = now = nxt
    return times


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- trigger ---------------------------------------------------------------------------------


def test_trigger_fires_at_local_time_across_dst() -> None:
    # Europe/Paris leaves summer time on 2026-10-25: 02:00 local is 00:00Z, then 01:00Z
    times = _fire_times("0 2 * * *", "Europe/Paris", _utc(2026, 10, 23, 12), 4)
    assert times == [_utc(2026, 10, 24, 0), _utc(2026, 10, 25, 0), _utc(2026, 10, 26, 1), _utc(2026, 10, 27, 1)]


def test_trigger_fires_once_when_the_local_time_repeats() -> None:
    # 02:00-02:59 happens twice on 2026-10-25 in Paris; like cron, run it once
    times = _fire_times("*/30 2 * * *", "Europe/Paris", _utc(2026, 10, 24, 12), 4)
    assert times == [_utc(2026, 10, 25, 0), _utc(2026, 10, 25, 0, 30), _utc(2026, 10, 26, 1), _utc(2026, 10, 26, 1, 30)]
    # an hourly schedule still advances through the repeated hour
    hourly = _fire_times("0 * * * *", "Europe/Paris", _utc(2026, 10, 24, 23, 30), 4)
    assert hourly == [_utc(2026, 10, 25, 0), _utc(2026, 10, 25, 2), _utc(2026, 10, 25, 3), _utc(2026, 10, 25, 4)]


def test_trigger_runs_once_when_the_local_time_is_skipped() -> None:
    # New York springs forward 2026-03-08: 02:30 does not exist; the run still happens once
    times = _fire_times("30 2 * * *", "America/New_York", _utc(2026, 3, 6, 12), 4)
    assert times == [_utc(2026, 3, 7, 7, 30), _utc(2026, 3, 8, 7, 30), _utc(2026, 3, 9, 6, 30), _utc(2026, 3, 10, 6, 30)]


def test_trigger_uses_the_given_now() -> None:
    trigger = make_trigger(ScheduleConfig(cron="0 2 * * *", timezone="UTC"))
    assert trigger.get_next_fire_time(None, _utc(2026, 10, 6, 1, 59)) == _utc(2026, 10, 6, 2)
    assert trigger.get_next_fire_time(None, _utc(2026, 10, 6, 2, 0, 1)) == _utc(2026, 10, 7, 2)


@pytest.mark.parametrize(
    ("cron", "tz", "key"),
    [
        ("0 2 * *", "UTC", "schedule.cron"),
        ("61 2 * * *", "UTC", "schedule.cron"),
        ("every night", "UTC", "schedule.cron"),
        ("0 2 * * *", "Mars/Olympus_Mons", "schedule.timezone"),
        ("0 2 * * *", "", "schedule.timezone"),
    ],
)
def test_bad_schedule_is_a_config_error_naming_the_key(cron: str, tz: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"config key {key}"):
        make_trigger(ScheduleConfig(cron=cron, timezone=tz))
    with pytest.raises(ConfigError, match=f"config key {key}"):
        run_scheduled(Config(schedule=ScheduleConfig(cron=cron, timezone=tz)), lambda: "x", once=True)


# --- job policy on a real scheduler ----------------------------------------------------------


@pytest.fixture
def scheduler() -> Iterator[BackgroundScheduler]:
    sched = BackgroundScheduler(jobstores={"default": MemoryJobStore()}, timezone=UTC)
    yield sched
    if sched.running:
        sched.shutdown(wait=True)


def test_missed_runs_are_coalesced_into_one(scheduler: BackgroundScheduler) -> None:
    calls: list[float] = []
    logs: list[str] = []
    # the nightly job's first fire time was 5 days ago: 5 missed runs (plus today's)
    job = add_audit_job(
        scheduler,
        lambda: calls.append(time.monotonic()) or "run ok",  # type: ignore[func-returns-value]
        trigger=make_trigger(ScheduleConfig(cron="0 2 * * *", timezone="UTC")),
        misfire_grace_s=7 * 86400,
        log=logs.append,
        next_run_time=datetime.now(UTC) - timedelta(days=5),
    )
    scheduler.start()
    wait_until(lambda: logs)
    # the scheduler has moved on to tomorrow once it handed the missed runs over …
    wait_until(lambda: scheduler.get_job(job.id).next_run_time > datetime.now(UTC))
    # … and shutdown(wait=True) returns once every run it handed over is done: a missed
    # time not coalesced away would have run by then
    scheduler.shutdown(wait=True)
    assert len(calls) == 1 and [_logged(line) for line in logs] == [("INFO", "run ok")]


def test_a_long_run_is_never_started_twice(scheduler: BackgroundScheduler) -> None:
    release = threading.Event()
    active = 0
    peak = 0
    calls = 0
    refused: list[datetime] = []
    lock = threading.Lock()

    def job() -> str:
        nonlocal active, peak, calls
        with lock:
            active += 1
            calls += 1
            peak = max(peak, active)
        release.wait(60)  # "long": until the test has seen enough fire times pass
        with lock:
            active -= 1
        return "run ok"

    add_audit_job(
        scheduler, job, trigger=IntervalTrigger(seconds=0.2), misfire_grace_s=60, log=lambda s: None
    )
    # each fire time that finds the run still going is refused with this event
    scheduler.add_listener(lambda event: refused.append(event.scheduled_run_times[-1]),
                           EVENT_JOB_MAX_INSTANCES)
    scheduler.start()
    wait_until(lambda: calls >= 1)
    wait_until(lambda: len(refused) >= 5, timeout=30)  # five fire times pass during the run
    assert calls == 1 and peak == 1
    release.set()


def test_a_failing_run_is_one_line_and_the_schedule_continues(scheduler: BackgroundScheduler) -> None:
    logs: list[str] = []
    outcomes = iter([StoreError("another run holds the lock on /x.db"), RuntimeError("boom\nsecond line"), None])

    def job() -> str:
        exc = next(outcomes, None)
        if exc is not None:
            raise exc
        return "run ok: 12 actions"

    add_audit_job(scheduler, job, trigger=IntervalTrigger(seconds=0.1), misfire_grace_s=60, log=logs.append)
    scheduler.start()
    wait_until(lambda: len(logs) >= 3)
    assert [_logged(line) for line in logs[:3]] == [
        ("ERROR", "audit run failed: another run holds the lock on /x.db"),
        ("ERROR", "audit run failed: RuntimeError: boom second line"),
        ("INFO", "run ok: 12 actions"),
    ]


def test_once_runs_the_job_now_and_returns() -> None:
    logs: list[str] = []
    run_scheduled(Config(), lambda: "run ok: 3 actions", once=True, log=logs.append)
    assert [_logged(line) for line in logs] == [("INFO", "run ok: 3 actions")]


# --- signals ---------------------------------------------------------------------------------

_DAEMON = textwrap.dedent(
    """
    import pathlib, sys, time
    from datetime import datetime, timezone
    from apscheduler.schedulers.background import BackgroundScheduler
    from audit.config import Config, ScheduleConfig
    from audit.scheduler import JOB_ID, run_scheduled

    marker, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    sched = BackgroundScheduler(timezone="Europe/Paris")

    def poll(predicate, what):
        deadline = time.monotonic() + 30
        while not predicate():
            assert time.monotonic() < deadline, what
            time.sleep(0.01)

    def job():
        # ready once the scheduler has handed this run over and planned the next one
        # (get_job waits for the scheduler's job store lock): a signal now finds the main
        # thread waiting, as it would during a real nightly run
        poll(lambda: sched.get_job(JOB_ID).next_run_time > datetime.now(timezone.utc),
             "next run never planned")
        marker.write_text("started")
        poll(go.exists, "the test never let the run finish")  # the run is "long"
        marker.write_text("finished")
        return "run ok: 42 actions"

    cfg = Config(schedule=ScheduleConfig(cron="0 2 * * *", timezone="Europe/Paris"))
    run_scheduled(cfg, job, scheduler=sched, run_now=True, log=lambda line: print(line, flush=True))
    print("process exiting", flush=True)
    """
)


def _read_line(proc: subprocess.Popen[str], timeout: float = 15.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output in {timeout} s"
    return proc.stdout.readline().rstrip("\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_current_run_finish_then_exits_0(tmp_path: Path, sig: signal.Signals) -> None:
    marker, go = tmp_path / "marker", tmp_path / "go"
    with subprocess.Popen(
        [sys.executable, "-c", _DAEMON, str(marker), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as proc:
        try:
            wait_until(lambda: marker.exists() and marker.read_text() == "started", timeout=30)
            proc.send_signal(sig)
            # the run goes on until the scheduler has said it will stop after it
            head = [_read_line(proc)]
            while not head[-1].endswith("received; stopping after the current run"):
                head.append(_read_line(proc))
            assert marker.read_text() == "started"
            go.touch()
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert marker.read_text() == "finished"
    assert out.splitlines()[-1] == "process exiting"  # printed by the script, not logged
    logged = [_logged(line) for line in head + out.splitlines()[:-1]]
    assert logged[0][0] == "INFO"
    assert logged[0][1].startswith("awu-audit scheduler started: cron '0 2 * * *' (Europe/Paris); next run ")
    stopping = ("WARNING", f"awu-audit scheduler: {sig.name} received; stopping after the current run")
    assert logged[len(head) - 1] == stopping
    finished, stopped = ("INFO", "run ok: 42 actions"), ("INFO", "awu-audit scheduler stopped")
    assert logged.index(stopping) < logged.index(finished) < logged.index(stopped)
    assert "Traceback" not in err
