"""Half-open [start, end) ranges of ISO datetime strings: what a source has covered, and
what of a backfill window is still to fetch."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Interval", "merge_intervals", "subtract_intervals"]

Interval = tuple[str, str]  # [start, end) as ISO strings (sortable)


def merge_intervals(intervals: Iterable[Iterable[str]]) -> list[list[str]]:
    """Union of [start, end) ISO intervals, sorted and coalesced."""
    out: list[list[str]] = []
    for lo, hi in sorted(tuple(iv) for iv in intervals):
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def subtract_intervals(window: Interval, covered: Iterable[Iterable[str]]) -> list[Interval]:
    """The parts of `window` not inside any covered interval."""
    todo = [window]
    for lo, hi in merge_intervals(covered):
        nxt: list[Interval] = []
        for a, b in todo:
            if hi <= a or lo >= b:
                nxt.append((a, b))
                continue
            if a < lo:
                nxt.append((a, lo))
            if hi < b:
                nxt.append((hi, b))
        todo = nxt
    return [(a, b) for a, b in todo if a < b]
