"""The fleet: many orgs audited as Dask tasks (each the same `run_audit` as `audit run`, in
a worker process, with its own store, lock and alerts), their audited windows written to one
Parquet lake (`org=<name>/day=<YYYY-MM-DD>/`), and a fleet view read from the lake alone
through DuckDB.

Modules: `config` (the fleet file), `task` (one org, in a worker), `lake` (Parquet
partitions), `run` (the Dask side), `report` (DuckDB over the lake). Dask, DuckDB and pyarrow
come with the optional `fleet` extra; nothing here imports them until a fleet command runs.
"""

from __future__ import annotations

import importlib

from audit.errors import ConfigError

__all__ = ["require_fleet_extra"]


def require_fleet_extra(*modules: str) -> None:
    """Fail with one line naming the extra when a module the fleet needs is not installed."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise ConfigError(
                f"the fleet commands need {name}: install the extra with "
                "pip install 'awu-audit[fleet]'"
            ) from None
