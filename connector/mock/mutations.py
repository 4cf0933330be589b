"""The data-changing faults, carried out on the org's store: a re-published Daily log file,
late Hourly log files, rows inserted at a query page's edge (switches: ``faults.py``)."""

from __future__ import annotations

import csv
import io
import itertools
import logging
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .faults import RepublishPlan
from .soql import Table, is_sf_id, parse_datetime_ms, to18
from .store import Store

__all__ = ["Mutations", "REPUBLISH_TOKENS_DELTA", "REPUBLISH_AWU_DELTA"]

#: TOTAL_TOKENS and AWU_COUNT added to the changed row of a re-published log file
REPUBLISH_TOKENS_DELTA = 1000
REPUBLISH_AWU_DELTA = 1
_ID_CHARS = string.digits + string.ascii_uppercase + string.ascii_lowercase  # ASCII order

_log = logging.getLogger(__name__)


class Mutations:
    """Carries out the data-changing faults on ``store`` (under the store's lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: Hourly EventLogFile records hidden by the ``late_hourly`` fault
        self.late_hourly: list[dict[str, Any]] = []
        self._republish_seq = itertools.count(1)

    def republish(self, plan: RepublishPlan) -> str | None:
        """Re-publish a Daily AgentAction log file (``plan.file_id``, else the newest
        Daily): as a new EventLogFile (same LogDate, Interval, Sequence) or, with
        ``plan.same_id``, under its own Id; CreatedDate now. The body has one row's
        TOTAL_TOKENS and AWU_COUNT raised (the first row with a WORK_ITEM_ID) and one
        ELF-only row appended (a copy of that row with a new REQUEST_ID and SESSION_KEY
        and no WORK_ITEM_ID). Returns the file's 18-character id (None if nothing fits)."""
        with self.store.lock:
            table = self.store.tables.get("eventlogfile")
            record = _republish_source(table, plan.file_id, self.store.logfiles)
            source = self.store.logfiles.get(str(record["Id"])[:15]) if record else None
            if record is None or source is None:
                _log.warning("republish fault: no EventLogFile to re-publish (%s)", plan.file_id)
                return None
            body = source if isinstance(source, bytes) else source.read_bytes()
            new_body = _republished_body(body, next(self._republish_seq))
            if new_body is None:
                _log.warning("republish fault: %s has no row to change", record["Id"])
                return None
            now = self.store.now_wire()
            fields = {
                k: v
                for k, v in record.items()
                if k not in ("LogFileLength", "CreatedDate", "SystemModstamp", "LogFile")
            }
            if not plan.same_id:
                del fields["Id"]
            fields.update(CreatedDate=now, SystemModstamp=now)
            return self.store.add_logfile(fields, new_body)

    def sync_late_hourly(self, pending: int) -> None:
        """Hide Hourly files while the ``late_hourly`` fault has ``pending`` EventLogFile
        queries to go; show them once it is off."""
        with self.store.lock:
            if pending:
                self.hide_late_hourly()
            elif self.late_hourly:
                self.release_late_hourly()

    def hide_late_hourly(self) -> None:
        """Take the Hourly AgentAction files out of EventLogFile (kept to release later)."""
        with self.store.lock:
            table = self.store.tables.get("eventlogfile")
            if table is None:
                return
            hidden = {row for row, r in enumerate(table.records) if _is_hourly_action(r)}
            if not hidden:
                return
            self.late_hourly.extend(table.records[row] for row in sorted(hidden))
            self.store.tables["eventlogfile"] = _table_without(table, hidden)

    def release_late_hourly(self) -> None:
        """The hidden Hourly files appear now (CreatedDate and SystemModstamp now)."""
        with self.store.lock:
            late, self.late_hourly = self.late_hourly, []
            table = self.store.tables.get("eventlogfile")
            if table is None or not late:
                return
            now = self.store.now_wire()
            for record in late:
                if table.find(str(record["Id"])) is None:  # unless re-published meanwhile
                    table.append({**record, "CreatedDate": now, "SystemModstamp": now})

    def insert_at_page_edge(self, edge: Mapping[str, Any], rows: int) -> list[str]:
        """Insert ``rows`` AgentWorkItem records copied from ``edge`` (a stored record)
        with its SystemModstamp, Ids above every existing one and fresh session ids."""
        with self.store.lock:
            table = self.store.table("AgentWorkItem")
            ids = [str(r.get("Id") or "")[:15] for r in table.records]
            top = max((i for i in ids if is_sf_id(i)), default=None)
            records = []
            for n in range(1, rows + 1):
                new_id = to18(_id_after(top, n)) if top else self.store.new_id(table.name, table)
                new = {**edge, "Id": new_id}
                for key in edge:
                    if "sessionid" in key.lower():
                        new[key] = f"EdgeSession{new_id}"
                records.append(new)
            return self.store.add_records(table.name, records)


