"""Packed findings: a window's findings held pickled and compressed while its batches are
folded come back exactly — every field, in the order sorting them all gives."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from audit.engine.findings import KIND_ORDER, KINDS, Finding
from audit.engine.packed import FindingPacker

T0 = datetime(2026, 10, 6, tzinfo=timezone.utc)


def _finding(n: int, kind: str, key: str) -> Finding:
    return Finding(
        id=f"id{n}",
        kind=kind,
        key=key,
        severity="high",
        session_id=None if n % 3 else f"s{n}",
        agent="ServiceAgent" if n % 2 else None,
        action_name="Lookup",
        action_ids=tuple(f"a{n}-{i}" for i in range(n % 4 + 1)),
        started_at=T0 + timedelta(milliseconds=n),
        wasted_awu=n / 7,
        wasted_usd=n * 0.1 + 0.2,
        explanation=f"finding {n}, with a “quote” and ünïcode",
        detail={"tokens": n, "ratio": n / 3, "note": None, "ids": [f"x{n}"], "ok": n % 2 == 0},
    )


def _batches() -> list[list[Finding]]:
    """Findings of every kind over several batches, keys out of order, and two findings of
    one kind with the same key in different batches (the earlier one stays first)."""
    batches: list[list[Finding]] = []
    n = 0
    for _ in range(5):
        batch = []
        for i in range(40):
            n += 1
            kind = KINDS[(n * 7) % len(KINDS)]
            key = "dup" if i == 3 else f"k{(n * 37) % 101:03d}"
            batch.append(_finding(n, kind, key))
        batches.append(batch)
    return batches


def test_sorted_is_what_sorting_the_list_gives() -> None:
    batches = _batches()
    packer = FindingPacker()
    for batch in batches:
        packer.add(batch)
    found = packer.sorted()
    everything = [f for batch in batches for f in batch]
    expected = sorted(everything, key=lambda f: (KIND_ORDER[f.kind], f.key))
    assert len(found) == 200
    # every field as it was: floats to the bit, the datetime, the detail dict
    assert found == expected
    assert [f.id for f in found] != [f.id for f in everything]  # the order did change
    dup = [f.id for f in found if f.key == "dup"]
    assert dup == [f.id for f in everything if f.key == "dup"]  # ties stay in added order
    assert {type(f.started_at.tzinfo) for f in found} == {timezone}


def test_sorted_once_with_nothing_added_is_empty() -> None:
    assert FindingPacker().sorted() == []


def test_an_unknown_kind_fails_as_the_sort_did() -> None:
    with pytest.raises(KeyError):
        FindingPacker().add([_finding(1, "NOT_A_KIND", "k")])
