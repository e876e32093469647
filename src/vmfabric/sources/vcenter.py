"""The ``kind: vcenter`` source: one vSphere session through pyVmomi.

Owns the session lifecycle and the mapping of vSphere objects to vmfabric's model.

- Inventory: one PropertyFilter per kind (VMs, hosts, networks, distributed port groups,
  distributed switches), each over a ContainerView, all on the session's PropertyCollector.
  The first ``WaitForUpdatesEx`` answers with the whole inventory (a ``Snapshot``); later
  calls on the same filters deliver only changes, turned into ``VmUpsert``, ``HostUpsert``,
  ``PortGroupUpsert``... by diffing rebuilt model objects against what was last emitted.
  Nothing re-reads the inventory but the periodic audit (``audit_interval``), which
  recreates the filters and emits a new ``Snapshot`` (the engine diffs it).
- Uplink discovery: ``QueryNetworkHint`` once per host (never per NIC) at every full
  connect, when a host (re)connects and every ``hint_refresh``; a ``HostUpsert`` follows
  only when a neighbour changed.
- Carriage keys: a distributed port group is carried by ``dvs:<dvs uuid>``, a standard one
  by ``pg:<port group name>``; ``Host.vswitch_nics`` maps both to the host's pnic names.
- Lifecycle: connecting -> connected -> (Snapshot, changes) -> disconnected (one-line reason)
  -> reconnect with ``Backoff`` capped at 60 s. The password never leaves memory.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyVim import connect as _connect
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from vmfabric.config import SessionConfig, VcenterSession, resolve_secret
from vmfabric.core.errors import ConfigError, TransientError, VmfabricError
from vmfabric.core.model import (
    Host,
    HostRemoved,
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
from vmfabric.core.vlans import ALL_VLANS, VLAN_MAX, VLAN_MIN
from vmfabric.sources.base import SOURCES, Backoff, Emit

log = logging.getLogger(__name__)

# pyVmomi's stubs leave its data-object constructors untyped: treat the binding as dynamic.
vim: Any = _vim
vmodl: Any = _vmodl
SmartConnect: Any = _connect.SmartConnect
Disconnect: Any = _connect.Disconnect

WAIT_SECONDS = 1  # longest WaitForUpdatesEx wait: bounds stop and timer latency
MAX_OBJECT_UPDATES = 1000  # per WaitForUpdatesEx answer; larger reads arrive truncated
# A slow answer is treated as a lost server: reconnect and re-read. Measured in a storm of
# 1,000 vMotions on vcsim: quiet after 40-60 s with 30 s, after 123-137 s with 120 s.
SOCKET_TIMEOUT = 30.0
PVLAN_PROBLEM = "PVLAN is not supported"

# A VM's port groups come from ``network`` (its networks and distributed port groups).
# ``config.hardware.device`` would name them per NIC, but parsing every VM's device list
# is 93% of a 10,000-VM inventory read (BENCHMARKS.md), for no information autovlan uses.
VM_PATHS = ("name", "runtime.host", "runtime.powerState", "network")
HOST_PATHS = (
    "name",
    "runtime.connectionState",
    "configManager.networkSystem",
    "config.network.pnic",
    "config.network.vswitch",
    "config.network.portgroup",
    "config.network.proxySwitch",
)
NETWORK_PATHS = ("name",)
DVPG_PATHS = ("name", "key", "config.defaultPortConfig", "config.distributedVirtualSwitch")
DVS_PATHS = ("uuid", "config.uplinkPortgroup")


# ---- pure mapping: vSphere data objects -> model values --------------------------------


def dvpg_vlans(vlan: Any) -> tuple[frozenset[int], str]:
    """VLANs of a distributed port group's VLAN spec, and a problem text if unsupported."""
    if isinstance(vlan, vim.dvs.VmwareDistributedVirtualSwitch.PvlanSpec):
        return frozenset(), PVLAN_PROBLEM
    if isinstance(vlan, vim.dvs.VmwareDistributedVirtualSwitch.TrunkVlanSpec):
        return trunk_vlans((int(r.start), int(r.end)) for r in vlan.vlanId or ()), ""
    if isinstance(vlan, vim.dvs.VmwareDistributedVirtualSwitch.VlanIdSpec):
        return single_vlan(int(vlan.vlanId or 0)), ""
    if vlan is None:
        return frozenset(), ""
    return frozenset(), f"VLAN type {type(vlan).__name__} is not supported"


