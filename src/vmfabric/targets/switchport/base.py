"""The driver contract, written in intent: "make these ports carry these VLANs".

A driver manages one switch. Its methods are synchronous and may block (the service runs
them in a worker thread per switch, so a slow switch never blocks another one).

Contract, checked for every driver by ``tests/integration/test_driver_conformance.py``:

- ``read_ports()`` returns a ``PortState`` for every configured edge port (mode MISSING
  for one the switch does not have). ``dynamic`` is vmfabric's origin record, stored on the
  switch itself so that it survives a lost store.
- ``apply(changes)`` applies all changes of one switch as one transaction where the switch
  allows it, touching nothing but the VLAN membership of the named edge ports (and the
  origin record). It is idempotent: adding a present VLAN or removing an absent one is not
  a write. It returns the resulting states of the ports it was given.
- A port that would be left carrying no VLAN at all must not end up carrying every VLAN
  (Open vSwitch's empty-trunks trap): the driver keeps it closed.
- Errors: ``TransientError`` when the switch cannot be reached (retry later),
  ``PermanentError`` when it refuses a change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from vmfabric.config import SwitchConfig
from vmfabric.core.model import PortChange, PortState
from vmfabric.plugins import Registry


class Driver(Protocol):
    name: str

    def connect(self) -> None:
        """Open the session to the switch. Raises TransientError when unreachable."""

    def read_ports(self) -> dict[str, PortState]:
        """Current state of every configured edge port, by port name."""

    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]:
        """Apply all changes in one transaction; return the new state of those ports."""

    def close(self) -> None:
        """Release the connection. Safe to call twice."""


DriverFactory = Callable[[SwitchConfig], Driver]

DRIVERS: Registry[DriverFactory] = Registry(
    "driver",
    "vmfabric.drivers",
    {"ovs": "vmfabric.targets.switchport.ovs", "fake": "vmfabric.targets.switchport.fake"},
)


def create_driver(config: SwitchConfig) -> Driver:
    return DRIVERS.get(config.driver)(config)
