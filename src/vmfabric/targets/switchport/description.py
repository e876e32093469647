"""vmfabric's origin record kept in a port's description, for switches that offer no other
place on the port for it (NVUE, most CLIs).

The record is a suffix ``[vmfabric 110,120-122]`` after whatever text a person wrote, so a
description like ``esx01 vmnic1`` becomes ``esx01 vmnic1 [vmfabric 110,120-122]`` and goes
back to ``esx01 vmnic1`` when the record empties. Only the suffix is vmfabric's: the text
before it is kept as it was read. The record survives a lost store and is visible to a person
on the switch (``show interfaces description``: which VLANs vmfabric added here).
"""

from __future__ import annotations

import re

from vmfabric.core.vlans import format_vlans, parse_vlans

MARK = "vmfabric"
_SUFFIX = re.compile(rf"\s*\[{MARK} ([0-9,\-]*)\]\s*$")


def split(description: str | None) -> tuple[str, frozenset[int]]:
    """A description's person's text and vmfabric's record (empty when absent or unreadable)."""
    text = description or ""
    match = _SUFFIX.search(text)
    if match is None:
        return text, frozenset()
    try:
        record = parse_vlans(match.group(1)) if match.group(1) else frozenset()
    except ValueError:
        record = frozenset()
    return text[: match.start()], record


def join(text: str, record: frozenset[int]) -> str:
    """The description carrying ``record`` after the person's ``text`` ("" if both empty)."""
    if not record:
        return text
    suffix = f"[{MARK} {format_vlans(record)}]"
    return f"{text} {suffix}" if text else suffix
