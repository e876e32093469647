"""The session's cached inventory: the properties last seen per managed object, one table
per feed, rebuilt into model objects; and what was last emitted, so that only differences
are sent.

Values: fast feeds (VMs, networks, switches, folders, datacenters, clusters) hold plain
values (a reference is its moref id, see ``wire.parse_fast``); the host, distributed port
group and custom-field feeds hold pyVmomi objects. ``mapping.moref`` reads a reference of
either kind.

A VM is read by three feeds (``vm``: host and power, the latency-critical part;
``vm-more`` and ``vm-extra``: the rest, see ``feeds``) and exists for the model once all
three have reported it: until then it is pending, and nothing is emitted for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vmfabric.core.model import (
    Host,
    HostRemoved,
    HostUpsert,
    Neighbor,
    Nic,
    PortGroup,
    PortGroupRemoved,
    PortGroupUpsert,
    Snapshot,
    SourceEvent,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.sources.vcenter.mapping import (
    custom_attributes,
    dvpg_vlans,
    guest_addresses,
    moref,
    power,
    standard_vlans,
    unique,
    vswitch_nics,
)
from vmfabric.sources.vcenter.wire import ObjectUpdate

Props = dict[str, Any]
Table = dict[str, Props]
VM_FEEDS = frozenset({"vm", "vm-more", "vm-extra"})
FOLDER_ROOT_DEPTH = 64  # a parent chain longer than this is a loop, not a folder path


@dataclass
class Inventory:
    """Properties last seen per managed object, by feed and moref id."""

    session: str
    vms: Table = field(default_factory=dict)  # feed "vm": runtime.host, runtime.powerState
    vm_more: Table = field(default_factory=dict)  # feed "vm-more": name, network, guest OS
    vm_extra: Table = field(default_factory=dict)  # "vm-extra": parent, customValue, guest.net
    hosts: Table = field(default_factory=dict)
    networks: Table = field(default_factory=dict)  # every Network (DVPGs too): its name
    dvpgs: Table = field(default_factory=dict)
    switches: Table = field(default_factory=dict)
    folders: Table = field(default_factory=dict)  # folders and datacenters: name, parent
    clusters: Table = field(default_factory=dict)
    fields: Table = field(default_factory=dict)  # the CustomFieldsManager: field
    neighbors: dict[str, dict[str, Neighbor]] = field(default_factory=dict)
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)  # VM moref -> tags

    def table(self, feed: str) -> Table:
        return {
            "vm": self.vms, "vm-more": self.vm_more, "vm-extra": self.vm_extra,
            "host": self.hosts, "host-net": self.hosts,
            "network": self.networks, "dvpg": self.dvpgs, "dvs": self.switches,
            "folder": self.folders, "datacenter": self.folders, "cluster": self.clusters,
            "fields": self.fields,
        }[feed]  # fmt: skip

    # -- VMs

    def vm(self, ref: str, context: _VmContext | None = None) -> Vm | None:
        """The VM ``ref`` as the model sees it; None while it is pending or gone."""
        hot, more, extra = self.vms.get(ref), self.vm_more.get(ref), self.vm_extra.get(ref)
        if hot is None or more is None or extra is None:
            return None
        ctx = context or self.vm_context()
        host, cluster = ctx.host(moref(hot.get("runtime.host")))
        nics = extra.get("guest.net")
        ips, macs = guest_addresses(nics) if nics else ((), ())
        values = extra.get("customValue")
        return Vm(
            session=self.session,
            id=ref,
            name=str(more.get("name") or ref),
            host=host,
            power=power(hot.get("runtime.powerState")),
            networks=ctx.networks(more.get("network") or ()),
            ips=ips,
            macs=macs,
            tags=self.tags.get(ref, ()),
            attributes=custom_attributes(values, ctx.field_names) if values else (),
            guest_os=str(more.get("config.guestId") or ""),
            folder=ctx.folder_path(moref(extra.get("parent"))),
            cluster=cluster,
        )

    def vm_context(self) -> _VmContext:
        return _VmContext(self)

    def vms_of(self, refs: Iterable[str]) -> dict[str, Vm]:
        ctx = self.vm_context()
        out = {}
        for ref in refs:
            vm = self.vm(ref, ctx)
            if vm is not None:
                out[ref] = vm
        return out

    # -- hosts and port groups

    def host(self, ref: str) -> Host:
        props = self.hosts[ref]
        pnics = props.get("config.network.pnic") or ()
        heard = self.neighbors.get(ref, {})
        return Host(
            session=self.session,
            name=str(props.get("name", ref)),
            nics=tuple(Nic(str(p.device), heard.get(str(p.device))) for p in pnics),
            vswitch_nics=vswitch_nics(
                pnics,
                props.get("config.network.vswitch") or (),
                props.get("config.network.portgroup") or (),
                props.get("config.network.proxySwitch") or (),
            ),
        )

    def hosts_by_name(self) -> dict[str, Host]:
        return {h.name: h for h in map(self.host, self.hosts)}

    def portgroups(self) -> dict[str, PortGroup]:
        """Every port group by name: distributed ones win over a standard one's name."""
        out = self._standard_portgroups()
        uplinks = {
            moref(ref)
            for s in self.switches.values()
            for ref in s.get("config.uplinkPortgroup") or ()
        }
        for ref, props in self.dvpgs.items():
            if ref not in uplinks and "name" in props:
                pg = self._dvpg(props)
                out[pg.name] = pg
        return out

    def _dvpg(self, props: Props) -> PortGroup:
        config = props.get("config.defaultPortConfig")
        vlans, problem = dvpg_vlans(getattr(config, "vlan", None))
        dvs = moref(props.get("config.distributedVirtualSwitch"))
        uuid = self.switches.get(dvs, {}).get("uuid") if dvs else None
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

    def snapshot(self) -> Snapshot:
        return Snapshot(
            session=self.session,
            hosts=tuple(self.hosts_by_name().values()),
            portgroups=tuple(self.portgroups().values()),
            vms=tuple(self.vms_of(self.vms).values()),
        )


