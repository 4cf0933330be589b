"""The Data 360 source: usage events read in keyset order `(Timestamp, Id)`, capped at the
sync's start, each page committed with the cursor it reaches — a restart (an expired batch
id, a killed run) resumes after the last committed row with no gap at a page edge. Every
run re-reads `[data360] settle_hours` of event time before the cursor, because usage rows
arrive late. The steps and sessions of those events are read by id, whatever their own
timestamps, and only while the store lacks them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, cast

from connector.config import ConnectorConfig
from connector.data360.client import Data360Client
from connector.data360.discovery import Data360Schema, DiscoveredObject, discover
from connector.data360.values import (
    event_record,
    session_record,
    step_record,
    str_literal,
    ts_literal,
)
from connector.errors import BatchExpired, SalesforceError
from connector.intervals import merge_intervals, subtract_intervals
from connector.sink import BadRecord, D360Event, Page, SyncSink, SyncState
from connector.source import Window, day_floor, since_bound_of
from connector.wire import format_iso_ms, parse_sf_datetime

__all__ = ["IN_CHUNK", "MAX_RESTARTS", "SOURCE", "Data360Source"]

SOURCE = "data360"  # its cursor's name
#: ids per `IN (…)` list: keeps each query short and selective
IN_CHUNK = 250
MAX_RESTARTS = 3
R = TypeVar("R")


class Data360Source:
    """Syncs one org's Data 360 usage events (with their steps and sessions) into a sink."""

    family = "data360"

    def __init__(
        self,
        client: Data360Client,
        cfg: ConnectorConfig,
        *,
        run_id: str,
        sync_start: datetime,
        progress: Callable[[str, int, int | None], None] | None = None,
    ):
        self.client = client
        self.cfg = cfg
        self.run_id = run_id
        self.sync_start = sync_start.astimezone(timezone.utc)
        self.progress = progress or (lambda stage, done, total: None)
        self.notes: list[str] = []
        self.events = 0  # tool-call usage events read
        self.records = 0  # of which new or changed in the store
        self.steps = 0
        self.sessions = 0
        self.restarts = 0
        self.earliest_changed: str | None = None
        self._schema: Data360Schema | None = None

    @property
    def schema(self) -> Data360Schema:
        """The objects and columns, found once per run (before the store is opened)."""
        if self._schema is None:
            self._schema = discover(self.client.metadata())
        return self._schema

    def check(self) -> None:
        _ = self.schema

    def sync_counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "elf_files_downloaded": 0,
            "elf_files_skipped": 0,
            "data360_queries": self.client.queries,
            "data360_batches": self.client.batches,
            "data360_rows": self.client.rows,
            "data360_exchanges": self.client.exchanges,
        }

    def sync_related(self, sink: SyncSink, case_ids: Collection[str]) -> None:
        """Data 360 actions carry no Case."""

    # -- the sync -------------------------------------------------------------------------
    def sync(self, sink: SyncSink, window: Window | None) -> None:
        self.check()
        state = sink.sync_state(SOURCE) or {}
        cap = self.sync_start
        since_bound = since_bound_of(state, cap, self.cfg.sync.initial_days)
        if window is not None and window[0] < cap:
            state = self._backfill(sink, window, state)
        # the incremental pass runs every time: it re-reads the settle margin
        cursor = state.get("cursor")
        start = parse_sf_datetime(cursor["ts"]) - self._settle if cursor else since_bound
        self._fetch(sink, min(start, cap), cap, state=state)

    @property
    def _settle(self) -> timedelta:
        return timedelta(hours=self.cfg.data360.settle_hours)

    def _backfill(self, sink: SyncSink, window: Window, state: SyncState) -> SyncState:
        cap = self.sync_start
        todo = subtract_intervals(
            (format_iso_ms(window[0]), format_iso_ms(min(window[1], cap))),
            [
                *(tuple(iv) for iv in state.get("covered", [])),
                (state["since_bound"], "9999-12-31T00:00:00.000Z"),
            ],
        )
        settled = format_iso_ms(cap - self._settle)
        for lo, hi in todo:
            self._fetch(sink, parse_sf_datetime(lo), parse_sf_datetime(hi), state=None)
            state = {**(sink.sync_state(SOURCE) or {}), **state}
            if lo < min(hi, settled):  # only settled event time counts as covered
                state["covered"] = merge_intervals(
                    [*state.get("covered", []), (lo, min(hi, settled))]
                )
            sink.commit(Page(SOURCE, self.run_id, state=state))
        return state

    def audit_start(self, sink: SyncSink, default: datetime) -> datetime:
        """`default`, widened back to the day of the earliest event this sync added or
        changed — within what the store holds whole (since the first sync's start)."""
        state = sink.sync_state(SOURCE) or {}
        if self.earliest_changed is None or not state.get("since_bound"):
            return default
        day = day_floor(parse_sf_datetime(self.earliest_changed))
        return max(min(default, day), parse_sf_datetime(state["since_bound"]))

    def _fetch(
        self, sink: SyncSink, lo: datetime, hi: datetime, *, state: SyncState | None
    ) -> None:
        """Read usage events with lo <= Timestamp < hi in keyset order, committing each page
        (and, when `state` is given, the cursor it reaches)."""
        key: tuple[datetime, str] | None = None
        restarts = 0
        while True:
            try:
                for page in self.client.query(self._usage_sql(lo, hi, key)):
                    key = self._store_page(sink, page, state) or key
                break
            except BatchExpired as exc:
                restarts += 1
                self.restarts += 1
                if restarts > MAX_RESTARTS:
                    raise SalesforceError(
                        f"Data 360 batch ids kept expiring ({exc}); the next run resumes "
                        "from the last committed page"
                    ) from None
        if state is not None:
            # everything before `hi` has been read once: the next run starts a settle
            # margin before it
            state["cursor"] = {"ts": format_iso_ms(hi), "id": ""}
            sink.commit(Page(SOURCE, self.run_id, state=state))

    def _usage_sql(self, lo: datetime, hi: datetime, after: tuple[datetime, str] | None) -> str:
        u = self.schema.usage
        ts, ident, tool = u.columns["Timestamp"], u.columns["Id"], u.columns["AiAgentToolName"]
        cols = ", ".join(dict.fromkeys(u.columns.values()))
        where = [
            f"{ts} >= {ts_literal(lo)}",
            f"{ts} < {ts_literal(hi)}",
            f"{tool} IS NOT NULL",
            f"{tool} <> ''",
            f"{tool} <> 'NOT_SET'",
        ]
        if after is not None:
            k = ts_literal(after[0])
            where.append(f"({ts} > {k} OR ({ts} = {k} AND {ident} > {str_literal(after[1])}))")
        return f"SELECT {cols} FROM {u.name} WHERE {' AND '.join(where)} ORDER BY {ts}, {ident}"

    def _store_page(
        self, sink: SyncSink, page: list[dict[str, Any]], state: SyncState | None
    ) -> tuple[datetime, str] | None:
        if not page:
            return None
        schema = self.schema
        events, bad, last = _split_page(page, schema.usage, self.cfg.sync.max_tokens_per_action)
        requests = sorted({e["request_id"] for e in events if e["request_id"]})
        sessions = sorted({e["session_id"] for e in events if e["session_id"]})
        known_steps = sink.known_d360_step_requests(requests)
        known_sessions = sink.known_d360_sessions(sessions)
        new_steps = self._fetch_by_id(
            schema.step,
            "GenAiGatewayRequestId",
            [r for r in requests if r not in known_steps],
            step_record,
        )
        new_sessions = self._fetch_by_id(
            schema.session, "Id", [s for s in sessions if s not in known_sessions], session_record
        )
        stored = sink.stored_d360_events([e["id"] for e in events])
        changed = [e for e in events if stored.get(e["id"]) != e]
        if state is not None and last is not None:
            state["cursor"] = {"ts": format_iso_ms(last[0]), "id": last[1]}
        sink.commit(
            Page(
                SOURCE,
                self.run_id,
                state=state if last is not None else None,
                d360_events=events,
                d360_steps=new_steps,
                d360_sessions=new_sessions,
                bad_records=bad,
            )
        )
        for e in changed:
            if self.earliest_changed is None or e["started_at"] < self.earliest_changed:
                self.earliest_changed = e["started_at"]
        self.events += len(events)
        self.records += len(changed)
        self.steps += len(new_steps)
        self.sessions += len(new_sessions)
        self.progress("Data 360 usage events", self.events, None)
        return last

    def _fetch_by_id(
        self,
        obj: DiscoveredObject,
        by: str,
        ids: Iterable[str],
        make: Callable[[dict[str, Any], DiscoveredObject], R | None],
    ) -> list[R]:
        """Rows of `obj` whose `by` column is one of `ids`."""
        todo = list(ids)
        cols = ", ".join(dict.fromkeys(obj.columns.values()))
        out: list[R] = []
        for i in range(0, len(todo), IN_CHUNK):
            chunk = ", ".join(str_literal(x) for x in todo[i : i + IN_CHUNK])
            sql = f"SELECT {cols} FROM {obj.name} WHERE {obj.columns[by]} IN ({chunk})"
            for page in self.client.query(sql):
                out.extend(r for r in (make(raw, obj) for raw in page) if r is not None)
        return out


def _split_page(
    page: list[dict[str, Any]], usage: DiscoveredObject, bound: int
) -> tuple[list[D360Event], list[BadRecord], tuple[datetime, str] | None]:
    """A page's tool-call events, its bad records (SPEC §3.5), and the keyset position of
    its last row whose Timestamp reads (where the next page starts)."""
    events: list[D360Event] = []
    bad: list[BadRecord] = []
    last: tuple[datetime, str] | None = None
    for raw in page:
        row = event_record(raw, usage, max_tokens=bound)
        if row is None:
            continue
        if "reason" in row:
            record = cast(BadRecord, row)
            bad.append(record)
            key = record["key"]
        else:
            events.append(row)
            key = row["id"]
        ts = raw[usage.columns["Timestamp"]]
        if isinstance(ts, datetime):
            last = (ts, key)
    return events, bad, last
