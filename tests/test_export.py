"""`audit export`: FOCUS 1.2 (+ 1.3 provider columns) as CSV and Parquet, and store tables
as CSV. The column rules below are written from the FOCUS specification, not imported
from the code under test."""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import invoke

#: FOCUS 1.2 mandatory columns → (data type, nulls allowed)
MANDATORY_1_2 = {
    "BilledCost": ("Decimal", False), "BillingAccountId": ("String", False),
    "BillingAccountName": ("String", True), "BillingCurrency": ("String", False),
    "BillingPeriodEnd": ("DateTime", False), "BillingPeriodStart": ("DateTime", False),
    "ChargeCategory": ("String", False), "ChargeClass": ("String", True),
    "ChargeDescription": ("String", True), "ChargePeriodEnd": ("DateTime", False),
    "ChargePeriodStart": ("DateTime", False), "ContractedCost": ("Decimal", False),
    "EffectiveCost": ("Decimal", False), "InvoiceIssuerName": ("String", False),
    "ListCost": ("Decimal", False), "PricingQuantity": ("Decimal", True),
    "PricingUnit": ("String", True), "ProviderName": ("String", False),
    "PublisherName": ("String", False), "ServiceCategory": ("String", False),
    "ServiceName": ("String", False),
}
#: 1.3's provider columns, and the conditional ones a virtual-currency AI usage row fills
REQUIRED_HERE = {
    "ServiceProviderName": ("String", False), "HostProviderName": ("String", False),
    "ConsumedQuantity": ("Decimal", False), "ConsumedUnit": ("String", False),
    "PricingCurrency": ("String", False), "PricingCurrencyEffectiveCost": ("Decimal", False),
}
FOCUS_COLUMN_NAMES = set(MANDATORY_1_2) | set(REQUIRED_HERE) | {
    "ChargeFrequency", "ContractedUnitPrice", "ListUnitPrice", "PricingCategory",
    "PricingCurrencyContractedUnitPrice", "PricingCurrencyListUnitPrice", "ResourceId",
    "ResourceName", "ResourceType", "ServiceSubcategory", "SkuId", "SkuPriceId", "SubAccountId",
    "SubAccountName", "Tags",
}
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _run(config: Path, labels: dict[str, Any]) -> dict[str, Any]:
    proc = invoke("run", "--config", str(config), "--since", labels["window"]["since"],
                  "--until", labels["window"]["until"], "--json")
    assert proc.exit_code == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _export(config: Path, *args: str) -> None:
    proc = invoke("export", "--config", str(config), *args)
    assert proc.exit_code == 0, proc.stderr
    assert proc.stderr.startswith("wrote ")


def _check_sums(rows: list[dict[str, Any]], run: dict[str, Any], labels: dict[str, Any]) -> None:
    def total(col: str) -> float:
        return float(sum(Decimal(str(r[col])) for r in rows))

    t = run["totals"]
    assert total("EffectiveCost") == pytest.approx(t["cost_usd"])
    assert total("BilledCost") == pytest.approx(t["cost_usd"])
    assert total("ConsumedQuantity") == t["tokens"]
    assert total("PricingCurrencyEffectiveCost") == pytest.approx(t["credits"])
    assert total("PricingQuantity") == pytest.approx(t["awu"])
    assert total("x_ReportedAwu") == pytest.approx(t["reported_awu"])
    assert total("x_Actions") == t["actions"]
    # and the run agrees with the generator's ground truth
    for key in ("actions", "tokens", "awu", "credits", "cost_usd"):
        assert t[key] == pytest.approx(labels["totals"][key]), key


