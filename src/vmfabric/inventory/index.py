"""The shared inventory: every session's hosts, port groups and VMs, indexed, and each
session's sync state. Every intent reads it; only the runtime writes it.

``apply(events, now)`` takes one batch of source events and returns a ``Delta``: the keys
of the VMs, hosts and port groups that changed (added, changed or removed) and the sessions
whose sync state changed. Intents recompute only what a delta names, so a VM move costs
the same at 10 or 100,000 VMs.

Sync state (fail-static): a session is *in sync* once it delivered a complete snapshot
(``Snapshot`` without ``unknown_hosts``) and until it reports any state but ``connected``.
``synced_at`` is when it last became in sync: removal safety counts the prune delay from
there, so a manager that comes back half-started cannot prune at once.

Indexes: host -> VMs on it, port group -> VMs attached to it (both by (session, name)),
each entry holding the ids of the stored records: a removal finds its own id by identity and
reads one string, not a key tuple and its string, per entry it passes (100,000 VMs: the
entries are cache misses).
A delta also names each changed VM's record from before the batch (``before``), so that an
intent can undo what it counted for a VM without keeping a copy of every VM.
Not thread-safe: the runtime owns it.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from vmfabric.core.model import (
    Host,
    HostRemoved,
    HostUpsert,
    PortGroup,
    PortGroupRemoved,
    PortGroupUpsert,
    SessionStatus,
    Snapshot,
    SourceEvent,
    Vm,
    VmRemoved,
    VmUpsert,
)

Key = tuple[str, str]  # (session, name or id)
_T = TypeVar("_T", Host, PortGroup)
Members = list[str] | set[str]  # VM ids (the session is the entry's)
SMALL = 64  # index entries kept as a list up to this many VMs (a removal scans it)


@dataclass(slots=True)
class Delta:
    """What one batch changed. ``vms`` holds every VM whose record changed or whose host or
    port group changed under it is *not* expanded here: intents expand ``hosts`` and
    ``portgroups`` through the inventory's indexes as they need."""

    vms: set[Key] = field(default_factory=set)
    hosts: set[Key] = field(default_factory=set)
    portgroups: set[Key] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)  # sync state changed
    # the record each changed VM had before the batch (absent: the VM is new in it), so
    # that an intent can uncount what it counted without keeping a copy per VM
    before: dict[Key, Vm] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.vms or self.hosts or self.portgroups or self.sessions)

    def affected_vms(self, inventory: Inventory) -> set[Key]:
        """The VMs changed, plus every VM on a changed host or in a changed port group."""
        out = set(self.vms)
        for key in self.hosts:
            out.update(inventory.vms_on_host(key))
        for key in self.portgroups:
            out.update(inventory.vms_in_portgroup(key))
        return out


