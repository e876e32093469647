"""Views of the inventory: sessions, VMs and hosts (``show session|vm|host``).

Each view reads one snapshot of the store (``Store.reader()``: a few statements, no
per-VM or per-host statement) and joins in Python. ``vms`` is built for 100,000 VMs: it
reads only the columns ``show vm`` lists, works out a host's switch ports once per
virtual switch, and pauses the cyclic garbage collector while it builds.
"""

from __future__ import annotations

from typing import Any

from vmfabric.core.errors import ConfigError
from vmfabric.core.model import Host, PortGroup, Power, Vm, carrying_uplinks
from vmfabric.store import Store
from vmfabric.store.reader import Reader, SessionRecord, VmSummary
from vmfabric.store.rows import vlan_set
from vmfabric.views.common import (
    Carriage,
    Key,
    SwitchPort,
    by_natural,
    gc_paused,
    iso_utc,
    natural,
    port_key,
)
from vmfabric.views.common import vlan_value as _vlan_value
from vmfabric.views.models import (
    Attachment,
    HostView,
    NeighborView,
    NetworkRef,
    ProvisionedPort,
    SessionAutovlanView,
    SessionView,
    VmView,
)

# ---- show session ----------------------------------------------------------------------


def _session(row: SessionRecord, hosts: int, vms: int, held: list[int]) -> SessionView:
    return {
        "name": row.name,
        "kind": row.kind,
        "url": row.url,
        "state": row.state,
        "hosts": hosts,
        "vms": vms,
        "autovlan": row.autovlan,
        "allowed_vlans": row.allowed_vlans,
        "last_update": iso_utc(row.last_update),
        "last_error": row.error or None,
        "in_sync": row.in_sync,
        "version": row.version,
        "mode": row.mode,
        "warnings": list(row.warnings),
        "held_plans": held,
    }


def sessions(store: Store, name: str | None = None) -> list[SessionView]:
    """Sessions (all, or the one called ``name``) with state and counts. ``held_plans``
    lists held plans naming the session, or naming no session (they may concern any)."""
    with store.reader() as read:
        found = read.sessions(name)
        hosts, vms = read.counts("hosts"), read.counts("vms")
        held = [(p.id, p.sessions) for p in read.plans("held")]
    result = [
        _session(
            row,
            hosts.get(row.name, 0),
            vms.get(row.name, 0),
            [i for i, names in held if not names or row.name in names],
        )
        for row in found
    ]
    return sorted(result, key=lambda s: natural(s["name"]))


def session_autovlan(store: Store, name: str) -> SessionAutovlanView:
    """Dynamic VLANs on switch ports that the session's powered-on VMs account for (none
    when its autovlan is off). ConfigError for an unknown session."""
    with store.reader() as read:
        found = read.sessions(name)
        if not found:
            raise ConfigError(f"no session named {name!r}")
        row = found[0]
        allowed = vlan_set(row.allowed_vlans)
        wanted = _wanted(read, name, allowed) if row.autovlan else {}
        states = read.port_states()
    provisioned: list[ProvisionedPort] = []
    for s in sorted(states, key=lambda s: port_key((s.switch, s.port))):
        vlans = s.dynamic & s.vlans & wanted.get((s.switch, s.port), set())
        if vlans:
            provisioned.append({"switch": s.switch, "port": s.port, "vlans": sorted(vlans)})
    return {"name": row.name, "allowed_vlans": row.allowed_vlans, "provisioned": provisioned}


def _wanted(read: Reader, session: str, allowed: frozenset[int]) -> dict[SwitchPort, set[int]]:
    """Per switch port, the allowed VLANs that the session's powered-on VMs need there."""
    carriage = Carriage(read.hosts(session), read.portgroups(session))
    wanted: dict[SwitchPort, set[int]] = {}
    for vm in read.vms(session):
        if vm.power != Power.ON:
            continue
        for network in vm.networks:
            pg = carriage.portgroup(vm.session, network)
            vlans = (pg.vlans & allowed) if pg else frozenset()
            for up in carriage.uplinks(vm.session, vm.host, network)[0] if vlans else ():
                wanted.setdefault((up.switch, up.port), set()).update(vlans)
    return wanted


# ---- show vm ---------------------------------------------------------------------------


_Ports = tuple[tuple[SwitchPort, ...], bool]
_CARRIAGE = {False: "vswitch", True: "all-uplinks"}  # whether the carriage is a guess
_Parts = tuple[tuple[tuple[str, Any], ...], tuple[SwitchPort, ...], str]