def test_focus_csv(config_path: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    run = _run(config_path, labels)
    out = tmp_path / "focus.csv"
    _export(config_path, "--format", "focus", "--out", str(out),
            "--since", labels["window"]["since"], "--until", labels["window"]["until"])
    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    assert rows
    for col in header:
        assert col in FOCUS_COLUMN_NAMES or col.startswith("x_"), col
    since, until = _when(run["window"]["start"]), _when(run["window"]["end"])
    for col, (kind, nullable) in {**MANDATORY_1_2, **REQUIRED_HERE}.items():
        assert col in header, col
        for r in rows:
            value = r[col]
            if value == "":
                assert nullable, (col, r)
            elif kind == "Decimal":
                assert Decimal(value).is_finite(), (col, value)
            elif kind == "DateTime":
                assert DATETIME.match(value), (col, value)
    for r in rows:
        start, end = _when(r["ChargePeriodStart"]), _when(r["ChargePeriodEnd"])
        assert end - start == timedelta(days=1) and start.time() == datetime.min.time()
        assert since <= start and end <= until  # exclusive end: the last day ends at `until`
        b_start, b_end = _when(r["BillingPeriodStart"]), _when(r["BillingPeriodEnd"])
        assert b_start <= start and end <= b_end and b_start.day == 1 and b_end.day == 1
        assert r["ChargeCategory"] == "Usage" and r["BillingCurrency"] == "USD"
        assert r["PricingCurrency"] == "Flex Credits" and r["ConsumedUnit"] == "Tokens"
        assert r["ServiceCategory"] == "AI and Machine Learning"
        assert r["BillingAccountId"] == run["org_id"]
        json.loads(r["Tags"])
    assert max(_when(r["ChargePeriodEnd"]) for r in rows) == until
    keys = [(r["ChargePeriodStart"], r["ResourceId"], r["x_ActionName"], r["x_Channel"]) for r in rows]
    assert len(keys) == len(set(keys))  # one row per day × agent × action × channel
    _check_sums(rows, run, labels)
    wasted = sum(v["count"] for v in labels["findings"].values())
    assert sum(int(r["x_FindingCount"]) for r in rows) == wasted


def test_focus_parquet(config_path: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    import pyarrow as pa  # in the test extra (and the parquet extra)
    import pyarrow.parquet as pq

    run = _run(config_path, labels)
    out = tmp_path / "focus.parquet"
    _export(config_path, "--format", "focus", "--out", str(out))  # default: the last run's window
    table = pq.read_table(out)
    schema = {f.name: f.type for f in table.schema}
    for col, (kind, _) in {**MANDATORY_1_2, **REQUIRED_HERE}.items():
        t = schema[col]
        if kind == "Decimal":
            assert pa.types.is_decimal(t), (col, t)
        elif kind == "DateTime":
            assert pa.types.is_timestamp(t) and t.tz == "UTC", (col, t)
        else:
            assert pa.types.is_string(t), (col, t)
    _check_sums(table.to_pylist(), run, labels)


def test_csv_tables(config_path: Path, labels: dict[str, Any], tmp_path: Path) -> None:
    run = _run(config_path, labels)
    counts = {}
    for table in ("findings", "actions", "daily_usage"):
        out = tmp_path / f"{table}.csv"
        _export(config_path, "--format", "csv", "--table", table, "--out", str(out))
        with out.open(newline="") as fh:
            counts[table] = list(csv.DictReader(fh))
    assert len(counts["findings"]) == sum(v["count"] for v in labels["findings"].values())
    assert len(counts["actions"]) == labels["totals"]["actions"]
    assert sum(int(r["actions"]) for r in counts["daily_usage"]) == run["totals"]["actions"]
    assert sum(float(r["awu"]) for r in counts["daily_usage"]) == pytest.approx(run["totals"]["awu"])


@pytest.mark.parametrize(("args", "needle"), [
    (["--format", "focus", "--out", "x.xlsx"], "--out must end in .csv or .parquet"),
    (["--format", "csv", "--out", "x.csv"], "--format csv needs --table"),
])
def test_bad_export_options_are_one_line(config_path: Path, labels: dict[str, Any], tmp_path: Path,
                                         args: list[str], needle: str) -> None:
    _run(config_path, labels)
    proc = invoke("export", "--config", str(config_path), *args, cwd=tmp_path)
    assert proc.exit_code == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