class Inventory:
    """See the module docstring."""

    def __init__(self, sessions: Iterable[str] = ()) -> None:
        self.hosts: dict[Key, Host] = {}
        self.portgroups: dict[Key, PortGroup] = {}
        self.vms: dict[Key, Vm] = {}
        self._by_host: dict[Key, Members] = {}
        self._by_pg: dict[Key, Members] = {}
        self._in_sync: dict[str, bool] = dict.fromkeys(sessions, False)
        self._synced_at: dict[str, float] = {}
        self._shared: dict[tuple[str, ...], tuple[str, ...]] = {}  # networks, tags

    # ---- queries -------------------------------------------------------------------------

    def sessions(self) -> list[str]:
        return sorted(self._in_sync)

    def in_sync(self, session: str) -> bool:
        return self._in_sync.get(session, False)

    def synced_at(self, session: str) -> float:
        """When the session last became in sync (0.0 if never)."""
        return self._synced_at.get(session, 0.0)

    def vms_on_host(self, key: Key) -> Collection[Key]:
        return _keys(key[0], self._by_host.get(key))

    def vms_in_portgroup(self, key: Key) -> Collection[Key]:
        return _keys(key[0], self._by_pg.get(key))

    def host_of(self, vm: Vm) -> Host | None:
        return self.hosts.get((vm.session, vm.host))

    def portgroup(self, session: str, name: str) -> PortGroup | None:
        return self.portgroups.get((session, name))

    # ---- sessions (configuration) ----------------------------------------------------------

    def set_sessions(self, names: Iterable[str]) -> Delta:
        """The configured sessions changed (reload): new ones start out of sync; the
        items of removed ones are dropped."""
        wanted = set(names)
        delta = Delta()
        for name in wanted - set(self._in_sync):
            self._in_sync[name] = False
            delta.sessions.add(name)
        for name in set(self._in_sync) - wanted:
            self._drop_session(name, delta)
            del self._in_sync[name]
            self._synced_at.pop(name, None)
            delta.sessions.add(name)
        return delta

    def _drop_session(self, name: str, delta: Delta) -> None:
        for key in [k for k in self.vms if k[0] == name]:
            self._remove_vm(key, delta)
        for key in [k for k in self.hosts if k[0] == name]:
            del self.hosts[key]
            delta.hosts.add(key)
        for key in [k for k in self.portgroups if k[0] == name]:
            del self.portgroups[key]
            delta.portgroups.add(key)

    # ---- changes -------------------------------------------------------------------------

    def apply(self, events: Iterable[SourceEvent], now: float) -> Delta:
        delta = Delta()
        for event in events:
            self.apply_one(event, now, delta)
        return delta

    def apply_one(self, event: SourceEvent, now: float, delta: Delta) -> None:
        match event:
            case VmUpsert(vm=vm):
                self._upsert_vm(vm, delta)
            case VmRemoved(session=s, id=vid):
                self._remove_vm((s, vid), delta)
            case HostUpsert(host=host):
                _put(self.hosts, host.key, host, delta.hosts)
            case HostRemoved(session=s, name=name):
                _drop(self.hosts, (s, name), delta.hosts)
            case PortGroupUpsert(portgroup=pg):
                _put(self.portgroups, pg.key, pg, delta.portgroups)
            case PortGroupRemoved(session=s, name=name):
                _drop(self.portgroups, (s, name), delta.portgroups)
            case Snapshot():
                self._snapshot(event, now, delta)
            case SessionStatus(session=s, state=state):
                if state != "connected" and self._in_sync.get(s, False):
                    self._in_sync[s] = False
                    delta.sessions.add(s)

    def _snapshot(self, snap: Snapshot, now: float, delta: Delta) -> None:
        s = snap.session
        delta.hosts |= _replace(self.hosts, {h.key: h for h in snap.hosts}, s)
        delta.portgroups |= _replace(self.portgroups, {p.key: p for p in snap.portgroups}, s)
        new_vms = {v.key: v for v in snap.vms}
        for key in [k for k in self.vms if k[0] == s and k not in new_vms]:
            self._remove_vm(key, delta)
        for vm in new_vms.values():
            self._upsert_vm(vm, delta)
        complete = not snap.unknown_hosts
        if complete and not self._in_sync.get(s, False):
            self._synced_at[s] = now
        if self._in_sync.get(s) != complete:
            delta.sessions.add(s)
        self._in_sync[s] = complete

    def _upsert_vm(self, vm: Vm, delta: Delta) -> None:
        key = (vm.session, vm.id)
        old = self.vms.get(key)
        if old is None:
            vm = self._canonical(vm)
            self.vms[key] = vm
            _index(self._by_host, (vm.session, vm.host), vm.id)
            for name in dict.fromkeys(vm.networks):  # a port group named twice is indexed once
                _index(self._by_pg, (vm.session, name), vm.id)
            delta.vms.add(key)
            return
        # a move or a power change differs in its first test: the full comparison (every
        # field) is left for a VM sent again unchanged
        if old.host == vm.host and old.power == vm.power and old == vm:
            return
        if key not in delta.vms:
            delta.before[key] = old
        if vm.id is not old.id:  # one id object per VM: the index entries hold it
            _share(vm, "id", old.id)
        vm = self._canonical(vm)
        self.vms[key] = vm
        # re-index only what changed: a vMotion keeps its port groups, a power change both
        if old.host != vm.host:
            _unindex(self._by_host, (old.session, old.host), old.id)
            _index(self._by_host, (vm.session, vm.host), vm.id)
        if old.networks != vm.networks:
            for name in dict.fromkeys(old.networks):
                _unindex(self._by_pg, (old.session, name), old.id)
            for name in dict.fromkeys(vm.networks):
                _index(self._by_pg, (vm.session, name), vm.id)
        delta.vms.add(key)

    def _canonical(self, vm: Vm) -> Vm:
        """``vm`` with its host name interned and its network and tag tuples shared with
        every VM attached to the same port groups or tagged alike: thousands of VMs hold
        one copy (memory). Done in place: each field gets an equal value (the same text,
        a tuple of the same names), so a holder of the event cannot tell but by identity,
        and a rebuilt ``Vm`` (13 frozen-field sets, about 2 us) is not paid per event."""
        host = sys.intern(vm.host)
        if host is not vm.host:
            _share(vm, "host", host)
        networks = self._shared.setdefault(vm.networks, vm.networks)
        if networks is not vm.networks:
            _share(vm, "networks", networks)
        tags = self._shared.setdefault(vm.tags, vm.tags)
        if tags is not vm.tags:
            _share(vm, "tags", tags)
        return vm

    def _remove_vm(self, key: Key, delta: Delta) -> None:
        old = self.vms.pop(key, None)
        if old is not None:
            self._unindex(old)
            if key not in delta.vms:
                delta.before[key] = old
            delta.vms.add(key)

    def _unindex(self, vm: Vm) -> None:
        _unindex(self._by_host, (vm.session, vm.host), vm.id)
        for name in dict.fromkeys(vm.networks):
            _unindex(self._by_pg, (vm.session, name), vm.id)


