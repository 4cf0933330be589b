"""The floor of a first `audit run` (issue 12): a plain client that makes the requests the
connector makes on a first run over a window — the same token exchange, describes, SOQL
(AgentWorkItem in the window, EventLogFile listing, Cases of the window's records) and
LogFile downloads — from the same mock org, and parses them (JSON, CSV). Nothing else: no
store, no reconciliation, no rules. Run as a child process by `benchmarks/scale.py`, which
reads its peak RSS; prints one JSON line of counts.

Usage: python benchmarks/floor.py SNAPSHOT URL CA_PEM SINCE UNTIL NOW
"""

from __future__ import annotations

import csv
import io
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

AWI_SELECT = (
    "Id, SessionId__c, AgentId__c, AgentName__c, ActionName__c, ActionType__c, Channel__c, "
    "Status__c, ErrorCode__c, PromptTokens__c, CompletionTokens__c, TokensConsumed__c, "
    "AwuCount__c, ActionInput__c, UserId__c, CaseId__c, StartTime__c, CreatedDate, "
    "SystemModstamp"
)
ELF_SELECT = (
    "Id, EventType, LogDate, Interval, Sequence, CreatedDate, LogFileLength, LogFileFieldNames"
)


class Floor:
    def __init__(self, snap: Path, url: str, ca_pem: str):
        org = json.loads((snap / "org.json").read_text())
        self.version = org["api_version"]
        ctx = ssl.create_default_context(cafile=ca_pem)
        self.http = httpx.Client(verify=ctx, trust_env=False, timeout=120)
        key = serialization.load_pem_private_key((snap / "app.key").read_bytes(), None)
        claims = {"iss": org["consumer_key"], "sub": org["username"], "aud": url,
                  "exp": int(time.time()) + 180}  # fmt: skip
        resp = self.http.post(
            f"{url}/services/oauth2/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                  "assertion": jwt.encode(claims, key, algorithm="RS256")},  # type: ignore[arg-type]
        )  # fmt: skip
        resp.raise_for_status()
        token = resp.json()
        self.base = f"{token['instance_url']}/services/data/v{self.version}"
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}
        self.requests = 1

    def get_json(self, url: str, **params: str) -> Any:
        self.requests += 1
        resp = self.http.get(url, params=params or None, headers=self.headers)
        resp.raise_for_status()
        return json.loads(resp.content)

    def query(self, soql: str) -> list[dict[str, Any]]:
        page = self.get_json(f"{self.base}/query", q=soql)
        records = list(page["records"])
        while not page["done"]:
            host = self.base.split("/services/")[0]
            page = self.get_json(host + page["nextRecordsUrl"])
            records.extend(page["records"])
        return records

    def logfile_rows(self, file_id: str) -> int:
        """Download one LogFile (gzip, as the connector asks) and parse its CSV."""
        self.requests += 1
        url = f"{self.base}/sobjects/EventLogFile/{file_id}/LogFile"
        headers = {**self.headers, "Accept-Encoding": "gzip"}
        buf = io.BytesIO()
        with self.http.stream("GET", url, headers=headers) as resp:
            resp.raise_for_status()
            for chunk in resp.iter_bytes(65536):
                buf.write(chunk)
        buf.seek(0)
        text = io.TextIOWrapper(buf, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        header = next(reader)
        return sum(1 for row in reader if len(row) == len(header))


def main() -> None:
    snap, url, ca_pem, since, until, now = sys.argv[1:7]
    floor = Floor(Path(snap), url, ca_pem)
    floor.get_json(f"{floor.base}/sobjects/AgentWorkItem/describe")
    floor.get_json(f"{floor.base}/sobjects/EventLogFile/describe")
    awi = floor.query(
        f"SELECT {AWI_SELECT} FROM AgentWorkItem WHERE StartTime__c >= {since} AND "
        f"StartTime__c < {until} AND SystemModstamp <= {now} ORDER BY SystemModstamp, Id"
    )
    files = floor.query(
        f"SELECT {ELF_SELECT} FROM EventLogFile WHERE EventType = 'AgentAction' AND "
        f"LogDate >= {since} AND LogDate < {until} AND CreatedDate <= {now} ORDER BY LogDate, Id"
    )
    log_rows = sum(floor.logfile_rows(f["Id"]) for f in files)
    case_ids = sorted({r["CaseId__c"] for r in awi if r.get("CaseId__c")})
    cases = 0
    for i in range(0, len(case_ids), 200):
        ids = ", ".join(f"'{c}'" for c in case_ids[i : i + 200])
        soql = f"SELECT Id, Status, IsClosed, ClosedDate FROM Case WHERE Id IN ({ids})"
        cases += len(floor.query(soql))
    print(json.dumps({"records": len(awi), "files": len(files), "log_rows": log_rows,
                      "cases": cases, "requests": floor.requests}))  # fmt: skip


if __name__ == "__main__":
    main()
