"""Reading an org snapshot directory (SPEC §8): ``org.json``, the certificate, and the
``objects/*.jsonl`` and ``logfiles/*.csv`` files."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .soql import is_sf_id, to18

__all__ = ["OrgInfo", "load_public_key", "read_jsonl", "read_objects", "logfile_paths"]


@dataclass(frozen=True)
class OrgInfo:
    """The contents of ``org.json``."""

    organization_id: str
    is_sandbox: bool
    api_version: str
    username: str
    consumer_key: str
    name: str = "Mock Org"
    accept_auds: tuple[str, ...] = ()

    @property
    def api_version_number(self) -> float:
        return float(self.api_version)

    @property
    def user_id(self) -> str:
        """The integration user's id, stable for a username (the token's ``id`` URL)."""
        digest = int(hashlib.sha256(self.username.encode()).hexdigest(), 16) % 10**8
        return to18(f"005MOCK{digest:08d}")

    @classmethod
    def load(cls, root: Path) -> tuple[OrgInfo, Path]:
        """The org info and the certificate path from ``root/org.json``."""
        path = root / "org.json"
        if not path.is_file():
            raise ValueError(f"org snapshot {root}: missing org.json")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"org snapshot {root}: org.json is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"org snapshot {root}: org.json must hold a JSON object")
        required = ("organization_id", "api_version", "username", "consumer_key")
        missing = [k for k in required if not data.get(k)]
        if missing:
            raise ValueError(f"org snapshot {root}: org.json lacks {', '.join(missing)}")
        org_id = str(data["organization_id"])
        if not is_sf_id(org_id):
            raise ValueError(
                f"org snapshot {root}: organization_id {org_id!r} is not a Salesforce id"
            )
        version = str(data["api_version"])
        if not re.fullmatch(r"\d+\.\d", version):
            raise ValueError(f"org snapshot {root}: api_version {version!r} is not like '62.0'")
        auds = data.get("accept_auds") or []
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
            raise ValueError(f"org snapshot {root}: accept_auds must be a list of URLs")
        info = cls(
            organization_id=to18(org_id),
            is_sandbox=bool(data.get("is_sandbox", False)),
            api_version=version,
            username=str(data["username"]),
            consumer_key=str(data["consumer_key"]),
            name=str(data.get("name") or "Mock Org"),
            accept_auds=tuple(a.rstrip("/") for a in auds),
        )
        return info, root / str(data.get("certificate") or "app.crt")


def load_public_key(path: Path) -> RSAPublicKey:
    """The RSA key of the connected app's certificate (it verifies JWT assertions)."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError:
        raise ValueError(f"org snapshot: certificate {path} is missing or unreadable") from None
    except ValueError:
        raise ValueError(
            f"org snapshot: certificate {path} is not a PEM X.509 certificate"
        ) from None
    key = cert.public_key()
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"org snapshot: certificate {path} does not hold an RSA key")
    return key


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines file; ``ValueError`` naming the file and line if bad."""
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"org snapshot: {path}:{lineno}: invalid JSON ({exc.msg})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(f"org snapshot: {path}:{lineno}: a record must be a JSON object")
            records.append(record)
    return records


def read_objects(root: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(sObject name, records) of each ``objects/*.jsonl`` file, by name.

    Lazy, so a caller that loads each object as it comes reports errors in file order.
    """
    objects = root / "objects"
    for jsonl in sorted(objects.glob("*.jsonl")) if objects.is_dir() else []:
        yield jsonl.stem, read_jsonl(jsonl)


def logfile_paths(root: Path) -> dict[str, Path]:
    """``logfiles/<id>.csv`` by 15-character EventLogFile id (bodies stay on disk)."""
    logfiles = root / "logfiles"
    found = sorted(logfiles.glob("*.csv")) if logfiles.is_dir() else []
    return {csv_path.stem[:15]: csv_path for csv_path in found}
