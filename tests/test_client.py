"""Talking to Salesforce, piece by piece: the pure response classifier, the retry loop kept
apart from it, the JWT assertion and its audience, and SOQL literal escaping."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jwt
import pytest
from cryptography import x509

from audit.config import load_config
from connector.auth import ASSERTION_LIFETIME_S, audience_for, build_assertion, load_private_key
from connector.client import SalesforceClient, _error_from_body
from connector.errors import AuthError, QueryError, RateLimited, SalesforceError, SessionExpired
from connector.mock.org import MockOrg, MockRequest
from connector.mock.server import RunningMockOrg, serve
from connector.mock.soql import BoolOp, Compare, parse
from connector.soql import datetime_literal, ident, in_list, string_literal
from connector.transport import Decision, classify
from fixtures.generator import generate_snapshot
from tests.helpers import make_config

# ----------------------------------------------------------------------- the classifier

CLASSIFY_TABLE = [
    # (status, errorCode) → decision
    ((401, "INVALID_SESSION_ID"), Decision.REFRESH),
    ((401, None), Decision.REFRESH),
    ((429, "REQUEST_LIMIT_EXCEEDED"), Decision.BACKOFF),  # concurrent-request limit: transient
    ((503, "SERVER_UNAVAILABLE"), Decision.BACKOFF),
    ((503, None), Decision.BACKOFF),
    ((502, None), Decision.BACKOFF),
    ((504, None), Decision.BACKOFF),
    ((500, "UNKNOWN_EXCEPTION"), Decision.BACKOFF),
    ((400, "UNABLE_TO_LOCK_ROW"), Decision.BACKOFF),
    ((409, "UNABLE_TO_LOCK_ROW"), Decision.BACKOFF),
    ((400, "QUERY_TIMEOUT"), Decision.BACKOFF),
    ((None, None), Decision.BACKOFF),  # network error: no response at all
    ((None, "TLS"), Decision.FAIL),  # an untrusted certificate does not heal by waiting
    ((400, "MALFORMED_QUERY"), Decision.FAIL),
    ((400, "INVALID_FIELD"), Decision.FAIL),
    ((400, "INVALID_TYPE"), Decision.FAIL),
    ((403, "REQUEST_LIMIT_EXCEEDED"), Decision.FAIL),  # the org's daily API limit
    ((400, "invalid_grant"), Decision.FAIL),
    ((400, "invalid_client_id"), Decision.FAIL),
    ((401, "invalid_grant"), Decision.FAIL),
    ((403, "INSUFFICIENT_ACCESS"), Decision.FAIL),
    ((404, "NOT_FOUND"), Decision.FAIL),
]


@pytest.mark.parametrize(("response", "decision"), CLASSIFY_TABLE, ids=lambda v: str(v))
def test_classify(response: tuple[int | None, str | None], decision: Decision) -> None:
    assert classify(*response) is decision


@pytest.mark.parametrize(("status", "body", "error_type", "decision"), [
    (401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
     SessionExpired, Decision.REFRESH),
    (429, [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
     RateLimited, Decision.BACKOFF),
    (503, [{"message": "Service Unavailable", "errorCode": "SERVER_UNAVAILABLE"}],
     RateLimited, Decision.BACKOFF),
    (503, "<html>Service Unavailable</html>", RateLimited, Decision.BACKOFF),
    (400, [{"message": "unable to obtain exclusive access", "errorCode": "UNABLE_TO_LOCK_ROW"}],
     RateLimited, Decision.BACKOFF),
    (400, [{"message": "unexpected token: FORM", "errorCode": "MALFORMED_QUERY"}],
     QueryError, Decision.FAIL),
    (400, [{"message": "No such column 'Foo__c'", "errorCode": "INVALID_FIELD"}],
     QueryError, Decision.FAIL),
    (403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
     RateLimited, Decision.FAIL),
    (400, {"error": "invalid_grant", "error_description": "expired authorization code"},
     SalesforceError, Decision.FAIL),
])
def test_error_body_to_decision(status: int, body: Any, error_type: type, decision: Decision) -> None:
    """A Salesforce error body becomes one typed error whose classification is the table's."""
    err = _error_from_body(status, body, "https://x.my.salesforce.com/services/data/v62.0/query")
    assert type(err) is error_type
    assert classify(err.status, err.error_code) is decision
    assert "\n" not in str(err) and "/services/data/v62.0/query" in str(err)


