"""VLAN ids and VLAN sets, and their range-string form ("2-1000,1002-4094").

A VLAN set is a plain ``frozenset[int]``; this module parses and formats the compact range
notation network engineers use, and refuses anything outside 1..4094.
"""

from __future__ import annotations

from collections.abc import Iterable

VLAN_MIN = 1
VLAN_MAX = 4094
ALL_VLANS: frozenset[int] = frozenset(range(VLAN_MIN, VLAN_MAX + 1))


def check_vlan(vlan: int) -> int:
    """Return ``vlan`` if it is a usable 802.1Q id (1..4094), else raise ValueError."""
    if isinstance(vlan, bool) or not isinstance(vlan, int):
        raise ValueError(f"VLAN {vlan!r} is not a number")
    if not VLAN_MIN <= vlan <= VLAN_MAX:
        raise ValueError(f"VLAN {vlan} is outside {VLAN_MIN}-{VLAN_MAX}")
    return vlan


def _parse_id(text: str, whole: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise ValueError(f"{text!r} in {whole!r} is not a VLAN number")
    return check_vlan(int(text))


def parse_vlans(text: str | int) -> frozenset[int]:
    """Parse ``"10,20-30"`` (or a single int) into a set of VLAN ids.

    Refuses empty items, reversed ranges (``30-20``) and overlapping items
    (``10-20,15``): an overlap is almost always a typo in a hand-written range.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return frozenset({check_vlan(text)})
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a VLAN range string")
    whole = text
    seen: set[int] = set()
    for item in whole.split(","):
        if not item.strip():
            raise ValueError(f"empty item in VLAN range {whole!r}")
        lo_text, sep, hi_text = item.partition("-")
        lo = _parse_id(lo_text, whole)
        hi = _parse_id(hi_text, whole) if sep else lo
        if hi < lo:
            raise ValueError(f"reversed range {item.strip()!r} in {whole!r}")
        span = range(lo, hi + 1)
        if not seen.isdisjoint(span):
            raise ValueError(f"overlapping item {item.strip()!r} in {whole!r}")
        seen.update(span)
    return frozenset(seen)


def format_vlans(vlans: Iterable[int]) -> str:
    """Format a VLAN set compactly: ``{1,2,3,7}`` -> ``"1-3,7"``; empty -> ``""``."""
    ordered = sorted(set(vlans))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)
