"""The org's data: sObject tables and EventLogFile bodies behind one lock, and the runtime
mutation API (insert, update, publish a log file) that tests use to play a live org."""

from __future__ import annotations

import csv
import io
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .snapshot import OrgInfo
from .sobjects import KEY_PREFIXES, KNOWN_FIELDS, known_fields
from .soql import Table, format_datetime_ms, parse_datetime_ms, to18

__all__ = [
    "Store",
    "organization_table",
    "integration_user",
    "user_table",
    "to_wire",
    "datetime_wire",
    "csv_header",
]

#: a LogFile body is a blob on EventLogFile: the field exists once log files do
_LOGFILE_FIELD = KNOWN_FIELDS["EventLogFile"]["LogFile"]


class Store:
    """Tables by lower-cased sObject name and log-file bodies by 15-character id.

    ``lock`` is the org's re-entrant lock: it is shared with the parts of the org that
    read or change the data, so a request sees one consistent state.
    """

    def __init__(
        self,
        lock: threading.RLock,
        clock: Callable[[], datetime],
        tables: Iterable[Table],
        logfiles: Mapping[str, bytes | Path],
    ) -> None:
        self.lock = lock
        self.clock = clock
        #: never re-bound, only changed in place: the org hands the same dict out
        self.tables: dict[str, Table] = {}
        self.logfiles: dict[str, bytes | Path] = {k[:15]: v for k, v in logfiles.items()}
        self._record_ids = itertools.count(1)
        for table in tables:
            self.tables[table.name.lower()] = table

    # ---------------------------------------------------------------- loading
    def load_object(self, sobject: str, records: list[dict[str, Any]]) -> None:
        """Add a snapshot's ``objects/<sobject>.jsonl`` (completed with Id and dates)."""
        now = self.now_wire()
        for record in records:
            self.complete(sobject, record, now, existing=None)
        try:
            table = Table.build(sobject, records, known_fields(sobject))
        except ValueError as exc:
            raise ValueError(f"org snapshot: objects/{sobject}.jsonl: {exc}") from None
        if sobject.lower() == "eventlogfile":
            table.add_known_field(_LOGFILE_FIELD)
        self.tables[sobject.lower()] = table

    def add_logfile_field(self) -> None:
        """Declare EventLogFile.LogFile if the org has EventLogFile records."""
        if "eventlogfile" in self.tables:
            self.tables["eventlogfile"].add_known_field(_LOGFILE_FIELD)

    # ---------------------------------------------------------------- helpers
    def now_wire(self) -> str:
        return datetime_wire(self.clock())

    def new_id(self, sobject: str, table: Table | None) -> str:
        """A fresh 18-character id with the object's key prefix, unused in ``table``."""
        prefix = KEY_PREFIXES.get(sobject) or ("a0" + chr(ord("A") + len(sobject) % 26))
        while True:
            candidate = to18(f"{prefix}MOCK{next(self._record_ids):08d}")
            if table is None or table.find(candidate) is None:
                return candidate

    def complete(
        self, sobject: str, record: dict[str, Any], now: str, existing: Table | None
    ) -> None:
        """Give ``record`` (in place) an Id, CreatedDate and SystemModstamp if absent."""
        for key, value in record.items():
            if isinstance(value, datetime):
                record[key] = to_wire(value)
        if not record.get("Id"):
            record["Id"] = self.new_id(sobject, existing)
        record.setdefault("CreatedDate", now)
        record.setdefault("SystemModstamp", record["CreatedDate"])

    def table(self, sobject: str) -> Table:
        """The table of ``sobject``; ``KeyError`` if the org has no such object."""
        table = self.tables.get(sobject.lower())
        if table is None:
            raise KeyError(f"sObject {sobject} does not exist in the mock org")
        return table

    # ---------------------------------------------------------------- mutation API
    def add_records(self, sobject: str, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Insert records (a new sObject if unknown); returns their 18-character ids."""
        ids: list[str] = []
        with self.lock:
            table = self.tables.get(sobject.lower())
            if table is None:
                table = Table(sobject, known_fields(sobject))
                for name in ("Id", "CreatedDate", "SystemModstamp"):
                    table.add_known_field(known_fields(sobject)[name])
                self.tables[sobject.lower()] = table
            now = self.now_wire()
            for record in records:
                new = dict(record)
                self.complete(table.name, new, now, table)
                if table.find(new["Id"]) is not None:
                    raise ValueError(f"{table.name} {new['Id']} already exists")
                table.append(new)
                ids.append(to18(new["Id"]))
        return ids

    def update_record(
        self,
        sobject: str,
        record_id: str,
        changes: Mapping[str, Any],
        system_modstamp: datetime | str | None = None,
    ) -> None:
        """Change fields of one record; ``SystemModstamp`` becomes ``system_modstamp``
        (default: now). ``KeyError`` if the object or record does not exist."""
        with self.lock:
            table = self.table(sobject)
            row = table.find(record_id)
            if row is None:
                raise KeyError(f"{table.name} {record_id} does not exist")
            new = dict(table.records[row])
            new.update({k: to_wire(v) for k, v in changes.items()})
            new["SystemModstamp"] = to_wire(system_modstamp) if system_modstamp else self.now_wire()
            table.replace(row, new)

    def add_logfile(self, record: Mapping[str, Any], csv_bytes: bytes) -> str:
        """Publish an EventLogFile record and its body; returns the 18-character id.

        Re-publishing an existing ``Id`` replaces that record (give it a later
        ``CreatedDate``) and its body. ``LogFileLength`` and ``LogFileFieldNames`` default
        to the body's size and header row.
        """
        new = dict(record)
        new.setdefault("LogFileLength", float(len(csv_bytes)))
        new.setdefault("LogFileFieldNames", csv_header(csv_bytes))
        with self.lock:
            table = self.tables.get("eventlogfile")
            if table is None:
                self.add_records("EventLogFile", [])
                table = self.tables["eventlogfile"]
                table.add_known_field(_LOGFILE_FIELD)
            row = table.find(new["Id"]) if new.get("Id") else None
            now = self.now_wire()
            if row is None:
                self.complete("EventLogFile", new, now, table)
                table.append(new)
            else:
                new.setdefault("CreatedDate", now)
                new["SystemModstamp"] = new.get("SystemModstamp") or now
                self.complete("EventLogFile", new, now, table)
                table.replace(row, new)
            self.logfiles[new["Id"][:15]] = bytes(csv_bytes)
            return to18(new["Id"])

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """A copy of the stored records of ``sobject`` (raw snapshot form)."""
        with self.lock:
            return [dict(r) for r in self.table(sobject).records]


_ORG_CREATED = "2020-01-01T00:00:00.000+0000"


def organization_table(info: OrgInfo) -> Table:
    """The one-row Organization object every org has (from ``org.json``), with the
    standard fields real clients read."""
    record = {
        "Id": info.organization_id,
        "Name": info.name,
        "Division": None,
        "Country": "US",
        "PrimaryContact": "Integration User",
        "DefaultLocaleSidKey": "en_US",
        "LanguageLocaleKey": "en_US",
        "TimeZoneSidKey": "America/Los_Angeles",
        "IsSandbox": info.is_sandbox,
        "OrganizationType": "Enterprise Edition",
        "InstanceName": "CS224" if info.is_sandbox else "NA224",
        "NamespacePrefix": None,
        "TrialExpirationDate": None,
        "CreatedDate": _ORG_CREATED,
        "CreatedById": info.user_id,
        "LastModifiedDate": _ORG_CREATED,
        "LastModifiedById": info.user_id,
        "SystemModstamp": _ORG_CREATED,
    }
    return Table.build("Organization", [record], known_fields("Organization"))


def integration_user(info: OrgInfo) -> dict[str, Any]:
    """The User record of ``org.json``'s integration user (the one tokens are issued to)."""
    local = info.username.split("@", 1)[0]
    return {
        "Id": info.user_id,
        "Username": info.username,
        "FirstName": "Integration",
        "LastName": "User",
        "Name": "Integration User",
        "Email": info.username,
        "Alias": local[:8],
        "IsActive": True,
        "UserType": "Standard",
        "TimeZoneSidKey": "America/Los_Angeles",
        "LocaleSidKey": "en_US",
        "LanguageLocaleKey": "en_US",
        "EmailEncodingKey": "UTF-8",
        "ProfileId": to18("00eMOCK00000001"),
        "LastLoginDate": None,
        "CreatedDate": _ORG_CREATED,
        "CreatedById": info.user_id,
        "LastModifiedDate": _ORG_CREATED,
        "LastModifiedById": info.user_id,
        "SystemModstamp": _ORG_CREATED,
    }


def user_table(info: OrgInfo) -> Table:
    """The User object: the integration user (a snapshot's ``User.jsonl`` may add more)."""
    return Table.build("User", [integration_user(info)], known_fields("User"))


def to_wire(value: Any) -> Any:
    """Datetimes given to the mutation API become Salesforce datetime strings."""
    if isinstance(value, datetime):
        return datetime_wire(value)
    return value


def datetime_wire(value: datetime) -> str:
    """A datetime as a Salesforce datetime string (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return format_datetime_ms(parse_datetime_ms(value.isoformat()))


def csv_header(csv_bytes: bytes) -> str:
    """The header row of a CSV body, comma-joined (``LogFileFieldNames``)."""
    first_line = csv_bytes.split(b"\n", 1)[0].decode("utf-8-sig", "replace").strip("\r")
    row = next(csv.reader(io.StringIO(first_line)), [])
    return ",".join(row)
