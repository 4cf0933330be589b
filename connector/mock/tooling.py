"""The Tooling API objects the mock org answers ``tooling/query`` over (Salesforce's field
names; no records: the mock org has no sandboxes and no Apex)."""

from __future__ import annotations

from .soql import FieldDef, Table

__all__ = ["tooling_tables"]

_SANDBOX_PROCESS = (
    ("Id", "id"),
    ("Status", "picklist"),
    ("SandboxName", "string"),
    ("SandboxInfoId", "reference"),
    ("LicenseType", "picklist"),
    ("CreatedDate", "datetime"),
    ("CopyProgress", "int"),
    ("SandboxOrganization", "string"),
    ("SourceId", "reference"),
    ("Description", "string"),
    ("EndDate", "datetime"),
    ("Features", "string"),
    ("StartDate", "datetime"),
    ("ActivatedDate", "datetime"),
    ("ApexClassId", "reference"),
)
_APEX_CLASS = (
    ("Id", "id"),
    ("Name", "string"),
    ("NamespacePrefix", "string"),
    ("ApiVersion", "double"),
    ("Status", "picklist"),
    ("IsValid", "boolean"),
    ("LengthWithoutComments", "int"),
    ("CreatedDate", "datetime"),
    ("LastModifiedDate", "datetime"),
    ("SystemModstamp", "datetime"),
)


def tooling_tables() -> dict[str, Table]:
    """Tooling objects by lower-cased name, empty."""
    out: dict[str, Table] = {}
    for name, fields in (("SandboxProcess", _SANDBOX_PROCESS), ("ApexClass", _APEX_CLASS)):
        table = Table(name)
        for field_name, field_type in fields:
            table.add_known_field(FieldDef(field_name, field_type))
        out[name.lower()] = table
    return out
