"""Issue 12's scale benchmark — run by hand (`make bench`), never in CI.

For each size (100k, 300k and 1M actions over 7 days, Daily + Hourly log files that
overlap, as real orgs have) it generates an org with `audit fixtures` (cached by seed, size
and days under ~/.cache/awu-audit/bench, or $AWU_BENCH_CACHE), serves it with `audit
mock-org` in its own process and measures, each in a child process of its own (wall time
and that child's peak RSS):

- floor: `benchmarks/floor.py`, plain httpx + json/csv making the connector's requests;
- first `audit run --json` over the window, into a fresh store;
- the write floor: `benchmarks/write_floor.py`, the first run's stored rows written again
  into a fresh store with plain executemany (what storing alone costs);
- second run right after it (nothing new: the stored results are reused);
- the same window again with `--full` (recomputed whole, as every re-run was before);
- the next night's window (start a day later, nothing new: no day reconciled again, the
  window's rules and sums over the stored actions);
- engine alone over the stored window: `benchmarks/engine.py`.

It prints the issue's table (first run / floor, peak RSS, re-run / first run, and across
sizes time and RSS of the largest over the smallest) and writes everything to
benchmarks/results/scale-<time>.json.

Usage: python benchmarks/scale.py [--quick] [--sizes 100000,300000] [--days 7] [--seed 11]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable


@dataclass
class Measure:
    wall_s: float
    peak_rss_mb: float
    out: Any


# The measured command runs under a small launcher that forks it and reports its rusage.
# Measured straight from this process, a child's ru_maxrss would start at this process's
# own peak RSS (subprocess starts children with vfork, and Linux carries the old memory's
# high-water mark across exec): after loading a 1M org's labels here, every figure read
# at least ~1.8 GB whatever the child used. A child of the launcher starts clean.
_LAUNCH = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.argv[1], sys.argv[1:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "sys.stderr.write(f'\\nmaxrss_kb={usage.ru_maxrss}\\n')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def child(argv: list[str], *, env: dict[str, str] | None = None) -> Measure:
    """Run `argv`, return its wall time, its own peak RSS and its stdout (JSON if it is).

    Dirty pages an earlier step left (the write floor's whole store, a first run's) are
    flushed first: otherwise the kernel writes them back during this step, whose own syncs
    then wait behind them (a quiet re-run measured 0.79 s after the write floor, 0.47 s alone).
    """
    os.sync()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([PY, "-c", _LAUNCH, *argv], stdout=out, stderr=err, env=env)
        proc.wait()
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        errors = err.read().decode()
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{argv[1:3]} exited {proc.returncode}: {errors[-2000:]}")
    maxrss_kb = int(errors.rstrip().rsplit("maxrss_kb=", 1)[1])
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text[-500:]
    return Measure(round(wall, 3), round(maxrss_kb / 1024, 1), value)


def snapshot(cache: Path, seed: int, actions: int, days: int) -> Path:
    """The generated org for (seed, actions, days), generating it once."""
    snap = cache / f"seed{seed}-n{actions}-d{days}"
    if not (snap / "labels.json").exists():
        tmp = cache / f".tmp-{snap.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        subprocess.run(
            [PY, "-m", "audit.cli", "fixtures", "--out", str(tmp), "--seed", str(seed),
             "--actions", str(actions), "--days", str(days), "--start", "2026-10-01"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        shutil.rmtree(snap, ignore_errors=True)
        tmp.rename(snap)
        print(f"  generated {snap.name} in {time.perf_counter() - t0:.1f} s")
    return snap


@contextlib.contextmanager
def mock_org(snap: Path, tls_dir: Path, faults: str = "") -> Iterator[str]:
    """`audit mock-org` in its own process on a free port; yields its URL once ca.pem exists."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [PY, "-m", "audit.cli", "mock-org", "--data", str(snap), "--port", str(port),
         "--tls-dir", str(tls_dir), *(["--faults", faults] if faults else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not (tls_dir / "ca.pem").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mock org did not start")
            time.sleep(0.1)
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def write_config(path: Path, snap: Path, url: str, ca_pem: Path, store: Path) -> Path:
    org = json.loads((snap / "org.json").read_text())
    path.write_text(
        f'[salesforce]\nlogin_url = "{url}"\nconsumer_key = "{org["consumer_key"]}"\n'
        f'username = "{org["username"]}"\nprivate_key_file = "{snap / "app.key"}"\n'
        f'api_version = "{org["api_version"]}"\nca_bundle = "{ca_pem}"\n\n'
        f'[store]\npath = "{store}"\n'
    )
    return path


def measure_size(snap: Path, work: Path) -> dict[str, Any]:
    labels = json.loads((snap / "labels.json").read_text())
    since, until = labels["window"]["since"], labels["window"]["until"]
    n = labels["totals"]["actions"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows_on_disk = sum(1 for _ in (snap / "objects" / "AgentWorkItem.jsonl").open()) + sum(
        max(0, sum(1 for _ in p.open()) - 1) for p in (snap / "logfiles").glob("*.csv")
    )
    store = work / "bench.db"
    with mock_org(snap, work / "tls") as url:
        cfg = write_config(work / "bench.toml", snap, url, work / "tls" / "ca.pem", store)
        floor = child([PY, str(HERE / "floor.py"), str(snap), url, str(work / "tls" / "ca.pem"),
                       since, until, now])  # fmt: skip
        run = [PY, "-m", "audit.cli", "run", "--config", str(cfg), "--since", since,
               "--until", until, "--json"]  # fmt: skip
        first = child(run)
        writes = child([PY, str(HERE / "write_floor.py"), str(store)])
        second = child(run)
        full = child([*run, "--full"])
        next_day = (datetime.fromisoformat(since.replace("Z", "+00:00")) + timedelta(days=1))
        moved = child([*run[:7], next_day.isoformat(), *run[8:]])
    engine = child([PY, str(HERE / "engine.py"), str(cfg), since, until])
    assert first.out["totals"]["actions"] == n, (first.out["totals"], n)
    assert second.out["totals"] == first.out["totals"]
    return {
        "actions": n, "source_rows": rows_on_disk, "window": [since, until],
        "floor": asdict(floor), "write_floor": asdict(writes), "first_run": asdict(first),
        "second_run": asdict(second),
        "full_rerun": asdict(full), "next_night": asdict(moved), "engine": asdict(engine),
        "ratios": {
            "first_over_floor": round(first.wall_s / floor.wall_s, 2),
            "write_floor_s": writes.out["total_s"],
            "first_over_floor_and_writes": round(
                first.wall_s / (floor.wall_s + writes.out["total_s"]), 2
            ),
            "rerun_over_first": round(second.wall_s / first.wall_s, 3),
            "full_rerun_over_first": round(full.wall_s / first.wall_s, 3),
            "next_night_over_first": round(moved.wall_s / first.wall_s, 3),
            "engine_over_first": round(engine.wall_s / first.wall_s, 3),
            "kb_per_action": round(first.peak_rss_mb * 1024 / n, 2),
        },
    }  # fmt: skip


def report(size: dict[str, Any]) -> None:
    n, rows = size["actions"], size["source_rows"]
    print(f"  {n:,} actions, {rows:,} source rows on disk")
    for name in ("floor", "first_run", "second_run", "full_rerun", "next_night", "engine"):
        m = size[name]
        wall = m["wall_s"]
        print(f"  {name:<11} {wall:8.2f} s  {rows / wall:9,.0f} rows/s  "
              f"{n / wall:8,.0f} actions/s  peak RSS {m['peak_rss_mb']:7.0f} MB")  # fmt: skip
    r = size["ratios"]
    print(f"  storing the first run's rows alone (benchmarks/write_floor.py): "
          f"{r['write_floor_s']:.2f} s; floor + that = "
          f"{size['floor']['wall_s'] + r['write_floor_s']:.2f} s; first run / (floor + that) "
          f"{r['first_over_floor_and_writes']:.2f}x")  # fmt: skip
    print(f"  first run / floor {r['first_over_floor']:.2f}x (target <= 2x); "
          f"re-run / first run {100 * r['rerun_over_first']:.1f}% (target <= 5%); "
          f"{r['kb_per_action']:.2f} KB RSS per action")  # fmt: skip
    if isinstance(size["engine"]["out"], dict):
        print(f"  engine stages: {size['engine']['out']}")


def compile_code() -> None:
    """Byte-compile the code under test once, as its first run leaves it on a user's machine:
    with PYTHONDONTWRITEBYTECODE set (it is on the machines these figures come from), a
    module whose .pyc is missing or stale would be compiled again by every measured run."""
    root = HERE.parent
    subprocess.run(
        [PY, "-m", "compileall", "-q", *(str(root / p) for p in ("audit", "connector"))],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100k actions only")
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--label", default="", help="a name for this run in the results file")
    args = ap.parse_args()
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    compile_code()
    cache = Path(os.environ.get("AWU_BENCH_CACHE", Path.home() / ".cache/awu-audit/bench"))
    results: dict[str, Any] = {"label": args.label, "started": datetime.now(timezone.utc)
                               .isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                               "sizes": {}}  # fmt: skip
    for actions in sizes:
        print(f"{actions:,} actions:")
        snap = snapshot(cache, args.seed, actions, args.days)
        with tempfile.TemporaryDirectory(prefix="awu-scale-") as tmp:
            size = measure_size(snap, Path(tmp))
        results["sizes"][str(actions)] = size
        report(size)
    if len(sizes) > 1:
        small, large = results["sizes"][str(sizes[0])], results["sizes"][str(sizes[-1])]
        x = large["actions"] / small["actions"]
        t = large["first_run"]["wall_s"] / small["first_run"]["wall_s"]
        m = large["first_run"]["peak_rss_mb"] / small["first_run"]["peak_rss_mb"]
        results["scaling"] = {"actions_x": round(x, 2), "time_x": round(t, 2), "rss_x": round(m, 2)}
        print(f"{sizes[-1]:,} / {sizes[0]:,}: time {t:.2f}x (target <= 11x for 10x), "
              f"peak RSS {m:.2f}x (target <= 1.5x)")  # fmt: skip
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"scale-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
