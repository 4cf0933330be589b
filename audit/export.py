"""`audit export`: one window's audited usage as FinOps FOCUS (1.2, with the 1.3 provider
columns) in CSV or Parquet, or a store table as CSV for spreadsheets.

FOCUS rows are one per UTC day × org × agent × action × channel. Flex Credits are the
pricing currency (a virtual currency, as the FOCUS appendix on virtual currencies models
it): `PricingCurrencyEffectiveCost` holds credits, `PricingQuantity` recomputed AWU,
`ConsumedQuantity` tokens, the cost columns dollars from the recomputed AWU (a sandbox's
discount applied, as in `cost_usd`). Our audit figures are in `x_` columns."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from audit.config import Config, PricingConfig
from audit.engine.analysis import agent_group
from audit.engine.awu import credits_for, usd_for
from audit.engine.budget import period_bounds, period_of
from audit.engine.findings import WASTE_KINDS
from audit.engine.model import Action
from audit.engine.rules import Finding
from audit.errors import ConfigError, StoreError
from audit.report.data import Window, choose_window
from audit.report.render import recorded_config
from audit.store import Store
from audit.store.report_queries import EXPORT_TABLES

__all__ = ["FOCUS_COLUMNS", "export", "focus_rows"]


#: FOCUS column → its type (Decimal, DateTime, String, JSON), in output order
FOCUS_COLUMNS: dict[str, str] = {
    "BilledCost": "Decimal", "BillingAccountId": "String", "BillingAccountName": "String",
    "BillingCurrency": "String", "BillingPeriodStart": "DateTime", "BillingPeriodEnd": "DateTime",
    "ChargeCategory": "String", "ChargeClass": "String", "ChargeDescription": "String",
    "ChargeFrequency": "String", "ChargePeriodStart": "DateTime", "ChargePeriodEnd": "DateTime",
    "ConsumedQuantity": "Decimal", "ConsumedUnit": "String", "ContractedCost": "Decimal",
    "ContractedUnitPrice": "Decimal", "EffectiveCost": "Decimal", "InvoiceIssuerName": "String",
    "ListCost": "Decimal", "ListUnitPrice": "Decimal", "PricingCategory": "String",
    "PricingCurrency": "String", "PricingCurrencyContractedUnitPrice": "Decimal",
    "PricingCurrencyEffectiveCost": "Decimal", "PricingCurrencyListUnitPrice": "Decimal",
    "PricingQuantity": "Decimal", "PricingUnit": "String", "ProviderName": "String",
    "PublisherName": "String", "ServiceProviderName": "String", "HostProviderName": "String",
    "ResourceId": "String", "ResourceName": "String", "ResourceType": "String",
    "ServiceCategory": "String", "ServiceSubcategory": "String", "ServiceName": "String",
    "SkuId": "String", "SkuPriceId": "String", "SubAccountId": "String",
    "SubAccountName": "String", "Tags": "JSON",
    "x_ActionName": "String", "x_Channel": "String", "x_Actions": "Decimal",
    "x_BillableActions": "Decimal", "x_RecomputedAwu": "Decimal", "x_ReportedAwu": "Decimal",
    "x_AwuDifference": "Decimal", "x_WastedAwu": "Decimal", "x_WastedCost": "Decimal",
    "x_FindingCount": "Decimal", "x_Sandbox": "String",
}  # fmt: skip

_Key = tuple[str, str, str, str]  # day, agent, action, channel


@dataclass
class _Usage:
    actions: int = 0
    billable: int = 0
    tokens: int = 0
    awu: float = 0.0
    reported: float = 0.0
    wasted_awu: float = 0.0
    wasted_usd: float = 0.0
    findings: int = 0


def _focus_time(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day_start(day: str) -> datetime:
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def _key(a: Action) -> _Key:
    day = a.started_at.astimezone(timezone.utc).date().isoformat()
    return day, agent_group(a), a.action_name, a.channel


def _aggregate(
    actions: Iterable[Action], awu_of: dict[str, float], billable_of: dict[str, bool],
    findings: Iterable[Finding],
) -> dict[_Key, _Usage]:  # fmt: skip
    usage: dict[_Key, _Usage] = defaultdict(_Usage)
    key_of: dict[str, _Key] = {}
    for a in actions:
        key = key_of[a.id] = _key(a)
        u = usage[key]
        u.actions += 1
        u.billable += billable_of[a.id]
        u.tokens += a.tokens
        u.awu += awu_of[a.id]
        u.reported += a.reported_awu or 0.0
    for f in findings:
        first = next((key_of[i] for i in f.action_ids if i in key_of), None)
        if first is None:
            continue
        usage[first].findings += 1
        if f.kind in WASTE_KINDS:
            usage[first].wasted_awu += f.wasted_awu
            usage[first].wasted_usd += f.wasted_usd
    return usage


def focus_rows(
    store: Store, window: Window, *, org_id: str, sandbox: bool, pricing: PricingConfig
) -> list[dict[str, Any]]:
    """The FOCUS rows of a window, oldest day first."""
    stored = store.stored_window(window)
    usage = _aggregate(
        stored.actions,
        {i: c.awu for i, c in stored.costs.items()},
        {i: c.billable for i, c in stored.costs.items()},
        store.findings_of_window(window),
    )
    return [
        _focus_row(key, u, org_id=org_id, sandbox=sandbox, pricing=pricing)
        for key, u in sorted(usage.items())
    ]


def _r(value: float) -> float:
    return round(value, 6) + 0.0


def _focus_row(
    key: _Key, u: _Usage, *, org_id: str, sandbox: bool, pricing: PricingConfig
) -> dict[str, Any]:
    day, agent, action, channel = key
    start = _day_start(day)
    b_start, b_end = period_bounds(period_of(start))
    credits = credits_for(u.awu, pricing)
    cost = usd_for(credits, pricing, sandbox=sandbox)
    list_cost = usd_for(credits, pricing)
    unit = pricing.voice_multiplier if channel == "Voice" else 1.0
    credits_per_awu = pricing.credits_per_awu
    factor = (1 - pricing.sandbox_discount) if sandbox else 1.0
    return {
        "BilledCost": _r(cost), "BillingAccountId": org_id,
        "BillingAccountName": f"Salesforce org {org_id}", "BillingCurrency": "USD",
        "BillingPeriodStart": _focus_time(b_start), "BillingPeriodEnd": _focus_time(b_end),
        "ChargeCategory": "Usage", "ChargeClass": None,
        "ChargeDescription": f"Agentforce action {action} by agent {agent} ({channel})",
        "ChargeFrequency": "Usage-Based", "ChargePeriodStart": _focus_time(start),
        "ChargePeriodEnd": _focus_time(start + timedelta(days=1)),
        "ConsumedQuantity": u.tokens, "ConsumedUnit": "Tokens", "ContractedCost": _r(cost),
        "ContractedUnitPrice": _r(credits_per_awu * pricing.usd_per_credit * factor),
        "EffectiveCost": _r(cost), "InvoiceIssuerName": "Salesforce", "ListCost": _r(list_cost),
        "ListUnitPrice": _r(credits_per_awu * pricing.usd_per_credit),
        "PricingCategory": "Standard", "PricingCurrency": "Flex Credits",
        "PricingCurrencyContractedUnitPrice": _r(credits_per_awu),
        "PricingCurrencyEffectiveCost": _r(credits),
        "PricingCurrencyListUnitPrice": _r(credits_per_awu), "PricingQuantity": _r(u.awu),
        "PricingUnit": "AWU", "ProviderName": "Salesforce", "PublisherName": "Salesforce",
        "ServiceProviderName": "Salesforce", "HostProviderName": "Salesforce",
        "ResourceId": agent, "ResourceName": agent, "ResourceType": "Agentforce agent",
        "ServiceCategory": "AI and Machine Learning", "ServiceSubcategory": "AI Platforms",
        "ServiceName": "Agentforce", "SkuId": f"Agentforce-{action}",
        "SkuPriceId": f"Agentforce-AWU-{channel}-x{unit:g}", "SubAccountId": org_id,
        "SubAccountName": f"Salesforce org {org_id}",
        "Tags": json.dumps({"agent": agent, "action": action, "channel": channel}),
        "x_ActionName": action, "x_Channel": channel, "x_Actions": u.actions,
        "x_BillableActions": u.billable, "x_RecomputedAwu": _r(u.awu),
        "x_ReportedAwu": _r(u.reported), "x_AwuDifference": _r(u.reported - u.awu),
        "x_WastedAwu": _r(u.wasted_awu), "x_WastedCost": _r(u.wasted_usd),
        "x_FindingCount": u.findings, "x_Sandbox": "true" if sandbox else "false",
    }  # fmt: skip


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    n = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            n += 1
    return n


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "Parquet needs pyarrow: pip install 'awu-audit[parquet]' (or write a .csv)"
        ) from None
    types = {
        "Decimal": pa.decimal128(24, 6),
        "DateTime": pa.timestamp("s", tz="UTC"),
        "String": pa.string(),
        "JSON": pa.string(),
    }
    fields, arrays = [], []
    for column, kind in FOCUS_COLUMNS.items():
        values = [_parquet_value(r[column], kind) for r in rows]
        fields.append(pa.field(column, types[kind], nullable=True))
        arrays.append(pa.array(values, type=types[kind]))
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)
    return len(rows)


def _parquet_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "Decimal":
        return Decimal(str(value)).quantize(Decimal("0.000001"))
    if kind == "DateTime":
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return value


def export(
    store_path: Path,
    out: Path,
    *,
    fmt: str,
    table: str | None = None,
    cfg: Config | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
) -> tuple[int, Window]:
    """Write the export; returns the rows written and the window exported."""
    if not store_path.exists():
        raise StoreError(f"no store at {store_path}; run `audit run` first")
    suffix = out.suffix.lower()
    if fmt == "csv" and table not in EXPORT_TABLES:
        raise ConfigError(f"--format csv needs --table {'|'.join(EXPORT_TABLES)}")
    if fmt == "focus" and suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--out must end in .csv or .parquet for FOCUS, got {out.name!r}")
    now = now or datetime.now(timezone.utc)
    with Store.open(store_path, readonly=True) as store:
        window, run = choose_window(store, since=since, until=until, run_id=run_id, now=now)
        cfg = cfg or recorded_config(store, run)
        run = run or store.latest_completed_run() or {}
        if table is not None and fmt == "csv":
            header, rows = list(EXPORT_TABLES[table]), store.table_rows(table, window)
        else:
            header, focus = list(FOCUS_COLUMNS), focus_rows(
                store, window, org_id=run.get("org_id") or "unknown",
                sandbox=bool(run.get("is_sandbox")), pricing=cfg.pricing,
            )  # fmt: skip
            rows = [tuple(r[c] for c in header) for r in focus]
    try:
        if fmt == "focus" and suffix == ".parquet":
            return _write_parquet(out, focus), window
        return _write_csv(out, header, rows), window
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from None
