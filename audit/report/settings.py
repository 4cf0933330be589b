"""The settings a run audited with (rules, prices, budget, timezone), kept in its summary so
that `audit report --db F` — without the config file — reads the numbers as the run did."""

from __future__ import annotations

import dataclasses
from typing import Any

from audit.config import (
    BudgetConfig,
    Config,
    PricingConfig,
    RulesConfig,
    ScheduleConfig,
)

__all__ = ["config_with_settings", "settings_json"]

_SECTIONS = {
    "budget": BudgetConfig,
    "pricing": PricingConfig,
    "rules": RulesConfig,
    "schedule": ScheduleConfig,
}


def settings_json(cfg: Config) -> dict[str, Any]:
    """The report-relevant sections of `cfg` as JSON-ready dicts."""
    out: dict[str, Any] = {}
    for name in _SECTIONS:
        section = dataclasses.asdict(getattr(cfg, name))
        out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in section.items()}
    return out


def config_with_settings(settings: dict[str, Any] | None) -> Config:
    """A Config with the recorded sections (defaults for anything not recorded)."""
    cfg = Config()
    if not settings:
        return cfg
    changes: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        recorded = settings.get(name)
        if not isinstance(recorded, dict):
            continue
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {
            k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in known
        }
        try:
            changes[name] = dataclasses.replace(getattr(cfg, name), **values)
        except TypeError:
            continue  # a summary from another version: keep the defaults for that section
    return dataclasses.replace(cfg, **changes)