# --------------------------------------------------------------------------- JWT bearer


@pytest.fixture(scope="module")
def small_snap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("client") / "org"
    generate_snapshot(out, seed=11, actions=300, days=2, start=date(2026, 10, 1))
    return out


def _public_key(snap: Path) -> Any:
    return x509.load_pem_x509_certificate((snap / "app.crt").read_bytes()).public_key()


def test_assertion_claims_verify_with_the_certificate(small_snap: Path) -> None:
    key = load_private_key(small_snap / "app.key")
    now = time.time()
    token = build_assertion(consumer_key="3MVG9abc", username="int@example.com",
                            audience="https://login.salesforce.com", key=key, now=now)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, _public_key(small_snap), algorithms=["RS256"],
                        audience="https://login.salesforce.com")
    assert claims["iss"] == "3MVG9abc"
    assert claims["sub"] == "int@example.com"
    assert claims["aud"] == "https://login.salesforce.com"
    assert isinstance(claims["exp"], int)  # a number, not a string (simple-salesforce's bug)
    assert now < claims["exp"] <= now + 180
    assert ASSERTION_LIFETIME_S <= 180


@pytest.fixture
def served(small_snap: Path, tmp_path: Path) -> Iterator[tuple[MockOrg, RunningMockOrg]]:
    org = MockOrg.from_snapshot(small_snap)
    with serve(org, tls_dir=tmp_path / "tls") as server:
        yield org, server


def test_assertion_on_the_wire(served: tuple[MockOrg, RunningMockOrg], small_snap: Path,
                               tmp_path: Path) -> None:
    """What the client really posts to the token endpoint decodes with the app's certificate."""
    org, server = served
    posted: list[dict[str, str]] = []

    def capture(req: MockRequest, page_no: int | None) -> None:
        if req.path == "/services/oauth2/token":
            posted.append(dict(parse_qsl(req.body.decode())))

    org.on_request = capture
    cfg = load_config(make_config(tmp_path, small_snap, server))
    before = time.time()
    with SalesforceClient(cfg.connector) as client:
        client.connect()
    assert len(posted) == 1
    form = posted[0]
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = jwt.decode(form["assertion"], _public_key(small_snap), algorithms=["RS256"],
                        audience=server.url)
    assert claims["iss"] == org.info.consumer_key
    assert claims["sub"] == org.info.username
    assert claims["aud"] == server.url
    assert before < claims["exp"] <= time.time() + 180


@pytest.mark.parametrize(("login_url", "aud"), [
    ("https://login.salesforce.com", "https://login.salesforce.com"),
    ("https://login.salesforce.com/", "https://login.salesforce.com"),
    ("https://test.salesforce.com", "https://test.salesforce.com"),
    ("https://test.salesforce.com/", "https://test.salesforce.com"),
    ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
    ("https://ACME.my.salesforce.com/", "https://login.salesforce.com"),
    ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
    ("https://acme--uat.sandbox.my.salesforce.com/", "https://test.salesforce.com"),
    # a sandbox My Domain from before enhanced domains: the "--" marks the sandbox
    ("https://acme--uat.my.salesforce.com", "https://test.salesforce.com"),
    ("https://acme-dev-ed.develop.my.salesforce.com", "https://login.salesforce.com"),
    ("https://ability-fun-1234.scratch.my.salesforce.com", "https://test.salesforce.com"),
    ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),  # the mock org: as given
])
def test_audience_for(login_url: str, aud: str) -> None:
    assert audience_for(login_url) == aud


# ----------------------------------------------------------------------- the retry loop


def _client(tmp_path: Path, snap: Path, server: RunningMockOrg, extra: str = "",
            ) -> tuple[SalesforceClient, list[float]]:
    cfg = load_config(make_config(tmp_path, snap, server, extra=extra))
    waits: list[float] = []
    return SalesforceClient(cfg.connector, sleep=waits.append), waits


def _api_calls(org: MockOrg) -> int:
    return len([e for e in org.request_log if e.path.startswith("/services/data/")])


