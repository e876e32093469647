"""KVM hypervisors through libvirt: one connection per hypervisor, driven by libvirt events.

Threads. libvirt delivers events through its default event loop, registered once per
process (``ensure_event_loop``) and run by a daemon thread. Each hypervisor has a worker
thread that owns its connection: it connects (retrying with ``Backoff``), registers the
lifecycle and close callbacks *before* listing domains, reads the whole host, then reads
one domain per event. Callbacks only queue work for their worker, so a slow or dead
hypervisor never blocks the others. Workers report to ``LibvirtSource.run``'s thread,
which alone merges the hosts (``Inventory``) and calls ``emit``. Nothing polls.

What is emitted. ``SessionStatus("connecting")``; once every hypervisor has answered or
failed once, ``SessionStatus`` and one ``Snapshot``; then ``VmUpsert``/``VmRemoved`` (and
``PortGroupUpsert``/``PortGroupRemoved`` for the port groups VMs use) from events. A
hypervisor that comes back after a drop gets a fresh ``Snapshot``.

Unreadable hypervisors. The session is ``connected`` while at least one hypervisor is;
each unreadable one is named in ``SessionStatus.warnings``. Its last known VMs stay in
every snapshot (never pruned because a host cannot be read); a hypervisor that was never
readable is listed in ``Snapshot.unknown_hosts`` (and in ``hosts`` with no VMs, with a
warning saying its VMs are unknown): the engine then keeps the session out of sync, so
nothing is pruned until every hypervisor has been read. With no hypervisor readable, the
session is ``disconnected``.

Placement. A VM id is the domain UUID, so a VM that leaves host A and starts on host B is
one VM: when copies exist on several hosts (during a migration) the running copy wins,
else the most recently seen one. A "stopped"/"undefined" from the host a VM has already
left changes nothing.

What a VM carries besides placement. Its MACs (``<interface><mac address=.../>``); its
addresses from ``interfaceAddresses`` (the guest agent's, else the DHCP leases' of libvirt
networks) while it runs, re-read at every domain event, when its guest agent connects and
at every ``lldp_refresh`` (libvirt has no event for a new lease); and tags, custom
attributes and a guest OS from the domain's ``<metadata>`` (see ``METADATA_NS``; a
``libosinfo`` os id, as virt-install writes it, is the guest OS when vmfabric's metadata
names none), re-read when the metadata changes.

Port groups from domain XML. An interface with its own ``<vlan>`` tags becomes port group
``vlan110`` (a trunk ``vlan110,120``) on the interface's ``<source bridge=...>``; one on a
libvirt network uses the ``<portgroup>`` it names (or the network's default port group) as
``NETWORK/PORTGROUP``, or the network's own ``<vlan>`` as ``NETWORK``. No VLAN: untagged,
no port group. Anything else is a warning, never a crash. If two hosts disagree about one
port group, its VLANs are the union and its virtual switch unknown (carried everywhere).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import libvirt

from vmfabric.config import LibvirtSession, SessionConfig
from vmfabric.core.errors import ConfigError, TransientError
from vmfabric.core.model import (
    Host,
    HostUpsert,
    Neighbor,
    Nic,
    PortGroup,
    PortGroupRemoved,
    PortGroupUpsert,
    Power,
    SessionStatus,
    Snapshot,
    SourceEvent,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.core.vlans import check_vlan, format_vlans
from vmfabric.inventory.topology.lldpd import LldpdOutputError, read_neighbors
from vmfabric.sources.addresses import (
    guest_ips,
    normalize_attributes,
    normalize_macs,
    normalize_tags,
)
from vmfabric.sources.base import SOURCES, Backoff, Emit

_POWER = {
    libvirt.VIR_DOMAIN_RUNNING: Power.ON,
    libvirt.VIR_DOMAIN_BLOCKED: Power.ON,  # running, waiting on a resource
    libvirt.VIR_DOMAIN_PAUSED: Power.SUSPENDED,
}
_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "I/O error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "end of file from the server",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timeout",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by the client",
}
_loop_lock = threading.Lock()
_loop_started = False

NetworkLookup = Callable[[str], "ET.Element | None"]

# vmfabric's domain metadata (``virsh metadata DOMAIN --uri URI --key vmfabric --set XML``):
#   <vmfabric:vm xmlns:vmfabric="urn:vmfabric:domain:1">
#     <vmfabric:tag>tier:web</vmfabric:tag>
#     <vmfabric:attribute name="owner">team-a</vmfabric:attribute>
#     <vmfabric:guest-os>ubuntu22.04</vmfabric:guest-os>
#   </vmfabric:vm>
METADATA_NS = "urn:vmfabric:domain:1"
_LIBOSINFO_NS = "http://libosinfo.org/xmlns/libvirt/domain/1.0"
_ADDRESS_SOURCES = (
    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
)


def ensure_event_loop() -> None:
    """Register libvirt's default event loop once per process and run it in a daemon thread.

    Also silences libvirt's default error printer: errors reach us as exceptions."""
    global _loop_started  # noqa: PLW0603 - one event loop per process is libvirt's rule
    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_loop, name="libvirt-events", daemon=True).start()
        _loop_started = True


