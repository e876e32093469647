"""The blast-radius guard: hold a switch plan that removes too much at once.

One bad inventory read (a vCenter answering with half its VMs, a port group renamed by
mistake) can ask to strip VLANs from every hypervisor port. Such a plan is held for a
person to approve. Additions are never held: a missing VLAN cuts a VM off, an extra one
only floods.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GuardLimits:
    max_removals: int = 50  # members removed by one target's plan ((port, VLAN) on a switch)
    max_share: float = 0.5  # share of the target's dynamic members removed at once
    share_floor: int = 10  # the share rule applies from this many dynamic members on


def guard_verdict(
    removals: int, dynamic: int, target: str, limits: GuardLimits, unit: str = "memberships"
) -> str:
    """Why a target's ``removals`` (of ``dynamic`` members vmfabric added there) must be
    held, or "" when they may go. ``unit`` names what is counted, for the message."""
    if removals == 0:
        return ""
    if removals > limits.max_removals:
        return (
            f"would remove {removals} {unit} on {target}, "
            f"more than max_removals={limits.max_removals}"
        )
    if dynamic >= limits.share_floor and removals > limits.max_share * dynamic:
        return (
            f"would remove {removals} of {dynamic} dynamic {unit} on {target}, "
            f"more than max_removal_share={limits.max_share:g}"
        )
    return ""
