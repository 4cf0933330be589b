"""Packed findings: the window's findings held pickled and compressed a block at a time
read back exactly — every field, in the order `sorted` gives, as often as they are read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from audit.engine import packed
from audit.engine.findings import KIND_ORDER, KINDS, Finding
from audit.engine.packed import FindingPacker, PackedFindings

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


@pytest.mark.parametrize("block", [1, 3, 64, 1000])
def test_sorted_is_what_sorting_the_list_gives(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packed, "BLOCK", block)
    batches = _batches()
    packer = FindingPacker()
    for batch in batches:
        packer.add(batch)
    found = packer.sorted()
    everything = [f for batch in batches for f in batch]
    expected = sorted(everything, key=lambda f: (KIND_ORDER[f.kind], f.key))
    assert len(found) == len(expected) == 200
    # every field as it was (floats to the bit, the datetime, the detail dict), twice over
    assert list(found) == expected
    assert list(found) == expected
    assert found == expected and expected == found
    assert [f.id for f in found] != [f.id for f in everything]  # the order did change
    assert found[0] == expected[0] and found[-1] == expected[-1] and found[117] == expected[117]
    assert found[5:9] == expected[5:9]
    with pytest.raises(IndexError):
        found[200]


def test_where_keeps_the_order_and_counts() -> None:
    everything = [f for batch in _batches() for f in batch]
    found = PackedFindings.of(everything)
    odd = found.where(lambda f: int(f.id[2:]) % 2 == 1)
    expected = [f for f in everything if int(f.id[2:]) % 2 == 1]
    assert len(odd) == len(expected) == 100
    assert list(odd) == expected and odd[1] == expected[1]
    both = odd.where(lambda f: f.kind == "NEAR_CEILING")
    assert list(both) == [f for f in expected if f.kind == "NEAR_CEILING"] and len(both) > 0
    assert not found.where(lambda f: False)
    assert PackedFindings() == [] and not PackedFindings()


def test_an_unknown_kind_fails_as_the_sort_did() -> None:
    with pytest.raises(KeyError):
        FindingPacker().add([_finding(1, "NOT_A_KIND", "k")])