@pytest.mark.parametrize("fault", ["unavailable", "rate_limit", "lock_row"])
def test_transient_burst_is_retried_with_bounded_backoff(
    served: tuple[MockOrg, RunningMockOrg], small_snap: Path, tmp_path: Path, fault: str
) -> None:
    org, server = served
    extra = "[sync]\nmax_retries = 4\nbackoff_base_s = 0.5\nbackoff_max_s = 3\n"
    client, waits = _client(tmp_path, small_snap, server, extra)
    with client:
        client.connect()
        getattr(org.faults, fault)(3)
        rows = client.query_all("SELECT Id, IsSandbox FROM Organization")
        assert rows and rows[0]["Id"] == org.info.organization_id
        assert len(waits) == 3 and all(0 <= w <= 3 for w in waits)
        assert _api_calls(org) == 4

        # a burst longer than the retries: bounded, then one clear error
        org.request_log.clear()
        waits.clear()
        getattr(org.faults, fault)(100)
        with pytest.raises(RateLimited) as info:
            client.query_all("SELECT Id FROM Organization")
        assert _api_calls(org) == 5  # 1 + max_retries, never more
        assert len(waits) == 4
        assert "after 4 retries" in str(info.value)


def test_token_refused_mid_run_is_refreshed_once(
    served: tuple[MockOrg, RunningMockOrg], small_snap: Path, tmp_path: Path
) -> None:
    org, server = served
    client, waits = _client(tmp_path, small_snap, server)
    with client:
        client.connect()
        org.revoke_tokens()
        assert client.query_all("SELECT Id FROM Organization")
        assert client.token_exchanges == 2 and not waits

        # a token that dies at once, every time: one refresh, then a clear error, no loop
        org.request_log.clear()
        org.faults.expire_token_after(0)
        with pytest.raises(AuthError) as info:
            client.query_all("SELECT Id FROM Organization")
        assert len(org.request_log.matching("/services/oauth2/token")) == 1
        assert _api_calls(org) == 2
        assert "INVALID_SESSION_ID" in str(info.value)


def test_query_errors_fail_at_once(
    served: tuple[MockOrg, RunningMockOrg], small_snap: Path, tmp_path: Path
) -> None:
    org, server = served
    client, waits = _client(tmp_path, small_snap, server)
    with client:
        client.connect()
        org.request_log.clear()
        with pytest.raises(QueryError) as info:
            client.query_all("SELECT Nope__c FROM AgentWorkItem")
        assert info.value.error_code == "INVALID_FIELD"
        with pytest.raises(QueryError) as info:
            client.query_all("SELECT Id FORM AgentWorkItem")
        assert info.value.error_code == "MALFORMED_QUERY"
        assert _api_calls(org) == 2 and not waits


def test_daily_limit_fails_at_once(
    served: tuple[MockOrg, RunningMockOrg], small_snap: Path, tmp_path: Path
) -> None:
    org, server = served
    client, waits = _client(tmp_path, small_snap, server)
    with client:
        client.connect()
        org.request_log.clear()
        org.faults.daily_limit()
        with pytest.raises(RateLimited) as info:
            client.query_all("SELECT Id FROM Organization")
        assert info.value.status == 403 and info.value.error_code == "REQUEST_LIMIT_EXCEEDED"
        assert _api_calls(org) == 1 and not waits


def test_reserve_is_checked_before_every_call(
    served: tuple[MockOrg, RunningMockOrg], small_snap: Path, tmp_path: Path
) -> None:
    org, server = served
    client, _ = _client(tmp_path, small_snap, server, "[sync]\napi_reserve_pct = 10\n")
    with client:
        client.connect()
        org.faults.api_usage(8_000, 10_000)
        client.query_all("SELECT Id FROM Organization")  # learns the usage from the header
        assert client.usage is not None and client.usage.used == 8_001
        org.faults.api_usage(9_500, 10_000)
        client.query_all("SELECT Id FROM Organization")  # 95 % used: the next call is refused
        org.request_log.clear()
        with pytest.raises(RateLimited) as info:
            client.query_all("SELECT Id FROM Organization")
        assert not org.request_log.entries()
        assert "sync.api_reserve_pct" in str(info.value)


# -------------------------------------------------------------------------------- SOQL


@pytest.mark.parametrize("value", [
    "plain", "O'Brien", "back\\slash", "a\\'b", "x' OR Id != '", "line\nbreak\ttab\r",
    'double "quotes"', "ünïcødé ✓", "", "\\", "'", "%_",
])
def test_string_literal_round_trips_through_the_soql_parser(value: str) -> None:
    soql = f"SELECT Id FROM Case WHERE Status = {string_literal(value)} AND IsClosed = false"
    where = parse(soql).where
    assert isinstance(where, BoolOp) and where.op == "AND" and len(where.children) == 2
    first = where.children[0]
    assert isinstance(first, Compare) and first.literal.kind == "string"
    assert first.literal.value == value


