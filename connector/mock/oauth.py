"""OAuth 2.0 for the mock org: the JWT bearer token endpoint (RS256 against the snapshot's
certificate), the access tokens it issues, and the bearer check on every API call."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .http import MockRequest, MockResponse, json_response
from .snapshot import OrgInfo

__all__ = ["JWT_GRANT_TYPE", "OAuth", "Token", "oauth_error"]

JWT_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class Token:
    """An issued access token's state: the calls it has answered."""

    calls: int = 0


def oauth_error(error: str, description: str, status: int = 400) -> MockResponse:
    """An OAuth error body (``error``/``error_description``, not the REST error list)."""
    return json_response(status, {"error": error, "error_description": description})


class OAuth:
    """Issues access tokens for ``info``'s connected app and checks them.

    ``lock`` is the org's lock: token state changes under it like the rest of the org.
    """

    def __init__(self, info: OrgInfo, public_key: RSAPublicKey, lock: threading.RLock) -> None:
        self.info = info
        self.public_key = public_key
        self.lock = lock
        self.tokens: dict[str, Token] = {}

    def token_endpoint(self, req: MockRequest) -> MockResponse:
        """``POST /services/oauth2/token``: a JWT bearer grant, answered with a token."""
        if req.method != "POST":
            return oauth_error("invalid_request", "must use HTTP POST")
        form: dict[str, str] = {}
        if (
            req.headers.get("Content-Type", "")
            .lower()
            .startswith("application/x-www-form-urlencoded")
        ):
            form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != JWT_GRANT_TYPE:
            return oauth_error("unsupported_grant_type", "grant type not supported")
        refusal = self.check_assertion(form.get("assertion", ""), req.base_url)
        if refusal is not None:
            return refusal
        token = f"{self.info.organization_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        with self.lock:
            self.tokens[token] = Token()
        return json_response(
            200,
            {
                "access_token": token,
                "scope": "api",
                "instance_url": req.base_url,
                "id": f"{req.base_url}/id/{self.info.organization_id}/{self.user_id()}",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
            },
        )

    def check_assertion(self, assertion: str, base_url: str) -> MockResponse | None:
        """None if the JWT is acceptable, else the OAuth error Salesforce would give."""
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.info.consumer_key:
            return oauth_error("invalid_client_id", "client identifier invalid")
        if header.get("alg") != "RS256":
            return oauth_error("invalid_grant", "invalid assertion: algorithm must be RS256")
        try:
            jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_aud": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.PyJWTError:
            return oauth_error("invalid_grant", "invalid assertion: signature does not verify")
        audience = claims.get("aud")
        allowed = {base_url.rstrip("/"), *self.info.accept_auds}
        if not isinstance(audience, str) or audience.rstrip("/") not in allowed:
            return oauth_error("invalid_grant", "audience is invalid")
        subject = claims.get("sub")
        if not isinstance(subject, str) or subject.lower() != self.info.username.lower():
            return oauth_error("invalid_grant", "user hasn't approved this consumer")
        expires = claims.get("exp")
        if isinstance(expires, bool) or not isinstance(expires, (int, float)):
            return oauth_error("invalid_grant", "invalid assertion: exp must be a number")
        if expires <= time.time():
            return oauth_error("invalid_grant", "expired authorization code")
        return None

    def user_id(self) -> str:
        """The integration user's id, stable for a username (the token's ``id`` URL)."""
        return self.info.user_id

    def authorise(self, req: MockRequest, limit: int | None) -> bool:
        """Whether the request carries a live token (counts the call against it); a token
        that has answered ``limit`` calls dies (the ``token_call_limit`` fault)."""
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return False
        with self.lock:
            state = self.tokens.get(token.strip())
            if state is None:
                return False
            if limit is not None and state.calls >= limit:
                del self.tokens[token.strip()]
                return False
            state.calls += 1
            return True

    def has_token(self, token: str) -> bool:
        """Whether ``token`` is live (Data 360 exchanges only live core tokens)."""
        with self.lock:
            return token in self.tokens

    def revoke(self) -> None:
        """Invalidate every access token issued so far."""
        with self.lock:
            self.tokens.clear()
