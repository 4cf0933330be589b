"""The sObject side of the org's schema and REST API: field definitions of the objects the
mock knows, and the ``/sobjects`` list, ``describe`` and record-retrieve answers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .http import MockRequest, MockResponse, json_response, not_found, sf_error
from .soql import FieldDef, Table, render_record

__all__ = [
    "COMMON_FIELDS",
    "KNOWN_FIELDS",
    "KEY_PREFIXES",
    "known_fields",
    "sobjects_response",
    "describe_response",
    "retrieve_response",
]


def _defs(*specs: tuple[str, str] | tuple[str, str, dict[str, Any]]) -> dict[str, FieldDef]:
    """Field definitions from (name, type[, FieldDef keyword arguments]) tuples."""
    out: dict[str, FieldDef] = {}
    for spec in specs:
        extra = spec[2] if len(spec) > 2 else {}
        out[spec[0]] = FieldDef(spec[0], spec[1], **extra)
    return out


_NOT_NULL = {"nillable": False}
COMMON_FIELDS = _defs(
    ("Id", "id", _NOT_NULL),
    ("CreatedDate", "datetime", _NOT_NULL),
    ("SystemModstamp", "datetime", _NOT_NULL),
    ("LastModifiedDate", "datetime", _NOT_NULL),
    ("CreatedById", "reference"),
    ("LastModifiedById", "reference"),
    ("OwnerId", "reference"),
    ("Name", "string"),
    ("IsDeleted", "boolean", _NOT_NULL),
)
KNOWN_FIELDS: dict[str, dict[str, FieldDef]] = {
    "AgentWorkItem": _defs(
        ("SessionId__c", "string"),
        ("AgentId__c", "string"),
        ("AgentName__c", "string"),
        ("ActionName__c", "string"),
        ("ActionType__c", "picklist"),
        ("Channel__c", "picklist"),
        ("Status__c", "picklist"),
        ("ErrorCode__c", "string"),
        ("PromptTokens__c", "double"),
        ("CompletionTokens__c", "double"),
        ("TokensConsumed__c", "double"),
        ("AwuCount__c", "double"),
        ("ActionInput__c", "textarea"),
        ("UserId__c", "reference"),
        ("CaseId__c", "reference"),
        ("StartTime__c", "datetime"),
    ),
    "Case": _defs(
        ("Status", "picklist"),
        ("IsClosed", "boolean", _NOT_NULL),
        ("ClosedDate", "datetime"),
        ("Subject", "string"),
        ("Description", "textarea"),
        ("CaseNumber", "string"),
    ),
    "EventLogFile": _defs(
        ("EventType", "string"),
        ("LogDate", "datetime"),
        ("Interval", "picklist", {"min_version": 37.0}),
        ("Sequence", "int", {"min_version": 37.0}),
        ("LogFileLength", "double"),
        ("LogFileFieldNames", "textarea"),
        ("LogFileFieldTypes", "textarea"),
        ("LogFileContentType", "string"),
        ("ApiVersion", "double"),
        ("LogFile", "base64"),
    ),
    "Organization": _defs(
        ("IsSandbox", "boolean", _NOT_NULL),
        ("OrganizationType", "string"),
        ("InstanceName", "string"),
    ),
}
KEY_PREFIXES = {
    "AgentWorkItem": "0Bz",
    "Case": "500",
    "EventLogFile": "0AT",
    "Organization": "00D",
    "User": "005",
}


def known_fields(sobject: str) -> dict[str, FieldDef]:
    """Every field the mock declares for ``sobject``: the common ones and its own."""
    fields = dict(COMMON_FIELDS)
    fields.update(KNOWN_FIELDS.get(sobject, {}))
    return fields


# ------------------------------------------------------------------------ REST answers


def sobjects_response(names: Iterable[str], version: str) -> MockResponse:
    """``GET /sobjects``: every object of the org (``names`` sorted by the caller)."""
    return json_response(
        200,
        {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [
                {
                    "name": n,
                    "label": n,
                    "queryable": True,
                    "urls": {
                        "sobject": f"/services/data/v{version}/sobjects/{n}",
                        "describe": f"/services/data/v{version}/sobjects/{n}/describe",
                    },
                }
                for n in names
            ],
        },
    )


def describe_response(table: Table, api: float) -> MockResponse:
    """``GET /sobjects/<obj>/describe``: the fields visible at API version ``api``."""
    return json_response(
        200,
        {
            "name": table.name,
            "label": table.name,
            "queryable": True,
            "custom": table.name.endswith("__c"),
            "fields": [f.describe() for f in table.visible_fields(api)],
        },
    )


def retrieve_response(req: MockRequest, table: Table, record_id: str, version: str) -> MockResponse:
    """``GET /sobjects/<obj>/<id>[?fields=…]``: the record in REST wire form."""
    row = table.find(record_id)
    if row is None:
        return not_found()
    api = float(version)
    fields = table.visible_fields(api)
    wanted = req.query.get("fields")
    if wanted:
        fields = []
        for name in wanted.split(","):
            fdef = table.field(name.strip(), api)
            if fdef is None:
                return sf_error(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name.strip()}' on entity '{table.name}'",
                )
            fields.append(fdef)
    return json_response(200, render_record(table.name, fields, table.records[row], version))
