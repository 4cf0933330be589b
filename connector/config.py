"""What a connection to one org needs: the connected app, sync bounds, retries, the
AgentWorkItem field map and which sources to read. Frozen; built by the caller (the
audit's config loader validates the TOML and hands these sections over)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AWI_FIELD_DEFAULTS",
    "ConnectorConfig",
    "Data360Config",
    "SalesforceConfig",
    "SyncConfig",
]

#: Logical name → default AgentWorkItem API field name (SPEC §3.1).
AWI_FIELD_DEFAULTS: dict[str, str] = {
    "id": "Id",
    "session_id": "SessionId__c",
    "agent_id": "AgentId__c",
    "agent_name": "AgentName__c",
    "action_name": "ActionName__c",
    "action_type": "ActionType__c",
    "channel": "Channel__c",
    "status": "Status__c",
    "error_code": "ErrorCode__c",
    "prompt_tokens": "PromptTokens__c",
    "completion_tokens": "CompletionTokens__c",
    "tokens": "TokensConsumed__c",
    "reported_awu": "AwuCount__c",
    "action_input": "ActionInput__c",
    "user_id": "UserId__c",
    "case_id": "CaseId__c",
    "started_at": "StartTime__c",
}


@dataclass(frozen=True)
class SalesforceConfig:
    login_url: str = "https://login.salesforce.com"
    consumer_key: str = ""
    username: str = ""
    private_key_file: Path = Path("secrets/app.key")
    api_version: str = "62.0"
    ca_bundle: Path | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True)
class SyncConfig:
    initial_days: int = 7
    elf_settle_hours: float = 24.0
    api_reserve_pct: float = 10.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    #: a token count above this is a bad record (set as `[rules] max_tokens_per_action`)
    max_tokens_per_action: int = 100_000_000


@dataclass(frozen=True)
class Data360Config:
    settle_hours: float = 48.0
    dataspace: str = ""


@dataclass(frozen=True)
class ConnectorConfig:
    """Everything the connector reads, in one read-only value."""

    salesforce: SalesforceConfig = field(default_factory=SalesforceConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    data360: Data360Config = field(default_factory=Data360Config)
    #: logical name → org API field name for AgentWorkItem (defaults merged in)
    awi_fields: dict[str, str] = field(default_factory=lambda: dict(AWI_FIELD_DEFAULTS))
    #: "agentworkitem", "eventlogfile", "data360"
    kinds: tuple[str, ...] = ("agentworkitem", "eventlogfile")
