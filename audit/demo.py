"""`audit demo`: the whole product with no set-up — a generated org served by the mock
Salesforce on loopback HTTPS, one audit run into ./awu-audit-demo.db, the summary."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from rich.console import Console

from audit.config import load_config
from audit.errors import ConfigError, StoreError
from audit.pipeline import run_audit
from audit.summary import make_console, print_summary

__all__ = ["audit_command", "run_demo", "write_mock_config"]

#: where `audit demo --keep` has the reproduced mock org listen
KEEP_PORT = 8443


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


def audit_command() -> str:
    """How to call this `audit` from the working directory, as a user would type it
    (`.venv/bin/audit` for the README's install), so printed commands work as printed."""
    typed = sys.argv[0] if sys.argv else ""
    if Path(typed).name == "audit":
        return typed  # the console script, as the user called it
    script = Path(sys.executable).parent / "audit"
    if not script.exists():
        return "audit"
    try:
        return script.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return script.as_posix()


def run_demo(
    db_path: Path,
    *,
    actions: int = 5000,
    seed: int = 7,
    source: str = "agentworkitem",
    keep: Path | None = None,
    keep_port: int = KEEP_PORT,
) -> None:
    """`source="data360"` audits the same generated org through its Data 360 objects.
    `keep`: leave the snapshot, its key and a config for the mock org there, and print the
    commands that reproduce the demo by hand."""
    from connector.mock.org import MockOrg
    from connector.mock.server import serve
    from fixtures.generator import generate_snapshot

    console = make_console()
    started = time.monotonic()
    db_path = db_path.resolve()
    _replace_old_demo_store(db_path, console)
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise ConfigError(f"--keep {keep}: the directory is not empty; pass a new one")
    # two weeks back, so the generated org's records are all settled and the current month's
    # budget forecast has something to go on
    first = datetime.now(timezone.utc).date() - timedelta(days=14)
    extra = '[source]\nkinds = ["data360"]\n' if source == "data360" else ""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="awu-demo-")))
        home = keep.resolve() if keep is not None else tmp
        snap = home / "org"
        with console.status(f"Generating a synthetic org ({actions:,} actions over 7 days)…"):
            labels = generate_snapshot(
                snap, seed=seed, actions=actions, days=7, start=first, source=source
            )
        org = MockOrg.from_snapshot(snap)
        with serve(org, tls_dir=tmp / "tls") as server:
            console.print(f"Mock Salesforce org serving at {server.url} (loopback, TLS)")
            cfg_path = write_mock_config(
                tmp / "demo.toml", snapshot=snap, url=server.url, ca_pem=server.ca_pem,
                store=db_path, extra=extra,
            )  # fmt: skip
            cfg = load_config(cfg_path)
            since = _midnight(date.fromisoformat(labels["window"]["since"][:10]))
            until = _midnight(date.fromisoformat(labels["window"]["until"][:10]))
            with console.status("Syncing, reconciling and auditing…"):
                result = run_audit(cfg, since=since, until=until, trigger="demo")
    print_summary(result, store_path=db_path, console=console)
    cmd = audit_command()
    console.print(
        f"Demo finished in {time.monotonic() - started:.1f} s. Explore the store with "
        f"`{cmd} report --db {_shown(db_path)}` (or --format html --out report.html).",
        markup=False,
        soft_wrap=True,
    )
    if keep is not None:
        _keep(keep, snap, extra, keep_port, console, cmd)


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is inside it."""
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


def _keep(keep: Path, snap: Path, extra: str, port: int, console: Console, cmd: str) -> None:
    """A config for the kept snapshot served on `port`, and the commands that use it. The
    mock org writes a fresh CA to keep/tls/ca.pem each time it starts; the config trusts
    that file. The default window covers the demo's days (they start 14 days back)."""
    home = keep.resolve()
    write_mock_config(
        home / "awu-audit.toml",
        snapshot=snap,
        url=f"https://127.0.0.1:{port}",
        ca_pem=home / "tls" / "ca.pem",
        store=home / "awu-audit.db",
        extra=extra + "\n[sync]\ninitial_days = 15\n",
    )
    shown = _shown(keep)
    console.print(
        f"Kept in {shown}/: the org snapshot (org/, with its private key org/app.key and "
        "labels.json) and a config for it (awu-audit.toml). Reproduce the demo by hand — the "
        "first command serves the org (leave it running, e.g. in another terminal), the "
        "second audits it:",
        markup=False,
        soft_wrap=True,
    )
    for line in (
        f"{cmd} mock-org --data {shown}/org --port {port} --tls-dir {shown}/tls",
        f"{cmd} run --config {shown}/awu-audit.toml",
    ):
        console.print(f"  {line}", markup=False, soft_wrap=True, highlight=False)


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
