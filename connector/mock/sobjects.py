"""The sObject side of the org's schema and REST API: field definitions of the objects the
mock knows, and the ``/sobjects`` list, ``describe`` and record-retrieve answers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .http import MockRequest, MockResponse, json_response, not_found, sf_error
from .soql import FieldDef, Table, render_record

__all__ = [
    "COMMON_FIELDS",
    "KNOWN_FIELDS",
    "KEY_PREFIXES",
    "LABELS",
    "object_labels",
    "object_summary",
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
_USER = ("User",)
COMMON_FIELDS = _defs(
    ("Id", "id", {**_NOT_NULL, "label": "Record ID"}),
    ("CreatedDate", "datetime", {**_NOT_NULL, "label": "Created Date"}),
    ("SystemModstamp", "datetime", {**_NOT_NULL, "label": "System Modstamp"}),
    ("LastModifiedDate", "datetime", {**_NOT_NULL, "label": "Last Modified Date"}),
    (
        "CreatedById",
        "reference",
        {"label": "Created By ID", "reference_to": _USER, "relationship_name": "CreatedBy"},
    ),
    (
        "LastModifiedById",
        "reference",
        {
            "label": "Last Modified By ID",
            "reference_to": _USER,
            "relationship_name": "LastModifiedBy",
        },
    ),
    (
        "OwnerId",
        "reference",
        {
            "label": "Owner ID",
            "reference_to": ("Group", "User"),
            "relationship_name": "Owner",
            "updateable": True,
        },
    ),
    ("Name", "string", {"label": "Name", "updateable": True}),
    ("IsDeleted", "boolean", {**_NOT_NULL, "label": "Deleted"}),
)
_EDITABLE = {"updateable": True}
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
        ("UserId__c", "reference", {"reference_to": _USER, "relationship_name": "UserId__r"}),
        (
            "CaseId__c",
            "reference",
            {"reference_to": ("Case",), "relationship_name": "CaseId__r"},
        ),
        ("StartTime__c", "datetime"),
    ),
    "Case": _defs(
        (
            "Status",
            "picklist",
            {**_EDITABLE, "picklist": ("New", "Working", "Escalated", "Closed")},
        ),
        ("IsClosed", "boolean", {**_NOT_NULL, "label": "Closed"}),
        ("ClosedDate", "datetime", {"label": "Closed Date"}),
        ("Subject", "string", _EDITABLE),
        ("Description", "textarea", {**_EDITABLE, "length": 32000}),
        ("CaseNumber", "string", {"label": "Case Number", "length": 30}),
    ),
    "EventLogFile": _defs(
        ("EventType", "string", {"label": "Event Type"}),
        ("LogDate", "datetime", {"label": "Log Date"}),
        (
            "Interval",
            "picklist",
            {"min_version": 37.0, "picklist": ("Daily", "Hourly")},
        ),
        ("Sequence", "int", {"min_version": 37.0}),
        ("LogFileLength", "double", {"label": "Log File Length"}),
        ("LogFileFieldNames", "textarea", {"label": "Log File Field Names"}),
        ("LogFileFieldTypes", "textarea", {"label": "Log File Field Types"}),
        ("LogFileContentType", "string", {"label": "Log File Content Type"}),
        ("ApiVersion", "double", {"label": "API Version"}),
        ("LogFile", "base64", {"label": "Log File"}),
    ),
    # the standard fields real clients read (the Salesforce CLI asks for the first five
    # on every command)
    "Organization": _defs(
        ("Name", "string", {"label": "Name", "length": 80}),
        ("InstanceName", "string", {"label": "Instance Name", "length": 5}),
        ("IsSandbox", "boolean", {**_NOT_NULL, "label": "Is Sandbox"}),
        ("TrialExpirationDate", "datetime", {"label": "Trial Expiration Date"}),
        ("NamespacePrefix", "string", {"label": "Namespace Prefix", "length": 15}),
        ("OrganizationType", "picklist", {"label": "Edition"}),
        ("Division", "string", {"label": "Division", "length": 80}),
        ("Country", "string", {"label": "Country", "length": 80}),
        ("DefaultLocaleSidKey", "picklist", {"label": "Locale"}),
        ("LanguageLocaleKey", "picklist", {"label": "Language"}),
        ("TimeZoneSidKey", "picklist", {"label": "Time Zone"}),
        ("PrimaryContact", "string", {"label": "Primary Contact", "length": 80}),
    ),
    "User": _defs(
        ("Username", "string", {**_NOT_NULL, "label": "Username", "length": 80}),
        ("LastName", "string", {**_NOT_NULL, "label": "Last Name", "length": 80}),
        ("FirstName", "string", {"label": "First Name", "length": 40}),
        ("Name", "string", {"label": "Full Name", "length": 121}),
        ("Email", "email", {**_NOT_NULL, "label": "Email", "length": 128}),
        ("Alias", "string", {**_NOT_NULL, "label": "Alias", "length": 8}),
        ("IsActive", "boolean", {**_NOT_NULL, "label": "Active"}),
        ("UserType", "picklist", {"label": "User Type"}),
        ("TimeZoneSidKey", "picklist", {**_NOT_NULL, "label": "Time Zone"}),
        ("LocaleSidKey", "picklist", {**_NOT_NULL, "label": "Locale"}),
        ("LanguageLocaleKey", "picklist", {**_NOT_NULL, "label": "Language"}),
        ("EmailEncodingKey", "picklist", {**_NOT_NULL, "label": "Email Encoding"}),
        (
            "ProfileId",
            "reference",
            {"label": "Profile ID", "reference_to": ("Profile",), "relationship_name": "Profile"},
        ),
        ("LastLoginDate", "datetime", {"label": "Last Login"}),
    ),
}
KEY_PREFIXES = {
    "AgentWorkItem": "0Bz",
    "Case": "500",
    "EventLogFile": "0AT",
    "Organization": "00D",
    "User": "005",
    "SandboxProcess": "0GR",
}
LABELS = {  # (label, plural label) where splitting the API name is not the answer
    "Organization": ("Organization", "Organizations"),
    "User": ("User", "Users"),
    "Case": ("Case", "Cases"),
}


def known_fields(sobject: str) -> dict[str, FieldDef]:
    """Every field the mock declares for ``sobject``: the common ones and its own."""
    fields = dict(COMMON_FIELDS)
    fields.update(KNOWN_FIELDS.get(sobject, {}))
    return fields


# ------------------------------------------------------------------------ REST answers


def object_labels(name: str) -> tuple[str, str]:
    """(label, plural label) of an sObject (``EventLogFile`` → "Event Log File")."""
    if name in LABELS:
        return LABELS[name]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.removesuffix("__c"))
    words = words.replace("_", " ")
    return words, words + "s"


def object_urls(name: str, version: str) -> dict[str, str]:
    """The ``urls`` of an sObject (describe and the global describe list)."""
    base = f"/services/data/v{version}/sobjects/{name}"
    return {
        "compactLayouts": f"{base}/describe/compactLayouts",
        "rowTemplate": f"{base}/{{ID}}",
        "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
        "describe": f"{base}/describe",
        "quickActions": f"{base}/quickActions",
        "layouts": f"{base}/describe/layouts",
        "sobject": base,
    }


def object_summary(name: str, version: str) -> dict[str, Any]:
    """What the global describe says of one sObject (DescribeGlobalSObjectResult)."""
    label, plural = object_labels(name)
    writable = name not in _READ_ONLY
    return {
        "activateable": False,
        "createable": writable,
        "custom": name.endswith("__c"),
        "customSetting": False,
        "deletable": writable,
        "deprecatedAndHidden": False,
        "feedEnabled": False,
        "hasSubtypes": False,
        "isSubtype": False,
        "keyPrefix": KEY_PREFIXES.get(name),
        "label": label,
        "labelPlural": plural,
        "layoutable": writable,
        "mergeable": False,
        "mruEnabled": writable,
        "name": name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": writable,
        "triggerable": writable,
        "undeletable": writable,
        "updateable": writable or name in ("Organization", "User"),
        "urls": object_urls(name, version),
    }


_READ_ONLY = frozenset({"EventLogFile", "Organization"})


def sobjects_response(names: Iterable[str], version: str) -> MockResponse:
    """``GET /sobjects``: every object of the org (``names`` sorted by the caller)."""
    return json_response(
        200,
        {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [object_summary(n, version) for n in names],
        },
    )


def describe_response(
    table: Table, api: float, others: Iterable[Table] = (), version: str | None = None
) -> MockResponse:
    """``GET /sobjects/<obj>/describe``: the fields visible at API version ``api``, and
    the child relationships of the org's other objects that point at this one."""
    version = version or f"{api:.1f}"
    fields = []
    for fdef in table.visible_fields(api):
        entry = fdef.describe()
        if fdef.type == "picklist" and not fdef.picklist:
            entry["picklistValues"] = _picklist_values(table, fdef.name)
        fields.append(entry)
    return json_response(
        200,
        {
            **object_summary(table.name, version),
            "childRelationships": _child_relationships(table.name, others, api),
            "compactLayoutable": True,
            "fields": fields,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": [],
            "searchLayoutable": True,
            "supportedScopes": [
                {"label": "All " + object_labels(table.name)[1], "name": "everything"}
            ],
        },
    )


def _picklist_values(table: Table, name: str) -> list[dict[str, Any]]:
    """A picklist's values, as the org's records use them (sorted)."""
    values = table.distinct_values(name)
    return [
        {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
        for v in values[:200]
    ]


def _child_relationships(name: str, others: Iterable[Table], api: float) -> list[dict[str, Any]]:
    out = []
    for child in others:
        for fdef in child.visible_fields(api):
            if name not in fdef.reference_to:
                continue
            custom = fdef.name.endswith("__c")
            out.append(
                {
                    "cascadeDelete": False,
                    "childSObject": child.name,
                    "deprecatedAndHidden": False,
                    "field": fdef.name,
                    "junctionIdListNames": [],
                    "junctionReferenceTo": [],
                    "relationshipName": f"{child.name}s__r" if custom else None,
                    "restrictedDelete": False,
                }
            )
    return sorted(out, key=lambda r: (r["childSObject"], r["field"]))


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