def _share(vm: Vm, name: str, value: object) -> None:
    """Set a field of a frozen ``vm`` to an *equal* value (see ``Inventory._canonical``)."""
    object.__setattr__(vm, name, value)


def _put(table: dict[Key, _T], key: Key, item: _T, changed: set[Key]) -> None:
    if table.get(key) != item:
        table[key] = item
        changed.add(key)


def _drop(table: dict[Key, _T], key: Key, changed: set[Key]) -> None:
    if table.pop(key, None) is not None:
        changed.add(key)


def _keys(session: str, members: Members | None) -> Collection[Key]:
    return [(session, vid) for vid in members] if members else ()


def _index(index: dict[Key, Members], at: Key, vid: str) -> None:
    """Add VM id ``vid`` under ``at``: a list while small (8 bytes an entry; a host or port
    group has tens of VMs), a set from ``SMALL`` on (fast removal for big port groups)."""
    members = index.get(at)
    if members is None:
        index[at] = [vid]
    elif isinstance(members, set):
        members.add(vid)
    else:  # callers never index an id twice under one entry (see _upsert_vm)
        members.append(vid)
        if len(members) > SMALL:
            index[at] = set(members)


def _unindex(index: dict[Key, Members], at: Key, vid: str) -> None:
    """Remove VM id ``vid`` from ``at``. Given the stored record's id, the list scan stops
    at it by identity and reads one string per other entry on the way."""
    members = index.get(at)
    if members is None:
        return
    if isinstance(members, set):
        members.discard(vid)
    else:
        try:  # one scan, not "in" then "remove" (and no context manager per call)
            members.remove(vid)
        except ValueError:
            return  # not there: the entry is as it was, not empty
    if not members:
        del index[at]


def _replace(table: dict[Key, _T], new: Mapping[Key, _T], session: str) -> set[Key]:
    """Make ``table``'s items of ``session`` equal ``new``; return the keys that changed."""
    changed: set[Key] = set()
    for key in [k for k in table if k[0] == session and k not in new]:
        del table[key]
        changed.add(key)
    for key, item in new.items():
        if table.get(key) != item:
            table[key] = item
            changed.add(key)
    return changed
