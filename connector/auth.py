"""OAuth 2.0 JWT bearer flow: build the signed assertion (pyjwt) and exchange it for an
access token (httpx). Salesforce returns no `expires_in`; the token is renewed when the
org refuses it, never on a timer."""

from __future__ import annotations

import ssl
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connector.config import SalesforceConfig
from connector.errors import AuthError, SalesforceError, SetupError

__all__ = [
    "Token",
    "TokenProvider",
    "build_assertion",
    "load_private_key",
    "audience_for",
    "http_client",
]

#: Salesforce accepts an assertion whose exp is at most a few minutes ahead
ASSERTION_LIFETIME_S = 180


@dataclass(frozen=True)
class Token:
    access_token: str
    instance_url: str
    id_url: str
    issued_at: str

    def __repr__(self) -> str:  # never print the token itself
        return f"Token(instance_url={self.instance_url!r})"


def http_client(cfg: SalesforceConfig) -> httpx.Client:
    """An httpx client that trusts the configured `ca_bundle` only (SPEC §10: with a
    private CA the environment's CA bundle must not win; httpx wants an SSLContext)."""
    verify: ssl.SSLContext | bool = True
    if cfg.ca_bundle is not None:
        if not cfg.ca_bundle.is_file():
            raise SetupError(f"salesforce.ca_bundle not found: {cfg.ca_bundle}")
        try:
            verify = ssl.create_default_context(cafile=str(cfg.ca_bundle))
        except ssl.SSLError:
            raise SetupError(
                f"salesforce.ca_bundle {cfg.ca_bundle} holds no PEM certificate"
            ) from None
    return httpx.Client(
        verify=verify,
        trust_env=cfg.ca_bundle is None,
        timeout=cfg.timeout_s,
        follow_redirects=False,
    )


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    """Read the connected app's RSA private key (PEM); SetupError names the file.

    Like ssh with an identity file, a key that group or others may read is refused: it is
    the only credential, and one readable by others may already be someone else's too."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SetupError(
                f"salesforce.private_key_file {path} is open to group or others "
                f"(mode {mode:04o}): run chmod 600 {path}"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise SetupError(f"salesforce.private_key_file not found: {path}") from None
    except OSError as exc:
        raise SetupError(
            f"salesforce.private_key_file unreadable: {path} ({exc.strerror})"
        ) from None
    try:
        # The file is the user's own key, named in their config: a trusted source. So
        # cryptography's checks of an RSA key on load (primality tests of p and q: ~40 ms,
        # a tenth of a run that finds nothing new) are skipped — they guard against keys
        # crafted by someone else — and `_consistent` checks what a damaged file would get
        # wrong, in microseconds.
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError):
        raise SetupError(
            f"salesforce.private_key_file {path} is not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SetupError(f"salesforce.private_key_file {path} is not an RSA key (RS256 needs one)")
    if not _consistent(key):
        raise SetupError(
            f"salesforce.private_key_file {path} is a damaged RSA key (its parts disagree)"
        )
    return key


def _consistent(key: rsa.RSAPrivateKey) -> bool:
    """Whether the key's parts agree as signing needs them to: n = p·q, d, the CRT exponents
    and the coefficient invert what they should, and a signature made with it verifies with
    its public half (~0.3 ms) — which a composite p or q that passes the arithmetic fails."""
    parts = key.private_numbers()
    p, q, e, d = parts.p, parts.q, parts.public_numbers.e, parts.d
    if not (p > 2 and q > 2 and p * q == parts.public_numbers.n):
        return False
    if not (
        e * d % (p - 1) == 1
        and e * d % (q - 1) == 1
        and e * parts.dmp1 % (p - 1) == 1
        and e * parts.dmq1 % (q - 1) == 1
        and parts.iqmp * q % p == 1
    ):
        return False
    probe = b"awu-audit key check"
    try:
        signature = key.sign(probe, padding.PKCS1v15(), hashes.SHA256())  # RS256's scheme
        key.public_key().verify(signature, probe, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def audience_for(login_url: str) -> str:
    """The JWT `aud`: login/test.salesforce.com as given; a My Domain follows its org kind
    (sandbox My Domains authenticate against test.salesforce.com)."""
    parts = urlsplit(login_url)
    host = (parts.hostname or "").lower()
    if host.endswith((".sandbox.my.salesforce.com", ".scratch.my.salesforce.com")):
        return "https://test.salesforce.com"
    if host.endswith(".my.salesforce.com"):
        # before enhanced domains a sandbox's My Domain was "<domain>--<sandbox>.my..."
        if "--" in host.split(".", 1)[0]:
            return "https://test.salesforce.com"
        return "https://login.salesforce.com"
    return login_url.rstrip("/")


def build_assertion(
    *, consumer_key: str, username: str, audience: str, key: rsa.RSAPrivateKey, now: float
) -> str:
    """The signed RS256 assertion: iss = consumer key, sub = username, aud, exp ≤ 3 min."""
    claims = {
        "iss": consumer_key,
        "sub": username,
        "aud": audience,
        "exp": int(now) + ASSERTION_LIFETIME_S,
    }
    return jwt.encode(claims, key, algorithm="RS256")


class TokenProvider:
    """Exchanges a fresh assertion for an access token whenever asked."""

    def __init__(self, cfg: SalesforceConfig, http: httpx.Client, key: rsa.RSAPrivateKey):
        self._cfg = cfg
        self._http = http
        self._key = key
        self.exchanges = 0

    def fetch(self) -> Token:
        cfg = self._cfg
        assertion = build_assertion(
            consumer_key=cfg.consumer_key,
            username=cfg.username,
            audience=audience_for(cfg.login_url),
            key=self._key,
            now=time.time(),
        )
        url = cfg.login_url.rstrip("/") + "/services/oauth2/token"
        try:
            resp = self._http.post(
                url,
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": assertion,
                },
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise SalesforceError(
                f"cannot reach {cfg.login_url}: {type(exc).__name__}: {_short(exc)}"
            ) from None
        self.exchanges += 1
        body = _json_or_none(resp)
        if resp.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            desc = body.get("error_description") if isinstance(body, dict) else None
            if error or resp.status_code in (400, 401, 403):
                raise AuthError(
                    f"Salesforce refused the JWT login ({error or resp.status_code}): "
                    f"{desc or 'no description'} — check salesforce.consumer_key, username, "
                    "login_url and the certificate uploaded to the connected app"
                )
            raise SalesforceError(f"token endpoint {url} answered HTTP {resp.status_code}")
        return Token(
            access_token=body["access_token"],
            instance_url=str(body.get("instance_url") or cfg.login_url).rstrip("/"),
            id_url=str(body.get("id", "")),
            issued_at=str(body.get("issued_at", "")),
        )


def _json_or_none(resp: httpx.Response) -> object:
    try:
        return resp.json()
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]