def _run_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


# ---- domain XML -> model ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainView:
    """One domain as one hypervisor shows it: the VM, the port groups it uses, and the
    problems found in its XML."""

    vm: Vm
    portgroups: tuple[PortGroup, ...] = ()
    warnings: tuple[str, ...] = ()


def _vlan_tags(vlan: ET.Element | None, where: str) -> frozenset[int]:
    if vlan is None:
        return frozenset()
    tags = set()
    for tag in vlan.findall("tag"):
        text = tag.get("id", "")
        if not text.isdigit():
            raise ValueError(f"{where}: VLAN tag id {text!r} is not a number")
        try:
            tags.add(check_vlan(int(text)))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return frozenset(tags)


def _vlan_name(vlans: frozenset[int]) -> str:
    return "vlan" + ",".join(str(v) for v in sorted(vlans))


def _network_portgroup(session: str, net: ET.Element, wanted: str, where: str) -> PortGroup | None:
    name = net.findtext("name", "")
    bridge = net.find("bridge")
    vswitch = bridge.get("name", "") if bridge is not None else ""
    groups = net.findall("portgroup")
    group = next((g for g in groups if g.get("name") == wanted), None) if wanted else None
    if wanted and group is None:
        raise ValueError(f"{where}: network {name!r} has no portgroup {wanted!r}")
    if group is None:
        group = next((g for g in groups if g.get("default") == "yes"), None)
    if group is not None and (vlans := _vlan_tags(group.find("vlan"), where)):
        return PortGroup(session, f"{name}/{group.get('name', '')}", vlans, vswitch)
    vlans = _vlan_tags(net.find("vlan"), where)  # a port group without VLANs inherits these
    return PortGroup(session, name, vlans, vswitch) if vlans else None


def _interface_portgroup(
    session: str, iface: ET.Element, networks: NetworkLookup, where: str
) -> PortGroup | None:
    """The port group an ``<interface>`` lands in; None when untagged. ValueError names
    what cannot be placed."""
    source = iface.find("source")
    src = source.attrib if source is not None else {}
    own = _vlan_tags(iface.find("vlan"), where)
    if own:
        return PortGroup(session, _vlan_name(own), own, src.get("bridge", ""))
    network = src.get("network")
    if iface.get("type") != "network" or not network:
        return None
    net = networks(network)
    if net is None:
        raise ValueError(f"{where}: network {network!r} is not defined on this host")
    return _network_portgroup(session, net, src.get("portgroup", ""), where)


def _metadata(root: ET.Element) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], str]:
    """(tags, attributes, guest OS) from the domain's ``<metadata>``."""
    meta = root.find("metadata")
    ours = meta.find(f"{{{METADATA_NS}}}vm") if meta is not None else None
    if ours is None:
        ours = ET.Element("vm")
    tags = normalize_tags(t.text.strip() for t in ours.findall(f"{{{METADATA_NS}}}tag") if t.text)
    attributes = normalize_attributes({
        a.get("name", ""): (a.text or "").strip()
        for a in ours.findall(f"{{{METADATA_NS}}}attribute") if a.get("name")
    })  # fmt: skip
    guest_os = (ours.findtext(f"{{{METADATA_NS}}}guest-os") or "").strip()
    if not guest_os and meta is not None:
        os_el = meta.find(f"{{{_LIBOSINFO_NS}}}libosinfo/{{{_LIBOSINFO_NS}}}os")
        guest_os = os_el.get("id", "") if os_el is not None else ""
    return tags, attributes, guest_os


