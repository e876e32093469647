"""What the reconcile loop needs of one target, whatever its kind.

A ``Target`` joins one driver (the device) with the intent that wants things of it, and
keeps the device's last read state. The reconcile loop (``runtime.reconciler``) drives it:

    wake -> coalesce -> read -> plan -> guard -> record "applying" -> apply -> confirm/record

- ``connect``, ``read``, ``apply``, ``close`` block (network I/O): the loop runs them in a
  worker thread, one target at a time per thread, so a slow target delays only itself.
- ``plan`` and ``confirmed`` are pure over the intent and the last read state: they run on
  the event loop.
- ``apply`` applies exactly the given changes (the loop has already removed what the guard
  holds), as one transaction where the driver allows it, and refreshes the state. It may
  raise ``TransientError`` (retry later), ``PermanentError``/``ConfigError`` (the target
  refused or is misconfigured: marked ``error``, retried with backoff), or anything else
  (a bug: logged with traceback, marked ``error``, retried with backoff).
- ``confirmed(changes)`` says which of ``changes`` the last read state shows as done: the
  loop audits only those, and a plan left ``applying`` by a timeout, a crash or a frozen
  peer is settled against the next read.
- ``origins()``: for drivers whose origin record lives in the store (``capabilities.origin
  == "store"``), holder -> members vmfabric added, as the store must keep it after the last
  apply; None for drivers that keep it on the target.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal, Protocol

from vmfabric.intents.base import Change, TargetPlan
from vmfabric.targets.base import Capabilities

TargetMode = Literal["enforce", "check"]


class Target(Protocol):
    name: str
    kind: str  # "switchport", "addrset", "vtep"
    driver_name: str
    mode: TargetMode
    capabilities: Capabilities

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def read(self) -> None:
        """Refresh the target's state from the device."""

    def plan(self, now: float) -> TargetPlan:
        """What the target needs now (after the last read)."""

    def admit(self, changes: Sequence[Change]) -> list[Change]:
        """Of the changes the guard let through, those that may go without the ones it
        held (a switch port: no VLAN is added to an open port whose closing is held)."""

    def apply(self, changes: Sequence[Change]) -> None:
        """Apply these changes as one transaction where possible; refresh the state."""

    def confirmed(self, changes: Sequence[Change]) -> list[Change]:
        """The changes the last read state shows as done."""

    def dynamic_count(self) -> int:
        """Members vmfabric added (origin record) on this target: the guard's share base."""

    def origins(self) -> Mapping[str, Collection[str]] | None:
        """Holder -> members vmfabric added, for store-kept origin records; else None."""

    def applied(self, changes: Sequence[Change]) -> None:
        """Tell the intent's removal timers which removals are done."""
