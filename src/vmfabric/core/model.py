"""Domain types shared by every layer: inventory, topology, port state, changes and plans.

All types are frozen dataclasses so that the engine can keep them in indexes and compare
old and new versions of a VM or host cheaply. Identity is always scoped by session: two
vCenters may both have a host called ``esx01``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

UplinkSource = Literal["cdp", "lldp", "static"]
SessionStateName = Literal["connecting", "connected", "disconnected"]


class Power(StrEnum):
    """VM power state, named as vSphere names it (the JSON contract uses these strings)."""

    ON = "poweredOn"
    OFF = "poweredOff"
    SUSPENDED = "suspended"


class PortMode(StrEnum):
    """How a switch port currently carries VLANs, as read from the switch."""

    TRUNK = "trunk"  # carries an explicit VLAN list: the only mode autovlan edits
    OPEN = "open"  # carries every VLAN (OVS: no tag, empty trunks); left alone unless adopted
    ACCESS = "access"  # an access port (one untagged VLAN): never edited
    MISSING = "missing"  # listed as edge port but absent from the switch


@dataclass(frozen=True, slots=True)
class Neighbor:
    """What a hypervisor NIC heard from its link partner over CDP or LLDP."""

    protocol: Literal["cdp", "lldp"]
    system_name: str
    port_id: str
    chassis_id: str = ""
    mgmt_addr: str = ""
    port_descr: str = ""


@dataclass(frozen=True, slots=True)
class Nic:
    """A hypervisor's physical NIC and, if discovered, its neighbour."""

    name: str
    neighbor: Neighbor | None = None


@dataclass(frozen=True, slots=True)
class Uplink:
    """A hypervisor NIC resolved to the switch port it lands on."""

    nic: str
    switch: str
    port: str
    source: UplinkSource


@dataclass(frozen=True, slots=True)
class Host:
    """A hypervisor. ``vswitch_nics`` maps a virtual switch (vSwitch, DVS, OVS bridge) to the
    physical NICs that carry it; a port group whose virtual switch is not listed there is
    carried by every NIC that has an uplink (the "unknown carriage" fallback)."""

    session: str
    name: str
    nics: tuple[Nic, ...] = ()
    vswitch_nics: Mapping[str, frozenset[str]] = field(default_factory=dict)
    uplinks: tuple[Uplink, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.session, self.name)


@dataclass(frozen=True, slots=True)
class PortGroup:
    """A VM network with its VLANs: one VLAN, a VLAN trunk range, or none (untagged or an
    unsupported VLAN type, named in ``problem``)."""

    session: str
    name: str
    vlans: frozenset[int]
    vswitch: str = ""
    problem: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.session, self.name)


@dataclass(frozen=True, slots=True)
class Vm:
    """A virtual machine. ``id`` is the manager's stable id (vCenter moref, libvirt UUID,
    or the name for static inventories); ``networks`` names port groups of the session.
    The other fields are what intents beyond autovlan match on (security groups: tags,
    addresses, guest OS, folder); sources fill what their manager offers, the rest stays
    empty. Tuples rather than sets: cheap, hashable, and one shared ``()`` when empty."""

    session: str
    id: str
    name: str
    host: str
    power: Power
    networks: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()  # IPv4/IPv6 addresses, normalised text (ipaddress), sorted
    macs: tuple[str, ...] = ()  # lower-case aa:bb:cc:dd:ee:ff
    tags: tuple[str, ...] = ()  # "category:name" (vCenter tags) or a bare name, sorted
    attributes: tuple[tuple[str, str], ...] = ()  # custom attributes, (key, value) sorted
    guest_os: str = ""  # vCenter config.guestId (ubuntu64Guest), libvirt metadata, static
    folder: str = ""  # inventory folder path (vCenter), "" when unknown
    cluster: str = ""  # the host's cluster, "" when unknown

    @property
    def key(self) -> tuple[str, str]:
        return (self.session, self.id)

    def attribute(self, key: str) -> str | None:
        """The value of custom attribute ``key``, or None."""
        for k, v in self.attributes:
            if k == key:
                return v
        return None


# ---- changes: what sources emit and the engine consumes -------------------------------


@dataclass(frozen=True, slots=True)
class VmUpsert:
    vm: Vm


@dataclass(frozen=True, slots=True)
class VmRemoved:
    session: str
    id: str


