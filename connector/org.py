"""The organisation a connection reaches: its Id and whether it is a sandbox."""

from __future__ import annotations

from dataclasses import dataclass

from connector.client import SalesforceClient
from connector.errors import SalesforceError

__all__ = ["OrgInfo", "read_org"]


@dataclass(frozen=True)
class OrgInfo:
    org_id: str
    is_sandbox: bool


def read_org(client: SalesforceClient) -> OrgInfo:
    rows = client.query_all("SELECT Id, IsSandbox FROM Organization")
    if not rows:
        raise SalesforceError("the org returned no Organization record")
    return OrgInfo(org_id=str(rows[0]["Id"]), is_sandbox=bool(rows[0].get("IsSandbox")))