def _is_hourly_action(record: Mapping[str, Any]) -> bool:
    return record.get("EventType") == "AgentAction" and record.get("Interval") == "Hourly"


def _table_without(table: Table, drop: set[int]) -> Table:
    """A copy of ``table`` (same schema) without the rows numbered in ``drop``."""
    out = Table(table.name)
    for fdef in table.fields.values():
        out.add_known_field(fdef)
    for row, record in enumerate(table.records):
        if row not in drop:
            out.append(record)
    return out


def _id_after(id15: str, steps: int) -> str:
    """The id ``steps`` places after ``id15`` in Salesforce's (ASCII) id order."""
    digits = [_ID_CHARS.index(c) for c in id15]
    carry = steps
    for pos in range(len(digits) - 1, -1, -1):
        carry, digits[pos] = divmod(digits[pos] + carry, len(_ID_CHARS))
        if not carry:
            break
    return "".join(_ID_CHARS[d] for d in digits)


def _republish_source(
    table: Table | None, file_id: str | None, logfiles: Mapping[str, bytes | Path]
) -> dict[str, Any] | None:
    """The EventLogFile record to re-publish: ``file_id``, else the newest Daily one."""
    if table is None:
        return None
    if file_id:
        row = table.find(file_id)
        return table.records[row] if row is not None else None
    daily = [
        r
        for r in table.records
        if r.get("EventType") == "AgentAction"
        and r.get("Interval") == "Daily"
        and str(r.get("Id"))[:15] in logfiles
    ]
    if not daily:
        return None

    def newest(r: dict[str, Any]) -> tuple[int, int, str]:
        return (
            parse_datetime_ms(str(r.get("LogDate") or "1970-01-01T00:00:00Z")),
            parse_datetime_ms(str(r["CreatedDate"])),
            str(r["Id"]),
        )

    return max(daily, key=newest)


def _bump(text: str, delta: int) -> str:
    try:
        return str(int(text) + delta)
    except ValueError:
        return str(float(text) + delta)


def _republished_body(body: bytes, seq: int) -> bytes | None:
    """``body`` with one row's TOTAL_TOKENS and AWU_COUNT raised and an ELF-only copy of
    that row appended; None if no row has numeric TOTAL_TOKENS and AWU_COUNT."""
    text = body.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return None
    header, data = rows[0], [r for r in rows[1:] if any(c.strip() for c in r)]
    index = {name.strip(): i for i, name in enumerate(header)}
    tokens, awu = index.get("TOTAL_TOKENS"), index.get("AWU_COUNT")
    request, work_item = index.get("REQUEST_ID"), index.get("WORK_ITEM_ID")
    if tokens is None or awu is None or request is None:
        return None

    def numeric(row: list[str]) -> bool:
        try:
            float(row[tokens]), float(row[awu])
        except (IndexError, ValueError):
            return False
        return len(row) > request

    usable = [i for i, r in enumerate(data) if numeric(r)]
    if not usable:
        return None
    with_item = [
        i
        for i in usable
        if work_item is not None and len(data[i]) > work_item and data[i][work_item].strip()
    ]
    target = (with_item or usable)[0]
    original = data[target]
    changed = list(original)
    changed[tokens] = _bump(original[tokens].strip(), REPUBLISH_TOKENS_DELTA)
    changed[awu] = _bump(original[awu].strip(), REPUBLISH_AWU_DELTA)
    data[target] = changed
    taken = {r[request] for r in data if len(r) > request}
    new_request = f"4MockRepublish{seq:08d}"
    while new_request in taken:
        seq += 1000
        new_request = f"4MockRepublish{seq:08d}"
    added = list(original)
    added[request] = new_request
    if work_item is not None and len(added) > work_item:
        added[work_item] = ""
    session = index.get("SESSION_KEY")
    if session is not None and len(added) > session:
        added[session] = f"MockRepublishSession{seq:04d}"
    data.append(added)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if b"\r\n" in body[:4096] else "\n")
    writer.writerow(header)
    writer.writerows(data)
    return out.getvalue().encode()
