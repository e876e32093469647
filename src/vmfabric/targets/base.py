"""What every target driver declares, whatever it holds (switch ports, address sets, VTEPs).

A *target* is one device or service vmfabric writes: a switch, a firewall, a VTEP. It has
*holders* (an edge port, an address set, a VNI) that hold *members* (a VLAN, an address, a
remote VTEP). Drivers of every kind share:

- ``capabilities``: whether one apply is atomic (all or nothing), and where vmfabric's
  origin record (which members it added) lives: on the target itself (``target``: it
  survives a lost store) or in the store (``store``: a lost store makes every member look
  static, the safe direction: nothing is removed that a person may have configured);
- ``connect()`` / ``close()``: a kept-open session; ``connect`` raises TransientError when the
  target cannot be reached, ``close`` is safe to call twice;
- errors typed by what the runtime should do next: ``TransientError`` (retry with backoff),
  ``PermanentError`` (the target refused: its own message), ``ConfigError`` (bad input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Origin = Literal["target", "store"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a driver promises. ``notes`` says, for a person, what is not atomic and why."""

    atomic: bool
    origin: Origin
    notes: str = ""


class TargetDriver(Protocol):
    """The part of the contract every target kind shares."""

    name: str
    capabilities: Capabilities

    def connect(self) -> None:
        """Open (or re-open) the session. Raises TransientError when unreachable."""

    def close(self) -> None:
        """Release the session. Safe to call twice."""
