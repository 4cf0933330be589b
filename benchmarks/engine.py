"""The engine alone over stored data (issue 12): read a window's source rows from a store a
first run filled, reconcile them into actions, audit them (AWU, findings, totals, pricing)
and write the actions and daily usage back — no network. Run as a child process by
`benchmarks/scale.py`, which reads its peak RSS; prints one JSON line of stage seconds.

Usage: python benchmarks/engine.py CONFIG SINCE UNTIL
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

from audit.config import load_config
from audit.engine.sources.core import AWI_FIELDS, ELF_FIELDS, reconcile_tuples
from audit.engine.window import audit_window
from audit.store import Store


def main() -> None:
    cfg = load_config(sys.argv[1])
    window = (datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3]))
    stages: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        stages[name] = round(now - t, 3)
        t = now

    with Store.open(cfg.store.path) as store:
        awi_rows, elf_rows = store.core_tuples(window, AWI_FIELDS, ELF_FIELDS)
        lap("read")
        actions = reconcile_tuples(awi_rows.values(), elf_rows, window=window)
        del awi_rows, elf_rows
        lap("reconcile")
        audit = audit_window(
            actions, window, rules=cfg.rules, pricing=cfg.pricing, sandbox=False,
            multi_source=True,
        )  # fmt: skip
        lap("audit")
        store.record_window(audit)
        lap("write")
    print(json.dumps({"actions": len(actions), "findings": len(audit.result.findings), **stages}))


if __name__ == "__main__":
    main()
