"""`audit demo`: the whole product with no set-up — a generated org served by the mock
Salesforce on loopback HTTPS, one audit run into ./awu-audit-demo.db, the summary."""

from __future__ import annotations

import json
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console

from audit.config import load_config
from audit.errors import StoreError
from audit.pipeline import run_audit
from audit.summary import print_summary

__all__ = ["run_demo", "write_mock_config"]


def write_mock_config(
    path: Path, *, snapshot: Path, url: str, ca_pem: Path, store: Path, extra: str = ""
) -> Path:
    """A config that points at a mock org serving `snapshot` (used by the demo and tests)."""
    org = json.loads((snapshot / "org.json").read_text())
    text = f"""\
[salesforce]
login_url = "{url}"
consumer_key = "{org["consumer_key"]}"
username = "{org["username"]}"
private_key_file = "{(snapshot / "app.key").as_posix()}"
api_version = "{org["api_version"]}"
ca_bundle = "{ca_pem.as_posix()}"

[store]
path = "{store.as_posix()}"
{extra}
"""
    path.write_text(text, encoding="utf-8")
    return path


def run_demo(
    db_path: Path, *, actions: int = 5000, seed: int = 7, source: str = "agentworkitem"
) -> None:
    """`source="data360"` audits the same generated org through its Data 360 objects."""
    from connector.mock.org import MockOrg
    from connector.mock.server import serve
    from fixtures.generator import generate_snapshot

    console = Console()
    started = time.monotonic()
    db_path = db_path.resolve()
    _replace_old_demo_store(db_path, console)
    # two weeks back, so the generated org's records are all settled and the current month's
    # budget forecast has something to go on
    first = datetime.now(timezone.utc).date() - timedelta(days=14)
    with tempfile.TemporaryDirectory(prefix="awu-demo-") as tmp:
        snap = Path(tmp) / "org"
        with console.status(f"Generating a synthetic org ({actions:,} actions over 7 days)…"):
            labels = generate_snapshot(
                snap, seed=seed, actions=actions, days=7, start=first, source=source
            )
        org = MockOrg.from_snapshot(snap)
        with serve(org, tls_dir=Path(tmp) / "tls") as server:
            console.print(f"Mock Salesforce org serving at {server.url} (loopback, TLS)")
            cfg_path = write_mock_config(
                Path(tmp) / "demo.toml",
                snapshot=snap,
                url=server.url,
                ca_pem=server.ca_pem,
                store=db_path,
                extra='[source]\nkinds = ["data360"]\n' if source == "data360" else "",
            )
            cfg = load_config(cfg_path)
            since = _midnight(date.fromisoformat(labels["window"]["since"][:10]))
            until = _midnight(date.fromisoformat(labels["window"]["until"][:10]))
            with console.status("Syncing, reconciling and auditing…"):
                result = run_audit(cfg, since=since, until=until, trigger="demo")
    print_summary(result, store_path=db_path, console=console)
    console.print(
        f"Demo finished in {time.monotonic() - started:.1f} s. Explore the store with "
        f"`audit report --db {db_path.name}` (or --format html --out report.html).",
        markup=False,
    )


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def _replace_old_demo_store(db_path: Path, console: Console) -> None:
    """The demo store is the demo's own: each demo starts from a fresh one."""
    if not db_path.exists():
        return
    from audit.store import run_triggers

    try:
        kinds = run_triggers(db_path)
    except StoreError:
        raise StoreError(
            f"{db_path} exists and is not an awu-audit demo store; move it away"
        ) from None
    if kinds - {"demo"}:
        raise StoreError(f"{db_path} holds non-demo runs; pass --db to write the demo elsewhere")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    console.print(f"Replacing the previous demo store {db_path.name}")
