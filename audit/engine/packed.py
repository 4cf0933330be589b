"""A window's findings packed while its batches are folded (issue 12).

About one action in twenty is a finding, ~1.2 KB as objects (its detail dict, action ids,
explanation): held whole beside pass 2's batch they made the peak grow with the window
(~60 MB at a million actions). Packed — each batch's findings of a kind as their fields'
tuples, pickled and compressed — they take ~150 bytes each while the batches go by, and are
unpacked once, sorted, when the batches are gone (`FindingPacker.sorted`).
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import fields
from operator import attrgetter

from audit.engine.findings import KIND_ORDER, KINDS, Finding

__all__ = ["FindingPacker"]

_values = attrgetter(*(f.name for f in fields(Finding)))


def _pack(findings: Sequence[Finding]) -> bytes:
    # the fields as a tuple: pickled and rebuilt much faster than the dataclass itself
    return zlib.compress(pickle.dumps([_values(f) for f in findings], protocol=5), 1)


def _unpack(block: bytes) -> list[Finding]:
    return [Finding(*values) for values in pickle.loads(zlib.decompress(block))]


class FindingPacker:
    """A window's findings gathered a batch at a time (`add`), each kind packed on its own;
    `sorted` hands them back ordered by kind (KINDS order), then key — exactly as `sorted`
    orders the list of them all, ties in the order they were added."""

    def __init__(self) -> None:
        self._by_kind: dict[str, list[bytes]] = {}

    def add(self, findings: Iterable[Finding]) -> None:
        grouped: dict[str, list[Finding]] = {}
        for finding in findings:
            if finding.kind not in KIND_ORDER:  # as the sort by kind would
                raise KeyError(finding.kind)
            grouped.setdefault(finding.kind, []).append(finding)
        for kind, found in grouped.items():
            self._by_kind.setdefault(kind, []).append(_pack(found))

    def sorted(self) -> list[Finding]:
        """Every finding added, unpacked — once: a kind's blocks are let go as it is read."""
        out: list[Finding] = []
        for kind in KINDS:
            found = [f for block in self._by_kind.pop(kind, ()) for f in _unpack(block)]
            found.sort(key=_key)
            out += found
        return out


def _key(finding: Finding) -> str:
    return finding.key
