"""The fleet benchmark: run by hand, never in CI.

N small orgs (default 50), each served by its own mock org on loopback HTTPS in this
process, audited three ways over the same window with fresh stores each time:

- baseline: each org's own `run_audit`, one after another in one separate process (so the
  mock orgs' threads here do not share its GIL, as they do not share a fleet worker's) —
  the org's own audit time, what a fleet cannot avoid;
- fleet, 1 worker: `run_fleet` on a LocalCluster of one worker process — the same work in
  the same order, plus Dask scheduling, the task's process boundary and the lake writes:
  (wall − cluster start/stop − Σ own audit time) / N is the fleet overhead per org,
  printed as a ratio to the mean own audit time;
- fleet, 2 workers: the same on two worker processes (wall-clock speed-up over baseline);

plus the lake writes alone (`write_org_window` of each baseline store into a fresh lake),
a re-run of the 2-worker fleet (idempotent: no lake file changes) and 200 no-op Dask tasks
(the scheduler's own round trip).

Usage: python benchmarks/fleet.py [--orgs N] [--actions N] [--days D]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from audit.config import load_config
from audit.demo import write_mock_config
from audit.engine.model import days_of
from audit.fleet.config import FleetConfig, FleetOrg
from audit.fleet.lake import Lake, OrgMeta, write_org_window
from audit.fleet.run import run_fleet
from audit.pipeline import run_audit
from audit.store import Store
from connector.mock.org import MockOrg
from connector.mock.server import serve
from fixtures.generator import generate_snapshot


def _midnight(text: str) -> datetime:
    d = date.fromisoformat(text[:10])
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def _configs(root: Path, phase: str, orgs: dict[str, tuple[Path, Any]]) -> dict[str, Path]:
    """One config per org for `phase`, each with a fresh store."""
    out = {}
    (root / phase).mkdir(parents=True, exist_ok=True)
    for name, (snap, server) in orgs.items():
        out[name] = write_mock_config(
            root / phase / f"{name}.toml",
            snapshot=snap,
            url=server.url,
            ca_pem=server.ca_pem,
            store=root / phase / f"{name}.db",
        )
    return out


def _fleet(root: Path, phase: str, configs: dict[str, Path], workers: int) -> FleetConfig:
    orgs = tuple(FleetOrg(n, c) for n, c in configs.items())
    return FleetConfig(lake=str(root / phase / "lake"), workers=workers, orgs=orgs)


def _noop(i: int) -> int:
    return i


def _own_audits(
    configs: dict[str, Path], since: datetime, until: datetime
) -> tuple[dict[str, float], float]:
    import audit.fleet.task  # noqa: F401  (the same imports a fleet worker has)

    own: dict[str, float] = {}
    t0 = time.perf_counter()
    for name, path in configs.items():
        t = time.perf_counter()
        run_audit(load_config(path), since=since, until=until)
        own[name] = time.perf_counter() - t
    return own, time.perf_counter() - t0


def _cluster_start_stop() -> float:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.submit(_noop, 0).result()
    return time.perf_counter() - t0


def _dask_round_trip(tasks: int) -> float:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(_noop, range(10)))  # warm
        t0 = time.perf_counter()
        for i in range(tasks):  # one at a time, like one org after another
            client.submit(_noop, i, pure=False).result()
        return (time.perf_counter() - t0) / tasks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orgs", type=int, default=50)
    ap.add_argument("--actions", type=int, default=300)
    ap.add_argument("--days", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="awu-fleet-bench-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        orgs: dict[str, tuple[Path, Any]] = {}
        t0 = time.perf_counter()
        for i in range(args.orgs):
            snap = root / "snapshots" / f"org{i:03d}"
            labels = generate_snapshot(
                snap,
                seed=100 + i,
                actions=args.actions,
                days=args.days,
                start=date(2026, 10, 1),
                sandbox=i % 5 == 0,
            )
            server = stack.enter_context(
                serve(MockOrg.from_snapshot(snap), tls_dir=root / "tls" / str(i))
            )
            orgs[f"org{i:03d}"] = (snap, server)
        since, until = _midnight(labels["window"]["since"]), _midnight(labels["window"]["until"])
        print(
            f"{args.orgs} orgs × {args.actions} actions over {args.days} days generated and "
            f"served in {time.perf_counter() - t0:.1f} s"
        )

        base = _configs(root, "baseline", orgs)
        # the orgs' own audits, one after another in one process of their own (as the fleet's
        # worker is), so the mock orgs' threads in this process do not share its GIL
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            pool.submit(_noop, 0).result()  # process started and warm before timing
            # every mock org answers once before anything is timed (its first answers pay
            # for loading the snapshot)
            pool.submit(_own_audits, _configs(root, "warm-up", orgs), since, until).result()
            own, base_wall = pool.submit(_own_audits, base, since, until).result()
        mean_own = statistics.mean(own.values())
        print(
            f"baseline: own audit {mean_own * 1000:.0f} ms per org (median "
            f"{statistics.median(own.values()) * 1000:.0f} ms), {base_wall:.1f} s for all"
        )

        lake = Lake(str(root / "lake-only"))
        t0 = time.perf_counter()
        for name, path in base.items():
            cfg = load_config(path)
            with Store.open(cfg.store.path) as store:
                write_org_window(
                    lake, name, days_of((since, until)), store, OrgMeta("00D", False, "month", 1.0)
                )
        lake_each = (time.perf_counter() - t0) / args.orgs
        print(
            f"lake writes alone: {lake_each * 1000:.1f} ms per org = "
            f"{lake_each / mean_own:.2f}× the own audit time"
        )

        fixed = _cluster_start_stop()
        print(f"LocalCluster of 1 worker up, first task, down: {fixed:.1f} s (once per fleet run)")
        rt = _dask_round_trip(200)
        print(
            f"dask no-op task round trip: {rt * 1000:.1f} ms = {rt / mean_own:.3f}× the own "
            "audit time"
        )

        for workers in (1, 2):
            fleet = _fleet(
                root, f"fleet{workers}", _configs(root, f"fleet{workers}", orgs), workers
            )
            t0 = time.perf_counter()
            result = run_fleet(fleet, since=since, until=until)
            wall = time.perf_counter() - t0
            assert not result.failed, result.failed
            task = statistics.median(result.seconds.values())
            print(
                f"fleet, {workers} worker(s): median task {task * 1000:.0f} ms in its worker "
                f"(audit + lake writes) = {task / statistics.median(own.values()):.2f}× the own "
                "audit time"
            )
            if workers == 1:
                overhead = (wall - fixed - sum(own.values())) / args.orgs
                print(
                    f"fleet, 1 worker: {wall:.1f} s wall (cluster start/stop included); "
                    "per org, beyond the cluster's start/stop: "
                    f"overhead {overhead * 1000:.0f} ms per org = {overhead / mean_own:.2f}× "
                    "the own audit time"
                )
            else:
                print(
                    f"fleet, 2 workers: {wall:.1f} s wall: speed-up {base_wall / wall:.2f}× over "
                    "the baseline one after another"
                )
                before = {
                    p: p.stat().st_mtime_ns for p in (root / "fleet2" / "lake").rglob("*.parquet")
                }
                t0 = time.perf_counter()
                run_fleet(fleet, since=since, until=until)
                rerun = time.perf_counter() - t0
                after = {
                    p: p.stat().st_mtime_ns for p in (root / "fleet2" / "lake").rglob("*.parquet")
                }
                print(
                    f"fleet re-run, 2 workers: {rerun:.1f} s = {rerun / wall:.2f}× the first; "
                    f"lake files rewritten: {sum(before[p] != after.get(p) for p in before)} "
                    f"of {len(before)}"
                )


if __name__ == "__main__":
    main()
