"""AgentWorkItem records: the field mapping checked against describe, then a keyset sync.

Keyset cursor (SystemModstamp, Id), `ORDER BY SystemModstamp, Id`, every query capped at
the sync's start so rows written during the sync come next time; each page is committed
with the cursor it reaches. Backfills fetch only what no earlier sync covered and never
move the cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from connector.checks import (
    BadValue,
    check_amount,
    check_count,
    check_datetime,
    check_id,
    check_text,
    shown,
)
from connector.client import SalesforceClient
from connector.config import AWI_FIELD_DEFAULTS, ConnectorConfig
from connector.errors import SetupError
from connector.intervals import merge_intervals, subtract_intervals
from connector.sink import AwiRecord, BadRecord, Page, SyncSink, SyncState
from connector.soql import datetime_literal, ident, string_literal
from connector.source import Window, since_bound_of
from connector.wire import format_iso_ms, parse_sf_datetime

__all__ = ["AWI_LOOKBACK", "REQUIRED_AWI", "SOURCE", "AgentWorkItemSync", "check_fields"]

SOURCE = "agentworkitem"  # its cursor's name

#: logical fields the audit cannot work without; the rest are optional
REQUIRED_AWI = (
    "id",
    "session_id",
    "action_name",
    "action_type",
    "channel",
    "status",
    "tokens",
    "started_at",
)
_END_OF_TIME = "9999-12-31T00:00:00.000Z"

#: How far back of the previous sync's start each incremental query re-reads. A
#: transaction's rows carry the SystemModstamp of its start but become visible only when it
#: commits, so a row can appear after a sync has read past its timestamp (the keyset
#: cursor alone would skip it for ever). Salesforce ends a transaction after 10 minutes.
AWI_LOOKBACK = timedelta(minutes=10)


def check_fields(client: SalesforceClient, mapping: dict[str, str]) -> dict[str, str]:
    """Logical → API name for the fields this org has; one error naming every mapped
    field the org lacks."""
    described = client.describe("AgentWorkItem")
    present = {f["name"].lower(): f["name"] for f in described.get("fields", [])}
    explicit = {k for k, v in mapping.items() if AWI_FIELD_DEFAULTS.get(k) != v}
    missing, fields = [], {}
    for logical, api in mapping.items():
        actual = present.get(api.lower())
        if actual is not None:
            fields[logical] = actual
        elif logical in explicit or logical in REQUIRED_AWI:
            missing.append(f"{api} ({logical})")
    if missing:
        raise SetupError(
            "AgentWorkItem in this org lacks mapped field(s): "
            + ", ".join(missing)
            + " — fix [fields.AgentWorkItem] in the config"
        )
    return fields


@dataclass
class AgentWorkItemSync:
    """One run's sync of AgentWorkItem into a sink."""

    client: SalesforceClient
    cfg: ConnectorConfig
    fields: dict[str, str]
    run_id: str
    sync_start: datetime
    progress: Callable[[str, int, int | None], None]
    on_changed: Callable[[str | None], None]
    records: int = 0
    _select: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self._select = ", ".join(
            dict.fromkeys([*self.fields.values(), "CreatedDate", "SystemModstamp"])
        )
        #: (logical name, API name or None, its check) for every logical field, in order,
        #: for the token bound it was made for
        self._plan: list[tuple[str, str | None, Callable[[Any], Any]]] = []
        self._plan_bound: int | None = None

    def sync(self, sink: SyncSink, window: Window | None) -> None:
        state = sink.sync_state(SOURCE) or {}
        since_bound = since_bound_of(state, self.sync_start, self.cfg.sync.initial_days)
        if window is not None:
            state = self._backfill(sink, window, state, since_bound)
        self._incremental(sink, state, since_bound)

    def _backfill(
        self, sink: SyncSink, window: Window, state: SyncState, since_bound: datetime
    ) -> SyncState:
        start_field = ident(self.fields["started_at"])
        todo = subtract_intervals(
            (format_iso_ms(window[0]), format_iso_ms(window[1])),
            [*(tuple(iv) for iv in state.get("covered", [])), (state["since_bound"], _END_OF_TIME)],
        )
        for lo, hi in todo:
            soql = (
                f"SELECT {self._select} FROM AgentWorkItem WHERE {start_field} >= "
                f"{datetime_literal(parse_sf_datetime(lo))} AND {start_field} < "
                f"{datetime_literal(parse_sf_datetime(hi), round_up=True)} "
                f"AND SystemModstamp <= {datetime_literal(self.sync_start)} "
                "ORDER BY SystemModstamp, Id"
            )
            self._fetch(sink, soql, state=None)
            state = sink.sync_state(SOURCE) or state
            state.setdefault("since_bound", format_iso_ms(since_bound))
            state["covered"] = merge_intervals([*state.get("covered", []), (lo, hi)])
            sink.commit(Page(SOURCE, self.run_id, state=state))
        return state

    def _incremental(self, sink: SyncSink, state: SyncState, since_bound: datetime) -> None:
        """Runs on every run: it is what keeps backfilled ranges fresh. Keyset on
        (SystemModstamp, Id) from the cursor — rows sharing one timestamp across a page or
        run edge are neither skipped nor read twice — widened to re-read AWI_LOOKBACK
        before the previous sync's start, for late commits."""
        cursor = state.get("cursor")
        if cursor:
            cursor_ts = parse_sf_datetime(cursor["ts"])
            synced_to = state.get("synced_to")
            lookback = parse_sf_datetime(synced_to) - AWI_LOOKBACK if synced_to else None
            if lookback is not None and lookback <= cursor_ts:
                where = f"SystemModstamp >= {datetime_literal(lookback)}"
            else:
                ts = datetime_literal(cursor_ts)
                where = (
                    f"(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > "
                    f"{string_literal(cursor['id'])}))"
                )
        else:
            where = f"SystemModstamp >= {datetime_literal(since_bound)}"
        soql = (
            f"SELECT {self._select} FROM AgentWorkItem WHERE {where} "
            f"AND SystemModstamp <= {datetime_literal(self.sync_start)} "
            "ORDER BY SystemModstamp, Id"
        )
        state["synced_to"] = format_iso_ms(self.sync_start.replace(microsecond=0))
        self._fetch(sink, soql, state=state)

    def _fetch(self, sink: SyncSink, soql: str, *, state: SyncState | None) -> None:
        """Page through a query, committing each page (and the cursor, if `state`). Rows
        the store already holds unchanged (same SystemModstamp) are neither written nor
        counted: a re-read (lookback, a resumed run) fetches nothing twice."""
        done = 0
        for page in self.client.query_pages(soql):
            rows: list[AwiRecord] = []
            bad: list[BadRecord] = []
            for rec in page:
                checked = self._record(rec)
                if "reason" in checked:
                    bad.append(cast(BadRecord, checked))
                else:
                    rows.append(checked)
            stored = sink.awi_modstamps([r["id"] for r in rows])
            rows = [
                r for r in rows if r["id"] not in stored or stored[r["id"]] != r["system_modstamp"]
            ]
            moved = state is not None and _advance_cursor(state, page)
            sink.commit(
                Page(
                    SOURCE,
                    self.run_id,
                    state=state if moved else None,
                    awi_records=rows,
                    bad_records=bad,
                )
            )
            for row in rows:
                self.on_changed(row["started_at"])
            done += len(rows)
            self.records += len(rows)
            self.progress("AgentWorkItem records", done, None)
        if state is not None:
            # also when nothing came: records where the cursor starts and how far it read
            sink.commit(Page(SOURCE, self.run_id, state=state))

    def _record(self, rec: dict[str, Any]) -> AwiRecord | BadRecord:
        """The record in logical names, every value checked (SPEC §3.5): the first value
        that cannot be data makes it a bad record instead."""
        # the SELECT used describe's canonical names, which is how records come back; the
        # case-insensitive lookup is only a fallback
        lower: dict[str, Any] | None = None
        row: dict[str, Any] = {}
        bound = self.cfg.sync.max_tokens_per_action
        if bound != self._plan_bound:
            self._plan_bound = bound
            self._plan = [
                (logical, self.fields.get(logical), _checker(logical, bound))
                for logical in AWI_FIELD_DEFAULTS
            ]
        try:
            for logical, api, check in self._plan:
                value = rec.get(api) if api else None
                if value is None and api and api not in rec:
                    lower = lower or {k.lower(): v for k, v in rec.items()}
                    value = lower.get(api.lower())
                row[logical] = check(value)
            for api, logical in (
                ("CreatedDate", "created_date"),
                ("SystemModstamp", "system_modstamp"),
            ):
                row[logical] = check_datetime(rec.get(api), api, required=False)
        except BadValue as bad:
            return _bad_record(
                rec, bad, self.fields.get(bad.field, bad.field), self.fields["started_at"]
            )
        return row  # type: ignore[return-value]  # keys are AWI_FIELD_DEFAULTS' + two


