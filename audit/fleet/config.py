"""The fleet file (TOML): where the lake is, how many local workers or which Dask scheduler,
and the orgs, each an ordinary single-org config. Validated whole before any org runs:
unknown keys, wrong types, duplicate or unsafe names and missing files are one `ConfigError`
naming them (exit 2)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import ConfigError

__all__ = ["FleetConfig", "FleetOrg", "load_fleet", "is_remote_lake"]

#: a safe path segment, and a Hive partition value no reader mistakes for something else
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_FLEET_KEYS = {"lake", "workers", "scheduler", "max_concurrent"}
_ORG_KEYS = {"name", "config"}


@dataclass(frozen=True)
class FleetOrg:
    name: str
    config: Path


@dataclass(frozen=True)
class FleetConfig:
    #: the Parquet root: an absolute local path, or an fsspec URL (s3://…)
    lake: str
    workers: int = 2
    scheduler: str | None = None
    max_concurrent: int | None = None
    orgs: tuple[FleetOrg, ...] = ()
    path: Path | None = None


def is_remote_lake(lake: str) -> bool:
    """An fsspec URL (`s3://…`, `gcs://…`, `memory://…`) rather than a local path."""
    return "://" in lake and not lake.startswith("file://")


def load_fleet(path: str | Path) -> FleetConfig:
    """Read and validate a fleet file; relative paths are relative to the file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"fleet file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read fleet file {p}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"fleet file {p} is not valid TOML: {exc}") from None
    base = p.resolve().parent
    unknown = sorted(set(data) - {"fleet", "orgs"})
    if unknown:
        raise ConfigError(f"fleet file {p}: unknown key {', '.join(unknown)}")
    fleet = _fleet_section(data.get("fleet"), p, base)
    orgs = _orgs(data.get("orgs"), p, base)
    return FleetConfig(**fleet, orgs=orgs, path=p)


def _fleet_section(raw: Any, p: Path, base: Path) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f'fleet file {p}: a [fleet] table with lake = "DIR" is required')
    unknown = sorted(set(raw) - _FLEET_KEYS)
    if unknown:
        raise ConfigError(
            f"fleet file {p}: unknown key " + ", ".join(f"fleet.{k}" for k in unknown)
        )
    lake = raw.get("lake")
    if not isinstance(lake, str) or not lake.strip():
        raise ConfigError(f"fleet file {p}: fleet.lake must be a directory or URL (string)")
    if not is_remote_lake(lake):
        local = Path(lake.removeprefix("file://")).expanduser()
        lake = str(local if local.is_absolute() else (base / local).resolve())
    out: dict[str, Any] = {"lake": lake}
    for key in ("workers", "max_concurrent"):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"fleet file {p}: fleet.{key} must be a whole number ≥ 1")
            out[key] = value
    if "scheduler" in raw:
        if not isinstance(raw["scheduler"], str) or not raw["scheduler"].strip():
            raise ConfigError(f'fleet file {p}: fleet.scheduler must be "tcp://host:port"')
        out["scheduler"] = raw["scheduler"].strip()
    return out


def _orgs(raw: Any, p: Path, base: Path) -> tuple[FleetOrg, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(o, dict) for o in raw):
        raise ConfigError(f"fleet file {p}: list the orgs as [[orgs]] tables (name, config)")
    problems: list[str] = []
    orgs: list[FleetOrg] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for i, entry in enumerate(raw, 1):
        where = f"orgs #{i}"
        unknown = sorted(set(entry) - _ORG_KEYS)
        if unknown:
            problems.append(f"unknown key {', '.join(f'orgs.{k}' for k in unknown)} ({where})")
        name, config = entry.get("name"), entry.get("config")
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(
                f"{where}: name must be a safe path segment (letters, digits, . _ -), got {name!r}"
            )
            continue
        if name in seen:
            duplicates.append(name)
        seen.add(name)
        if not isinstance(config, str) or not config:
            problems.append(f"org {name}: config must be a path (string)")
            continue
        cfg = Path(config).expanduser()
        cfg = cfg if cfg.is_absolute() else base / cfg
        if not cfg.is_file():
            problems.append(f"org {name}: config file not found: {cfg}")
        orgs.append(FleetOrg(name, cfg))
    if duplicates:
        problems.insert(0, f"duplicate org name {', '.join(sorted(set(duplicates)))}")
    if problems:
        raise ConfigError(f"fleet file {p}: " + "; ".join(problems))
    return tuple(orgs)