def single_vlan(vlan_id: int) -> frozenset[int]:
    """One VLAN id; 0 means untagged (no VLAN)."""
    return frozenset({vlan_id}) if VLAN_MIN <= vlan_id <= VLAN_MAX else frozenset()


def trunk_vlans(ranges: Iterable[tuple[int, int]]) -> frozenset[int]:
    """The union of trunk ranges, clipped to 1-4094 (vSphere allows 0-4094)."""
    out: set[int] = set()
    for lo, hi in ranges:
        out.update(range(max(lo, VLAN_MIN), min(hi, VLAN_MAX) + 1))
    return frozenset(out)


def standard_vlans(vlan_id: int) -> frozenset[int]:
    """A standard port group's VLAN: 0 untagged, 4095 all VLANs (guest tagging)."""
    return ALL_VLANS if vlan_id == 4095 else single_vlan(vlan_id)


def neighbor_from_hint(hint: Any) -> Neighbor | None:
    """The LLDP (preferred) or CDP neighbour of one ``PhysicalNicHintInfo``."""
    lldp = getattr(hint, "lldpInfo", None)
    if lldp is not None and (lldp.chassisId or lldp.portId):
        params = {str(p.key): str(p.value) for p in lldp.parameter or ()}
        return Neighbor(
            protocol="lldp",
            system_name=params.get("System Name", ""),
            port_id=str(lldp.portId or ""),
            chassis_id=str(lldp.chassisId or ""),
            mgmt_addr=params.get("Management Address", ""),
            port_descr=params.get("Port Description", ""),
        )
    cdp = getattr(hint, "connectedSwitchPort", None)
    if cdp is not None and cdp.devId:
        return Neighbor(
            protocol="cdp",
            system_name=str(cdp.devId),
            port_id=str(cdp.portId or ""),
            mgmt_addr=str(cdp.address or cdp.mgmtAddr or ""),
        )
    return None


def neighbors_from_hints(hints: Iterable[Any]) -> dict[str, Neighbor]:
    """NIC device -> neighbour, for the NICs that heard one."""
    out: dict[str, Neighbor] = {}
    for hint in hints:
        neighbor = neighbor_from_hint(hint)
        if neighbor is not None:
            out[str(hint.device)] = neighbor
    return out


def vswitch_nics(
    pnics: Iterable[Any],
    vswitches: Iterable[Any],
    portgroups: Iterable[Any],
    proxies: Iterable[Any],
) -> dict[str, frozenset[str]]:
    """Carriage key -> pnic devices: ``pg:<name>`` via the port group's vSwitch,
    ``dvs:<uuid>`` via the host's proxy switch."""
    device = {str(p.key): str(p.device) for p in pnics}

    def devices(keys: Iterable[Any] | None) -> frozenset[str]:
        return frozenset(device.get(str(k), str(k)) for k in keys or ())

    by_vswitch = {str(vs.name): devices(vs.pnic) for vs in vswitches}
    out = {
        f"pg:{pg.spec.name}": by_vswitch.get(str(pg.spec.vswitchName), frozenset())
        for pg in portgroups
    }
    for proxy in proxies:
        out[f"dvs:{proxy.dvsUuid}"] = devices(proxy.pnic)
    return out


