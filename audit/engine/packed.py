"""A window's findings kept packed (issue 12): about one finding per twenty actions, ~1.2 KB
each as objects (its detail dict, action ids, explanation) — 60 MB at a million actions —
but ~150 bytes pickled and compressed a block at a time. The fold packs each batch's
findings as it goes (`FindingPacker`) and hands out a `PackedFindings`: a read-only
sequence that unpacks one block at a time, in the same order, as often as it is read.

Whoever reads the findings should stream them (count, sum, `heapq.nsmallest`), not build a
list of them all: that list is exactly the memory this saves.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any, overload

from audit.engine.findings import KIND_ORDER, KINDS, Finding

__all__ = ["BLOCK", "FindingPacker", "PackedFindings"]

#: findings per packed block (what one read holds unpacked at a time)
BLOCK = 1000

_values = attrgetter(*(f.name for f in fields(Finding)))


def _pack(findings: Sequence[Finding]) -> bytes:
    # the fields as a tuple: pickled and rebuilt much faster than the dataclass itself
    return zlib.compress(pickle.dumps([_values(f) for f in findings], protocol=5), 1)


def _unpack(block: bytes) -> list[Finding]:
    return [Finding(*values) for values in pickle.loads(zlib.decompress(block))]


class PackedFindings(Sequence[Finding]):
    """Findings in a fixed order, packed in blocks; `keep` shows only those it accepts."""

    def __init__(
        self,
        blocks: Sequence[bytes] = (),
        count: int = 0,
        keep: Callable[[Finding], bool] | None = None,
    ) -> None:
        self._blocks = tuple(blocks)
        self._keep = keep
        self._count = count if keep is None else sum(1 for _ in self)

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> PackedFindings:
        """`findings`, in their order, packed."""
        packer = _BlockWriter()
        for finding in findings:
            packer.add(finding)
        return packer.done()

    def where(self, keep: Callable[[Finding], bool]) -> PackedFindings:
        """The findings `keep` accepts, in the same order (nothing is copied)."""
        if self._keep is None:
            return PackedFindings(self._blocks, keep=keep)
        outer = self._keep
        return PackedFindings(self._blocks, keep=lambda f: outer(f) and keep(f))

    def __iter__(self) -> Iterator[Finding]:
        keep = self._keep
        for block in self._blocks:
            found = _unpack(block)
            yield from found if keep is None else filter(keep, found)

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Finding: ...

    @overload
    def __getitem__(self, index: slice) -> list[Finding]: ...

    def __getitem__(self, index: int | slice) -> Finding | list[Finding]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("finding index out of range")
        if self._keep is None:
            return _unpack(self._blocks[index // BLOCK])[index % BLOCK]
        return next(f for i, f in enumerate(self) if i == index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to lists: no hash

    def __repr__(self) -> str:
        return f"PackedFindings({list(self)!r})"


class _BlockWriter:
    """Findings added one by one, packed BLOCK at a time."""

    def __init__(self) -> None:
        self._blocks: list[bytes] = []
        self._pending: list[Finding] = []
        self._count = 0

    def add(self, finding: Finding) -> None:
        self._pending.append(finding)
        self._count += 1
        if len(self._pending) == BLOCK:
            self._blocks.append(_pack(self._pending))
            self._pending = []

    def done(self) -> PackedFindings:
        if self._pending:
            self._blocks.append(_pack(self._pending))
            self._pending = []
        return PackedFindings(self._blocks, self._count)


class FindingPacker:
    """A window's findings gathered a batch at a time (`add`), each kind packed on its own;
    `sorted` hands them back ordered by kind (KINDS order), then key — as `sorted` would,
    ties in the order they were added — with one kind unpacked at a time."""

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

    def sorted(self) -> PackedFindings:
        out = _BlockWriter()
        for kind in KINDS:
            found = [f for block in self._by_kind.get(kind, ()) for f in _unpack(block)]
            found.sort(key=_key)
            for finding in found:
                out.add(finding)
        return out.done()


def _key(finding: Finding) -> Any:
    return finding.key
