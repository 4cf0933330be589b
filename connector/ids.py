"""Salesforce record ids: log files may carry the 15-character case-sensitive form;
everything we store and match uses the 18-character form."""

from __future__ import annotations

import string
from functools import lru_cache

__all__ = ["extend_15", "to_18"]

_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
#: an ASCII letter or digit as its bit: 1 for an upper-case letter
_BITS = str.maketrans(
    {c: "1" if c in string.ascii_uppercase else "0" for c in string.ascii_letters + string.digits}
)
#: five bits, first character first, → that block's suffix character
_BLOCK = {format(n, "05b")[::-1]: _SUFFIX[n] for n in range(32)}


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
    bits = value.translate(_BITS)  # in C; a character beyond ASCII stays as it is
    try:
        return value + _BLOCK[bits[0:5]] + _BLOCK[bits[5:10]] + _BLOCK[bits[10:15]]
    except KeyError:
        return _extend_any(value)


def _extend_any(value: str) -> str:
    """extend_15 character by character, for letters and digits beyond ASCII."""
    suffix = ""
    for block in range(3):
        chunk = value[block * 5 : block * 5 + 5]
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += _SUFFIX[bits]
    return value + suffix
