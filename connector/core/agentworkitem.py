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
from functools import partial
from operator import itemgetter
from typing import Any

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
from connector.columns import (
    Fast,
    checked_column,
    fast_amounts,
    fast_counts,
    fast_datetimes,
    fast_ids,
    fast_text,
)
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
        #: how each field of a record is read and checked (`_plan`), for the token bound it
        #: was made for
        self._plan: _Plan = []
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
            rows, bad = self._checked(page)
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
        rows, bad = self._checked([rec])
        return bad[0] if bad else rows[0]

    def _checked(self, page: list[dict[str, Any]]) -> tuple[list[AwiRecord], list[BadRecord]]:
        """The page's records in logical names, checked a field (a column) at a time, and
        its bad records: each reports the first field, in the order of the plan, whose value
        cannot be data — what checking it record by record would report."""
        bound = self.cfg.sync.max_tokens_per_action
        if bound != self._plan_bound:
            self._plan_bound = bound
            self._plan = _plan(self.fields, bound)
        bad: dict[int, BadValue] = {}
        columns = [
            checked_column(self._column(page, api, exact), check, fast, bad)
            for _, api, exact, check, fast in self._plan
        ]
        names = [logical for logical, *_ in self._plan]
        # a name per value by construction: strict only once, on the columns
        rows = [dict(zip(names, vs, strict=False)) for vs in zip(*columns, strict=True)]
        if not bad:
            return rows, []  # type: ignore[return-value]  # keys: AWI_FIELD_DEFAULTS' + two
        start_field = self.fields["started_at"]
        return (
            [row for i, row in enumerate(rows) if i not in bad],  # type: ignore[misc]
            [
                _bad_record(page[i], why, self.fields.get(why.field, why.field), start_field)
                for i, why in sorted(bad.items())
            ],
        )

    @staticmethod
    def _column(page: list[dict[str, Any]], api: str | None, exact: bool) -> list[Any]:
        """One field's values. The SELECT used describe's canonical names, which is how
        records come back; a case-insensitive lookup (unless `exact`) is only a fallback."""
        if api is None:
            return [None] * len(page)
        try:
            return list(map(itemgetter(api), page))
        except KeyError:
            pass
        if exact:
            return [rec.get(api) for rec in page]
        return [
            rec[api] if api in rec else {k.lower(): v for k, v in rec.items()}.get(api.lower())
            for rec in page
        ]


#: (logical name, API name or None, exact name only, its check, its column shortcut)
_Plan = list[tuple[str, str | None, bool, Callable[[Any], Any], Fast | None]]


def _plan(fields: dict[str, str], bound: int) -> _Plan:
    """How each field of a record is read and checked, in order, for the token bound."""
    plan: _Plan = [
        (logical, fields.get(logical), False, _checker(logical, bound), _fast(logical, bound))
        for logical in AWI_FIELD_DEFAULTS
    ]
    for api, logical in (("CreatedDate", "created_date"), ("SystemModstamp", "system_modstamp")):
        check = partial(check_datetime, field=api, required=False)
        plan.append((logical, api, True, check, fast_datetimes))
    return plan


def _fast(logical: str, bound: int) -> Fast | None:
    """The column shortcut of one logical field's check."""
    if logical in _CHECKS:
        return {
            "id": fast_ids(required=True),
            "user_id": fast_ids(required=False),
            "case_id": fast_ids(required=False),
            "prompt_tokens": fast_counts(bound),
            "completion_tokens": fast_counts(bound),
            "tokens": fast_counts(bound),
            "reported_awu": fast_amounts(bound),
            "started_at": fast_datetimes,
        }[logical]
    return fast_text


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
