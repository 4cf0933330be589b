"""The Data 360 source (SPEC §11): fixtures → mock org (token exchange, metadata, Query API
v2 over in-memory SQLite) → the real `audit run --json`, in each naming family; the same
scenario through AgentWorkItem + ELF; token exchange, re-exchange, paging faults,
discovery, typed values, the incremental cursor. Expected values come from the fixture
labels (`labels_data360.json`), never from the code under test."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jsonschema
import jwt
import pytest

from audit.config import Config, load_config
from audit.pipeline import run_audit
from audit.store import Store
from connector.data360 import Data360Client, discover
from connector.data360.values import decode_rows, is_nothing, parse_timestamp
from connector.errors import AuthError, SetupError
from connector.mock.data360 import ACCESS_TOKEN_TYPE, EXCHANGE_GRANT_TYPE, EXCHANGE_PATH
from connector.mock.org import MockOrg, MockRequest
from connector.mock.server import RunningMockOrg, serve
from fixtures.generator import generate_snapshot
from tests.helpers import SCHEMA, assert_matches_labels, invoke, make_config


def _sql(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Read the store file directly (tests look at what was written, not through the store)."""
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()

D360 = '\n[source]\nkinds = ["data360"]\n'
BOTH = '\n[source]\nkinds = ["agentworkitem", "eventlogfile", "data360"]\n'
AWI_ELF = '\n[source]\nkinds = ["agentworkitem", "eventlogfile"]\n'


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def snaps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One snapshot per naming family (same seed: the same scenario)."""
    out = {}
    for family in ("ssot", "std_dmo", "std"):
        snap = tmp_path_factory.mktemp(f"d360-{family}") / "org"
        generate_snapshot(
            snap,
            seed=11,
            actions=600,
            days=5,
            start=date(2026, 10, 1),
            source="data360",
            family=family,
        )
        out[family] = snap
    return out


def _labels(snap: Path, name: str = "labels_data360.json") -> dict[str, Any]:
    result: dict[str, Any] = json.loads((snap / name).read_text())
    return result


@pytest.fixture
def served(
    snaps: dict[str, Path], tmp_path: Path
) -> Iterator[tuple[MockOrg, RunningMockOrg, Path]]:
    org = MockOrg.from_snapshot(snaps["ssot"])
    with serve(org, tls_dir=tmp_path / "tls") as server:
        yield org, server, snaps["ssot"]


def _cfg(tmp_path: Path, snap: Path, server: RunningMockOrg, extra: str = D360) -> Config:
    return load_config(make_config(tmp_path, snap, server, extra=extra))


def _run_json(config: Path, labels: dict[str, Any]) -> dict[str, Any]:
    proc = invoke(
        "run",
        "--config",
        str(config),
        "--since",
        labels["window"]["since"],
        "--until",
        labels["window"]["until"],
        "--json",
    )
    assert proc.exit_code == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# --------------------------------------------------------------------- end to end, CLI


@pytest.mark.parametrize("family", ["ssot", "std_dmo", "std"])
def test_run_json_matches_data360_labels(
    family: str, snaps: dict[str, Path], tmp_path: Path
) -> None:
    snap = snaps[family]
    labels = _labels(snap)
    org = MockOrg.from_snapshot(snap)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        config = make_config(tmp_path, snap, server, extra=D360)
        out = _run_json(config, labels)
        jsonschema.validate(out, json.loads(SCHEMA.read_text()))
        assert_matches_labels(out, labels)
        assert out["org_id"] == labels["organization_id"]
        assert out["data360"]["objects"] == {
            k: v for k, v in labels["objects"].items() if k != "interaction"
        }
        assert out["data360"]["unmetered_actions"] == labels["unmetered"]["actions"]
        assert (
            out["data360"]["billable_unmetered_actions"]
            == labels["unmetered"]["billable_unmetered"]
        )
        sync = out["sync"]
        assert sync["data360_queries"] >= 3 and sync["data360_rows"] > labels["totals"]["actions"]
        assert sync["records"] == sum(1 for a in labels["actions"] if a["in_window"])

        # every usage query is date-bounded and reads tool calls only
        usage = labels["objects"]["usage"]
        usage_sql = [q for q in org.data360.queries if f"FROM {usage}" in q]
        assert usage_sql and all("TIMESTAMP '" in q and "<> 'NOT_SET'" in q for q in usage_sql)
        assert not any("SELECT *" in q for q in org.data360.queries)
        # API 62.0: the Digital Wallet objects do not exist yet, so nothing asks for them
        assert "vendor" not in out and not org.request_log.matching("computeConsumption")

        # a re-run reads the settle margin only and changes nothing
        again = _run_json(config, labels)
        assert again["totals"] == out["totals"] and again["findings"] == out["findings"]
        assert again["sync"]["records"] == 0
        assert again["sync"]["data360_queries"] <= 2


def test_both_sources_side_by_side_differ_only_by_construction(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    """AgentWorkItem+ELF and Data 360 of one scenario: the same AWU, credits and findings,
    except utilities (drop out), unmetered calls (extra, 0 AWU) and SOURCE_GAP (none)."""
    _, server, snap = served
    d360 = _labels(snap)
    awi = _labels(snap, "labels.json")
    diff = d360["differences"]
    out = _run_json(make_config(tmp_path, snap, server, extra=BOTH), d360)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(out, schema)
    assert_matches_labels(out, awi)  # the top level stays the AgentWorkItem/ELF audit
    block = out["sources"]["data360"]
    jsonschema.validate(block, schema)
    assert_matches_labels(block, d360)
    assert out["sources"]["agentworkitem+eventlogfile"]["totals"] == out["totals"]

    a, d = out["totals"], block["totals"]
    for key in ("billable_actions", "awu", "credits", "cost_usd"):
        assert d[key] == pytest.approx(a[key]), key
    assert d["actions"] == a["actions"] - diff["utility_actions"] + diff["unmetered_actions"]
    assert d["tokens"] == a["tokens"] - diff["utility_tokens"] + diff["unmetered_tokens"]
    assert d["reported_awu"] == pytest.approx(a["reported_awu"] - diff["utility_reported_awu"])
    for kind, found in out["findings"].items():
        got = block["findings"][kind]
        if kind == "SOURCE_GAP":
            assert found["count"] == diff["awi_source_gaps"] > 0 and got["count"] == 0
        elif kind == "AWU_MISMATCH":
            assert got["count"] == found["count"] - diff["utility_mismatches"]
            assert got["wasted_awu"] == pytest.approx(
                found["wasted_awu"] - diff["utility_mismatch_awu"]
            )
        else:
            assert got == found, kind
    assert block["data_quality"]["bad_records"] == (
        out["data_quality"]["bad_records"]
        - diff["bad_log_files"]
        - diff["utility_bad_records"]
        + diff["elf_only_bad_records"]
    )
    # never merged: the stored actions and the budget are the AgentWorkItem/ELF ones
    sources = {r[0] for r in _sql(tmp_path / "store.db", "SELECT DISTINCT source FROM actions")}
    assert "data360" not in sources


# ------------------------------------------------------------------------ token exchange


def test_token_exchange_claims_form_and_tenant_url(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    org, server, snap = served
    seen: list[MockRequest] = []
    org.on_request = lambda req, page: seen.append(req)
    cfg = _cfg(tmp_path, snap, server, extra=D360 + '\n[data360]\ndataspace = "default"\n')
    before = time.time()
    with Data360Client(cfg.connector) as client:
        rows = [r for page in client.query("SELECT 1 AS one") for r in page]
    assert rows == [{"one": Decimal(1)}]

    logins = [r for r in seen if r.path == "/services/oauth2/token"]
    exchanges = [r for r in seen if r.path == EXCHANGE_PATH]
    assert len(logins) == 1 and len(exchanges) == 1
    assertion = dict(parse_qsl(logins[0].body.decode()))["assertion"]
    claims = jwt.decode(assertion, options={"verify_signature": False})
    info = json.loads((snap / "org.json").read_text())
    assert claims["iss"] == info["consumer_key"] and claims["sub"] == info["username"]
    assert claims["aud"] == server.url and before < claims["exp"] <= time.time() + 300

    form = dict(parse_qsl(exchanges[0].body.decode()))
    assert exchanges[0].base_url == server.url  # posted to the core instance_url
    assert form["grant_type"] == EXCHANGE_GRANT_TYPE
    assert form["subject_token_type"] == ACCESS_TOKEN_TYPE
    assert form["dataspace"] == "default"
    assert org._has_token(form["subject_token"])  # a live core token, minted for this

    tenant = [c for c in org.data360.log if c.path.startswith("/api/")]
    assert tenant and all(c.base_url == client.tenant_url for c in tenant)
    assert client.tenant_url is not None and client.tenant_url.startswith("https://localhost:")
    assert client.tenant_url != server.url


def test_tenant_401_means_one_new_jwt_and_one_exchange_not_a_loop(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    org, server, snap = served
    cfg = _cfg(tmp_path, snap, server)

    def logins() -> int:
        return len(org.request_log.matching("/services/oauth2/token"))

    with Data360Client(cfg.connector, sleep=lambda s: None) as client:

        def query_all(sql: str) -> list[dict[str, Any]]:
            return [r for page in client.query(sql) for r in page]

        org.data360.faults.expire_token_after = 1  # each tenant token answers one call
        assert query_all("SELECT 2 AS two") == [{"two": Decimal(2)}]
        assert client.exchanges == 1 and logins() == 1
        assert query_all("SELECT 3 AS three") == [{"three": Decimal(3)}]
        assert client.exchanges == 2 and logins() == 2  # a new JWT, a new exchange, one retry

        org.data360.faults.expire_token_after = 0  # the tenant refuses every token
        with pytest.raises(AuthError, match="freshly exchanged"):
            query_all("SELECT 4 AS four")
        assert client.exchanges == 3 and logins() == 3  # exactly one re-exchange
    refused = [c for c in org.data360.log if c.status == 401]
    assert len(refused) == 3


def test_refused_exchange_is_one_line_exit_3(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    org, server, snap = served
    org.data360.faults.refuse_exchange = True
    proc = invoke(
        "run", "--config", str(make_config(tmp_path, snap, server, extra=D360)), "--json"
    )
    assert proc.exit_code == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cdp_query_api" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "store.db").exists()


# ------------------------------------------------------------------------------- paging


def test_5xx_mid_pagination_is_retried_on_the_same_batch(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    org, server, snap = served
    labels = _labels(snap)
    usage = labels["objects"]["usage"]
    org.data360.batch_rows = 40
    org.data360.faults.unavailable_queries = 1  # the POST itself is retried too
    with Data360Client(_cfg(tmp_path, snap, server).connector, sleep=lambda s: None) as client:
        pages = client.query(f"SELECT * FROM {usage}")
        first = next(pages)
        org.data360.faults.unavailable_batches = 2
        rows = first + [r for page in pages for r in page]
    assert len(rows) == labels["rows"]["usage"]
    gets = [c for c in org.data360.log if c.path.startswith("/api/v2/query/")]
    assert [c.status for c in gets[:3]] == [503, 503, 200]
    assert gets[0].path == gets[2].path  # the same batch id, fetched once it answered
    assert client.batches == -(-len(rows) // 40) and client.queries == 1
    posts = [c.status for c in org.data360.log if c.path == "/api/v2/query"]
    assert posts == [503, 200]


def test_expired_batch_id_resumes_from_the_committed_cursor(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    """Seven events with one Timestamp across page edges, a batch id that expires: the
    keyset (Timestamp, Id) restart reads each exactly once — no gap at a page edge."""
    org, server, snap = served
    labels = _labels(snap)
    usage = labels["objects"]["usage"]
    template = next(r for r in org.data360.rows(usage) if r["AiAgentToolName__c"] == "SendReply")
    ts = "2026-09-20T10:00:00.000Z"
    extra = [
        {**template, "Id__c": f"evt-{i}", "RequestIdentifier__c": f"req-{i}", "Timestamp__c": ts}
        for i in (5, 1, 7, 3, 2, 6, 4)
    ]
    org.data360.add_rows(usage, extra)
    org.data360.batch_rows = 2
    org.data360.faults.expire_batches = 2
    cfg = _cfg(tmp_path, snap, server)
    out = run_audit(
        cfg,
        since=datetime(2026, 9, 20, tzinfo=timezone.utc),
        until=datetime(2026, 9, 21, tzinfo=timezone.utc),
    )
    assert out.output["totals"]["actions"] == 7
    ids = sorted(r[0] for r in _sql(cfg.store.path, "SELECT id FROM d360_events"))
    assert ids == [f"evt-{i}" for i in range(1, 8)]
    posts = [q for q in org.data360.queries if f"FROM {usage}" in q and "2026-09-20" in q]
    assert len(posts) == 3 and all(" OR (" in q for q in posts[1:])  # restarted from the key


# ----------------------------------------------------------------------------- discovery


def test_missing_object_is_one_line_exit_2_naming_it(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    org, server, snap = served
    org.data360.drop_object(_labels(snap)["objects"]["step"])
    proc = invoke("run", "--config", str(make_config(tmp_path, snap, server, extra=D360)))
    assert proc.exit_code == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "AiAgentInteractionStep" in lines[0]
    assert "ssot__AiAgentInteractionStep__dlm" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "store.db").exists()  # a failed start writes nothing


def test_missing_column_is_one_line_exit_2_naming_it(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    org, server, snap = served
    step = _labels(snap)["objects"]["step"]
    org.data360.drop_column(step, "ssot__GenAiGatewayRequestId__c")
    proc = invoke("run", "--config", str(make_config(tmp_path, snap, server, extra=D360)))
    assert proc.exit_code == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and step in lines[0]
    assert "ssot__GenAiGatewayRequestId__c" in lines[0]


def _entity(name: str, fields: list[str]) -> dict[str, Any]:
    return {"name": name, "fields": [{"name": f, "type": "STRING"} for f in fields]}


USAGE_FIELDS = [
    "Id",
    "Timestamp",
    "AiAgentSessionId",
    "AiAgentToolName",
    "PromptTotalTokenCount",
    "UsageQuantity",
    "RequestIdentifier",
    "IsBillableIndicator",
]


def test_discovery_mixes_families_and_ignores_unknown_columns() -> None:
    schema = discover(
        [
            _entity(
                "AiAgentGenerativeAiUsage_std__dlm",
                [f"{f}__c" for f in USAGE_FIELDS] + ["KQ_Id__c", "Brand_New_Column__c"],
            ),
            _entity(
                "ssot__AiAgentInteractionStep__dlm",
                [
                    "ssot__Id__c",
                    "ssot__GenAiGatewayRequestId__c",
                    "ssot__InputValueText__c",
                    "ssot__ErrorMessageText__c",
                    "ssot__SomethingNew__c",
                ],
            ),
            _entity("std__AiAgentSessionDmo__dlm", ["std__Id__c", "std__AiAgentChannelType__c"]),
            _entity("ssot__AiAgentSession__dlm", ["ssot__Id__c"]),  # tried first, incomplete
        ]
    )
    assert (schema.usage.family, schema.step.family, schema.session.family) == (
        "std",
        "ssot",
        "std_dmo",
    )
    # no complete candidate: one line naming the first one and what it lacks
    with pytest.raises(
        SetupError,
        match=r"ssot__AiAgentSession__dlm lacks column\(s\) "
        r"ssot__AiAgentChannelType__c",
    ):
        discover(
            [
                _entity("ssot__AiAgentSession__dlm", ["ssot__Id__c"]),
                _entity("AiAgentGenerativeAiUsage_std__dlm", [f"{f}__c" for f in USAGE_FIELDS]),
                _entity(
                    "AiAgentInteractionStep_std__dlm",
                    [
                        "Id__c",
                        "GenAiGatewayRequestId__c",
                        "InputValueText__c",
                        "ErrorMessageText__c",
                    ],
                ),
            ]
        )
    assert "Brand_New_Column__c" not in schema.usage.columns.values()
    assert "IsMeteredIndicator" not in schema.usage.columns  # falls back to IsBillable
    assert schema.usage.columns["Timestamp"] == "Timestamp__c"


# --------------------------------------------------------------------------------- values


def test_values_are_typed_by_metadata_and_ordered_by_place_in_order() -> None:
    payload = {
        "metadata": {  # key order is not column order
            "flag": {"type": "BOOLEAN", "placeInOrder": 3, "typeCode": 16},
            "qty": {"type": "DECIMAL", "placeInOrder": 1, "typeCode": 3},
            "ts": {"type": "TIMESTAMP", "placeInOrder": 2, "typeCode": 93},
            "name": {"type": "VARCHAR", "placeInOrder": 0, "typeCode": 12},
        },
        "data": [
            ["SendReply", "0.666666666666666700", "2026-10-06 14:03:22.123 UTC", True],
            ["NOT_SET", "5562.000000000000000000", "2026-10-06 00:00:00.000 UTC", False],
            ["", None, None, None],
        ],
        "done": True,
    }
    rows = decode_rows(payload)
    assert rows[0] == {
        "name": "SendReply",
        "qty": Decimal("0.6666666666666667"),
        "ts": datetime(2026, 10, 6, 14, 3, 22, 123000, tzinfo=timezone.utc),
        "flag": True,
    }
    assert rows[1]["name"] is None and rows[1]["qty"] == Decimal(5562) and rows[1]["flag"] is False
    assert rows[2] == {"name": None, "qty": None, "ts": None, "flag": None}
    assert parse_timestamp("2026-10-06T14:03:22.123Z") == rows[0]["ts"]
    assert all(is_nothing(v) for v in (None, "", " ", "NOT_SET")) and not is_nothing("0")


def test_mock_query_api_speaks_the_v2_wire_format(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    _, server, snap = served
    usage = _labels(snap)["objects"]["usage"]
    with Data360Client(_cfg(tmp_path, snap, server).connector) as client:
        payload = client.request(
            "POST",
            "/api/v2/query",
            json_body={
                "sql": (
                    f"SELECT AiAgentToolName__c, Timestamp__c, UsageQuantity__c, IsBillableIndicator__c "
                    f"FROM {usage} WHERE Timestamp__c >= TIMESTAMP '2026-10-02 00:00:00' "
                    f"AND AiAgentToolName__c = 'SendReply' ORDER BY Timestamp__c LIMIT 3"
                )
            },
        )
    meta = payload["metadata"]
    assert [meta[k]["placeInOrder"] for k in meta] == [3, 2, 1, 0]
    assert {meta[k]["type"] for k in meta} == {"VARCHAR", "TIMESTAMP", "DECIMAL", "BOOLEAN"}
    row = payload["data"][0]
    assert row[0] == "SendReply" and row[1].endswith(" UTC") and row[1] >= "2026-10-02"
    assert isinstance(row[2], str) and Decimal(row[2]) > 0 and isinstance(row[3], bool)
    assert payload["done"] is True and payload["rowCount"] == 3


# ---------------------------------------------------------------------------- increments


def test_incremental_cursor_is_capped_and_rereads_the_settle_margin(
    served: tuple[MockOrg, RunningMockOrg, Path], tmp_path: Path
) -> None:
    org, server, snap = served
    usage = _labels(snap)["objects"]["usage"]
    cfg = _cfg(tmp_path, snap, server)
    first_now = datetime(2026, 10, 4, 12, tzinfo=timezone.utc)
    run_audit(cfg, now=first_now)
    latest = _sql(cfg.store.path, "SELECT max(started_at) FROM d360_events")[0][0]
    with Store.open(cfg.store.path) as store:
        state = store.sync_state("data360")
    assert latest < "2026-10-04T12:00:00.000Z"  # capped at the sync's start
    assert state is not None and state["cursor"]["ts"] == "2026-10-04T12:00:00.000Z"

    template = next(r for r in org.data360.rows(usage) if r["AiAgentToolName__c"] == "SendReply")
    late = [  # arrived after the first run, stamped before its start
        {
            **template,
            "Id__c": "late-in-margin",
            "RequestIdentifier__c": "late-1",
            "Timestamp__c": "2026-10-03T09:00:00.000Z",
        },
        {
            **template,
            "Id__c": "late-too-old",
            "RequestIdentifier__c": "late-2",
            "Timestamp__c": "2026-10-01T09:00:00.000Z",
        },
    ]
    org.data360.add_rows(usage, late)
    second = run_audit(cfg, now=datetime(2026, 10, 5, 12, tzinfo=timezone.utc))
    ids = {r[0] for r in _sql(cfg.store.path, "SELECT id FROM d360_events WHERE id LIKE 'late-%'")}
    assert ids == {"late-in-margin"}  # 48 h settle margin before the cursor, not more
    assert second.output["sync"]["records"] >= 1


def test_fixtures_cli_writes_data360_shape(tmp_path: Path) -> None:
    out = tmp_path / "org"
    proc = invoke(
        "fixtures",
        "--out",
        str(out),
        "--actions",
        "50",
        "--days",
        "2",
        "--source",
        "data360",
        "--family",
        "std_dmo",
    )
    assert proc.exit_code == 0, proc.stderr
    assert json.loads((out / "org.json").read_text())["data360"] == {"family": "std_dmo"}
    names = sorted(p.name for p in (out / "data360").iterdir())
    assert names == [
        "std__AiAgentGenerativeAiUsageDmo__dlm.jsonl",
        "std__AiAgentInteractionDmo__dlm.jsonl",
        "std__AiAgentInteractionStepDmo__dlm.jsonl",
        "std__AiAgentSessionDmo__dlm.jsonl",
    ]
    assert _labels(out)["family"] == "std_dmo"
    # regenerating over it (other source) cleans the Data 360 files away
    proc = invoke("fixtures", "--out", str(out), "--actions", "50", "--days", "2")
    assert proc.exit_code == 0, proc.stderr
    assert not (out / "data360").exists() and not (out / "labels_data360.json").exists()


# ---------------------------------------------------------------------------- vendor view


@pytest.fixture(scope="module")
def snap67(tmp_path_factory: pytest.TempPathFactory) -> Path:
    snap = tmp_path_factory.mktemp("d360-67") / "org"
    generate_snapshot(
        snap,
        seed=12,
        actions=300,
        days=3,
        start=date(2026, 10, 1),
        source="data360",
        api_version="67.0",
    )
    return snap


def test_vendor_view_beside_our_figures(snap67: Path, tmp_path: Path) -> None:
    labels = _labels(snap67)
    with serve(MockOrg.from_snapshot(snap67), tls_dir=tmp_path / "tls") as server:
        out = _run_json(make_config(tmp_path, snap67, server, extra=D360), labels)
    jsonschema.validate(out, json.loads(SCHEMA.read_text()))
    vendor = out["vendor"]
    assert vendor["units_consumed"] == pytest.approx(labels["vendor"]["units_consumed"])
    assert vendor["total_entitlement"] == pytest.approx(labels["vendor"]["total_entitlement"])
    assert len(vendor["alerts"]) == labels["vendor"]["active_alerts"]
    assert all(a["trigger_type"] == "ThresholdPercent" for a in vendor["alerts"])
    assert vendor["recomputed_credits"] == out["budget"]["used_credits"]
    assert vendor["difference"] == pytest.approx(
        vendor["units_consumed"] - out["budget"]["used_credits"]
    )
    # Salesforce charged what the org reported; we recompute: the gap is the mismatch
    assert vendor["difference"] == pytest.approx(
        (labels["totals"]["reported_awu"] - labels["totals"]["awu"]) * 20
    )


def test_vendor_view_absent_is_normal(snap67: Path, tmp_path: Path) -> None:
    org = MockOrg.from_snapshot(snap67)
    org.data360.consumption_cards = None  # no Digital Wallet action in this org
    org._tables.pop("tenantconsumptionalert")  # and no alert object
    labels = _labels(snap67)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        result = run_audit(
            _cfg(tmp_path, snap67, server),
            since=datetime.fromisoformat(labels["window"]["since"]),
            until=datetime.fromisoformat(labels["window"]["until"]),
        )
    assert "vendor" not in result.output and result.exit_code == 0
    assert result.output["totals"]["actions"] == labels["totals"]["actions"]
    # asked, found absent, carried on
    assert org.request_log.matching("computeConsumption")
    assert org.request_log.matching("TenantConsumptionAlert/describe")
