"""The agent names log-only actions take (`Sources.agent_names_for`) are read once a run and
read again as soon as a sync page changes a stored record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from audit.store import Store
from connector.sink import Page
from tests.helpers import awi_row

WEEK = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 8, tzinfo=UTC))
AGENT = "0XxAG0000000001AAA"


def _named(record_id: str, name: str, at: str) -> dict[str, object]:
    return {**awi_row(record_id, at, 5), "agent_id": AGENT, "agent_name": name,
            "system_modstamp": at}  # fmt: skip


def test_names_follow_a_renamed_agent_and_are_not_read_twice(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.db") as store:
        first = [_named("a0000000000001AAAA", "Concierge", "2026-10-02T09:00:00.000Z")]
        store.commit(Page("agentworkitem", "r1", awi_records=first))  # type: ignore[arg-type]
        assert store.agent_names_for(WEEK) == {AGENT[:15]: "Concierge"}
        # a later record of the same agent under its new name
        later = [_named("a0000000000002AAAA", "Helper", "2026-10-03T09:00:00.000Z")]
        store.commit(Page("agentworkitem", "r2", awi_records=later))  # type: ignore[arg-type]
        assert store.agent_names_for(WEEK) == {AGENT[:15]: "Helper"}
        # nothing changed since: the same answer, without asking SQLite again
        queries: list[str] = []
        store._db.conn.set_trace_callback(queries.append)
        assert store.agent_names_for(WEEK) == {AGENT[:15]: "Helper"}
        store._db.conn.set_trace_callback(None)
        assert not [q for q in queries if "awi_records" in q]
        # an identical page changes nothing and keeps the answer too
        store.commit(Page("agentworkitem", "r3", awi_records=later))  # type: ignore[arg-type]
        assert store.agent_names_for(WEEK) == {AGENT[:15]: "Helper"}