def nic_backings(devices: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """("dvpg", portgroup key) or ("net", network name) per VM Ethernet card, in order."""
    card = vim.vm.device.VirtualEthernetCard
    for dev in devices:
        if not isinstance(dev, card):
            continue
        backing = dev.backing
        if isinstance(backing, card.DistributedVirtualPortBackingInfo) and backing.port:
            yield "dvpg", str(backing.port.portgroupKey)
        elif isinstance(backing, card.NetworkBackingInfo) and backing.deviceName:
            yield "net", str(backing.deviceName)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _power(value: Any) -> Power:
    try:
        return Power(str(value))
    except ValueError:
        return Power.OFF


# ---- the cached inventory: properties per object, rebuilt into model objects -----------


@dataclass
class Inventory:
    """Properties last seen per managed object, by kind and moref id."""

    session: str
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    switches: dict[str, dict[str, Any]] = field(default_factory=dict)
    neighbors: dict[str, dict[str, Neighbor]] = field(default_factory=dict)

    def table(self, obj: Any) -> dict[str, dict[str, Any]] | None:
        if isinstance(obj, vim.VirtualMachine):
            return self.vms
        if isinstance(obj, vim.HostSystem):
            return self.hosts
        if isinstance(obj, vim.Network):
            return self.networks
        if isinstance(obj, vim.DistributedVirtualSwitch):
            return self.switches
        return None

    # -- model objects

    def dvpg_names(self) -> dict[str, str]:
        """Distributed port group key -> name (VM NIC backings name the key)."""
        return {str(p["key"]): str(p.get("name")) for p in self.networks.values() if "key" in p}

    def vm(self, moref: str, dvpg_names: dict[str, str] | None = None) -> Vm:
        props = self.vms[moref]
        host = props.get("runtime.host")
        host_name = self.hosts.get(host._moId, {}).get("name", "") if host is not None else ""
        return Vm(
            session=self.session,
            id=moref,
            name=str(props.get("name", moref)),
            host=str(host_name),
            power=_power(props.get("runtime.powerState")),
            networks=self.vm_networks(props, dvpg_names or self.dvpg_names()),
        )

    def vm_networks(self, props: dict[str, Any], names: dict[str, str]) -> tuple[str, ...]:
        found = [
            names.get(value, "") if kind == "dvpg" else value
            for kind, value in nic_backings(props.get("config.hardware.device") or ())
        ]
        if any(found):
            return _unique(n for n in found if n)
        return _unique(
            str(self.networks.get(n._moId, {}).get("name", n._moId))
            for n in props.get("network") or ()
        )

    def host(self, moref: str) -> Host:
        props = self.hosts[moref]
        pnics = props.get("config.network.pnic") or ()
        heard = self.neighbors.get(moref, {})
        return Host(
            session=self.session,
            name=str(props.get("name", moref)),
            nics=tuple(Nic(str(p.device), heard.get(str(p.device))) for p in pnics),
            vswitch_nics=vswitch_nics(
                pnics,
                props.get("config.network.vswitch") or (),
                props.get("config.network.portgroup") or (),
                props.get("config.network.proxySwitch") or (),
            ),
        )

    def portgroups(self) -> dict[str, PortGroup]:
        """Every port group by name: distributed ones win over a standard one's name."""
        out = self._standard_portgroups()
        uplinks = {
            ref._moId
            for s in self.switches.values()
            for ref in s.get("config.uplinkPortgroup") or ()
        }
        for moref, props in self.networks.items():
            if "key" in props and moref not in uplinks:
                pg = self._dvpg(props)
                out[pg.name] = pg
        return out

    def _dvpg(self, props: dict[str, Any]) -> PortGroup:
        config = props.get("config.defaultPortConfig")
        vlans, problem = dvpg_vlans(getattr(config, "vlan", None))
        dvs = props.get("config.distributedVirtualSwitch")
        uuid = self.switches.get(dvs._moId, {}).get("uuid") if dvs is not None else None
        return PortGroup(
            session=self.session,
            name=str(props.get("name")),
            vlans=vlans,
            vswitch=f"dvs:{uuid}" if uuid else "",
            problem=problem,
        )

    def _standard_portgroups(self) -> dict[str, PortGroup]:
        seen: dict[str, set[int]] = {}
        for props in self.hosts.values():
            for pg in props.get("config.network.portgroup") or ():
                seen.setdefault(str(pg.spec.name), set()).add(int(pg.spec.vlanId or 0))
        out: dict[str, PortGroup] = {}
        for name, ids in seen.items():
            vlans = frozenset[int]().union(*(standard_vlans(i) for i in ids))
            problem = "VLAN differs between hosts" if len(ids) > 1 else ""
            out[name] = PortGroup(self.session, name, vlans, f"pg:{name}", problem)
        return out

    def vms_of(self, morefs: Iterable[str]) -> dict[str, Vm]:
        names = self.dvpg_names()
        return {m: self.vm(m, names) for m in morefs}

    def hosts_by_name(self) -> dict[str, Host]:
        return {h.name: h for h in map(self.host, self.hosts)}

    def snapshot(self) -> Snapshot:
        return Snapshot(
            session=self.session,
            hosts=tuple(self.hosts_by_name().values()),
            portgroups=tuple(self.portgroups().values()),
            vms=tuple(self.vms_of(self.vms).values()),
        )


def apply_update(table: dict[str, dict[str, Any]], update: Any) -> None:
    """Apply one ObjectUpdate (enter/modify/leave) to a property table."""
    moref = str(update.obj._moId)
    if update.kind == "leave":
        table.pop(moref, None)
        return
    props = table.setdefault(moref, {})
    for change in update.changeSet or ():
        if change.op in ("remove", "indirectRemove"):
            props.pop(change.name, None)
        else:
            props[change.name] = change.val


# ---- what was emitted, to turn rebuilt model objects into changes -----------------------


@dataclass
class Emitted:
    """The model objects last emitted, by key, so that only differences are sent."""

    vms: dict[str, Vm] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    portgroups: dict[str, PortGroup] = field(default_factory=dict)

    @classmethod
    def of(cls, snap: Snapshot) -> Emitted:
        return cls(
            vms={v.id: v for v in snap.vms},
            hosts={h.name: h for h in snap.hosts},
            portgroups={p.name: p for p in snap.portgroups},
        )

    def portgroup_changes(self, now: dict[str, PortGroup]) -> list[SourceEvent]:
        out: list[SourceEvent] = [
            PortGroupUpsert(pg) for name, pg in now.items() if self.portgroups.get(name) != pg
        ]
        out += [
            PortGroupRemoved(pg.session, name)
            for name, pg in self.portgroups.items()
            if name not in now
        ]
        self.portgroups = dict(now)
        return out

    def host_changes(self, now: dict[str, Host]) -> list[SourceEvent]:
        out: list[SourceEvent] = [
            HostUpsert(h) for name, h in now.items() if self.hosts.get(name) != h
        ]
        out += [HostRemoved(h.session, n) for n, h in self.hosts.items() if n not in now]
        self.hosts = dict(now)
        return out

    def vm_changes(self, now: dict[str, Vm], removed: Iterable[str]) -> list[SourceEvent]:
        out: list[SourceEvent] = []
        for moref, vm in now.items():
            if self.vms.get(moref) != vm:
                self.vms[moref] = vm
                out.append(VmUpsert(vm))
        for moref in removed:
            old = self.vms.pop(moref, None)
            if old is not None:
                out.append(VmRemoved(old.session, moref))
        return out


# ---- the session ------------------------------------------------------------------------


class LoginError(TransientError):
    """The server refused the credentials (retried: they may be fixed meanwhile)."""


# One ContainerView and one PropertyFilter per kind, all on the session's PropertyCollector:
# one WaitForUpdatesEx answers for all of them. (A single filter mixing kinds also works on
# vCenter, but vcsim then crashes when an object is modified and deleted in one batch.)
WATCHED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("VirtualMachine", VM_PATHS),
    ("HostSystem", HOST_PATHS),
    ("Network", NETWORK_PATHS),
    ("dvs.DistributedVirtualPortgroup", DVPG_PATHS),
    ("DistributedVirtualSwitch", DVS_PATHS),
)