@dataclass(frozen=True, slots=True)
class HostUpsert:
    host: Host


@dataclass(frozen=True, slots=True)
class HostRemoved:
    session: str
    name: str


@dataclass(frozen=True, slots=True)
class PortGroupUpsert:
    portgroup: PortGroup


@dataclass(frozen=True, slots=True)
class PortGroupRemoved:
    session: str
    name: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A session's full inventory. Replaces everything known of the session and marks it
    in sync: only after a snapshot may the session's absence of a VM prune anything. A
    snapshot naming ``unknown_hosts`` (hypervisors that could not be read, whose VMs are
    unknown) is applied but leaves the session out of sync: its removals stay held."""

    session: str
    hosts: tuple[Host, ...]
    portgroups: tuple[PortGroup, ...]
    vms: tuple[Vm, ...]
    unknown_hosts: tuple[str, ...] = ()  # hosts that could not be read: VMs unknown


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """A session's connection state. Anything but ``connected`` takes it out of sync
    (its VLANs are held) until its next snapshot."""

    session: str
    state: SessionStateName
    error: str = ""
    version: str = ""
    warnings: tuple[str, ...] = ()
    bad_input: bool = False  # the error is in a file a person wrote: fix it, not retry


Change = VmUpsert | VmRemoved | HostUpsert | HostRemoved | PortGroupUpsert | PortGroupRemoved
SourceEvent = Change | Snapshot | SessionStatus


# ---- switch side -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortState:
    """A switch port's VLANs as read from the switch. ``dynamic`` are the VLANs vmfabric
    added (its origin record, kept on the switch itself); the rest are static."""

    switch: str
    port: str
    mode: PortMode
    vlans: frozenset[int] = frozenset()
    dynamic: frozenset[int] = frozenset()

    @property
    def static(self) -> frozenset[int]:
        return self.vlans - self.dynamic


@dataclass(frozen=True, slots=True)
class PortChange:
    """One port's part of a plan, as a driver applies it: add and remove these VLANs and
    record ``add`` as vmfabric's own. Applying it twice changes nothing the second time."""

    port: str
    add: frozenset[int] = frozenset()
    remove: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a VLAN is added to or removed from a port."""

    vlan: int
    action: Literal["add", "remove", "hold"]
    vms: tuple[str, ...] = ()
    portgroups: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class PortPlan:
    switch: str
    port: str
    add: frozenset[int] = frozenset()
    remove: frozenset[int] = frozenset()
    reasons: tuple[Reason, ...] = ()

    def change(self) -> PortChange:
        return PortChange(port=self.port, add=self.add, remove=self.remove)


@dataclass(frozen=True, slots=True)
class Plan:
    """Per switch, per port: VLANs to add and to remove, each with its reason.

    ``held`` lists removals that are due but waiting (prune delay, a session out of sync);
    ``check`` lists what sessions in ``mode: check`` would add. Neither is applied."""

    ports: tuple[PortPlan, ...] = ()
    held: tuple[PortPlan, ...] = ()
    check: tuple[PortPlan, ...] = ()  # what sessions in check mode would add: never applied

    def __iter__(self) -> Iterator[PortPlan]:
        return iter(self.ports)

    def __bool__(self) -> bool:
        return bool(self.ports)

    def switches(self) -> list[str]:
        return sorted({p.switch for p in self.ports})

    def for_switch(self, switch: str) -> tuple[PortPlan, ...]:
        return tuple(p for p in self.ports if p.switch == switch)

    def removal_count(self) -> int:
        return sum(len(p.remove) for p in self.ports)


def carrying_uplinks(host: Host, portgroup: PortGroup) -> tuple[tuple[Uplink, ...], bool]:
    """The uplinks of ``host`` that carry ``portgroup``, and whether that is a guess.

    A port group on a virtual switch whose NICs are known is carried by those NICs'
    uplinks. When the virtual switch's NICs are not known (vcsim's DVS lists no host
    members, static inventories name no vSwitch), every uplink of the host carries it and
    the second value is True so that ``show vm --detail`` can say so.
    """
    nics = host.vswitch_nics.get(portgroup.vswitch) if portgroup.vswitch else None
    if nics is None:
        return host.uplinks, True
    return tuple(u for u in host.uplinks if u.nic in nics), False
