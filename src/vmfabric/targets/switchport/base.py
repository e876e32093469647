"""The switch-port contract, written in intent: "make these ports carry these VLANs".

A switch-port driver manages one switch. Its methods are synchronous and may block (the
runtime runs them in a worker thread per switch, so a slow switch never blocks another).

Contract, checked for every driver by the shipped conformance suite
(``vmfabric.testing.conformance``):

- ``read_ports()`` returns a ``PortState`` for every configured edge port (mode MISSING for
  one the switch does not have). ``dynamic`` is vmfabric's origin record when the driver
  keeps it on the switch (``capabilities.origin == "target"``); drivers whose record lives
  in the store return an empty ``dynamic`` and the runtime fills it from the store.
- ``apply(changes)`` applies all changes of one switch as one transaction where the switch
  allows it (``capabilities.atomic``), touching nothing but the VLAN membership of the named
  edge ports (and the origin record). It is idempotent: adding a present VLAN or removing an
  absent one is not a write, and a plan with nothing to change sends nothing. It returns the
  resulting states of the ports it was given.
- Access ports are never edited. A port that carries every VLAN is ``open`` and left alone
  unless ``open_ports: close``. A port left with no VLAN must not end up carrying every VLAN
  (Open vSwitch's empty-trunks trap): it is kept *closed*.
- Errors: ``TransientError`` when the switch cannot be reached (retry later),
  ``PermanentError`` when it refuses a change (the switch's own message), ``ConfigError`` for
  a change naming a port that is not an edge port is never raised: that is refused as
  ``PermanentError`` before anything is written.

This module owns the vendor-neutral parts, so that no driver copies them: the trunk
arithmetic (``plan_write``), the edge-port check (``check_changes``), the closed-port rule
(``PortWrite.close``) and the placeholder a list-based switch uses to keep a port closed
(``trunk_ops``), the typed driver registry, and ``SwitchPortDriver``, a base class whose
``apply`` is read, plan, write, read back; a vendor driver implements only its reads and
writes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from vmfabric.config import SwitchConfig
from vmfabric.core.errors import ConfigError, PermanentError
from vmfabric.core.model import PortChange, PortMode, PortState
from vmfabric.core.vlans import check_vlan
from vmfabric.plugins import SWITCH_DRIVERS
from vmfabric.targets.base import Capabilities

CLOSED_VLAN = 4095  # 802.1Q reserves it; a list-based switch keeps a closed port on it


class Driver(Protocol):
    """A switch-port driver. See the module docstring for the contract."""

    name: str
    capabilities: Capabilities

    def connect(self) -> None:
        """Open the session to the switch. Raises TransientError when unreachable."""

    def read_ports(self) -> dict[str, PortState]:
        """Current state of every configured edge port, by port name."""

    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]:
        """Apply all changes in one transaction; return the new state of those ports."""

    def close(self) -> None:
        """Release the connection. Safe to call twice."""


class DriverClass(Protocol):
    """What the registry holds: a driver class with its typed options model."""

    Options: type[SwitchConfig]

    def __call__(self, config: SwitchConfig) -> Driver: ...


DriverFactory = Callable[[SwitchConfig], Driver]
DRIVERS = SWITCH_DRIVERS  # register a driver class with @DRIVERS.register("name")


def create_driver(config: SwitchConfig) -> Driver:
    driver: Driver = DRIVERS.get(config.driver)(config)
    return driver


# ---- trunk arithmetic (pure) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortWrite:
    """What one change does to one port, in VLANs (each driver renders it in its own terms).

    ``narrow``: the port carried every VLAN (open) and becomes a trunk of exactly ``add``.
    ``close``: the port is left with no VLAN; the driver must make it carry none (never all).
    ``record``: the new origin record (VLANs vmfabric added), None when unchanged.
    """

    port: str
    add: frozenset[int] = frozenset()
    remove: frozenset[int] = frozenset()
    narrow: bool = False
    close: bool = False
    record: frozenset[int] | None = None
    memberships: int = 0  # (port, VLAN) memberships changed

    def __bool__(self) -> bool:
        return bool(self.add or self.remove or self.narrow or self.record is not None)


def trunk_write(
    change: PortChange, vlans: frozenset[int], record: frozenset[int], *, narrow: bool = False
) -> PortWrite:
    """The write that brings a trunk carrying ``vlans`` (origin ``record``) to ``change``.

    Only VLANs this change actually puts on the port join the record, so a VLAN people
    configured never becomes dynamic; removed VLANs leave it."""
    added = change.add - change.remove - vlans
    removed = change.remove & vlans
    after = (vlans | added) - removed
    new_record = (record | added) - change.remove
    return PortWrite(
        port=change.port,
        add=added,
        remove=removed,
        narrow=narrow,
        close=not after and (bool(removed) or narrow),
        record=new_record if new_record != record else None,
        memberships=len(added) + len(removed),
    )


def plan_write(state: PortState | None, change: PortChange, open_ports: str) -> PortWrite:
    """What ``change`` writes to a port in ``state`` (an empty PortWrite: nothing).

    Missing and access ports are never written; an open port only with ``open_ports:
    close``, when it is narrowed to the VLANs added."""
    if state is None or state.mode in (PortMode.MISSING, PortMode.ACCESS):
        return PortWrite(change.port)
    if state.mode is PortMode.OPEN:
        if open_ports != "close":
            return PortWrite(change.port)
        return trunk_write(change, frozenset(), state.dynamic, narrow=True)
    return trunk_write(change, state.vlans, state.dynamic)


def trunk_ops(trunks: frozenset[int], write: PortWrite) -> tuple[frozenset[int], frozenset[int]]:
    """Elements to insert into and delete from a trunk list in which *empty means every
    VLAN* (Open vSwitch, the fake switch): the closed-port placeholder ``CLOSED_VLAN`` is
    inserted when the port is left with no VLAN and dropped when a VLAN arrives."""
    current = frozenset() if write.narrow else trunks
    after = ((current - {CLOSED_VLAN}) | write.add) - write.remove
    insert, delete = set(write.add), set(write.remove)
    if not after and CLOSED_VLAN not in current:
        insert.add(CLOSED_VLAN)
    if after and CLOSED_VLAN in current:
        delete.add(CLOSED_VLAN)
    return frozenset(insert), frozenset(delete)


def check_changes(config: SwitchConfig, changes: Sequence[PortChange]) -> None:
    """Refuse changes for ports that are not edge ports, a port named twice, or VLANs
    outside 1-4094. Nothing has been written when this raises."""
    edge = set(config.edge_ports)
    seen: set[str] = set()
    for change in changes:
        if change.port in seen:
            raise ConfigError(f"switch {config.name}: port {change.port} is named twice in a plan")
        seen.add(change.port)
        if change.port not in edge:
            raise PermanentError(
                f"switch {config.name}: port {change.port} is not an edge port; refusing to write"
            )
        for vlan in change.add | change.remove:
            try:
                check_vlan(vlan)
            except ValueError as exc:
                raise ConfigError(f"switch {config.name} port {change.port}: {exc}") from None


# ---- a base class for request/response switches -----------------------------------------


class SwitchPortDriver(ABC):
    """The mechanics every request/response driver shares: check, read, plan, write, read
    back, count. A vendor driver implements ``connect``, ``close``, ``read_raw`` and
    ``write``; its vendor knowledge stays there (or in data), the rules stay here.

    ``transactions`` counts applies that wrote something and ``writes`` the (port, VLAN)
    memberships they changed (benchmarks and the conformance suite read them)."""

    Options: ClassVar[type[SwitchConfig]] = SwitchConfig
    capabilities: ClassVar[Capabilities] = Capabilities(atomic=False, origin="store")

    def __init__(self, config: SwitchConfig) -> None:
        self.config = config
        self.name = config.name
        self.transactions = 0
        self.writes = 0

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def read_raw(self, ports: Sequence[str]) -> dict[str, PortState]:
        """The state of each named port (MISSING for one the switch lacks)."""

    @abstractmethod
    def write(self, writes: Sequence[PortWrite], before: Mapping[str, PortState]) -> None:
        """Apply these non-empty writes as one transaction where the switch allows it;
        on any error leave the switch as it was (where it can) and raise."""

    def read_ports(self) -> dict[str, PortState]:
        return self.read_raw(self.config.edge_ports)

    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]:
        check_changes(self.config, changes)
        ports = list(dict.fromkeys(c.port for c in changes))
        before = self.read_raw(ports)
        writes = [w for c in changes if (w := plan_write(before[c.port], c, self.open_ports))]
        if writes:
            self.write(writes, before)
            self.transactions += 1
            self.writes += sum(w.memberships for w in writes)
        return self.read_raw(ports)

    @property
    def open_ports(self) -> str:
        return self.config.open_ports
