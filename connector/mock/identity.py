"""The identity side of the mock org: the identity URL the token response names
(``/id/<org id>/<user id>``) and OpenID Connect's ``/services/oauth2/userinfo``, both
answered for the integration user with the fields Salesforce documents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .http import Headers, MockRequest, MockResponse, json_response
from .snapshot import OrgInfo

__all__ = ["Identity"]

_UTC_OFFSET_MS = -8 * 3600 * 1000  # America/Los_Angeles, the integration user's zone
_LAST_MODIFIED = "2020-01-01T00:00:00Z"


class Identity:
    """Answers identity requests for ``info``'s integration user; ``token_ok`` says
    whether a bearer token is live (identity calls are not API calls: not counted)."""

    def __init__(self, info: OrgInfo, token_ok: Callable[[str], bool]) -> None:
        self.info = info
        self.token_ok = token_ok

    def serves(self, path: str) -> bool:
        return path.rstrip("/") == "/services/oauth2/userinfo" or path.startswith("/id/")

    def handle(self, req: MockRequest) -> MockResponse:
        if req.method not in ("GET", "HEAD", "POST"):
            return _text(405, "Method Not Allowed")
        if not self._authorised(req):
            return _text(403, "Bad_OAuth_Token")
        if req.path.startswith("/id/"):
            parts = [p for p in req.path.split("/") if p]
            if len(parts) != 3 or not self._is_us(parts[1], parts[2]):
                return _text(404, "Bad_Id")
            return json_response(200, self.identity(req))
        return json_response(200, self.userinfo(req))

    def _authorised(self, req: MockRequest) -> bool:
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("bearer", "oauth") and token.strip():
            return self.token_ok(token.strip())
        query_token = req.query.get("oauth_token") or req.query.get("access_token")
        return bool(query_token) and self.token_ok(str(query_token))

    def _is_us(self, org_id: str, user_id: str) -> bool:
        return (
            org_id[:15] == self.info.organization_id[:15] and user_id[:15] == self.info.user_id[:15]
        )

    # ------------------------------------------------------------------ answers
    def identity(self, req: MockRequest) -> dict[str, Any]:
        """The identity URL's answer (Salesforce's "Identity URL Response")."""
        info = self.info
        base = req.base_url
        return {
            "id": f"{base}/id/{info.organization_id}/{info.user_id}",
            "asserted_user": True,
            "user_id": info.user_id,
            "organization_id": info.organization_id,
            "username": info.username,
            "nick_name": _nickname(info.username),
            "display_name": "Integration User",
            "email": info.username,
            "email_verified": True,
            "first_name": "Integration",
            "last_name": "User",
            "timezone": "America/Los_Angeles",
            "photos": _photos(base),
            "addr_street": None,
            "addr_city": None,
            "addr_state": None,
            "addr_country": "US",
            "addr_zip": None,
            "mobile_phone": None,
            "mobile_phone_verified": False,
            "is_lightning_login_user": False,
            "status": {"created_date": None, "body": None},
            "urls": self._urls(req),
            "active": True,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": _UTC_OFFSET_MS,
            "last_modified_date": "2020-01-01T00:00:00.000+0000",
            "is_app_installed": True,
        }

    def userinfo(self, req: MockRequest) -> dict[str, Any]:
        """``/services/oauth2/userinfo``: the OpenID Connect claims of the same user."""
        info = self.info
        base = req.base_url
        return {
            "sub": f"{base}/id/{info.organization_id}/{info.user_id}",
            "user_id": info.user_id,
            "organization_id": info.organization_id,
            "preferred_username": info.username,
            "nickname": _nickname(info.username),
            "name": "Integration User",
            "email": info.username,
            "email_verified": True,
            "given_name": "Integration",
            "family_name": "User",
            "zoneinfo": "America/Los_Angeles",
            "photos": _photos(base),
            "profile": f"{base}/{info.user_id}",
            "picture": _photos(base)["picture"],
            "address": {"country": "US"},
            "is_salesforce_integration_user": False,
            "urls": self._urls(req),
            "active": True,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": _UTC_OFFSET_MS,
            "updated_at": _LAST_MODIFIED,
            "is_app_installed": True,
        }

    def _urls(self, req: MockRequest) -> dict[str, str]:
        """The API endpoints; ``{version}`` unless the request names one (or "latest")."""
        version = req.query.get("version") or "{version}"
        if version == "latest":
            version = self.info.api_version
        base = req.base_url
        org = self.info.organization_id
        rest = f"{base}/services/data/v{version}"
        return {
            "enterprise": f"{base}/services/Soap/c/{version}/{org}",
            "metadata": f"{base}/services/Soap/m/{version}/{org}",
            "partner": f"{base}/services/Soap/u/{version}/{org}",
            "rest": f"{rest}/",
            "sobjects": f"{rest}/sobjects/",
            "search": f"{rest}/search/",
            "query": f"{rest}/query/",
            "recent": f"{rest}/recent/",
            "tooling_soap": f"{base}/services/Soap/T/{version}/{org}",
            "tooling_rest": f"{rest}/tooling/",
            "profile": f"{base}/{self.info.user_id}",
            "feeds": f"{rest}/chatter/feeds",
            "groups": f"{rest}/chatter/groups",
            "users": f"{rest}/chatter/users",
            "feed_items": f"{rest}/chatter/feed-items",
            "feed_elements": f"{rest}/chatter/feed-elements",
            "custom_domain": base,
        }


def _nickname(username: str) -> str:
    return username.split("@", 1)[0][:40]


def _photos(base: str) -> dict[str, str]:
    return {
        "picture": f"{base}/profilephoto/005/F",
        "thumbnail": f"{base}/profilephoto/005/T",
    }


def _text(status: int, body: str) -> MockResponse:
    """Identity errors are plain text, not the REST API's JSON error list."""
    return MockResponse(
        status, Headers({"Content-Type": "text/plain;charset=UTF-8"}), body.encode()
    )