def _vim_type(dotted: str) -> Any:
    kind: Any = vim
    for part in dotted.split("."):
        kind = getattr(kind, part)
    return kind


def filter_spec(view: Any, kind: Any, paths: Iterable[str]) -> Any:
    """A FilterSpec reading ``paths`` of every ``kind`` object in a ContainerView."""
    collector = vmodl.query.PropertyCollector
    traverse = collector.TraversalSpec(
        name="view", path="view", skip=False, type=vim.view.ContainerView
    )
    return collector.FilterSpec(
        objectSet=[collector.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
        propSet=[collector.PropertySpec(type=kind, pathSet=list(paths))],
    )


CONNECTION_ERRORS = (OSError, http.client.HTTPException)


def describe(exc: BaseException) -> str:
    """A one-line reason for a lost or refused connection."""
    if isinstance(exc, vmodl.MethodFault):
        text = str(getattr(exc, "msg", "") or type(exc).__name__.rsplit(".", 1)[-1])
    elif isinstance(exc, ssl.SSLCertVerificationError):
        text = f"TLS certificate verify failed: {exc.verify_message}"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class VcenterSource:
    """A vCenter session: ``run`` reports its inventory until ``stop`` is set.

    Counters for tests and benchmarks: ``full_reads`` (full inventory retrievals),
    ``hint_queries`` (QueryNetworkHint calls), ``updates`` (non-empty WaitForUpdatesEx
    batches after the full read) and ``last_full_read_seconds``.
    """

    def __init__(self, config: VcenterSession, base_dir: Path) -> None:
        self.name = config.name
        self.config = config
        self.base_dir = base_dir
        self.full_reads = 0
        self.host_rereads = 0  # VMs announced without a host whose host was read directly
        self.hint_queries = 0
        self.updates = 0
        self.last_full_read_seconds = 0.0
        self.backoff = Backoff(first=1.0, cap=60.0)

    def __repr__(self) -> str:
        return f"VcenterSource(name={self.name!r}, url={self.config.url!r})"

    # -- lifecycle

    def run(self, emit: Emit, stop: threading.Event) -> None:
        while not stop.is_set():
            emit(SessionStatus(self.name, "connecting"))
            try:
                self._session(emit, stop)
            except (VmfabricError, vmodl.MethodFault, *CONNECTION_ERRORS) as exc:
                self._lost(emit, exc)
            except Exception as exc:  # a bug must not end the session thread
                log.exception("session %s: unexpected error", self.name)
                self._lost(emit, exc)
            else:
                return
            stop.wait(self.backoff.next())

    def _lost(self, emit: Emit, exc: BaseException) -> None:
        reason = describe(exc)
        if not isinstance(exc, (LoginError, ConfigError)):
            reason = f"{self.config.url}: {reason}"
        reason = self._scrub(reason)
        log.warning("session %s disconnected: %s", self.name, reason)
        bad_input = isinstance(exc, ConfigError)  # e.g. a secret file others can read
        emit(SessionStatus(self.name, "disconnected", error=reason, bad_input=bad_input))

    def _scrub(self, text: str) -> str:
        """Belt and braces: never let the password reach an event or a log."""
        try:
            secret = resolve_secret(self.config.password, self.base_dir).get_secret_value()
        except ConfigError:
            return text
        return text.replace(secret, "***") if secret else text

    def _session(self, emit: Emit, stop: threading.Event) -> None:
        si = self._connect()
        try:
            content = si.RetrieveContent()
            about = content.about
            emit(
                SessionStatus(
                    self.name,
                    "connected",
                    version=f"{about.fullName} (API {about.apiVersion})",
                    warnings=self._warnings(),
                )
            )
            _Watch(self, content, emit).run(stop)
        finally:
            self._logout(si)

    def _warnings(self) -> tuple[str, ...]:
        if urlsplit(self.config.url).scheme == "http":
            return ("plain http: the session is not encrypted",)
        if not self.config.verify_tls:
            return ("TLS certificate verification is off (verify_tls: false)",)
        return ()

    def _connect(self) -> Any:
        parts = urlsplit(self.config.url)
        password = resolve_secret(self.config.password, self.base_dir)
        https = parts.scheme == "https"
        kwargs: dict[str, Any] = {
            "protocol": parts.scheme,
            "host": parts.hostname,
            "port": parts.port or (443 if https else 80),
            "path": parts.path or "/sdk",
            "user": self.config.username,
            "httpConnectionTimeout": SOCKET_TIMEOUT,
        }
        if https:
            kwargs["sslContext"] = self._ssl_context()
        try:
            return SmartConnect(pwd=password.get_secret_value(), **kwargs)
        except vim.fault.InvalidLogin:
            raise LoginError(
                f"login failed for user {self.config.username} at {self.config.url}"
            ) from None

    def _ssl_context(self) -> ssl.SSLContext:
        if not self.config.verify_tls:
            log.warning(
                "session %s: TLS certificate verification is off for %s",
                self.name,
                self.config.url,
            )
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        ca = self.config.ca_file
        if ca is not None and not ca.is_absolute():
            ca = self.base_dir / ca
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    def _logout(self, si: Any) -> None:
        try:
            Disconnect(si)
        except Exception as exc:  # the server may be gone: nothing to log out of
            log.debug("session %s: logout failed: %s", self.name, describe(exc))


class _Watch:
    """One connected session: the full read, then changes, hint refreshes and audits."""

    def __init__(self, source: VcenterSource, content: Any, emit: Emit) -> None:
        self.source = source
        self.content = content
        self.emit = emit
        # A collector of our own: the session default one is shared with every other
        # waiter of the session (vcsim even lets another session's waiter take updates).
        self.pc = content.propertyCollector.CreatePropertyCollector()
        self.specs = [self._spec(content, _vim_type(kind), paths) for kind, paths in WATCHED]
        self.filters: list[Any] = []
        self.version = ""
        self.inventory = Inventory(source.name)
        self.emitted = Emitted()

    @staticmethod
    def _spec(content: Any, kind: Any, paths: tuple[str, ...]) -> Any:
        view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
        return filter_spec(view, kind, paths)

    def run(self, stop: threading.Event) -> None:
        config = self.source.config
        self.full_read(query_hints=True)
        self.source.backoff.reset()  # only a session that got as far as a snapshot counts
        now = time.monotonic()
        next_audit, next_hints = now + config.audit_interval, now + config.hint_refresh
        while not stop.is_set():
            self.poll()
            now = time.monotonic()
            if now >= next_hints:
                self.refresh_hints(list(self.inventory.hosts))
                next_hints = now + config.hint_refresh
            if now >= next_audit:
                self.full_read(query_hints=False)
                next_audit = now + config.audit_interval

    # -- full read

    def full_read(self, query_hints: bool) -> None:
        """(Re)create the filters; their first WaitForUpdatesEx is the whole inventory."""
        started = time.monotonic()
        for old in self.filters:
            old.DestroyPropertyFilter()
        self.filters = [self.pc.CreateFilter(spec, partialUpdates=False) for spec in self.specs]
        neighbors = self.inventory.neighbors
        self.inventory = Inventory(self.source.name, neighbors=neighbors)
        self.version = ""
        for update_set in self._wait_all(wait=0):
            self._apply(update_set)
        if query_hints:
            self.inventory.neighbors = {}
            self.query_hints(list(self.inventory.hosts))
        snap = self.inventory.snapshot()
        self.source.full_reads += 1
        self.source.last_full_read_seconds = time.monotonic() - started
        self.emitted = Emitted.of(snap)
        self.emit(snap)

    def _wait_all(self, wait: int) -> Iterator[Any]:
        """WaitForUpdatesEx until the server has nothing more (handles truncation)."""
        options = vmodl.query.PropertyCollector.WaitOptions(
            maxWaitSeconds=wait, maxObjectUpdates=MAX_OBJECT_UPDATES
        )
        while True:
            update_set = self.pc.WaitForUpdatesEx(self.version, options)
            if update_set is None:
                return
            self.version = update_set.version
            yield update_set
            if not update_set.truncated:
                return

    def _apply(self, update_set: Any) -> _Touched:
        touched = _Touched()
        homeless: dict[str, Any] = {}
        for filter_update in update_set.filterSet or ():
            for update in filter_update.objectSet or ():
                table = self.inventory.table(update.obj)
                if table is None:
                    continue
                touched.note(table is self.inventory.vms, update, self.inventory)
                apply_update(table, update)
                props = table.get(str(update.obj._moId))
                if table is self.inventory.vms and props and props.get("runtime.host") is None:
                    homeless[str(update.obj._moId)] = update.obj
        for moref, obj in homeless.items():
            self._read_host(moref, obj)
        return touched

    def _read_host(self, moref: str, obj: Any) -> None:
        """A VM announced without its host (vcsim does this for some new VMs and may never
        send the host later; vCenter can while a VM is being created): read it directly."""
        try:
            host = obj.runtime.host
        except vmodl.MethodFault as exc:
            log.info(
                "session %s: VM %s has no host yet: %s", self.source.name, moref, describe(exc)
            )
            return
        if host is not None:
            self.inventory.vms[moref]["runtime.host"] = host
            self.source.host_rereads += 1

    # -- changes

    def poll(self) -> None:
        """One WaitForUpdatesEx of at most WAIT_SECONDS; emit what changed."""
        for update_set in self._wait_all(wait=WAIT_SECONDS):
            self.source.updates += 1
            touched = self._apply(update_set)
            if touched.reconnected:
                self.query_hints(sorted(touched.reconnected))
            self._emit_changes(touched)

    def _emit_changes(self, touched: _Touched) -> None:
        inv = self.inventory
        events: list[SourceEvent] = []
        if touched.others:
            events += self.emitted.portgroup_changes(inv.portgroups())
            events += self.emitted.host_changes(inv.hosts_by_name())
        vm_ids = inv.vms.keys() if touched.others else touched.vms & inv.vms.keys()
        removed = touched.vms - inv.vms.keys()
        for gone in inv.neighbors.keys() - inv.hosts.keys():
            del inv.neighbors[gone]
        events += self.emitted.vm_changes(inv.vms_of(vm_ids), removed)
        for event in events:
            self.emit(event)

    # -- hints

    def query_hints(self, hosts: list[str]) -> None:
        """QueryNetworkHint once per host; unreachable hosts keep their last neighbours."""
        for moref in hosts:
            props = self.inventory.hosts.get(moref, {})
            network_system = props.get("configManager.networkSystem")
            if network_system is None or props.get("runtime.connectionState") != "connected":
                continue
            self.source.hint_queries += 1
            try:
                hints = network_system.QueryNetworkHint()
            except vmodl.MethodFault as exc:
                log.info(
                    "session %s: no hints from host %s: %s",
                    self.source.name,
                    props.get("name", moref),
                    describe(exc),
                )
                continue
            self.inventory.neighbors[moref] = neighbors_from_hints(hints or ())

    def refresh_hints(self, hosts: list[str]) -> None:
        """Re-query hints; emit HostUpsert for hosts whose neighbours changed."""
        self.query_hints(hosts)
        for event in self.emitted.host_changes(self.inventory.hosts_by_name()):
            self.emit(event)


@dataclass
class _Touched:
    """What one update batch touched: VM morefs, anything else, hosts that reconnected."""

    vms: set[str] = field(default_factory=set)
    others: bool = False
    reconnected: set[str] = field(default_factory=set)

    def note(self, is_vm: bool, update: Any, inventory: Inventory) -> None:
        moref = str(update.obj._moId)
        if is_vm:
            self.vms.add(moref)
            return
        self.others = True
        if not isinstance(update.obj, vim.HostSystem):
            return
        old = inventory.hosts.get(moref, {}).get("runtime.connectionState")
        for change in update.changeSet or ():
            state = change.val if change.name == "runtime.connectionState" else None
            if state == "connected" and old != "connected":
                self.reconnected.add(moref)


def _create(config: SessionConfig, base_dir: Path) -> VcenterSource:
    if not isinstance(config, VcenterSession):
        raise ConfigError(f"session {config.name} is not of kind vcenter")
    return VcenterSource(config, base_dir)


SOURCES.register("vcenter")(_create)