def parse_domain(
    xml: str,
    session: str,
    host: str,
    power: Power,
    networks: NetworkLookup,
    *,
    addresses: Iterable[str] = (),
) -> DomainView:
    """A domain's XML (and the addresses libvirt reported for it) -> its VM, port groups
    and warnings (one per unplaceable NIC)."""
    root = ET.fromstring(xml)  # noqa: S314 - XML from the hypervisor we connected to
    name = root.findtext("name", "")
    uuid = root.findtext("uuid", "")
    groups: dict[str, PortGroup] = {}
    warnings: list[str] = []
    for index, iface in enumerate(root.findall("./devices/interface")):
        where = f"{host}: VM {name} interface {index}"
        try:
            group = _interface_portgroup(session, iface, networks, where)
        except ValueError as exc:
            warnings.append(str(exc))  # every ValueError here starts with ``where``
            continue
        if group is not None:
            groups.setdefault(group.name, group)
    macs = normalize_macs(m.get("address", "") for m in root.findall("./devices/interface/mac"))
    tags, attributes, guest_os = _metadata(root)
    vm = Vm(session, uuid, name, host, power, tuple(groups), ips=guest_ips(addresses),
            macs=macs, tags=tags, attributes=attributes, guest_os=guest_os)  # fmt: skip
    return DomainView(vm, tuple(groups.values()), tuple(warnings))


# ---- merging hypervisors into one session ---------------------------------------------------


def merge_portgroups(copies: Iterable[PortGroup]) -> tuple[PortGroup | None, str]:
    """One port group from the copies hosts report, and a warning when they disagree."""
    found = list(dict.fromkeys(copies))
    if len(found) <= 1:
        return (found[0] if found else None), ""
    vlans = frozenset().union(*(p.vlans for p in found))
    vswitches = {p.vswitch for p in found}
    merged = replace(found[0], vlans=vlans, vswitch=vswitches.pop() if len(vswitches) == 1 else "")
    shown = format_vlans(vlans)
    return merged, f"port group {merged.name} differs between hosts; using VLANs {shown}"


@dataclass
class _HostState:
    domains: dict[str, tuple[int, DomainView]] = field(default_factory=dict)
    host: Host | None = None
    error: str = ""
    readable: bool = False
    ever_read: bool = False
    warnings: tuple[str, ...] = ()


