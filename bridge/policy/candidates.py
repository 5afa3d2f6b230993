"""What every detector's check works with: the spans it confirms and where digits are."""

from __future__ import annotations

Found = list[tuple[int, int]]
"""The spans of confirmed values in a text (UTF-8 bytes), as (start, end)."""

DIGITS = frozenset(b"0123456789")


def digit_at(data: bytes, position: int) -> bool:
    """Whether ``data`` has a digit at ``position`` (False outside it)."""
    return 0 <= position < len(data) and data[position] in DIGITS
