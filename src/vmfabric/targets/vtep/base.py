"""The VTEP contract, written in intent: "flood VNI n to exactly these remote VTEPs".

A VTEP driver manages one tunnel endpoint (an Open vSwitch bridge, an EOS switch's
``Vxlan1``). Its holders are VNIs; the members of a VNI are the remote VTEP addresses its
broadcast, unknown unicast and multicast frames are copied to (its *flood list*).

Contract (every driver):

- ``read()`` returns every VNI's flood list as the VTEP holds it, with the remote VTEPs
  vmfabric added (its origin record); a VNI without remotes is absent.
- ``apply(changes)`` adds and removes remote VTEPs as one transaction where the VTEP
  allows it, touching nothing else: it never removes a remote VTEP vmfabric did not add,
  adding a present one is not a write, a plan with nothing to change sends nothing. It
  returns the state after the change (read back).
- Errors: ``TransientError`` when the VTEP cannot be reached, ``PermanentError`` when it
  refuses (its own message), ``ConfigError`` for a VNI with no VLAN to map it to.

Methods block (network I/O): the runtime runs them in a worker thread per VTEP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vmfabric.targets.base import Capabilities


@dataclass(frozen=True, slots=True)
class FloodList:
    """One VNI's flood list as read: remote VTEP addresses, and those vmfabric added."""

    remotes: frozenset[str] = frozenset()
    dynamic: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class FloodChange:
    """One VNI's part of a plan: add and remove these remote VTEPs."""

    vni: int
    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()


class VtepDriver(Protocol):
    """See the module docstring."""

    name: str
    address: str
    capabilities: Capabilities

    def connect(self) -> None:
        """Open the session. Raises TransientError when the VTEP cannot be reached."""

    def close(self) -> None:
        """Release the session. Safe to call twice."""

    def read(self) -> dict[int, FloodList]:
        """Every VNI's flood list, by VNI."""

    def sync(self) -> None:
        """Make the next ``read`` see everything the VTEP committed before this call."""

    def apply(self, changes: Sequence[FloodChange]) -> dict[int, FloodList]:
        """Apply all changes in one transaction; return every VNI's flood list after it."""


def changed(before: Mapping[int, FloodList], after: Mapping[int, FloodList]) -> int:
    """How many (VNI, remote VTEP) memberships differ between two reads."""
    total = 0
    for vni in set(before) | set(after):
        old = before.get(vni, FloodList()).remotes
        new = after.get(vni, FloodList()).remotes
        total += len(old ^ new)
    return total