def _checker(logical: str, bound: int) -> Callable[[Any], Any]:
    """The check of one logical field's value (free text unless _CHECKS names one)."""
    check = _CHECKS.get(logical)
    if check is not None:
        return lambda value: check(value, logical, bound)
    # ASCII text is valid as it is: the check is only called for what may not be
    return lambda value: (
        value
        if value is None or (type(value) is str and value.isascii())
        else check_text(value, logical)
    )


_CHECKS: dict[str, Callable[[Any, str, int], Any]] = {
    "id": lambda v, f, _: check_id(v, f, required=True),
    "user_id": lambda v, f, _: check_id(v, f, required=False),
    "case_id": lambda v, f, _: check_id(v, f, required=False),
    "prompt_tokens": lambda v, f, b: check_count(v, f, required=False, bound=b),
    "completion_tokens": lambda v, f, b: check_count(v, f, required=False, bound=b),
    "tokens": lambda v, f, b: check_count(v, f, required=True, bound=b),
    "reported_awu": lambda v, f, b: check_amount(v, f, required=False, bound=b),
    "started_at": lambda v, f, _: check_datetime(v, f, required=True),
}


def _bad_record(
    rec: dict[str, Any], bad: BadValue, api_field: str, start_field: str
) -> BadRecord:
    raw_id = rec.get("Id")
    try:
        record_id = check_id(raw_id, "Id", required=True)
    except BadValue:
        record_id = None
    at = None
    for name in (start_field, "CreatedDate", "SystemModstamp"):
        try:
            at = check_datetime(rec.get(name), name, required=False)
        except BadValue:
            continue
        if at is not None:
            break
    return {
        "source": SOURCE,
        "key": record_id or f"Id={shown(raw_id)}",
        "reason": bad.reason,
        "field": api_field,
        "detail": f"{api_field} = {shown(bad.value)}",
        "record_id": record_id,
        "file_id": None,
        "line": None,
        "at": at,
    }


def _advance_cursor(state: SyncState, page: list[dict[str, Any]]) -> bool:
    """Move the cursor to the page's last record whose SystemModstamp and Id are sound (a
    record that cannot be data must not stop the sync); False when none is."""
    for last in reversed(page):
        try:
            ts = check_datetime(last.get("SystemModstamp"), "SystemModstamp", required=True)
            record_id = check_id(last.get("Id"), "Id", required=True)
        except BadValue:
            continue
        edge = {"ts": ts, "id": record_id}
        old = state.get("cursor")
        if not old or (edge["ts"], edge["id"]) > (old["ts"], old["id"]):
            state["cursor"] = edge  # a lookback re-read never moves it back
        return True
    return False
