"""The mock Salesforce org (connector.mock): OAuth, REST wire format, faults, server."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from simple_salesforce.api import Salesforce, SFType

from connector.mock import Faults, MockOrg, MockRequest, TruncatedBody, serve
from connector.mock import server as server_module
from connector.mock.http import Headers
from connector.mock.server import main
from connector.mock.soql import to18

ORG_ID = "00DMOCK00000001"
USERNAME = "integration@example.com"
CONSUMER_KEY = "3MVG9mockConsumerKey"
VERSION = "62.0"
N_RECORDS = 25
ELF_ID = to18("0ATMOCK00000001")
ELF_ID2 = to18("0ATMOCK00000002")
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ snapshot set-up


def _key_and_cert() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "awu-audit test app")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


def _stamp(minutes: int) -> str:
    moment = datetime(2026, 10, 5, tzinfo=timezone.utc) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _work_items() -> list[dict[str, Any]]:
    return [{
        "Id": to18(f"0BzMOCK{i:08d}"),
        "CreatedDate": _stamp(i),
        "SystemModstamp": _stamp(i),
        "SessionId__c": f"S{i % 3}",
        "ActionName__c": "GetOrderHistory",
        "ActionType__c": "Utility" if i % 5 == 0 else "Query",
        "Channel__c": "Voice" if i % 4 == 0 else "Text",
        "Status__c": "Success",
        "TokensConsumed__c": 1000 * i,
        "AwuCount__c": 1,
        "ActionInput__c": json.dumps({"order": i}),
        "StartTime__c": _stamp(i),
    } for i in range(1, N_RECORDS + 1)]


CSV_HEADER = ("EVENT_TYPE,TIMESTAMP_DERIVED,REQUEST_ID,ORGANIZATION_ID,USER_ID,SESSION_KEY,"
              "AGENT_ID,ACTION_NAME,ACTION_TYPE,CHANNEL,STATUS,PROMPT_TOKENS,COMPLETION_TOKENS,"
              "TOTAL_TOKENS,AWU_COUNT,WORK_ITEM_ID")


def _csv(rows: int) -> bytes:
    lines = [CSV_HEADER] + [
        f"AgentAction,2026-10-05T00:{i % 60:02d}:00.123Z,REQ{i:08d},{ORG_ID},005MOCK00000001,"
        f"S{i % 3},0XxMOCK00000001,GetOrderHistory,Query,Text,Success,100,50,150,1,"
        for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def write_snapshot(root: Path, cert_pem: bytes, **org_extra: Any) -> Path:
    (root / "objects").mkdir(parents=True)
    (root / "logfiles").mkdir()
    (root / "org.json").write_text(json.dumps({
        "organization_id": ORG_ID, "is_sandbox": True, "api_version": VERSION,
        "username": USERNAME, "consumer_key": CONSUMER_KEY, "certificate": "app.crt",
        **org_extra}))
    (root / "app.crt").write_bytes(cert_pem)
    with (root / "objects" / "AgentWorkItem.jsonl").open("w") as handle:
        for record in _work_items():
            handle.write(json.dumps(record) + "\n")
    (root / "objects" / "Case.jsonl").write_text(json.dumps({
        "Id": to18("500MOCK00000001"), "Status": "Closed", "IsClosed": True,
        "ClosedDate": _stamp(30), "CreatedDate": _stamp(0), "SystemModstamp": _stamp(30)}) + "\n")
    big = _csv(4000)
    elf = [{"Id": ELF_ID, "EventType": "AgentAction", "LogDate": "2026-10-05T00:00:00.000+0000",
            "Interval": "Daily", "Sequence": 0, "CreatedDate": _stamp(600),
            "SystemModstamp": _stamp(600), "LogFileLength": len(big), "LogFileFieldNames": CSV_HEADER},
           {"Id": ELF_ID2, "EventType": "AgentAction", "LogDate": "2026-10-05T01:00:00.000+0000",
            "Interval": "Hourly", "Sequence": 1, "CreatedDate": _stamp(400),
            "SystemModstamp": _stamp(400), "LogFileLength": 0, "LogFileFieldNames": CSV_HEADER}]
    (root / "objects" / "EventLogFile.jsonl").write_text("".join(json.dumps(r) + "\n" for r in elf))
    (root / "logfiles" / f"{ELF_ID}.csv").write_bytes(big)
    (root / "logfiles" / f"{ELF_ID2}.csv").write_bytes(_csv(3))
    return root


@pytest.fixture(scope="module")
def app_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    return _key_and_cert()


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory, app_key: tuple[rsa.RSAPrivateKey, bytes]) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("org"), app_key[1])


@pytest.fixture()
def org(snapshot: Path) -> MockOrg:
    return MockOrg.from_snapshot(snapshot, page_size=10)


@pytest.fixture()
def running(org: MockOrg, tmp_path: Path) -> Iterator[Any]:
    with serve(org, tls_dir=tmp_path / "tls") as live:
        yield live


def _client(live: Any) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(live.ca_pem))
    return httpx.Client(base_url=live.url, verify=context, trust_env=False, timeout=10)


@pytest.fixture()
def client(running: Any) -> Iterator[httpx.Client]:
    with _client(running) as http:
        yield http


def make_jwt(key: rsa.RSAPrivateKey, aud: str, **claims: Any) -> str:
    payload: dict[str, Any] = {"iss": CONSUMER_KEY, "sub": USERNAME, "aud": aud,
                               "exp": int(time.time()) + 180}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm="RS256")


def _token_form(assertion: str) -> dict[str, str]:
    return {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}


def login(http: httpx.Client, key: rsa.RSAPrivateKey, aud: str) -> str:
    response = http.post("/services/oauth2/token", data=_token_form(make_jwt(key, aud)))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture()
def authed(client: httpx.Client, running: Any, app_key: tuple[rsa.RSAPrivateKey, bytes]) -> httpx.Client:
    client.headers["Authorization"] = f"Bearer {login(client, app_key[0], running.url)}"
    return client


def local_token(org: MockOrg, key: rsa.RSAPrivateKey, base: str = "https://127.0.0.1") -> str:
    req = MockRequest("POST", "/services/oauth2/token",
                      headers=Headers({"Content-Type": "application/x-www-form-urlencoded"}),
                      body=httpx.QueryParams(_token_form(make_jwt(key, base))).__str__().encode(),
                      base_url=base)
    response = org.handle(req)
    assert response.status == 200, response.read()
    token: str = response.json()["access_token"]
    return token


def local_get(org: MockOrg, token: str, path: str, **query: str) -> Any:
    return org.handle(MockRequest("GET", path, query=query,
                                  headers=Headers({"Authorization": f"Bearer {token}"})))


Q = f"/services/data/v{VERSION}/query"


# ------------------------------------------------------------------------- OAuth


def test_jwt_bearer_success_over_https(client: httpx.Client, running: Any, app_key: Any) -> None:
    response = client.post("/services/oauth2/token", data=_token_form(make_jwt(app_key[0], running.url)))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "instance_url", "id", "token_type", "issued_at", "scope"}
    assert body["instance_url"] == running.url and body["token_type"] == "Bearer"
    assert body["id"].startswith(f"{running.url}/id/{to18(ORG_ID)}/005")
    assert body["issued_at"].isdigit()
    # a trailing slash on aud is tolerated
    ok = client.post("/services/oauth2/token", data=_token_form(make_jwt(app_key[0], running.url + "/")))
    assert ok.status_code == 200


@pytest.mark.parametrize(("claims", "error", "description"), [
    ({"iss": "someone-else"}, "invalid_client_id", "client identifier invalid"),
    ({"aud": "https://login.salesforce.com"}, "invalid_grant", "audience is invalid"),
    ({"sub": "intruder@example.com"}, "invalid_grant", "user hasn't approved this consumer"),
    ({"exp": int(time.time()) - 10}, "invalid_grant", "expired authorization code"),
    ({"exp": None}, "invalid_grant", "exp must be a number"),
    ({"exp": str(int(time.time()) + 100)}, "invalid_grant", "exp must be a number"),
])
def test_jwt_rejections_over_https(client: httpx.Client, running: Any, app_key: Any,
                                   claims: dict[str, Any], error: str, description: str) -> None:
    claims = {"aud": running.url, **claims}
    response = client.post("/services/oauth2/token", data=_token_form(make_jwt(app_key[0], **claims)))
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert description in response.json()["error_description"]


def test_jwt_signed_with_another_key_is_refused(client: httpx.Client, running: Any) -> None:
    other, _ = _key_and_cert()
    response = client.post("/services/oauth2/token", data=_token_form(make_jwt(other, running.url)))
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant",
                               "error_description": "invalid assertion: signature does not verify"}


def test_token_endpoint_rejects_other_grants_and_garbage(client: httpx.Client) -> None:
    wrong = client.post("/services/oauth2/token", data={"grant_type": "password", "assertion": "x"})
    assert wrong.status_code == 400 and wrong.json()["error"] == "unsupported_grant_type"
    garbage = client.post("/services/oauth2/token", data=_token_form("not.a.jwt"))
    assert garbage.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}
    as_json = client.post("/services/oauth2/token", json=_token_form("x"))
    assert as_json.json()["error"] == "unsupported_grant_type"


def test_accept_auds_from_org_json(tmp_path: Path, app_key: Any) -> None:
    root = write_snapshot(tmp_path / "org", app_key[1], accept_auds=["https://login.salesforce.com/"])
    org = MockOrg.from_snapshot(root)
    key = app_key[0]
    for aud, status in (("https://login.salesforce.com", 200), ("https://127.0.0.1", 200),
                        ("https://test.salesforce.com", 400)):
        req = MockRequest("POST", "/services/oauth2/token",
                          headers=Headers({"content-type": "application/x-www-form-urlencoded"}),
                          body=str(httpx.QueryParams(_token_form(make_jwt(key, aud)))).encode())
        assert org.handle(req).status == status, aud


def test_api_needs_a_valid_bearer_token(client: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = client.get(f"/services/data/v{VERSION}/limits", headers=headers)
        assert response.status_code == 401
        assert response.json() == [{"message": "Session expired or invalid",
                                    "errorCode": "INVALID_SESSION_ID"}]


# -------------------------------------------------------------------- REST basics


def test_versions_and_version_ceiling(authed: httpx.Client) -> None:
    versions = authed.get("/services/data/").json()
    assert versions[-1] == {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}
    assert versions[0]["version"] == "20.0"
    assert authed.get("/services/data/v62.0/limits").status_code == 200
    for path in ("/services/data/v63.0/limits", "/services/data/v19.0/limits",
                 "/services/data/v62/limits", "/services/data/v62.0/nowhere"):
        response = authed.get(path)
        assert response.status_code == 404, path
        assert response.json() == [{"errorCode": "NOT_FOUND",
                                    "message": "The requested resource does not exist"}]
    assert authed.get("/elsewhere").status_code == 404
    post = authed.post(f"{Q}/", params={"q": "SELECT Id FROM Case"})
    assert post.status_code == 405 and post.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_limit_info_header_and_limits(authed: httpx.Client, org: MockOrg) -> None:
    org.faults.api_usage(14000, 15000)
    first = authed.get(f"/services/data/v{VERSION}/limits")
    assert first.headers["Sforce-Limit-Info"] == "api-usage=14001/15000"
    limits = first.json()
    assert limits["DailyApiRequests"] == {"Max": 15000, "Remaining": 999}
    # Salesforce lists every limit as {"Max", "Remaining"}; the others do not move
    assert {"DailyBulkApiBatches", "DataStorageMB", "FileStorageMB", "SingleEmail"} <= set(limits)
    assert all(set(v) == {"Max", "Remaining"} and v["Remaining"] <= v["Max"] for v in limits.values())
    second = authed.get(f"{Q}/", params={"q": "SELECT Id FROM Case"})
    assert second.headers["Sforce-Limit-Info"] == "api-usage=14002/15000"


def test_describe(authed: httpx.Client) -> None:
    body = authed.get(f"/services/data/v{VERSION}/sobjects/AgentWorkItem/describe").json()
    assert body["name"] == "AgentWorkItem"
    fields = {f["name"]: f for f in body["fields"]}
    assert {"Id", "CreatedDate", "SystemModstamp", "TokensConsumed__c", "ActionInput__c"} <= set(fields)
    assert "ErrorCode__c" not in fields and "CaseId__c" not in fields  # no record carries them
    assert fields["ActionInput__c"]["type"] == "textarea"
    assert fields["ActionInput__c"]["filterable"] is False and fields["ActionInput__c"]["sortable"] is False
    assert fields["SystemModstamp"] == {**fields["SystemModstamp"], "type": "datetime",
                                        "filterable": True, "sortable": True, "nillable": False}
    assert fields["TokensConsumed__c"]["type"] == "double"
    elf = authed.get(f"/services/data/v{VERSION}/sobjects/eventlogfile/describe").json()
    elf_fields = {f["name"]: f["type"] for f in elf["fields"]}
    assert elf_fields["Sequence"] == "int" and elf_fields["Interval"] == "picklist"
    assert elf_fields["LogFile"] == "base64" and elf_fields["LogFileFieldNames"] == "textarea"
    old = authed.get("/services/data/v36.0/sobjects/EventLogFile/describe").json()
    assert "Interval" not in {f["name"] for f in old["fields"]}
    org_fields = authed.get(f"/services/data/v{VERSION}/sobjects/Organization/describe").json()
    assert {"Id", "IsSandbox", "Name"} <= {f["name"] for f in org_fields["fields"]}
    assert authed.get(f"/services/data/v{VERSION}/sobjects/Nope__c/describe").status_code == 404


def test_organization_query(authed: httpx.Client) -> None:
    body = authed.get(f"{Q}/", params={"q": "SELECT Id, IsSandbox, Name FROM Organization"}).json()
    assert body["totalSize"] == 1 and body["done"] is True
    [record] = body["records"]
    assert record["Id"] == to18(ORG_ID) and record["IsSandbox"] is True
    assert record["attributes"]["type"] == "Organization"


def test_query_errors_over_http(authed: httpx.Client) -> None:
    cases = {
        "SELECT Id FROM AgentWorkItem WHERE SystemModstamp > '2026-10-05T00:00:00Z'": "INVALID_FIELD",
        "SELECT Id FROM AgentWorkItem WHERE ActionInput__c = 'x'": "INVALID_FIELD",
        "SELECT Id FROM Nope": "INVALID_TYPE",
        "SELECT Id FROM AgentWorkItem WHERE Status__c = 'a' AND Id = null OR Id = null": "MALFORMED_QUERY",
    }
    for soql, code in cases.items():
        response = authed.get(Q, params={"q": soql})
        assert response.status_code == 400 and response.json()[0]["errorCode"] == code, soql
    missing = authed.get(Q)
    assert missing.status_code == 400 and missing.json()[0]["errorCode"] == "MALFORMED_QUERY"
    stale = authed.get(f"{Q}/01gMOCK99999999999-10")
    assert stale.status_code == 400 and stale.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


# --------------------------------------------------------------------- pagination

SOQL_ALL = "SELECT Id, SystemModstamp, TokensConsumed__c FROM AgentWorkItem ORDER BY SystemModstamp, Id"


@pytest.mark.parametrize("trailing_slash", [False, True])
def test_pagination_follows_next_records_url(authed: httpx.Client, org: MockOrg, trailing_slash: bool) -> None:
    page = authed.get(f"{Q}/" if trailing_slash else Q, params={"q": SOQL_ALL}).json()
    pages = [page]
    while not page["done"]:
        next_url = page["nextRecordsUrl"]
        assert next_url.startswith(f"/services/data/v{VERSION}/query/01gMOCK")
        if trailing_slash:
            org.add_records("AgentWorkItem", [{"SystemModstamp": _stamp(1)}])  # not in this cursor
        page = authed.get(next_url + ("/" if trailing_slash else "")).json()
        pages.append(page)
    assert [len(p["records"]) for p in pages] == [10, 10, 5]
    assert all(p["totalSize"] == N_RECORDS for p in pages)
    assert "nextRecordsUrl" not in pages[-1]
    records = [r for p in pages for r in p["records"]]
    assert [r["Id"] for r in records] == [to18(f"0BzMOCK{i:08d}") for i in range(1, N_RECORDS + 1)]
    first = records[0]
    assert list(first) == ["attributes", "Id", "SystemModstamp", "TokensConsumed__c"]
    assert first["TokensConsumed__c"] == 1000.0 and first["SystemModstamp"] == _stamp(1)
    assert first["attributes"] == {"type": "AgentWorkItem",
                                   "url": f"/services/data/v{VERSION}/sobjects/AgentWorkItem/{first['Id']}"}


def test_long_text_queries_get_smaller_pages(snapshot: Path, app_key: Any) -> None:
    org = MockOrg.from_snapshot(snapshot, page_size=2000, long_text_page_size=4)
    token = local_token(org, app_key[0])
    plain = local_get(org, token, Q, q="SELECT Id FROM AgentWorkItem").json()
    assert len(plain["records"]) == N_RECORDS and plain["done"] is True
    wide = local_get(org, token, Q, q="SELECT Id, ActionInput__c FROM AgentWorkItem").json()
    assert len(wide["records"]) == 4 and wide["done"] is False


def test_on_request_hook_can_insert_rows_while_paging(authed: httpx.Client, org: MockOrg) -> None:
    seen: list[int | None] = []

    def hook(request: MockRequest, page_no: int | None) -> None:
        seen.append(page_no)
        if page_no == 0:  # a late row with the same SystemModstamp as the first page's edge
            org.add_records("AgentWorkItem", [{"SystemModstamp": _stamp(10), "Status__c": "Late"}])

    org.on_request = hook
    page = authed.get(Q, params={"q": SOQL_ALL}).json()
    while not page["done"]:
        page = authed.get(page["nextRecordsUrl"]).json()
    assert seen == [0, 1, 2]
    fresh = authed.get(Q, params={"q": "SELECT Id FROM AgentWorkItem WHERE SystemModstamp = "
                                        "2026-10-05T00:10:00Z"}).json()
    assert fresh["totalSize"] == 2


# ------------------------------------------------------------------ simple-salesforce


def test_simple_salesforce_queries_the_https_mock(running: Any, authed: httpx.Client) -> None:
    token = authed.headers["Authorization"].split()[1]
    session = requests.Session()
    session.trust_env = False
    session.verify = str(running.ca_pem)
    sf = Salesforce(instance_url=running.url, session_id=token, session=session, version=VERSION)
    result = sf.query_all("SELECT Id, TokensConsumed__c, StartTime__c FROM AgentWorkItem "
                          "WHERE SystemModstamp > 2026-10-05T00:02:00Z ORDER BY SystemModstamp")
    assert result["totalSize"] == N_RECORDS - 2 and len(result["records"]) == N_RECORDS - 2
    assert result["records"][0]["Id"] == to18("0BzMOCK00000003")
    assert sf.api_usage["api-usage"].total == 15000
    sobject = sf.AgentWorkItem
    assert isinstance(sobject, SFType)
    assert sobject.describe()["name"] == "AgentWorkItem"
    org_row = sf.query("SELECT IsSandbox FROM Organization")["records"][0]
    assert org_row["IsSandbox"] is True
    session.close()


# ------------------------------------------------------------------------ LogFile

LOGFILE = f"/services/data/v{VERSION}/sobjects/EventLogFile/{ELF_ID}/LogFile"


def test_logfile_plain_stream(authed: httpx.Client, snapshot: Path) -> None:
    expected = (snapshot / "logfiles" / f"{ELF_ID}.csv").read_bytes()
    assert len(expected) > 3 * 64 * 1024
    with authed.stream("GET", LOGFILE, headers={"Accept-Encoding": "identity"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv"
        assert int(response.headers["content-length"]) == len(expected)
        assert "content-encoding" not in response.headers
        body = b"".join(response.iter_bytes())
    assert body == expected


def test_logfile_gzip_stream(authed: httpx.Client, snapshot: Path) -> None:
    expected = (snapshot / "logfiles" / f"{ELF_ID}.csv").read_bytes()
    with authed.stream("GET", LOGFILE, headers={"Accept-Encoding": "gzip"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["transfer-encoding"] == "chunked"
        raw = b"".join(response.iter_raw())
    assert gzip.decompress(raw) == expected and len(raw) < len(expected)
    decoded = authed.get(LOGFILE, headers={"Accept-Encoding": "gzip, deflate"})
    assert decoded.content == expected


def test_logfile_unknown_id_and_15_char_id(authed: httpx.Client) -> None:
    missing = authed.get(f"/services/data/v{VERSION}/sobjects/EventLogFile/0ATMOCK00000099/LogFile")
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
    short = authed.get(f"/services/data/v{VERSION}/sobjects/EventLogFile/{ELF_ID[:15]}/LogFile")
    assert short.status_code == 200 and short.content.startswith(b"EVENT_TYPE,")


def test_logfile_field_in_query_is_its_url(authed: httpx.Client) -> None:
    body = authed.get(Q, params={"q": "SELECT Id, LogFile FROM EventLogFile ORDER BY CreatedDate"}).json()
    assert body["records"][0]["LogFile"] == f"/services/data/v{VERSION}/sobjects/EventLogFile/{ELF_ID2}/LogFile"


# ------------------------------------------------------------------------- faults


def test_token_expiry_fault(authed: httpx.Client, running: Any, org: MockOrg, app_key: Any) -> None:
    org.faults.expire_token_after(2)
    token = login(authed, app_key[0], running.url)
    headers = {"Authorization": f"Bearer {token}"}
    statuses = [authed.get(f"/services/data/v{VERSION}/limits", headers=headers).status_code
                for _ in range(3)]
    assert statuses == [200, 200, 401]
    fresh = {"Authorization": f"Bearer {login(authed, app_key[0], running.url)}"}
    assert authed.get(f"/services/data/v{VERSION}/limits", headers=fresh).status_code == 200
    org.revoke_tokens()
    assert authed.get(f"/services/data/v{VERSION}/limits", headers=fresh).status_code == 401


@pytest.mark.parametrize(("switch", "status", "code", "message"), [
    (lambda f: f.unavailable(2), 503, "SERVER_UNAVAILABLE", "Service Unavailable"),
    (lambda f: f.lock_row(2), 400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access"),
    (lambda f: f.lock_row(2, status=500), 500, "UNABLE_TO_LOCK_ROW", "unable to obtain"),
    (lambda f: f.rate_limit(2), 429, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded"),
])
def test_burst_faults(authed: httpx.Client, org: MockOrg, switch: Any, status: int, code: str,
                      message: str) -> None:
    switch(org.faults)
    responses = [authed.get(f"/services/data/v{VERSION}/limits") for _ in range(3)]
    assert [r.status_code for r in responses] == [status, status, 200]
    assert responses[0].json()[0]["errorCode"] == code
    assert message in responses[0].json()[0]["message"]
    assert "Sforce-Limit-Info" in responses[0].headers


def test_daily_limit_fault(authed: httpx.Client, org: MockOrg) -> None:
    org.faults.daily_limit()
    for _ in range(2):
        response = authed.get(Q, params={"q": "SELECT Id FROM Case"})
        assert response.status_code == 403
        assert response.json() == [{"message": "TotalRequests Limit exceeded.",
                                    "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    org.faults.daily_limit(False)
    assert authed.get(Q, params={"q": "SELECT Id FROM Case"}).status_code == 200


def test_cut_logfile_over_https(authed: httpx.Client, org: MockOrg) -> None:
    org.faults.cut_logfile(1)
    with pytest.raises(httpx.RemoteProtocolError):
        authed.get(LOGFILE, headers={"Accept-Encoding": "identity"})
    assert authed.get(LOGFILE, headers={"Accept-Encoding": "identity"}).status_code == 200
    org.faults.cut_logfile(1)
    with pytest.raises(httpx.TransportError):
        authed.get(LOGFILE, headers={"Accept-Encoding": "gzip"})
    assert authed.get(LOGFILE, headers={"Accept-Encoding": "gzip"}).status_code == 200


def test_cut_logfile_for_one_file_in_process(org: MockOrg, app_key: Any) -> None:
    token = local_token(org, app_key[0])
    org.faults.cut_logfile(1, file_id=ELF_ID)
    other = local_get(org, token, f"/services/data/v{VERSION}/sobjects/EventLogFile/{ELF_ID2}/LogFile")
    assert other.read().startswith(b"EVENT_TYPE")
    cut = local_get(org, token, LOGFILE)
    declared = int(cut.headers["Content-Length"])
    received = bytearray()
    with pytest.raises(TruncatedBody):
        for chunk in cut.body:
            received += chunk
    assert len(received) == declared // 2
    assert len(local_get(org, token, LOGFILE).read()) == declared


def test_faults_parse() -> None:
    faults = Faults.parse("expire_token_after=50, unavailable=3,rate_limit=2,cut_logfile=1,"
                          "lock_row_status=500,lock_row=1,api_usage=14000/15000,daily_limit=0")
    state = faults.describe()
    assert state["expire_token_after"] == 50 and state["unavailable"] == 3
    assert state["rate_limit"] == 2 and state["cut_logfile"] == 1 and state["lock_row"] == 1
    assert state["lock_row_status"] == 500 and faults.usage() == (14000, 15000)
    assert Faults.parse("").describe()["unavailable"] == 0
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        Faults.parse("unavailable=1,explode=2")
    with pytest.raises(ValueError, match="fault 'unavailable' needs a non-negative integer"):
        Faults.parse("unavailable=lots")
    with pytest.raises(ValueError, match="needs a value"):
        Faults.parse("rate_limit")


def test_faults_parse_mutation_keys() -> None:
    state = Faults.parse("republish_after=3,republish_id=0ATMOCK00000002AAA,republish_same_id=1,"
                         "late_hourly=2,insert_at_page_edge=4").describe()
    assert (state["republish_after"], state["republish_id"], state["republish_same_id"]) == (
        3, "0ATMOCK00000002", True)
    assert state["late_hourly"] == 2 and state["insert_at_page_edge"] == 4
    alone = Faults.parse("republish_id=0ATMOCK00000002").describe()  # implies after=1
    assert alone["republish_after"] == 1 and alone["republish_same_id"] is False
    assert Faults.parse("republish_same_id=1").describe()["republish_after"] == 1
    off = Faults.parse("").describe()
    assert off["republish_after"] == off["late_hourly"] == off["insert_at_page_edge"] == 0
    for bad in ("late_hourly=soon", "insert_at_page_edge=-1", "republish_after=x", "republish_same_id=y"):
        key = bad.split("=")[0]
        with pytest.raises(ValueError, match=f"fault '{key}' needs a non-negative integer"):
            Faults.parse(bad)
    with pytest.raises(ValueError, match="needs a value"):
        Faults.parse("republish_id=")


def test_unknown_republish_id_is_refused_at_start(snapshot: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fault 'republish_id': no EventLogFile 0ATMOCK00000099"):
        MockOrg.from_snapshot(snapshot, faults=Faults.parse("republish_id=0ATMOCK00000099"))
    with pytest.raises(ValueError, match="fault 'republish_id'"):
        main(snapshot, 0, tmp_path / "tls", "republish_id=0ATMOCK00000099")


NOW = datetime(2026, 10, 9, 12, 0, 0, tzinfo=timezone.utc)
NOW_WIRE = "2026-10-09T12:00:00.000+0000"
ELF_SOQL = ("SELECT Id, Interval, LogDate, Sequence, CreatedDate, SystemModstamp, LogFileLength "
            "FROM EventLogFile WHERE EventType = 'AgentAction' ORDER BY CreatedDate, Id")


def _clocked(snapshot: Path, app_key: Any, **kwargs: Any) -> tuple[MockOrg, str]:
    org = MockOrg.from_snapshot(snapshot, clock=lambda: NOW, **kwargs)
    return org, local_token(org, app_key[0])


def _download(org: MockOrg, token: str, file_id: str) -> bytes:
    response = local_get(org, token, f"/services/data/v{VERSION}/sobjects/EventLogFile/{file_id}/LogFile")
    assert response.status == 200
    return response.read()


def _csv_rows(body: bytes) -> list[list[str]]:
    return [line.split(",") for line in body.decode().splitlines()]


def _assert_republished(old: bytes, new: bytes) -> None:
    """One row with TOTAL_TOKENS +1000 and AWU_COUNT +1, one ELF-only copy of it appended."""
    before, after = _csv_rows(old), _csv_rows(new)
    header = before[0]
    col = {name: i for i, name in enumerate(header)}
    assert after[0] == header and len(after) == len(before) + 1
    changed = [i for i in range(1, len(before)) if before[i] != after[i]]
    assert changed == [1]  # no row has a WORK_ITEM_ID here: the first row is changed
    row, was = after[1], before[1]
    assert int(row[col["TOTAL_TOKENS"]]) == int(was[col["TOTAL_TOKENS"]]) + 1000
    assert float(row[col["AWU_COUNT"]]) == float(was[col["AWU_COUNT"]]) + 1
    assert [c for c, a, b in zip(header, row, was, strict=True) if a != b] == ["TOTAL_TOKENS", "AWU_COUNT"]
    added = after[-1]
    assert [c for c, a, b in zip(header, added, was, strict=True) if a != b] == ["REQUEST_ID", "SESSION_KEY"]
    assert added[col["WORK_ITEM_ID"]] == "" and len(added[col["REQUEST_ID"]]) == 22
    assert added[col["REQUEST_ID"]] not in {r[col["REQUEST_ID"]] for r in before[1:]}


def test_republish_after_n_downloads_as_a_new_file(snapshot: Path, app_key: Any) -> None:
    org, token = _clocked(snapshot, app_key)
    org.faults.republish_after(2)
    original = (snapshot / "logfiles" / f"{ELF_ID}.csv").read_bytes()
    assert _download(org, token, ELF_ID2) and len(org.records("EventLogFile")) == 2
    assert _download(org, token, ELF_ID) == original  # the 2nd download is served whole …
    files = local_get(org, token, Q, q=ELF_SOQL).json()["records"]  # … then the re-publish
    assert len(files) == 3 and org.faults.describe()["republish_after"] == 0
    new = files[-1]
    assert new["Id"] not in (ELF_ID, ELF_ID2) and new["Id"].startswith("0AT")
    assert (new["Interval"], new["LogDate"], new["Sequence"]) == ("Daily", "2026-10-05T00:00:00.000+0000", 0)
    assert new["CreatedDate"] == new["SystemModstamp"] == NOW_WIRE
    body = _download(org, token, new["Id"])
    assert new["LogFileLength"] == float(len(body))
    _assert_republished(original, body)
    assert _download(org, token, ELF_ID) == original  # the old file is untouched
    assert len(local_get(org, token, Q, q=ELF_SOQL).json()["records"]) == 3  # once only


def test_republish_same_id_over_https(authed: httpx.Client, org: MockOrg, snapshot: Path) -> None:
    org.faults.republish_after(1, file_id=ELF_ID2, same_id=True)
    hourly = f"/services/data/v{VERSION}/sobjects/EventLogFile/{ELF_ID2}/LogFile"
    original = (snapshot / "logfiles" / f"{ELF_ID2}.csv").read_bytes()
    assert authed.get(hourly).content == original
    files = authed.get(Q, params={"q": ELF_SOQL}).json()["records"]
    assert [f["Id"] for f in files] == [ELF_ID, ELF_ID2]  # same Id, now the newest
    assert files[1]["CreatedDate"] > "2026-11" and files[1]["Interval"] == "Hourly"
    body = authed.get(hourly).content
    assert files[1]["LogFileLength"] == float(len(body))
    _assert_republished(original, body)


def test_late_hourly_files_appear_after_n_listings(snapshot: Path, app_key: Any) -> None:
    org, token = _clocked(snapshot, app_key, faults=Faults.parse("late_hourly=2"))
    listing = [local_get(org, token, Q, q=ELF_SOQL).json()["records"] for _ in range(3)]
    assert [[f["Id"] for f in files] for files in listing] == [[ELF_ID], [ELF_ID], [ELF_ID, ELF_ID2]]
    late = listing[2][1]
    assert late["CreatedDate"] == late["SystemModstamp"] == NOW_WIRE and late["Interval"] == "Hourly"
    assert _download(org, token, ELF_ID2) == (snapshot / "logfiles" / f"{ELF_ID2}.csv").read_bytes()

    org.faults.late_hourly(5)  # switchable per test: hidden at the next call, even by Id …
    assert local_get(org, token, f"/services/data/v{VERSION}/sobjects/EventLogFile/{ELF_ID2}").status == 404
    assert local_get(org, token, f"/services/data/v{VERSION}/sobjects/EventLogFile/{ELF_ID2}/LogFile").status == 404
    assert local_get(org, token, Q, q="SELECT COUNT() FROM EventLogFile").json()["totalSize"] == 1
    org.faults.late_hourly(0)  # … and shown again once switched off
    assert local_get(org, token, Q, q="SELECT COUNT() FROM EventLogFile").json()["totalSize"] == 2


def test_insert_at_page_edge_once(authed: httpx.Client, org: MockOrg) -> None:
    org.faults.insert_at_page_edge(3)
    page = authed.get(Q, params={"q": SOQL_ALL}).json()
    edge = page["records"][-1]
    assert len(page["records"]) == 10 and edge["SystemModstamp"] == "2026-10-05T00:10:00.000+0000"
    seen = [r["Id"] for r in page["records"]]
    while not page["done"]:
        page = authed.get(page["nextRecordsUrl"]).json()
        seen += [r["Id"] for r in page["records"]]
    assert len(seen) == N_RECORDS  # the query's own pages are a snapshot
    same = authed.get(Q, params={"q": "SELECT Id, SessionId__c, StartTime__c, ActionName__c FROM "
                                      "AgentWorkItem WHERE SystemModstamp = 2026-10-05T00:10:00Z "
                                      "ORDER BY Id"}).json()["records"]
    assert same[0]["Id"] == edge["Id"] and len(same) == 4
    new = same[1:]
    assert all(r["Id"] > max(seen) for r in new) and len({r["Id"] for r in new}) == 3
    assert [r["Id"][:15] for r in new] == ["0BzMOCK00000026", "0BzMOCK00000027", "0BzMOCK00000028"]
    sessions = {r["SessionId__c"] for r in new}
    assert len(sessions) == 3 and same[0]["SessionId__c"] not in sessions
    assert {(r["StartTime__c"], r["ActionName__c"]) for r in new} == {
        (same[0]["StartTime__c"], same[0]["ActionName__c"])}
    assert authed.get(Q, params={"q": SOQL_ALL}).json()["totalSize"] == N_RECORDS + 3  # once only


# ----------------------------------------------------------------- live-org mutation


def test_mutation_api_and_request_log(authed: httpx.Client, org: MockOrg) -> None:
    [new_id] = org.add_records("AgentWorkItem", [{"Status__c": "Error", "ErrorCode__c": "TIMEOUT",
                                                  "TokensConsumed__c": 5}])
    assert len(new_id) == 18 and new_id.startswith("0Bz")
    found = authed.get(Q, params={"q": "SELECT Id, ErrorCode__c FROM AgentWorkItem "
                                       "WHERE ErrorCode__c = 'TIMEOUT'"}).json()
    assert [r["Id"] for r in found["records"]] == [new_id]  # a new field now exists
    org.update_record("AgentWorkItem", to18("0BzMOCK00000001"), {"TokensConsumed__c": 22000},
                      system_modstamp=datetime(2026, 10, 7, tzinfo=timezone.utc))
    changed = authed.get(Q, params={"q": "SELECT Id, TokensConsumed__c, SystemModstamp FROM "
                                         "AgentWorkItem WHERE SystemModstamp >= 2026-10-07T00:00:00Z AND "
                                         "SystemModstamp < 2026-10-08T00:00:00Z"})
    [row] = changed.json()["records"]
    assert row["TokensConsumed__c"] == 22000.0 and row["SystemModstamp"] == "2026-10-07T00:00:00.000+0000"
    with pytest.raises(KeyError):
        org.update_record("AgentWorkItem", "0BzMOCK99999999", {})

    org.request_log.clear()
    body = CSV_HEADER.encode() + b"\nAgentAction,x\n"
    elf_id = org.add_logfile({"EventType": "AgentAction", "Interval": "Hourly", "Sequence": 2,
                              "LogDate": "2026-10-06T00:00:00.000+0000",
                              "CreatedDate": "2026-10-06T05:00:00.000+0000"}, body)
    url = f"/services/data/v{VERSION}/sobjects/EventLogFile/{elf_id}/LogFile"
    assert authed.get(url).content == body
    org.add_logfile({"Id": elf_id, "EventType": "AgentAction", "Interval": "Hourly", "Sequence": 2,
                     "LogDate": "2026-10-06T00:00:00.000+0000",
                     "CreatedDate": "2026-10-06T09:00:00.000+0000"}, body + b"AgentAction,y\n")
    assert authed.get(url).content.endswith(b"AgentAction,y\n")
    rows = authed.get(Q, params={"q": f"SELECT CreatedDate, LogFileLength, LogFileFieldNames FROM "
                                      f"EventLogFile WHERE Id = '{elf_id}'"}).json()["records"]
    assert rows[0]["CreatedDate"] == "2026-10-06T09:00:00.000+0000"
    assert rows[0]["LogFileLength"] == float(len(body) + 14) and rows[0]["LogFileFieldNames"] == CSV_HEADER
    downloads = org.request_log.matching("/LogFile")
    assert [(e.method, e.status) for e in downloads] == [("GET", 200), ("GET", 200)]
    queries = org.request_log.matching("/query")
    assert queries[0].params["q"].startswith("SELECT CreatedDate") and queries[0].query.startswith("q=")
    org.request_log.clear()
    assert len(org.request_log) == 0


def test_concurrent_requests_are_safe(running: Any, app_key: Any, org: MockOrg) -> None:
    errors: list[str] = []

    def worker() -> None:
        with _client(running) as http:
            http.headers["Authorization"] = f"Bearer {login(http, app_key[0], running.url)}"
            for _ in range(5):
                response = http.get(Q, params={"q": SOQL_ALL})
                if response.status_code != 200 or response.json()["totalSize"] < N_RECORDS:
                    errors.append(response.text)
                org.add_records("Case", [{"Status": "New", "IsClosed": False}])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(org.records("Case")) == 1 + 30


# ------------------------------------------------- what real clients send (raw HTTP/1.1)


def _tls_socket(live: Any) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(live.ca_pem))
    raw = socket.create_connection((live.host, live.port), timeout=10)
    return context.wrap_socket(raw, server_hostname=live.host)


def _read_response(sock: ssl.SSLSocket, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One response off a kept-alive socket (requests go one at a time: nothing read ahead)."""
    response = http.client.HTTPResponse(sock, method=method)  # type: ignore[arg-type]
    response.begin()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def _chunked(body: bytes, size: int = 100) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
             for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def _head_lines(live: Any, method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {live.host}:{live.port}", *extra, "", ""]
    return "\r\n".join(lines).encode()


def test_chunked_jwt_token_post_then_more_requests_on_the_same_connection(
        running: Any, app_key: Any) -> None:
    """`sf org login jwt` sends its token request chunked, without Content-Length."""
    form = str(httpx.QueryParams(_token_form(make_jwt(app_key[0], running.url)))).encode()
    with _tls_socket(running) as sock:
        sock.sendall(_head_lines(running, "POST", "/services/oauth2/token",
                                 "Content-Type: application/x-www-form-urlencoded",
                                 "Transfer-Encoding: chunked") + _chunked(form))
        status, _, body = _read_response(sock)
        assert status == 200, body
        token = json.loads(body)["access_token"]
        # the same connection answers the next request: nothing of the body was left unread
        sock.sendall(_head_lines(running, "GET", f"/services/data/v{VERSION}/limits",
                                 f"Authorization: Bearer {token}"))
        status, headers, body = _read_response(sock)
        assert status == 200 and json.loads(body)["DailyApiRequests"]["Max"] == 15000
        assert headers["sforce-limit-info"].startswith("api-usage=")
        # a body the org ignores (a chunked GET) is still read to its end
        sock.sendall(_head_lines(running, "GET", "/services/data/", "Transfer-Encoding: chunked")
                     + _chunked(b"x" * 1000))
        assert _read_response(sock)[0] == 200
        sock.sendall(_head_lines(running, "GET", "/services/data/"))
        assert _read_response(sock)[0] == 200


def test_expect_100_continue(running: Any, app_key: Any) -> None:
    form = str(httpx.QueryParams(_token_form(make_jwt(app_key[0], running.url)))).encode()
    with _tls_socket(running) as sock:
        sock.sendall(_head_lines(running, "POST", "/services/oauth2/token",
                                 "Content-Type: application/x-www-form-urlencoded",
                                 f"Content-Length: {len(form)}", "Expect: 100-continue"))
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(form)
        status, _, body = _read_response(sock)
        assert status == 200 and "access_token" in json.loads(body)


def test_head_answers_like_get_without_a_body(authed: httpx.Client, running: Any,
                                              org: MockOrg) -> None:
    token = authed.headers["Authorization"]
    get = authed.get(f"/services/data/v{VERSION}/limits")
    with _tls_socket(running) as sock:
        for path in (f"/services/data/v{VERSION}/limits", "/services/data/",
                     f"/services/data/v{VERSION}/sobjects/EventLogFile/{ELF_ID}/LogFile"):
            sock.sendall(_head_lines(running, "HEAD", path, f"Authorization: {token}"))
            status, headers, body = _read_response(sock, "HEAD")
            assert status == 200 and body == b"", path
        assert headers["content-length"] == str(len(_csv(4000)))  # the LogFile's length
        sock.sendall(_head_lines(running, "HEAD", f"/services/data/v{VERSION}/limits",
                                 f"Authorization: {token}"))
        _, headers, _ = _read_response(sock, "HEAD")
        assert headers["content-length"] == get.headers["content-length"]
        sock.sendall(_head_lines(running, "GET", "/services/data/"))
        assert _read_response(sock)[0] == 200
    assert [e.method for e in org.request_log.matching("/limits")][-1] == "HEAD"
    assert authed.head(f"/services/data/v{VERSION}/limits",
                       headers={"Authorization": "Bearer nope"}).status_code == 401


def test_malformed_request_is_refused_and_the_server_survives(running: Any) -> None:
    with _tls_socket(running) as sock:
        sock.sendall(b"GET /services/data/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        status, _, _ = _read_response(sock)
        assert status == 400
    with _client(running) as http_client:
        assert http_client.get("/services/data/").status_code == 200


# -------------------------------------------------- shapes real clients read


def test_columns_true_answers_column_metadata(authed: httpx.Client, org: MockOrg) -> None:
    q = "SELECT Id, Name, IsSandbox, CreatedBy.Name, CreatedBy.Username FROM Organization"
    body = authed.get(f"{Q}/", params={"q": q, "columns": "true"}).json()
    assert set(body) == {"columnMetadata", "entityName", "groupBy", "idSelected", "keyPrefix"}
    assert (body["entityName"], body["keyPrefix"], body["idSelected"]) == ("Organization", "00D", True)
    columns = body["columnMetadata"]
    assert [c["columnName"] for c in columns] == ["Id", "Name", "IsSandbox", "CreatedBy"]
    assert columns[0]["apexType"] == "Id" and columns[2]["booleanType"] is True
    assert columns[1]["textType"] is True and columns[1]["joinColumns"] == []
    created_by = columns[3]
    assert created_by["apexType"] is None and created_by["foreignKeyName"] == "CreatedById"
    assert [c["columnName"] for c in created_by["joinColumns"]] == ["Name", "Username"]
    assert "records" not in body
    # the records themselves: the parent as a nested record
    [record] = authed.get(f"{Q}/", params={"q": q}).json()["records"]
    assert record["CreatedBy"]["attributes"]["type"] == "User"
    assert record["CreatedBy"]["Username"] == USERNAME
    assert list(record) == ["attributes", "Id", "Name", "IsSandbox", "CreatedBy"]
    bad = authed.get(f"{Q}/", params={"q": "SELECT Nope FROM Case", "columns": "true"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"
    count = authed.get(f"{Q}/", params={"q": "SELECT COUNT() FROM Case", "columns": "true"})
    assert count.json()["columnMetadata"] == []
    assert [e.records for e in org.request_log.matching("/query")][-1] is None


def test_parent_relationship_errors_are_salesforces(authed: httpx.Client) -> None:
    for q, message in (("SELECT Owner.Name FROM Case", "Didn't understand relationship 'Owner'"),
                       ("SELECT CreatedBy.Nope FROM Organization", "No such column 'Nope' on entity 'User'"),
                       ("SELECT Id FROM Organization WHERE CreatedBy.Name = 'x'",
                        "Didn't understand relationship 'CreatedBy'")):
        response = authed.get(f"{Q}/", params={"q": q})
        assert response.status_code == 400 and message in response.json()[0]["message"], q


def test_organization_and_user_standard_fields(authed: httpx.Client) -> None:
    q = ("SELECT Name, InstanceName, IsSandbox, TrialExpirationDate, NamespacePrefix, "
         "OrganizationType FROM Organization")
    [org_row] = authed.get(f"{Q}/", params={"q": q}).json()["records"]
    assert org_row["IsSandbox"] is True and org_row["InstanceName"]
    assert org_row["TrialExpirationDate"] is None and org_row["NamespacePrefix"] is None
    q = f"SELECT Id, Username, Name, Email, IsActive FROM User WHERE Username = '{USERNAME}'"
    [user] = authed.get(f"{Q}/", params={"q": q}).json()["records"]
    assert user["Username"] == USERNAME and user["IsActive"] is True
    assert user["Id"].startswith("005") and user["Email"] == USERNAME


def test_identity_url_and_userinfo(client: httpx.Client, running: Any, app_key: Any) -> None:
    token_body = client.post("/services/oauth2/token",
                             data=_token_form(make_jwt(app_key[0], running.url))).json()
    bearer = {"Authorization": f"Bearer {token_body['access_token']}"}
    identity = client.get(token_body["id"], headers=bearer)
    assert identity.status_code == 200
    body = identity.json()
    assert body["id"] == token_body["id"] and body["username"] == USERNAME
    assert body["organization_id"] == to18(ORG_ID) and body["user_id"].startswith("005")
    assert body["urls"]["rest"] == f"{running.url}/services/data/v{{version}}/"
    latest = client.get(token_body["id"], params={"version": "latest"}, headers=bearer).json()
    assert latest["urls"]["query"] == f"{running.url}/services/data/v{VERSION}/query/"
    info = client.get("/services/oauth2/userinfo", headers=bearer).json()
    assert info["sub"] == token_body["id"] and info["preferred_username"] == USERNAME
    assert info["user_id"] == body["user_id"] and info["organization_id"] == to18(ORG_ID)
    assert client.get("/services/oauth2/userinfo").status_code == 403
    assert client.get(token_body["id"], headers={"Authorization": "Bearer nope"}).text == "Bad_OAuth_Token"
    other = token_body["id"].rsplit("/", 1)[0] + "/005000000000001AAA"
    assert client.get(other, headers=bearer).status_code == 404


def test_describe_is_shaped_like_salesforces(authed: httpx.Client) -> None:
    body = authed.get(f"/services/data/v{VERSION}/sobjects/AgentWorkItem/describe").json()
    assert body["keyPrefix"] == "0Bz" and body["label"] == "Agent Work Item"
    assert body["urls"]["describe"] == f"/services/data/v{VERSION}/sobjects/AgentWorkItem/describe"
    assert {"createable", "updateable", "childRelationships", "recordTypeInfos"} <= set(body)
    fields = {f["name"]: f for f in body["fields"]}
    assert fields["SystemModstamp"]["label"] == "System Modstamp"
    assert fields["SystemModstamp"]["soapType"] == "xsd:dateTime"
    assert fields["Id"]["soapType"] == "tns:ID" and fields["Id"]["createable"] is False
    assert fields["TokensConsumed__c"]["updateable"] is True
    channel = fields["Channel__c"]
    assert {v["value"] for v in channel["picklistValues"]} == {"Text", "Voice"}
    case = authed.get(f"/services/data/v{VERSION}/sobjects/Case/describe").json()
    assert {v["value"] for v in {f["name"]: f for f in case["fields"]}["Status"]["picklistValues"]} >= {"New", "Closed"}
    org_body = authed.get(f"/services/data/v{VERSION}/sobjects/Organization/describe").json()
    created_by = {f["name"]: f for f in org_body["fields"]}["CreatedById"]
    assert created_by["referenceTo"] == ["User"] and created_by["relationshipName"] == "CreatedBy"
    user = authed.get(f"/services/data/v{VERSION}/sobjects/User/describe").json()
    assert {"Organization"} <= {r["childSObject"] for r in user["childRelationships"]}
    listing = authed.get(f"/services/data/v{VERSION}/sobjects").json()["sobjects"]
    assert {s["name"]: s["keyPrefix"] for s in listing}["User"] == "005"


def test_tooling_query(authed: httpx.Client) -> None:
    q = ("SELECT Id, Status, SandboxName, SandboxOrganization FROM SandboxProcess "
         f"WHERE SandboxOrganization = '{ORG_ID}'")
    body = authed.get(f"/services/data/v{VERSION}/tooling/query", params={"q": q}).json()
    assert body == {"size": 0, "totalSize": 0, "done": True, "queryLocator": None,
                    "entityTypeName": "SandboxProcess", "records": []}
    wrong = authed.get(f"/services/data/v{VERSION}/tooling/query", params={"q": "SELECT Id FROM Case"})
    assert wrong.status_code == 400 and wrong.json()[0]["errorCode"] == "INVALID_TYPE"


# ------------------------------------------------------------------------- server


def test_ca_pem_is_written_only_once_the_port_accepts(org: MockOrg, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tls_dir = tmp_path / "fresh" / "tls"
    tls_dir.mkdir(parents=True)
    (tls_dir / "ca.pem").write_text("stale")
    observed: list[bool] = []
    real_replace = os.replace

    def checking_replace(src: Any, dst: Any) -> None:
        assert not (tls_dir / "ca.pem").exists()  # the stale file went before binding
        with socket.create_connection(("127.0.0.1", running_ports[-1]), timeout=2):
            observed.append(True)
        real_replace(src, dst)

    running_ports: list[int] = []
    real_server = server_module.MockOrgServer

    def recording_server(*args: Any, **kwargs: Any) -> Any:
        instance = real_server(*args, **kwargs)
        running_ports.append(instance.port)
        return instance

    monkeypatch.setattr(os, "replace", checking_replace)
    monkeypatch.setattr(server_module, "MockOrgServer", recording_server)
    with serve(org, tls_dir=tls_dir) as live:
        assert observed == [True]
        assert live.ca_pem.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert [p.name for p in tls_dir.iterdir()] == ["ca.pem"]
    assert not live.ca_pem.exists()


def test_untrusting_client_fails_and_server_survives(running: Any) -> None:
    with httpx.Client(verify=ssl.create_default_context(), trust_env=False) as stranger:
        with pytest.raises(httpx.ConnectError):
            stranger.get(running.url + "/services/data/")
    with _client(running) as http:
        assert http.get("/services/data/").status_code == 200


def test_main_bad_snapshot_is_one_line_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing org\.json"):
        main(tmp_path, 0, tmp_path / "tls")
    with pytest.raises(ValueError, match="no such directory"):
        main(tmp_path / "absent", 0, tmp_path / "tls")
    (tmp_path / "org.json").write_text("{}")
    with pytest.raises(ValueError, match="lacks organization_id, api_version, username, consumer_key"):
        main(tmp_path, 0, tmp_path / "tls")
    with pytest.raises(ValueError, match="unknown fault"):
        main(tmp_path, 0, tmp_path / "tls", "nonsense=1")


def test_main_serves_until_sigterm(snapshot: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from connector.mock.server import _cli; "
         "sys.exit(_cli(sys.argv[1:]))", str(snapshot), "0", str(tmp_path / "tls"), "unavailable=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith(f"mock org serving {snapshot} at https://127.0.0.1:")
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        assert line.endswith(f"(CA: {tmp_path / 'tls' / 'ca.pem'})")
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        with httpx.Client(base_url=url, verify=context, trust_env=False) as http:
            assert http.get("/services/data/").status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert stderr == ""
