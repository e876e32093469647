"""The intent contract and the typed plans every target kind shares.

An *intent* (autovlan, security groups, overlay) turns the shared inventory into the state
each target must hold. It is pure: no I/O, no clock it is not given.

- ``update(inventory, delta, now)`` takes what one batch of source events changed (the
  ``Delta`` the inventory returned) and returns the names of the targets whose desired
  state changed (dirty). It touches only what the delta affects.
- ``desired(target)`` is the desired state of one target: holder -> members (an edge port
  -> VLANs; an address set -> addresses; a VNI -> remote VTEPs).
- ``recompute(inventory)`` computes every target's desired state from scratch. It must
  always equal the incremental result: a property test per intent proves it.
- ``vacated(target)`` reports (holder, member) pairs that lost their last user, with the
  time they did, so that removal safety can start their prune delay.

A plan is a list of ``Change``s, one per (holder, member): add or remove, with a reason and
the sessions it concerns. The runtime guards, audits, approves and applies ``Change``s
whatever the target kind; a driver adapter renders them in the target's own terms.
Members are text in plans and the audit log (a VLAN is ``"110"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from vmfabric.inventory.index import Delta, Inventory

Action = Literal["add", "remove"]
Desired = Mapping[str, frozenset[str]]  # holder -> members


@dataclass(frozen=True, slots=True)
class Change:
    """One member added to or removed from one holder of a target."""

    holder: str
    member: str
    action: Action
    reason: str = ""
    sessions: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.holder, self.member, self.action)


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """What one target needs now. ``changes`` are due; ``held`` are removals that wait
    (prune delay, a session out of sync: the reason says which); ``check`` is what only
    sessions in check mode want (recorded, never applied)."""

    target: str
    kind: str
    changes: tuple[Change, ...] = ()
    held: tuple[Change, ...] = ()
    check: tuple[Change, ...] = ()
    notes: Mapping[str, str] = field(default_factory=dict)  # holder -> remark (closed port)

    def removals(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action == "remove")

    def sessions(self) -> tuple[str, ...]:
        return tuple(sorted({s for c in self.changes for s in c.sessions}))


class Intent(Protocol):
    """See the module docstring."""

    name: str

    def update(self, inventory: Inventory, delta: Delta, now: float) -> set[str]:
        """Apply one inventory delta; return the targets whose desired state changed."""

    def desired(self, target: str) -> Desired:
        """The desired state of one target: holder -> members."""

    def recompute(self, inventory: Inventory) -> Mapping[str, Desired]:
        """Every target's desired state, from scratch (verification, reload)."""