class _VmContext:
    """Lookups shared by every VM of one rebuild (port group keys, field names, folder
    paths), computed once per rebuild rather than once per VM."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.field_names = {
            int(f.key): str(f.name)
            for props in inv.fields.values()
            for f in props.get("field") or ()
        }
        self._paths: dict[str, str] = {}
        self._hosts: dict[str, tuple[str, str]] = {}
        self._networks: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def host(self, ref: str) -> tuple[str, str]:
        """(name, cluster) of the host ``ref``; ("", "") when unknown."""
        found = self._hosts.get(ref)
        if found is None:
            props = self.inv.hosts.get(ref, {})
            found = self._hosts[ref] = (str(props.get("name", "")), self.cluster(props))
        return found

    def networks(self, refs: Any) -> tuple[str, ...]:
        """The port group names of a VM's ``network`` (the same list is named once)."""
        if not isinstance(refs, tuple):
            return unique(self.network_name(n) for n in refs)
        found = self._networks.get(refs)
        if found is None:
            found = self._networks[refs] = unique(self.network_name(n) for n in refs)
        return found

    def network_name(self, ref: Any) -> str:
        key = moref(ref)
        return str(self.inv.networks.get(key, {}).get("name", key))

    def folder_path(self, ref: str) -> str:
        """``/Datacenter/vm/Folder`` for a VM's parent folder; "" when unknown."""
        if ref not in self._paths:
            names: list[str] = []
            node = ref
            while node in self.inv.folders and len(names) < FOLDER_ROOT_DEPTH:
                props = self.inv.folders[node]
                parent = moref(props.get("parent"))
                if not parent:  # the root folder ("Datacenters") is not part of a path
                    break
                names.append(str(props.get("name", node)))
                node = parent
            self._paths[ref] = "/" + "/".join(reversed(names)) if names else ""
        return self._paths[ref]

    def cluster(self, host: Props) -> str:
        return str(self.inv.clusters.get(moref(host.get("parent")), {}).get("name", ""))


def in_order(objects: Iterable[ObjectUpdate]) -> list[ObjectUpdate]:
    """One answer's object updates in the order to apply them. An answer that both enters
    and leaves an object means it left and came back (vcsim re-parents a VM moved to
    another folder that way, and writes the new "enter" before the old "leave"): that
    "leave" goes first. vCenter sends one update per object per answer."""
    objects = list(objects)
    entered = {u.moref for u in objects if u.kind == "enter"}
    if not entered:
        return objects
    first = [u for u in objects if u.kind == "leave" and u.moref in entered]
    return first + [u for u in objects if not (u.kind == "leave" and u.moref in entered)]


def apply_update(table: Table, update: ObjectUpdate) -> None:
    """Apply one object update (enter/modify/leave) to a property table."""
    if update.kind == "leave":
        table.pop(update.moref, None)
        return
    props = table.setdefault(update.moref, {})
    for change in update.changes:
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

    def vm_changes(self, now: dict[str, Vm], gone: Iterable[str]) -> list[SourceEvent]:
        """Upserts for VMs in ``now`` that differ; removals for ``gone`` ones emitted before."""
        out: list[SourceEvent] = []
        for ref, vm in now.items():
            if self.vms.get(ref) != vm:
                self.vms[ref] = vm
                out.append(VmUpsert(vm))
        for ref in gone:
            old = self.vms.pop(ref, None)
            if old is not None:
                out.append(VmRemoved(old.session, ref))
        return out


@dataclass
class Touched:
    """What a batch of updates touched: VM morefs, anything else, hosts that reconnected."""

    vms: set[str] = field(default_factory=set)
    others: bool = False
    tags: bool = False
    reconnected: set[str] = field(default_factory=set)

    def note(self, feed: str, update: ObjectUpdate, inventory: Inventory) -> None:
        if feed in VM_FEEDS:
            self.vms.add(update.moref)
            return
        self.others = True
        if feed != "host":
            return
        old = inventory.hosts.get(update.moref, {}).get("runtime.connectionState")
        for change in update.changes:
            state = change.val if change.name == "runtime.connectionState" else None
            if state == "connected" and old != "connected":
                self.reconnected.add(update.moref)
