"""The sync works on one answer while the next request is on its way (the next query page,
the next LogFile, in the client's one worker thread). Against the real HTTPS mock org:
what is committed is committed in the order it was requested, never more than one answer
ahead; a failure of the request made ahead is raised after everything before it was
committed, as the one-at-a-time sync raised it; and the worker thread never outlives the
run or the client."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from audit.config import load_config
from audit.store import Store
from connector.client import WORKER_NAME, SalesforceClient
from connector.core import CoreSource
from connector.errors import RateLimited
from connector.mock.org import MockOrg, MockRequest
from connector.mock.server import RunningMockOrg, serve
from connector.sink import Page
from fixtures.generator import generate_snapshot
from tests.helpers import assert_matches_labels, invoke, labels_of, make_config, wait_until

PAGE = 60  # AgentWorkItem records per query page: ~6 pages for this org


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ahead") / "org"
    generate_snapshot(out, seed=31, actions=300, days=2, start=date(2026, 10, 1))
    return out


@contextmanager
def served(snap: Path, tmp: Path) -> Iterator[tuple[MockOrg, RunningMockOrg]]:
    org = MockOrg.from_snapshot(snap, page_size=PAGE)
    with serve(org, tls_dir=tmp / "tls") as server:
        yield org, server


def window_of(snap: Path) -> tuple[datetime, datetime]:
    w = labels_of(snap)["window"]
    return (
        datetime.fromisoformat(w["since"].replace("Z", "+00:00")),
        datetime.fromisoformat(w["until"].replace("Z", "+00:00")),
    )


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_NAME)]


def is_download(req: MockRequest) -> bool:
    return req.path.endswith("/LogFile")


def is_awi_page(req: MockRequest, page_no: int | None) -> bool:
    """A nextRecordsUrl page (page_no ≥ 1) or the first page of the AgentWorkItem query."""
    return page_no is not None and (page_no > 0 or "FROM AgentWorkItem" in req.query.get("q", ""))


class Answers:
    """Counts, from the mock's side, the AgentWorkItem query pages and LogFiles it has
    answered; optionally switches the daily API limit on after the n-th of either."""

    def __init__(self, org: MockOrg, fail_after: tuple[str, int] | None = None) -> None:
        self.pages = 0
        self.downloads: list[str] = []
        self._fail_after = fail_after
        self._org = org
        self._lock = threading.Lock()
        org.on_request = self

    def __call__(self, req: MockRequest, page_no: int | None) -> None:
        with self._lock:
            # a page with records (the incremental query after the backfill finds none);
            # one request at a time: the log's last entry is this one
            if is_awi_page(req, page_no) and self._org.request_log.entries()[-1].records:
                self.pages += 1
            if is_download(req) and req.path.count("/") > 2:
                self.downloads.append(req.path.split("/")[-2])
            if self._fail_after is not None:
                kind, n = self._fail_after
                if (kind == "page" and self.pages == n and is_awi_page(req, page_no)) or (
                    kind == "download" and len(self.downloads) == n and is_download(req)
                ):
                    self._org.faults.daily_limit()  # every call from now on: 403


class Recording:
    """The store, recording each commit with how many answers the org had given then."""

    def __init__(self, store: Store, answers: Answers) -> None:
        self._store = store
        self._answers = answers
        self.pages: list[tuple[list[str], int]] = []  # (record ids, pages answered)
        self.files: list[tuple[str, int]] = []  # (file id, downloads answered)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def commit(self, page: Page) -> None:
        self._store.commit(page)
        if page.awi_records:
            self.pages.append(([r["id"] for r in page.awi_records], self._answers.pages))
        if page.log_file is not None:
            self.files.append((page.log_file["id"], len(self._answers.downloads)))


def sync(tmp: Path, snap: Path, server: RunningMockOrg, sink: Recording) -> CoreSource:
    cfg = load_config(make_config(tmp, snap, server)).connector
    with SalesforceClient(cfg) as client:
        source = CoreSource(client, cfg, run_id="r1", sync_start=datetime.now(timezone.utc))
        try:
            source.sync(sink, window_of(snap))  # type: ignore[arg-type]  # a Store, recorded
        finally:
            assert workers(), "the worker thread was never used"
    return source


def test_commits_follow_the_requests_never_more_than_one_ahead(snap: Path, tmp_path: Path) -> None:
    with served(snap, tmp_path) as (org, server), Store.open(tmp_path / "s.db") as store:
        answers = Answers(org)
        sink = Recording(store, answers)
        source = sync(tmp_path, snap, server, sink)
    assert not workers()  # closing the client ended it
    # every AgentWorkItem page committed once, in keyset order, as the org served them
    ids = [i for page, _ in sink.pages for i in page]
    assert len(ids) == len(set(ids)) == source.records
    assert [len(page) for page, _ in sink.pages[:-1]] == [PAGE] * (len(sink.pages) - 1)
    assert len(sink.pages) == answers.pages
    # page k (1-based) is committed before page k + 2 is requested: one page ahead at most
    for k, (_, answered) in enumerate(sink.pages, 1):
        assert k <= answered <= k + 1, (k, answered)
    # the LogFiles committed in the order they were downloaded, each once, one file ahead
    assert [f for f, _ in sink.files] == answers.downloads
    for k, (_, answered) in enumerate(sink.files, 1):
        assert k <= answered <= k + 1, (k, answered)
    # the answer made ahead was really made while the sync worked on the one before it —
    # somewhere in the run (a one-at-a-time sync would show answered == k everywhere)
    assert any(answered == k + 1 for k, (_, answered) in enumerate(sink.files, 1))


@pytest.mark.parametrize("at", [("page", 3), ("download", 4)])
def test_a_failure_ahead_is_raised_after_what_came_before_it(
    snap: Path, tmp_path: Path, at: tuple[str, int]
) -> None:
    """The org starts refusing every call (403 daily limit) once the n-th page / LogFile is
    answered: the request after it — made ahead, while the n-th was being committed — fails,
    and the sync raises that failure once the n-th answer is committed, not before."""
    kind, n = at
    with served(snap, tmp_path) as (org, server), Store.open(tmp_path / "s.db") as store:
        answers = Answers(org, fail_after=at)
        sink = Recording(store, answers)
        with pytest.raises(RateLimited, match="REQUEST_LIMIT_EXCEEDED"):
            sync(tmp_path, snap, server, sink)
        log = org.request_log.entries()
        assert [e.status for e in log].count(403) == 1 and log[-1].status == 403  # nothing after
    assert not workers()
    if kind == "page":
        assert len(sink.pages) == n and not sink.files
        assert sum(len(page) for page, _ in sink.pages) == n * PAGE
    else:
        assert [f for f, _ in sink.files] == answers.downloads[:n]
    table, stored = ("awi_records", n * PAGE) if kind == "page" else ("elf_files", n)
    with closing(sqlite3.connect(tmp_path / "s.db")) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == stored


def test_a_failed_run_leaves_no_worker_thread(snap: Path, tmp_path: Path) -> None:
    """The command line in-process: the one error line and exit code of the daily limit, the
    files before the refused one stored, and no thread left behind."""
    since, until = labels_of(snap)["window"]["since"], labels_of(snap)["window"]["until"]
    with served(snap, tmp_path) as (org, server):
        Answers(org, fail_after=("download", 2))
        proc = invoke("run", "--config", str(make_config(tmp_path, snap, server)), "--since", since,
                      "--until", until, "--json")  # fmt: skip
    assert proc.exit_code == 3 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "REQUEST_LIMIT_EXCEEDED" in proc.stderr
    assert not workers()
    with closing(sqlite3.connect(tmp_path / "store.db")) as conn:
        assert conn.execute("SELECT count(*) FROM elf_files").fetchone()[0] == 2
        assert conn.execute("SELECT outcome FROM runs").fetchall() == [("failed",)]


def test_closing_cuts_a_backoff_ahead_short(snap: Path, tmp_path: Path) -> None:
    """A page requested ahead meets 503s and backs off (for a minute, here): closing the
    client ends the worker thread without a retry, instead of waiting the backoff out."""
    extra = "[sync]\nbackoff_base_s = 60\nbackoff_max_s = 60\nmax_retries = 3\n"
    with served(snap, tmp_path) as (org, server):
        cfg = load_config(make_config(tmp_path, snap, server, extra=extra)).connector

        def unavailable_after_first_page(req: MockRequest, page_no: int | None) -> None:
            if page_no == 0:
                org.faults.unavailable(1000)

        org.on_request = unavailable_after_first_page
        client = SalesforceClient(cfg)
        pages = client.query_pages("SELECT Id FROM AgentWorkItem ORDER BY Id")
        assert len(next(pages)) == PAGE  # page 1 is now requested ahead, and refused
        wait_until(lambda: any(e.status == 503 for e in org.request_log.entries()), what="a 503")
        client.close()
        assert not workers()
        pages.close()
        assert [e.status for e in org.request_log.entries()].count(503) == 1  # no retry


def test_a_run_with_small_pages_matches_the_labels(snap: Path, tmp_path: Path) -> None:
    """The whole run, pages and files ahead (many pages: 60 records each), gives the
    generator's labels, and leaves no thread behind."""
    labels = labels_of(snap)
    w = labels["window"]
    with served(snap, tmp_path) as (_org, server):
        proc = invoke("run", "--config", str(make_config(tmp_path, snap, server)), "--since",
                      w["since"], "--until", w["until"], "--json")  # fmt: skip
    assert proc.exit_code == 0, proc.stderr
    assert_matches_labels(json.loads(proc.stdout), labels)
    assert not workers()