class _VmParts:
    """A VM's networks with their VLANs, its switch ports and the carriage note. Switch
    ports are worked out once per (host, virtual switch); VMs with several networks
    share one union per (host, networks). A host or port group the store does not know
    carries nothing."""

    def __init__(self, hosts: dict[Key, Host], portgroups: dict[Key, PortGroup]) -> None:
        self._hosts = hosts
        self._portgroups = portgroups
        self._vlans = {key: _vlan_value(pg) for key, pg in portgroups.items()}
        self._memo: dict[tuple[str, str, tuple[str, ...]], _Parts] = {}
        self._by_vswitch: dict[tuple[str, str, str], _Ports] = {}

    def get(self, vm: VmSummary) -> _Parts:
        session, host, networks = vm.session, vm.host, vm.networks
        if len(networks) == 1:  # most VMs: no union to make
            network = networks[0]
            ports, guessed = self._carried(session, host, network)
            return ((network, self._vlans.get((session, network))),), ports, _CARRIAGE[guessed]
        key = (session, host, networks)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._compute(*key)
        return found

    def _compute(self, session: str, host: str, networks: tuple[str, ...]) -> _Parts:
        nets = tuple((n, self._vlans.get((session, n))) for n in networks)
        carried = [self._carried(session, host, n) for n in networks]
        union = {port for found, _ in carried for port in found}
        guessed = any(guess for _, guess in carried)
        return nets, tuple(sorted(union, key=port_key)), _CARRIAGE[guessed]

    def _carried(self, session: str, host_name: str, network: str) -> _Ports:
        """The switch ports carrying ``network`` on the host, and whether that is a guess:
        memoised per (host, virtual switch), which is all the answer depends on."""
        pg = self._portgroups.get((session, network))
        host = self._hosts.get((session, host_name))
        if pg is None or host is None:
            return (), False
        key = (session, host_name, pg.vswitch)
        found = self._by_vswitch.get(key)
        if found is None:
            uplinks, guessed = carrying_uplinks(host, pg)
            ports = sorted({(u.switch, u.port) for u in uplinks}, key=port_key)
            found = self._by_vswitch[key] = (tuple(ports), guessed)
        return found


class _Memo:
    """A VM's networks and attachments as the view shows them, built once per (session,
    networks) and per set of switch ports, and shared by the VMs alike (read-only lists:
    100,000 VMs on a few thousand hosts share a few thousand)."""

    def __init__(self, parts: _VmParts) -> None:
        self._parts = parts
        self._networks: dict[tuple[str, tuple[str, ...]], list[NetworkRef]] = {}
        self._ports: dict[int, list[Attachment]] = {}  # by id of _VmParts' memoised tuples
        self._keep: list[tuple[SwitchPort, ...]] = []  # ...kept alive while ids are keys

    def view(self, vm: VmSummary) -> VmView:
        nets, ports, carriage = self._parts.get(vm)
        networks = self._networks.get((vm.session, vm.networks))
        if networks is None:
            networks = [{"portgroup": n, "vlan": v} for n, v in nets]
            self._networks[(vm.session, vm.networks)] = networks
        attachments = self._ports.get(id(ports))
        if attachments is None:
            attachments = self._ports[id(ports)] = [{"switch": s, "port": p} for s, p in ports]
            self._keep.append(ports)
        return {
            "name": vm.name,
            "session": vm.session,
            "host": vm.host,
            "power_state": vm.power,
            "networks": networks,
            "attachments": attachments,
            "ips": list(vm.ips),
            "tags": list(vm.tags),
            "id": vm.id,
            "carriage": carriage,
        }


def _sorted(found: list[VmSummary]) -> list[VmSummary]:
    """By natural name, then session, then id (session keys computed once each)."""
    sessions = {s: natural(s) for s in {vm.session for vm in found}}
    return sorted(found, key=lambda vm: (natural(vm.name), sessions[vm.session], vm.id))


def _details(view: VmView, vm: Vm) -> VmView:
    view["macs"] = list(vm.macs)
    view["attributes"] = dict(vm.attributes)
    view["guest_os"] = vm.guest_os
    view["folder"] = vm.folder
    view["cluster"] = vm.cluster
    return view


def vms(store: Store, name: str | None = None, *, detail: bool = False) -> list[VmView]:
    """VMs (all, or those called ``name`` in any session) with networks, switch ports,
    addresses and tags; ``detail`` adds every other field of the VM."""
    with gc_paused(), store.reader() as read:
        found = read.vm_summaries(name)
        if not found:
            return []
        memo = _Memo(_VmParts(read.hosts(), read.portgroups()))
        full = {vm.key: vm for vm in read.vms(name=name)} if detail else {}
        result = [memo.view(vm) for vm in _sorted(found)]
    if detail:
        result = [_details(v, full[(v["session"], v["id"])]) for v in result]
    return result


# ---- show host -------------------------------------------------------------------------


def _neighbors(nics: Any, matched: set[str]) -> list[NeighborView]:
    return [
        {
            "nic": nic.name,
            "protocol": nic.neighbor.protocol,
            "system_name": nic.neighbor.system_name,
            "port_id": nic.neighbor.port_id,
            "mgmt_addr": nic.neighbor.mgmt_addr,
            "chassis_id": nic.neighbor.chassis_id,
            "port_descr": nic.neighbor.port_descr,
            "matched": nic.name in matched,
        }
        for nic in sorted(nics, key=lambda n: natural(n.name))
        if nic.neighbor is not None
    ]


def hosts(store: Store) -> list[HostView]:
    """Hosts with VM counts, resolved uplinks and every neighbour heard (matched or not)."""
    with store.reader() as read:
        counts = read.vms_per_host()
        found = read.hosts()
    result: list[HostView] = []
    for key, host in found.items():
        uplinks = sorted(host.uplinks, key=lambda u: (natural(u.nic), port_key((u.switch, u.port))))
        result.append(
            {
                "name": host.name,
                "session": host.session,
                "vms": counts.get(key, 0),
                "uplinks": [
                    {"nic": u.nic, "switch": u.switch, "port": u.port, "source": u.source}
                    for u in uplinks
                ],
                "neighbors": _neighbors(host.nics, {u.nic for u in host.uplinks}),
                "nics": sorted((n.name for n in host.nics), key=natural),
            }
        )
    return by_natural(result, "name", "session")
