"""Config validation: every error names the key to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from audit.config import AWI_FIELD_DEFAULTS, config_from_dict, load_config
from audit.errors import ConfigError


def test_defaults_match_spec() -> None:
    cfg = config_from_dict({})
    assert cfg.rules.token_ceiling == 10000
    assert cfg.pricing.credits_per_awu == 20 and cfg.pricing.usd_per_credit == 0.005
    assert cfg.budget.thresholds == (50, 75, 90, 100)
    assert cfg.schedule.cron == "0 2 * * *"
    assert cfg.awi_fields == AWI_FIELD_DEFAULTS


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"salesforce": {"bogus": 1}}, "salesforce.bogus"),
        ({"nosuch": {}}, "nosuch"),
        ({"budget": {"credits": "lots"}}, "budget.credits"),
        ({"rules": {"token_ceiling": 1.5}}, "rules.token_ceiling"),
        ({"alerts": {"email": {"smtp_host": "h", "to": ["a@b"]}}}, "alerts.email.from"),
        ({"alerts": {"sms": {}}}, "alerts.sms"),
        ({"fields": {"AgentWorkItem": {"nosuch": "X__c"}}}, "fields.AgentWorkItem.nosuch"),
        ({"fields": {"AgentWorkItem": {"id": "X__c"}}}, "fields.AgentWorkItem.id"),
        ({"fields": {"AgentWorkItem": {"tokens": "Robert'); DROP"}}}, "fields.AgentWorkItem.tokens"),
        ({"salesforce": {"login_url": "http://x"}}, "salesforce.login_url"),
        ({"salesforce": {"api_version": "62"}}, "salesforce.api_version"),
        ({"run": {"fail_on": "sometimes"}}, "run.fail_on"),
        ({"source": {"kinds": ["carrier-pigeon"]}}, "source.kinds"),
    ],
)
def test_errors_name_the_key(doc: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(doc)
    assert needle in str(err.value)


def test_field_mapping_merges_with_defaults() -> None:
    cfg = config_from_dict({"fields": {"AgentWorkItem": {"tokens": "Total_Tokens__c"}}})
    assert cfg.awi_fields["tokens"] == "Total_Tokens__c"
    assert cfg.awi_fields["session_id"] == "SessionId__c"


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('[salesforce]\nprivate_key_file = "k/app.key"\n[store]\npath = "a.db"\n')
    cfg = load_config(tmp_path / "c.toml")
    assert cfg.salesforce.private_key_file == tmp_path / "k" / "app.key"
    assert cfg.store.path == tmp_path / "a.db"


def test_malformed_toml(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[salesforce\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "c.toml")
