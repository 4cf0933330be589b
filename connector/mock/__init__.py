"""A mock Salesforce org that speaks the REST wire format (SPEC §8).

``MockOrg`` answers requests in-process (a plain request → response function);
``serve`` puts it behind a real HTTPS server on loopback; ``Faults`` injects expired
tokens, 503s, rate limits and cut-off downloads.
"""

from .faults import Faults, TruncatedBody
from .http import Headers, LoggedRequest, MockRequest, MockResponse, RequestLog
from .org import MockOrg
from .server import RunningMockOrg, main, serve
from .snapshot import OrgInfo
from .soql import SoqlError

__all__ = [
    "Faults",
    "TruncatedBody",
    "Headers",
    "LoggedRequest",
    "MockOrg",
    "MockRequest",
    "MockResponse",
    "OrgInfo",
    "RequestLog",
    "RunningMockOrg",
    "main",
    "serve",
    "SoqlError",
]
