"""The blast-radius guard: hold a switch plan that removes too much at once.

One bad inventory read (a vCenter answering with half its VMs, a port group renamed by
mistake) can ask to strip VLANs from every hypervisor port. Such a plan is held for a
person to approve. Additions are never held: a missing VLAN cuts a VM off, an extra one
only floods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vmfabric.core.model import PortPlan, PortState


@dataclass(frozen=True, slots=True)
class GuardLimits:
    max_removals: int = 50  # (port, VLAN) memberships removed by one switch plan
    max_share: float = 0.5  # share of the switch's dynamic memberships removed at once
    share_floor: int = 10  # the share rule applies from this many dynamic memberships on


def guard_verdict(
    switch_plan: Iterable[PortPlan],
    states: Mapping[tuple[str, str], PortState],
    switch: str,
    limits: GuardLimits,
) -> str:
    """Why the removals of one switch's plan must be held, or "" when they may go."""
    removals = sum(len(p.remove) for p in switch_plan)
    if removals == 0:
        return ""
    if removals > limits.max_removals:
        return (
            f"would remove {removals} (port, VLAN) memberships on {switch}, "
            f"more than max_removals={limits.max_removals}"
        )
    dynamic = sum(len(s.dynamic) for (sw, _), s in states.items() if sw == switch)
    if dynamic >= limits.share_floor and removals > limits.max_share * dynamic:
        return (
            f"would remove {removals} of {dynamic} dynamic memberships on {switch}, "
            f"more than max_removal_share={limits.max_share:g}"
        )
    return ""