class Inventory:
    """The session as the hypervisors report it. Pure: no libvirt, no threads, no clock.

    Each method takes one worker report and returns the events that tell the engine what
    changed; port groups and warnings are indexed so that one event costs O(its VM), not
    O(session). ``snapshot()`` is the whole session."""

    def __init__(self, session: str, hosts: Iterable[str]) -> None:
        self.session = session
        self.hosts = {name: _HostState() for name in hosts}
        self._seq = itertools.count()
        self._vms: dict[str, Vm] = {}
        self._portgroups: dict[str, PortGroup] = {}
        self._pg_copies: dict[str, Counter[PortGroup]] = {}
        self._pg_warnings: dict[str, str] = {}
        self._dom_warnings: dict[tuple[str, str], tuple[str, ...]] = {}

    # -- reports
    def host_read(self, host: str, info: Host, views: Iterable[DomainView]) -> list[SourceEvent]:
        """A hypervisor's full read (after a connect or a network change)."""
        state = self.hosts[host]
        fresh = {v.vm.id: v for v in views}
        gone = set(state.domains) - set(fresh)
        names: set[str] = set()
        for uuid in gone:
            names |= self._set(host, uuid, None)
        for uuid, view in fresh.items():
            names |= self._set(host, uuid, view)
        state.host, state.error, state.readable, state.ever_read = info, "", True, True
        return self._publish(gone | set(fresh), names)

    def host_nics(self, host: str, info: Host) -> list[SourceEvent]:
        """A hypervisor's refreshed LLDP neighbours: a HostUpsert when they changed."""
        state = self.hosts[host]
        if not state.readable or state.host == info:
            return []
        state.host = info
        return [HostUpsert(info)]

    def host_failed(self, host: str, error: str) -> None:
        """A hypervisor cannot be read: keep its last known VMs, remember why."""
        state = self.hosts[host]
        state.error, state.readable = error, False

    def set_host_warnings(self, host: str, warnings: tuple[str, ...]) -> None:
        self.hosts[host].warnings = warnings

    def domain(self, host: str, uuid: str, view: DomainView | None) -> list[SourceEvent]:
        """One domain changed on one hypervisor (None: it is gone from there)."""
        return self._publish({uuid}, self._set(host, uuid, view))

    # -- views
    def ready(self) -> bool:
        """Every hypervisor has answered or failed at least once."""
        return all(s.ever_read or s.error for s in self.hosts.values())

    def status(self, version: str = "") -> SessionStatus:
        errors = [f"{h}: {s.error}" for h, s in sorted(self.hosts.items()) if not s.readable]
        if not any(s.readable for s in self.hosts.values()):
            return SessionStatus(self.session, "disconnected", error="; ".join(errors))
        return SessionStatus(self.session, "connected", version=version, warnings=self.warnings())

    def warnings(self) -> tuple[str, ...]:
        out: list[str] = []
        for name, state in sorted(self.hosts.items()):
            if not state.readable:
                kept = "its last known VMs are kept" if state.ever_read else "its VMs are unknown"
                out.append(f"hypervisor {name} unreadable ({state.error}); {kept}")
            out.extend(state.warnings)
        for _, found in sorted(self._dom_warnings.items()):
            out.extend(found)
        out.extend(w for _, w in sorted(self._pg_warnings.items()))
        return tuple(out)

    def snapshot(self) -> Snapshot:
        hosts = tuple(s.host or Host(self.session, n) for n, s in sorted(self.hosts.items()))
        return Snapshot(
            self.session,
            hosts,
            tuple(self._portgroups[n] for n in sorted(self._portgroups)),
            tuple(self._vms[i] for i in sorted(self._vms)),
            unknown_hosts=tuple(n for n, st in sorted(self.hosts.items()) if not st.ever_read),
        )

    # -- indexes
    def _set(self, host: str, uuid: str, view: DomainView | None) -> set[str]:
        """Replace one host's copy of a domain; the port group names it touched."""
        domains = self.hosts[host].domains
        old = domains.pop(uuid, None)
        names: set[str] = set()
        if old is not None:
            for pg in old[1].portgroups:
                self._pg_copies[pg.name][pg] -= 1
                names.add(pg.name)
        self._dom_warnings.pop((host, uuid), None)
        if view is None:
            return names
        domains[uuid] = (next(self._seq), view)
        for pg in view.portgroups:
            self._pg_copies.setdefault(pg.name, Counter())[pg] += 1
            names.add(pg.name)
        if view.warnings:
            self._dom_warnings[(host, uuid)] = view.warnings
        return names

    def _placement(self, uuid: str) -> DomainView | None:
        copies = [s.domains[uuid] for s in self.hosts.values() if uuid in s.domains]
        rank = {Power.ON: 2, Power.SUSPENDED: 1, Power.OFF: 0}
        best = max(copies, key=lambda sv: (rank[sv[1].vm.power], sv[0]), default=None)
        return best[1] if best else None

    def _publish(self, uuids: Iterable[str], names: set[str]) -> list[SourceEvent]:
        events: list[SourceEvent] = []
        for uuid in sorted(uuids):
            old, view = self._vms.get(uuid), self._placement(uuid)
            if view is None:
                if old is not None:
                    del self._vms[uuid]
                    events.append(VmRemoved(self.session, uuid))
            elif view.vm != old:
                self._vms[uuid] = view.vm
                events.append(VmUpsert(view.vm))
        return self._publish_portgroups(names) + events

    def _publish_portgroups(self, names: set[str]) -> list[SourceEvent]:
        events: list[SourceEvent] = []
        for name in sorted(names):
            copies = self._pg_copies.get(name, Counter())
            merged, warning = merge_portgroups(pg for pg, n in copies.items() if n > 0)
            self._pg_warnings.pop(name, None)
            if warning:
                self._pg_warnings[name] = warning
            if merged is None:
                self._pg_copies.pop(name, None)
                if self._portgroups.pop(name, None) is not None:
                    events.append(PortGroupRemoved(self.session, name))
            elif self._portgroups.get(name) != merged:
                self._portgroups[name] = merged
                events.append(PortGroupUpsert(merged))
        return events


