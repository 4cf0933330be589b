"""The fleet's Parquet lake: `<lake>/org=<name>/day=<YYYY-MM-DD>/{actions,findings,
daily_usage}.parquet` plus `<lake>/org=<name>/org.parquet` (the org's id, sandbox flag and
budget). Written by pyarrow in the worker that audited the org; read by DuckDB (`report`).

A run replaces the partitions of every day its window touches with that day as the org's
store now holds it (the whole day, so a partial-day window loses nothing). A file is only
written when its bytes change: a re-run over unchanged data leaves the lake untouched. A
local file is replaced atomically (written beside it, then renamed); an object store
(`s3://…`, through fsspec) replaces an object whole on each put.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from audit.errors import AuditError
from audit.fleet.config import is_remote_lake
from audit.store import Store

__all__ = ["Lake", "LakeError", "OrgMeta", "TABLES", "write_org_window"]

_S, _I, _F = pa.string(), pa.int64(), pa.float64()

#: the lake's tables and their fixed schemas (fixed, so an empty day reads like a full one)
TABLES: dict[str, pa.Schema] = {
    "actions": pa.schema(
        [
            ("id", _S),
            ("session_id", _S),
            ("agent_id", _S),
            ("agent_name", _S),
            ("action_name", _S),
            ("action_type", _S),
            ("channel", _S),
            ("status", _S),
            ("error_code", _S),
            ("tokens", _I),
            ("prompt_tokens", _I),
            ("completion_tokens", _I),
            ("reported_awu", _F),
            ("elf_tokens", _I),
            ("user_id", _S),
            ("case_id", _S),
            ("started_at", _S),
            ("source", _S),
            ("billable", _I),
            ("units", _I),
            ("multiplier", _F),
            ("awu", _F),
            ("excess_awu", _F),
            ("credits", _F),
            ("cost_usd", _F),
            ("fingerprint", _S),
        ]
    ),
    "findings": pa.schema(
        [
            ("id", _S),
            ("kind", _S),
            ("key", _S),
            ("severity", _S),
            ("session_id", _S),
            ("agent", _S),
            ("action_name", _S),
            ("action_ids", _S),
            ("started_at", _S),
            ("wasted_awu", _F),
            ("wasted_usd", _F),
            ("explanation", _S),
            ("detail", _S),
        ]
    ),
    "daily_usage": pa.schema(
        [
            ("agent", _S),
            ("channel", _S),
            ("actions", _I),
            ("billable_actions", _I),
            ("tokens", _I),
            ("awu", _F),
            ("reported_awu", _F),
            ("credits", _F),
            ("cost_usd", _F),
        ]
    ),
}
_ORG_SCHEMA = pa.schema(
    [("org_id", _S), ("is_sandbox", pa.bool_()), ("budget_period", _S), ("budget_credits", _F)]
)


class LakeError(AuditError):
    """The lake cannot be written or read (a path, permissions, an object store)."""

    exit_code = 2


@dataclass(frozen=True)
class OrgMeta:
    org_id: str
    is_sandbox: bool
    budget_period: str
    budget_credits: float


def _parquet(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> bytes:
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


@contextmanager
def _lake_errors(lake: str) -> Iterator[None]:
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise LakeError(f"lake {lake}: {text}") from None


class Lake:
    """Where the Parquet files go: a local directory, or an fsspec URL."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self._fs: Any = None
        if is_remote_lake(root):
            import fsspec

            with _lake_errors(root):
                self._fs, _ = fsspec.core.url_to_fs(root)

    @property
    def filesystem(self) -> Any:
        """The fsspec filesystem of a remote lake (None for a local directory)."""
        return self._fs

    def put_if_changed(self, relative: str, data: bytes) -> bool:
        """Write `data` at `relative` unless the file already holds exactly it."""
        with _lake_errors(self.root):
            if self._fs is not None:
                return self._put_remote(f"{self.root}/{relative}", data)
            return self._put_local(Path(self.root) / relative, data)

    def _put_remote(self, url: str, data: bytes) -> bool:
        if self._fs.exists(url) and self._fs.cat_file(url) == data:
            return False
        self._fs.pipe_file(url, data)
        return True

    @staticmethod
    def _put_local(path: Path, data: bytes) -> bool:
        try:
            if path.read_bytes() == data:
                return False
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            temp.write_bytes(data)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        return True


def write_org_window(lake: Lake, org: str, days: Sequence[str], store: Store, meta: OrgMeta) -> int:
    """Replace the org's partitions of `days` with what its store holds for them, and its
    org.parquet; returns how many files changed."""
    changed = int(
        lake.put_if_changed(f"org={org}/org.parquet", _parquet([meta.__dict__], _ORG_SCHEMA))
    )
    for day in days:
        tables = {
            "actions": store.actions_of_day(day),
            "findings": store.open_findings_of_day(day),
            "daily_usage": store.daily_usage_of_day(day),
        }
        for name, rows in tables.items():
            data = _parquet(rows, TABLES[name])
            changed += lake.put_if_changed(f"org={org}/day={day}/{name}.parquet", data)
    return changed
