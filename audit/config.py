"""Configuration: one TOML file validated once at start into frozen dataclasses.

Every module receives the `Config` (or the section it needs) read-only; nothing else reads
the file or the environment, except secrets named here by environment-variable name and
resolved with `Config.secret()` at the moment they are needed.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import ConfigError
from connector.config import (
    AWI_FIELD_DEFAULTS,
    ConnectorConfig,
    Data360Config,
    SalesforceConfig,
    SyncConfig,
)

__all__ = [
    "Config",
    "SalesforceConfig",
    "StoreConfig",
    "BudgetConfig",
    "PricingConfig",
    "RulesConfig",
    "ScheduleConfig",
    "SlackConfig",
    "EmailConfig",
    "AlertsConfig",
    "SyncConfig",
    "RunConfig",
    "SourceConfig",
    "Data360Config",
    "AWI_FIELD_DEFAULTS",
    "load_config",
    "config_from_dict",
]

_UNMAPPABLE = {"id"}
SEVERITIES = ("info", "warning", "high")


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("awu-audit.db")


@dataclass(frozen=True)
class BudgetConfig:
    period: str = "month"
    credits: float = 100000.0
    thresholds: tuple[float, ...] = (50.0, 75.0, 90.0, 100.0)
    forecast_days: int = 7
    spike_factor: float = 2.0
    spike_trailing_days: int = 7


@dataclass(frozen=True)
class PricingConfig:
    credits_per_awu: float = 20.0
    usd_per_credit: float = 0.005
    per_conversation_usd: float = 2.0
    per_user_month_usd: float = 125.0
    sandbox_discount: float = 0.5
    voice_multiplier: float = 1.5


@dataclass(frozen=True)
class RulesConfig:
    token_ceiling: int = 10000
    near_ceiling_ratio: float = 0.9
    retry_window_s: float = 300.0
    retry_loop_min: int = 5
    long_conversation_actions: int = 20
    #: a token count above this is a bad record, not data (SPEC §3.5)
    max_tokens_per_action: int = 100_000_000
    retrieval_actions: tuple[str, ...] = ("*Search*", "*Retriev*", "*Lookup*", "*Query*", "Get*")


@dataclass(frozen=True)
class ScheduleConfig:
    cron: str = "0 2 * * *"
    timezone: str = "UTC"
    misfire_grace_s: int = 6 * 3600


@dataclass(frozen=True)
class SlackConfig:
    webhook_url_env: str = "AWU_SLACK_WEBHOOK_URL"
    enabled: bool = True
    timeout_s: float = 10.0


@dataclass(frozen=True)
class EmailConfig:
    smtp_host: str = ""
    smtp_port: int = 587
    starttls: bool = True
    from_addr: str = ""
    to: tuple[str, ...] = ()
    username_env: str = ""
    password_env: str = ""
    enabled: bool = True
    timeout_s: float = 30.0
    ca_bundle: Path | None = None
    #: log in (send the password) over a connection without STARTTLS: off unless said so
    allow_plaintext_login: bool = False


@dataclass(frozen=True)
class AlertsConfig:
    slack: SlackConfig | None = None
    email: EmailConfig | None = None


@dataclass(frozen=True)
class RunConfig:
    fail_on: str = "off"


@dataclass(frozen=True)
class SourceConfig:
    kinds: tuple[str, ...] = ("agentworkitem", "eventlogfile")


@dataclass(frozen=True)
class Config:
    salesforce: SalesforceConfig = field(default_factory=SalesforceConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    run: RunConfig = field(default_factory=RunConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    data360: Data360Config = field(default_factory=Data360Config)
    #: logical name → org API field name for AgentWorkItem (defaults merged in)
    awi_fields: dict[str, str] = field(default_factory=lambda: dict(AWI_FIELD_DEFAULTS))
    path: Path | None = None

    @property
    def connector(self) -> ConnectorConfig:
        """The sections the connector reads."""
        return ConnectorConfig(
            salesforce=self.salesforce,
            sync=dataclasses.replace(
                self.sync, max_tokens_per_action=self.rules.max_tokens_per_action
            ),
            data360=self.data360,
            awi_fields=self.awi_fields,
            kinds=self.source.kinds,
        )

    @staticmethod
    def secret(env_name: str) -> str | None:
        """The value of the environment variable a config key names (secrets live only there)."""
        if not env_name:
            return None
        value = os.environ.get(env_name)
        return value or None


# --- loading -------------------------------------------------------------------------------

# TOML key → dataclass field where they differ ("from" is a Python keyword).
_RENAMES = {("alerts.email", "from"): "from_addr"}


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; ConfigError names the offending key."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    return config_from_dict(data, base_dir=p.resolve().parent, path=p)


def config_from_dict(
    data: dict[str, Any], *, base_dir: Path | None = None, path: Path | None = None
) -> Config:
    """Validate a parsed TOML document into a Config. Relative paths resolve against base_dir."""
    base = base_dir or Path.cwd()
    data = dict(data)
    sections: dict[str, Any] = {}
    simple = {
        "salesforce": SalesforceConfig,
        "store": StoreConfig,
        "budget": BudgetConfig,
        "pricing": PricingConfig,
        "rules": RulesConfig,
        "schedule": ScheduleConfig,
        "sync": SyncConfig,
        "run": RunConfig,
        "source": SourceConfig,
        "data360": Data360Config,
    }
    for name, cls in simple.items():
        sections[name] = _build(cls, data.pop(name, {}), name, base)

    alerts_raw = data.pop("alerts", {})
    _expect_table(alerts_raw, "alerts")
    alerts_raw = dict(alerts_raw)
    slack = alerts_raw.pop("slack", None)
    email = alerts_raw.pop("email", None)
    _reject_unknown(alerts_raw, "alerts")
    sections["alerts"] = AlertsConfig(
        slack=_build(SlackConfig, slack, "alerts.slack", base) if slack is not None else None,
        email=_build(EmailConfig, email, "alerts.email", base) if email is not None else None,
    )

    fields_raw = data.pop("fields", {})
    _expect_table(fields_raw, "fields")
    fields_raw = dict(fields_raw)
    awi_raw = fields_raw.pop("AgentWorkItem", {})
    _reject_unknown(fields_raw, "fields")
    sections["awi_fields"] = _awi_fields(awi_raw)

    _reject_unknown(data, "")
    cfg = Config(**sections, path=path)
    _check_semantics(cfg)
    return cfg


def _awi_fields(raw: Any) -> dict[str, str]:
    _expect_table(raw, "fields.AgentWorkItem")
    mapping = dict(AWI_FIELD_DEFAULTS)
    for logical, api_name in raw.items():
        key = f"fields.AgentWorkItem.{logical}"
        if logical not in AWI_FIELD_DEFAULTS:
            raise ConfigError(f"unknown config key: {key}")
        if logical in _UNMAPPABLE:
            raise ConfigError(f"config key {key}: Id is not mappable")
        if not isinstance(api_name, str) or not _is_identifier(api_name):
            raise ConfigError(f"config key {key} must be a Salesforce field API name")
        if api_name.lower() in ("createddate", "systemmodstamp"):
            raise ConfigError(f"config key {key}: {api_name} is not mappable")
        mapping[logical] = api_name
    return mapping


def _is_identifier(name: str) -> bool:
    return bool(name) and (name[0].isalpha()) and all(c.isalnum() or c == "_" for c in name)


def _expect_table(value: Any, name: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"config key [{name}] must be a table")


def _reject_unknown(raw: dict[str, Any], prefix: str) -> None:
    for key in raw:
        full = f"{prefix}.{key}" if prefix else key
        raise ConfigError(f"unknown config key: {full}")


def _build(cls: type, raw: Any, section: str, base: Path) -> Any:
    _expect_table(raw, section)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        attr = _RENAMES.get((section, key), key)
        if attr not in names or (attr != key and key not in ("from",)):
            raise ConfigError(f"unknown config key: {section}.{key}")
        kwargs[attr] = _coerce(value, hints[attr], f"{section}.{key}", base)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, base: Path) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, base)
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"config key {key} must be a path (string)")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key} must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key} must be a string")
        if any(c in value for c in "\r\n\x00"):
            # a line break in a value that reaches a mail or HTTP header starts a new header
            raise ConfigError(f"config key {key} must be one line: remove the CR/LF in it")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"config key {key} must be a list")
        return tuple(_coerce(v, args[0], key, base) for v in value)
    raise ConfigError(f"config key {key} has an unsupported type")  # pragma: no cover


def _check_semantics(cfg: Config) -> None:
    sf = cfg.salesforce
    if not sf.login_url.startswith("https://"):
        raise ConfigError("config key salesforce.login_url must start with https://")
    try:
        major = float(sf.api_version)
    except ValueError:
        major = 0.0
    if (
        major < 32.0
        or not sf.api_version.replace(".", "", 1).isdigit()
        or "." not in sf.api_version
    ):
        raise ConfigError(
            'config key salesforce.api_version must look like "62.0" '
            "(32.0 or later: EventLogFile needs it)"
        )
    if cfg.budget.period != "month":
        raise ConfigError('config key budget.period: only "month" is supported')
    if cfg.budget.credits <= 0:
        raise ConfigError("config key budget.credits must be greater than 0")
    if any(not 0 < t <= 1000 for t in cfg.budget.thresholds):
        raise ConfigError("config key budget.thresholds must be percentages between 0 and 1000")
    if cfg.rules.token_ceiling <= 0:
        raise ConfigError("config key rules.token_ceiling must be greater than 0")
    if cfg.rules.max_tokens_per_action <= 0:
        raise ConfigError("config key rules.max_tokens_per_action must be greater than 0")
    if cfg.sync.max_tokens_per_action != SyncConfig.max_tokens_per_action:
        raise ConfigError(
            "unknown config key: sync.max_tokens_per_action (it is rules.max_tokens_per_action)"
        )
    if cfg.rules.retry_loop_min < 3:
        raise ConfigError("config key rules.retry_loop_min must be at least 3")
    if not 0 <= cfg.pricing.sandbox_discount <= 1:
        raise ConfigError("config key pricing.sandbox_discount must be between 0 and 1")
    if cfg.run.fail_on not in ("off", *SEVERITIES):
        raise ConfigError('config key run.fail_on must be one of "off", "info", "warning", "high"')
    kinds = set(cfg.source.kinds)
    allowed = {"agentworkitem", "eventlogfile", "data360"}
    if not kinds or not kinds <= allowed:
        raise ConfigError(
            'config key source.kinds must list "agentworkitem", "eventlogfile" and/or "data360"'
        )
    if cfg.alerts.email is not None and cfg.alerts.email.enabled:
        em = cfg.alerts.email
        if not em.smtp_host:
            raise ConfigError("config key alerts.email.smtp_host is required for email alerts")
        if not em.to:
            raise ConfigError("config key alerts.email.to must list at least one recipient")
        if not em.from_addr:
            raise ConfigError("config key alerts.email.from is required for email alerts")
        if em.password_env and not em.starttls and not em.allow_plaintext_login:
            raise ConfigError(
                "config key alerts.email.starttls = false would send the SMTP password "
                "unencrypted: set starttls = true (or allow_plaintext_login = true)"
            )