# ---- one worker per hypervisor ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Report:
    """A worker's message to the session thread."""

    kind: Literal["read", "failed", "domain", "nics", "stop"]
    host: str
    info: Host | None = None
    views: tuple[DomainView, ...] = ()
    uuid: str = ""
    view: DomainView | None = None
    error: str = ""
    warnings: tuple[str, ...] = ()
    version: str = ""


def _power(state: int) -> Power:
    return _POWER.get(state, Power.OFF)


def _error_text(exc: libvirt.libvirtError) -> str:
    return " ".join(str(exc.get_error_message() or exc).split())


class _Worker:
    """Owns one hypervisor's connection; turns its callbacks into reports."""

    def __init__(self, source: LibvirtSource, host: str, uri: str) -> None:
        self.source = source
        self.host = host
        self.uri = uri
        self.inbox: queue.Queue[tuple[int, str, str]] = queue.Queue()
        self.conn: Any = None
        self._gen = 0  # connection generation: items queued for an older one are dropped
        self._callbacks: list[int] = []
        self._net_callbacks: list[int] = []
        self._networks: dict[str, ET.Element | None] = {}
        self.test_driver = uri.startswith("test")  # libvirt's test driver: see _view

    # -- callbacks (libvirt's event thread: queue only; ``gen`` is the opaque argument).
    # Every domain event re-reads the domain: an "undefined" domain may still run
    # (transient), a "stopped" transient one is gone.
    def _on_domain(self, _conn: Any, dom: Any, _event: int, _detail: int, gen: int) -> None:
        self.inbox.put((gen, "domain", dom.UUIDString()))

    def _on_device(self, _conn: Any, dom: Any, _device: str, gen: int) -> None:
        self.inbox.put((gen, "domain", dom.UUIDString()))

    def _on_metadata(self, _conn: Any, dom: Any, _kind: int, _uri: str, gen: int) -> None:
        self.inbox.put((gen, "domain", dom.UUIDString()))

    def _on_agent(self, _conn: Any, dom: Any, _state: int, _reason: int, gen: int) -> None:
        self.inbox.put((gen, "domain", dom.UUIDString()))  # addresses may be known now

    def _on_network(self, _conn: Any, _net: Any, _event: int, _detail: int, gen: int) -> None:
        self.inbox.put((gen, "networks", ""))

    def _on_close(self, _conn: Any, reason: int, gen: int) -> None:
        why = _CLOSE_REASONS.get(reason, f"reason {reason}")
        self.inbox.put((gen, "closed", f"connection closed ({why})"))

    def stop(self) -> None:
        self.inbox.put((-1, "stop", ""))

    # -- the thread
    def run(self, stop: threading.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                self._connect()
                self.source.report(self._read_all())
                backoff.reset()
                error = self._serve(stop)
            except libvirt.libvirtError as exc:
                error = _error_text(exc)
            except Exception as exc:  # a bug must not end the worker silently
                error = f"{type(exc).__name__}: {exc}"
            self._disconnect()
            if stop.is_set():
                break
            self.source.report(_Report("failed", self.host, error=error))
            stop.wait(backoff.next())

    def _connect(self) -> None:
        self.conn = libvirt.open(self.uri)
        self._gen += 1
        gen = self._gen
        self._networks.clear()
        self.conn.registerCloseCallback(self._on_close, gen)
        domain_events = (
            (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_domain),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, self._on_device),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._on_device),
            (libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, self._on_metadata),
            (libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._on_agent),
        )
        self._callbacks = [
            self.conn.domainEventRegisterAny(None, event, callback, gen)
            for event, callback in domain_events
        ]
        net_id = libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE
        self._net_callbacks = [
            self.conn.networkEventRegisterAny(None, net_id, self._on_network, gen)
        ]
        if not self.uri.startswith("test:"):
            self.conn.setKeepAlive(5, 3)

    def _disconnect(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        for cb_id in self._callbacks:
            _quietly(conn.domainEventDeregisterAny, cb_id)
        for cb_id in self._net_callbacks:
            _quietly(conn.networkEventDeregisterAny, cb_id)
        _quietly(conn.unregisterCloseCallback)
        _quietly(conn.close)
        self._callbacks, self._net_callbacks = [], []

    def _serve(self, stop: threading.Event) -> str:
        """Handle callbacks until the connection drops (returns why) or ``stop`` is set."""
        while True:
            try:
                gen, kind, arg = self.inbox.get(timeout=self.source.lldp_refresh)
            except queue.Empty:  # quiet for a while: refresh LLDP neighbours and addresses
                nics, warnings = self.source.read_nics(self.host)
                info = Host(self.source.name, self.host, nics=nics)
                self.source.report(_Report("nics", self.host, info=info, warnings=warnings))
                self.source.report(self._read_all())  # only what changed is emitted
                continue
            if kind == "stop" or stop.is_set():
                return "stopped"
            if gen != self._gen:
                continue
            if kind == "closed":
                return arg
            if kind == "networks":
                self._networks.clear()
                self.source.report(self._read_all())
                continue
            view = self._read_domain(arg)
            self.source.report(_Report("domain", self.host, uuid=arg, view=view))

    # -- reading
    def _network(self, name: str) -> ET.Element | None:
        if name not in self._networks:
            try:
                xml = self.conn.networkLookupByName(name).XMLDesc(0)
                self._networks[name] = ET.fromstring(xml)  # noqa: S314 - from our hypervisor
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                    raise
                self._networks[name] = None
        return self._networks[name]

    def _view(self, dom: Any) -> DomainView:
        power = _power(dom.state()[0])
        xml = dom.XMLDesc(0)
        asked = power is not Power.OFF and (not self.test_driver or self._test_driver_answers(xml))
        addresses = _addresses(dom) if asked else ()
        return parse_domain(
            xml, self.source.name, self.host, power, self._network, addresses=addresses
        )

    def _test_driver_answers(self, xml: str) -> bool:
        """libvirt 9's test driver crashes the process answering ``interfaceAddresses`` for
        a domain on a libvirt network without an ``<ip>`` range: ask it only when every
        network interface's network has one."""
        root = ET.fromstring(xml)  # noqa: S314 - XML from the hypervisor we connected to
        for iface in root.findall("./devices/interface[@type='network']"):
            source = iface.find("source")
            net = self._network(source.get("network", "")) if source is not None else None
            if net is None or net.find("ip") is None:
                return False
        return True

    def _read_domain(self, uuid: str) -> DomainView | None:
        try:
            return self._view(self.conn.lookupByUUIDString(uuid))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _read_all(self) -> _Report:
        views = []
        for dom in self.conn.listAllDomains(0):
            try:
                views.append(self._view(dom))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
        nics, warnings = self.source.read_nics(self.host)
        info = Host(self.source.name, self.host, nics=nics)
        version = _version(self.conn.getLibVersion())
        return _Report(
            "read", self.host, info=info, views=tuple(views), warnings=warnings, version=version
        )


def _addresses(dom: Any) -> list[str]:
    """The domain's addresses from the first source that answers: the guest agent (every
    address the guest has), else the DHCP leases of libvirt networks; none otherwise."""
    for source in _ADDRESS_SOURCES:
        try:
            interfaces = dom.interfaceAddresses(source, 0) or {}
        except libvirt.libvirtError:
            continue  # no agent, no lease source for this domain: try the next
        found = [
            a["addr"] for i in interfaces.values() for a in i.get("addrs") or () if "addr" in a
        ]
        if found:
            return found
    return []


def _version(number: int) -> str:
    return f"libvirt {number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _quietly(method: Callable[..., object], *args: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        method(*args)


def nics_from_neighbors(neighbors: Mapping[str, Neighbor]) -> tuple[Nic, ...]:
    return tuple(Nic(name, neighbor) for name, neighbor in sorted(neighbors.items()))


# ---- the source ------------------------------------------------------------------------------


@SOURCES.register("libvirt")
class LibvirtSource:
    """A libvirt session: every hypervisor in ``config.uris``, merged into one inventory."""

    def __init__(self, config: SessionConfig, base_dir: Path) -> None:
        if not isinstance(config, LibvirtSession):
            raise ConfigError(f"session {config.name}: kind {config.kind!r} is not libvirt")
        if not config.uris:
            raise ConfigError(f"session {config.name}: uris lists no hypervisor")
        self.name = config.name
        self.config = config
        self.base_dir = base_dir
        self._reports: queue.Queue[_Report] = queue.Queue()
        self._workers = {h: _Worker(self, h, uri) for h, uri in config.uris.items()}
        self.lldp_timeout = 10.0
        self.lldp_refresh = float(getattr(config, "lldp_refresh", 300.0))

    def connection(self, host: str) -> Any:
        """The open ``libvirt.virConnect`` of a hypervisor (tests drive the test driver
        through it). TransientError when it is not connected."""
        worker = self._workers.get(host)
        if worker is None:
            raise ConfigError(f"session {self.name}: no hypervisor named {host!r}")
        if worker.conn is None:
            raise TransientError(f"session {self.name}: hypervisor {host} is not connected")
        return worker.conn

    def report(self, report: _Report) -> None:
        """Workers hand their findings to the session thread (thread-safe)."""
        self._reports.put(report)

    def read_nics(self, host: str) -> tuple[tuple[Nic, ...], tuple[str, ...]]:
        """A hypervisor's NICs and their neighbours via ``lldp_command``, and a warning
        when they cannot be read (NICs then unknown)."""
        command = self.config.lldp_command
        if not command:
            return (), ()
        try:
            found = read_neighbors(command=command, host=host, timeout=self.lldp_timeout)
        except (TransientError, LldpdOutputError, ConfigError) as exc:
            return (), (f"hypervisor {host}: LLDP neighbours unknown: {exc}",)
        return nics_from_neighbors(found), ()

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Report the session until ``stop`` is set (see the module docstring)."""
        ensure_event_loop()
        emit(SessionStatus(self.name, "connecting"))
        threads = [
            threading.Thread(target=w.run, args=(stop,), name=f"libvirt-{h}", daemon=True)
            for h, w in self._workers.items()
        ]
        threading.Thread(target=self._stop_watch, args=(stop,), daemon=True).start()
        for thread in threads:
            thread.start()
        try:
            _Session(self.name, list(self._workers), emit).serve(self._reports, stop)
        finally:
            stop.set()  # workers blocked in a remote open are daemons: wait 5 s in all
            deadline = time.monotonic() + 5
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _stop_watch(self, stop: threading.Event) -> None:
        stop.wait()
        self._reports.put(_Report("stop", ""))
        for worker in self._workers.values():
            worker.stop()


class _Session:
    """The session thread's loop: reports in, events out."""

    def __init__(self, name: str, hosts: list[str], emit: Emit) -> None:
        self.inventory = Inventory(name, hosts)
        self.emit = emit
        self.version = ""
        self.synced = False
        self.last_status: SessionStatus | None = None

    def serve(self, reports: queue.Queue[_Report], stop: threading.Event) -> None:
        while not stop.is_set():
            report = reports.get()
            if report.kind == "stop":
                return
            self.handle(report)

    def handle(self, report: _Report) -> None:
        inv = self.inventory
        if report.kind == "read" and report.info is not None:
            was_readable = inv.hosts[report.host].readable
            self.version = self.version or report.version
            inv.set_host_warnings(report.host, report.warnings)
            events = inv.host_read(report.host, report.info, report.views)
            self._after(events, fresh=not was_readable)
        elif report.kind == "failed":
            inv.host_failed(report.host, report.error)
            self._after([], fresh=False)
        elif report.kind == "domain":
            self._after(inv.domain(report.host, report.uuid, report.view), fresh=False)
        elif report.kind == "nics" and report.info is not None:
            inv.set_host_warnings(report.host, report.warnings)
            self._after(inv.host_nics(report.host, report.info), fresh=False)

    def _after(self, events: list[SourceEvent], fresh: bool) -> None:
        if not self.inventory.ready():
            return
        status = self.inventory.status(self.version)
        if status != self.last_status:
            self.last_status = status
            self.emit(status)
        if status.state != "connected":
            self.synced = False
            return
        if fresh or not self.synced:
            self.synced = True
            self.emit(self.inventory.snapshot())
            return
        for event in events:
            self.emit(event)
