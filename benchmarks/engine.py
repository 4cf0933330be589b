"""The engine alone over stored data (issue 12): the core audit of a window a first run
filled — pass 1 reconciles the stored source rows a chunk at a time and writes the actions
with their costs, pass 2 reads them back a batch of whole sessions at a time and folds them
into findings, totals, pricing and the report's aggregates — in one transaction, as a run
does, with no network. Run as a child process by `benchmarks/scale.py`, which reads its
peak RSS; prints one JSON line of stage seconds.

Usage: python benchmarks/engine.py CONFIG SINCE UNTIL
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

from audit import passes
from audit.config import load_config
from audit.engine.fold import WindowFold
from audit.store import Store


def main() -> None:
    cfg = load_config(sys.argv[1])
    window = (datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3]))
    kinds = set(cfg.source.kinds)
    stages: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        stages[name] = round(now - t, 3)
        t = now

    with Store.open(cfg.store.path) as store, store.transaction():
        written = passes.reconcile_days(
            store, window, rules=cfg.rules, pricing=cfg.pricing,
            use_awi="agentworkitem" in kinds, use_elf="eventlogfile" in kinds,
        )  # fmt: skip
        lap("reconcile_write")
        store.refresh_daily_usage(window)
        lap("daily_usage")
        fold = WindowFold(
            window, rules=cfg.rules, pricing=cfg.pricing, sandbox=False,
            multi_source={"agentworkitem", "eventlogfile"} <= kinds,
        )  # fmt: skip
        passes.fold_window(store, window, fold)
        audit = fold.finish()
        lap("audit")
    print(json.dumps({"actions": written, "findings": len(audit.findings), **stages}))


if __name__ == "__main__":
    main()
