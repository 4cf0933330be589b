"""Which Data 360 objects and columns an org has: object names differ between the naming
families (`ssot__X__dlm`, `std__XDmo__dlm`, `X_std__dlm`), so each object is discovered
from the metadata API on its own, and a missing one stops the run with one line."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.errors import SetupError

__all__ = [
    "SESSION",
    "SPECS",
    "STEP",
    "USAGE",
    "Data360Schema",
    "DiscoveredObject",
    "ObjectSpec",
    "candidates",
    "discover",
]


@dataclass(frozen=True)
class ObjectSpec:
    """A logical Data 360 object: the columns the audit needs and those it uses if there."""

    role: str
    base: str  # logical name, e.g. "AiAgentGenerativeAiUsage"
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # at least one of these must exist


USAGE = ObjectSpec(
    "usage",
    "AiAgentGenerativeAiUsage",
    required=(
        "Id",
        "Timestamp",
        "AiAgentSessionId",
        "AiAgentToolName",
        "PromptTotalTokenCount",
        "UsageQuantity",
        "RequestIdentifier",
    ),
    optional=(
        "AgentIdentifier",
        "AgentDeveloperName",
        "UserId",
        "PromptInputTokenCount",
        "PromptCompletionTokenCount",
        "AiAgentInteractionId",
        "MeteringSkipReasonCode",
        "UsageTypeCode",
    ),
    one_of=("IsMeteredIndicator", "IsBillableIndicator"),
)
STEP = ObjectSpec(
    "step",
    "AiAgentInteractionStep",
    required=("Id", "GenAiGatewayRequestId", "InputValueText", "ErrorMessageText"),
    optional=("AiAgentInteractionId", "PrevStepId", "StartTimestamp", "AiAgentInteractionStepType"),
)
SESSION = ObjectSpec(
    "session",
    "AiAgentSession",
    required=("Id", "AiAgentChannelType"),
    optional=("RelatedVoiceCallId", "StartTimestamp"),
)
SPECS = (USAGE, STEP, SESSION)
_FAMILY_PREFIX = {"ssot": "ssot__", "std_dmo": "std__", "std": ""}
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def candidates(base: str) -> list[tuple[str, str]]:
    """(family, object API name) to try, in order: ssot__X__dlm, std__XDmo__dlm, X_std__dlm."""
    return [
        ("ssot", f"ssot__{base}__dlm"),
        ("std_dmo", f"std__{base}Dmo__dlm"),
        ("std", f"{base}_std__dlm"),
    ]


def _logical_name(name: str) -> str:
    """`ssot__Timestamp__c` / `std__Timestamp__c` / `Timestamp__c` → `timestamp`."""
    stripped = re.sub(r"^(?:ssot__|std__)", "", name, flags=re.IGNORECASE)
    return re.sub(r"__c$", "", stripped, flags=re.IGNORECASE).lower()


@dataclass(frozen=True)
class DiscoveredObject:
    spec: ObjectSpec
    name: str  # the object's API name in this org
    family: str  # "ssot" | "std_dmo" | "std" | "other"
    columns: dict[str, str]  # logical → API column name (only those the org has)

    def col(self, logical: str) -> str | None:
        return self.columns.get(logical)


@dataclass(frozen=True)
class Data360Schema:
    usage: DiscoveredObject
    step: DiscoveredObject
    session: DiscoveredObject

    def as_json(self) -> dict[str, str]:
        return {o.spec.role: o.name for o in (self.usage, self.step, self.session)}


def discover(entities: Iterable[Mapping[str, Any]]) -> Data360Schema:
    """Pick each object's API name and columns from the metadata API's entities. Each
    object is discovered on its own (an org may mix families). SetupError, one line,
    names the first missing object or the missing columns of an object."""
    by_name: dict[str, Mapping[str, Any]] = {}
    for entity in entities:
        name = entity.get("name")
        if isinstance(name, str):
            by_name[name.lower()] = entity
    found = {}
    for spec in SPECS:
        found[spec.role] = _discover_one(spec, by_name)
    return Data360Schema(usage=found["usage"], step=found["step"], session=found["session"])


def _discover_one(spec: ObjectSpec, by_name: Mapping[str, Mapping[str, Any]]) -> DiscoveredObject:
    """The first candidate that has every column the audit needs; if none has, the error
    names the first one found and what it lacks."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for fam, name in candidates(spec.base):
        entity = by_name.get(name.lower())
        if entity is not None:
            found.append((fam, entity))
    if not found:  # the families' variants, e.g. other capitalisation of "AiAgent"
        pattern = re.compile(
            rf"^(?:ssot__|std__)?{spec.base}(?:Dmo)?(?:_std)?__dlm$", re.IGNORECASE
        )
        found = [("other", by_name[n]) for n in sorted(by_name) if pattern.match(n)]
    if not found:
        tried = ", ".join(n for _, n in candidates(spec.base))
        raise SetupError(
            f"Data 360 has no {spec.base} object (looked for {tried}) — turn on Agentforce "
            "session tracing and generative-AI usage data, and give the integration user the "
            "Data 360 permission set and access to the data space ([data360] dataspace)"
        )
    first_missing = ""
    for family, entity in found:
        obj, missing = _columns_of(spec, family, entity)
        if not missing:
            return obj
        first_missing = first_missing or missing
    raise SetupError(first_missing)


def _columns_of(
    spec: ObjectSpec, family: str, entity: Mapping[str, Any]
) -> tuple[DiscoveredObject, str]:
    """The object with the columns it has, and an error line if it lacks needed ones."""
    name = str(entity["name"])
    fields = [str(f.get("name")) for f in entity.get("fields") or [] if isinstance(f, Mapping)]
    exact = {f.lower(): f for f in fields}
    loose: dict[str, str] = {}
    for f in fields:
        loose.setdefault(_logical_name(f), f)
    prefix = _FAMILY_PREFIX.get(family)
    columns: dict[str, str] = {}
    for logical in (*spec.required, *spec.optional, *spec.one_of):
        api = exact.get(f"{prefix}{logical}__c".lower()) if prefix is not None else None
        api = api or loose.get(logical.lower())
        if api is not None and _IDENT.match(api):  # unknown extra columns are never used
            columns[logical] = api
    missing = [f"{prefix or ''}{m}__c" for m in spec.required if m not in columns]
    if spec.one_of and not any(x in columns for x in spec.one_of):
        missing.append(" or ".join(f"{prefix or ''}{m}__c" for m in spec.one_of))
    error = ""
    if missing:
        error = (
            f"Data 360 object {name} lacks column(s) {', '.join(missing)} — the audit "
            "needs them (check the object's data model and field-level access)"
        )
    return DiscoveredObject(spec, name, family, columns), error
