"""Approvals: removals a person released with ``vmfabric approve`` (or the API), by target.

A held plan names removals; approving it releases exactly those (target, holder, member)
removals, not whatever the target's plan has grown to since. The plan becomes ``applied``
once the target confirmed every one of its removals, or ``expired`` when they are no
longer wanted (a VM came back) before they were applied.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (holder, member)


@dataclass
class _Approved:
    plan_id: int
    keys: set[Key] = field(default_factory=set)


class Approvals:
    def __init__(self) -> None:
        self._by_target: dict[str, dict[int, _Approved]] = {}

    def known(self) -> set[int]:
        return {i for plans in self._by_target.values() for i in plans}

    def add(self, target: str, plan_id: int, keys: Iterable[Key]) -> None:
        self._by_target.setdefault(target, {})[plan_id] = _Approved(plan_id, set(keys))

    def keys(self, target: str) -> set[Key]:
        return {k for a in self._by_target.get(target, {}).values() for k in a.keys}

    def settle(
        self, target: str, done: Collection[Key], wanted: Collection[Key]
    ) -> tuple[list[int], list[int]]:
        """Drop approved removals that were applied (``done``) or are no longer wanted;
        return the plans now fully applied, and those that expired unapplied."""
        applied: list[int] = []
        expired: list[int] = []
        plans = self._by_target.get(target, {})
        for plan_id, approved in list(plans.items()):
            was_done = bool(approved.keys & set(done))
            approved.keys &= set(wanted) - set(done)
            if approved.keys:
                continue
            del plans[plan_id]
            (applied if was_done else expired).append(plan_id)
        return applied, expired


def plan_keys(plan: dict[str, Any]) -> set[Key]:
    """The (holder, member) removals of a stored plan (``Store.plan``), any target kind."""
    doc = plan.get("plan", {})
    if "changes" in doc:
        return {(str(c["holder"]), str(c["member"])) for c in doc["changes"]
                if c.get("action") == "remove"}  # fmt: skip
    out: set[Key] = set()
    for p in doc.get("ports", []):
        for vlan in p.get("remove", []):
            out.add((str(p["port"]), str(vlan) if vlan else "all"))
    return out