def test_in_list_escapes_every_value() -> None:
    values = ["500a", "500'b", "500\\c"]
    soql = "SELECT Id FROM Case WHERE Id IN " + in_list(values)
    where = parse(soql).where
    assert [lit.value for lit in where.literals] == ["500a", "500'b", "500\\c"]


@pytest.mark.parametrize("name", ["Id", "SessionId__c", "My_Field_2__c", "ns__Thing__c"])
def test_ident_accepts_api_names(name: str) -> None:
    assert ident(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "Id, Name", "Id FROM User", "a-b", "a.b",
                                  "Id;--", "x' OR '1'='1", "Name\n"])
def test_ident_rejects_anything_else(name: str) -> None:
    with pytest.raises(ValueError):
        ident(name)


def test_datetime_literal() -> None:
    moment = datetime(2026, 10, 5, 13, 4, 5, 250_000, tzinfo=timezone.utc)
    assert datetime_literal(moment) == "2026-10-05T13:04:05Z"
    assert datetime_literal(moment, round_up=True) == "2026-10-05T13:04:06Z"
    assert datetime_literal(moment.replace(microsecond=0), round_up=True) == "2026-10-05T13:04:05Z"


def test_a_ca_bundle_that_holds_no_certificate_is_one_setup_error(tmp_path: Path) -> None:
    from connector.auth import http_client
    from connector.config import SalesforceConfig
    from connector.errors import SetupError

    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    with pytest.raises(SetupError, match=r"ca_bundle .*ca\.pem holds no PEM certificate"):
        http_client(SalesforceConfig(ca_bundle=not_pem))
    assert SetupError.exit_code == 2


def _write_key(key: Any, path: Path) -> Path:
    """`key` as an unencrypted PKCS#8 PEM file at `path`, mode 0600."""
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    path.chmod(0o600)
    return path


def test_a_damaged_key_file_is_one_setup_error(small_snap: Path, tmp_path: Path) -> None:
    """Keys load without cryptography's slow checks (the file is the user's own); a key
    whose parts disagree is still refused by name, before any request."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from connector.errors import SetupError

    parts = load_private_key(small_snap / "app.key").private_numbers()
    for field in ("d", "dmp1", "dmq1", "iqmp"):
        damaged = rsa.RSAPrivateNumbers(
            **{name: getattr(parts, name) for name in ("p", "q", "d", "dmp1", "dmq1", "iqmp")}
            | {field: getattr(parts, field) + 2},
            public_numbers=parts.public_numbers,
        ).private_key(unsafe_skip_rsa_key_validation=True)
        path = _write_key(damaged, tmp_path / f"{field}.key")
        with pytest.raises(SetupError, match=rf"{field}\.key is a damaged RSA key"):
            load_private_key(path)


def test_a_key_with_a_composite_prime_is_refused(tmp_path: Path) -> None:
    """A key whose p is not prime can pass every arithmetic relation between its parts and
    still sign wrongly: the signature made on load must verify with its public half."""
    import math

    from cryptography.hazmat.primitives.asymmetric import rsa

    from connector.errors import SetupError

    def prime(bits: int) -> int:
        return rsa.generate_private_key(65537, 2 * bits).private_numbers().p  # p has half

    e = 65537
    while True:  # p: a product of two primes; q: a prime; e must invert mod both p-1, q-1
        p, q = prime(512) * prime(512), prime(1024)
        if math.gcd(e, p - 1) == 1 and math.gcd(e, q - 1) == 1 and math.gcd(p, q) == 1:
            break
    d = pow(e, -1, (p - 1) * (q - 1) // math.gcd(p - 1, q - 1))
    key = rsa.RSAPrivateNumbers(
        p=p, q=q, d=d, dmp1=d % (p - 1), dmq1=d % (q - 1), iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    ).private_key(unsafe_skip_rsa_key_validation=True)  # fmt: skip
    path = _write_key(key, tmp_path / "composite.key")
    with pytest.raises(SetupError, match=r"composite\.key is a damaged RSA key"):
        load_private_key(path)
