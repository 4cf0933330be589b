"""Salesforce record ids: log files may carry the 15-character case-sensitive form;
everything we store and match uses the 18-character form."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["extend_15", "to_18"]

_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


@lru_cache(maxsize=65536)  # log files repeat the same user and work-item ids many times
def to_18(value: str | None) -> str | None:
    """Normalise a 15-character id to 18 characters; 18-character ids and empty values pass."""
    if not value:
        return None
    value = value.strip()
    if len(value) != 15 or not value.isalnum():
        return value
    return extend_15(value)


def extend_15(value: str) -> str:
    """A 15-character id (letters and digits) in its 18-character form. Not cached: for
    ids that do not repeat (record ids), where a cache would only hold them."""
    suffix = ""
    for block in range(3):
        chunk = value[block * 5 : block * 5 + 5]
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += _SUFFIX[bits]
    return value + suffix
