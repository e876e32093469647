"""Autovlan: which VLANs each edge port must carry, kept up to date one change at a time.

The model
---------
A VM *contributes* the triple (switch, port, vlan) when it is powered on, its session has
autovlan on, one of its port groups carries ``vlan`` (within the session's allowed range),
and an uplink of its host that carries that port group lands on ``port`` of ``switch``,
an edge port. The engine keeps, for every triple, the set of VMs contributing it (a
reference count that also answers "why"). A port's desired VLANs are the triples with at
least one contributor.

Every change (VM placed, moved, powered, removed; host uplinks relearned; port group VLAN
changed; a session's full snapshot) recomputes the contributions of only the VMs it
affects, found through indexes host -> VMs and port group -> VMs, and updates only the
triples whose contributor sets changed. ``full_desired`` computes the same result from
scratch; the two must always agree (tests/unit/test_engine_equivalence.py).

Planning
--------
``plan(states, now)`` compares desired VLANs with the ports' state read from the switch:

- a desired VLAN not on the port is added at once;
- a VLAN on the port that vmfabric did not add (not in the switch's origin record) is
  static: never removed;
- a dynamic VLAN no longer desired is removed ``prune_delay`` seconds after its last
  contributor left (a VM coming back cancels it), and only while every autovlan session
  that could have asked for it (its allowed range covers the VLAN) is in sync: a session
  that is connecting, disconnected or has not yet delivered its first full snapshot holds
  its VLANs (fail-static).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from vmfabric.core.model import (
    Host,
    HostRemoved,
    HostUpsert,
    Plan,
    PortGroup,
    PortGroupRemoved,
    PortGroupUpsert,
    PortMode,
    PortPlan,
    PortState,
    Power,
    Reason,
    SessionStatus,
    Snapshot,
    SourceEvent,
    Vm,
    VmRemoved,
    VmUpsert,
    carrying_uplinks,
)

Key = tuple[str, str]  # (session, name or id)
PortKey = tuple[str, str]  # (switch, port)
Triple = tuple[str, str, int]  # (switch, port, vlan)
_NONE: tuple[Triple, ...] = ()
_REASON_VMS = 10
_T = TypeVar("_T", Host, PortGroup)  # VMs named in one reason; the rest are counted


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """What autovlan may do for one session."""

    name: str
    autovlan: bool = True
    allowed: frozenset[int] = frozenset(range(1, 4095))
    check: bool = False  # mode: check: its VLANs are computed and reported, never applied


@dataclass(frozen=True, slots=True)
class SwitchPolicy:
    """The ports autovlan may write on one switch. ``close_open``: narrow a port that
    carries every VLAN (OVS: no trunks) to the VLANs needed, instead of leaving it alone."""

    name: str
    edge_ports: frozenset[str]
    close_open: bool = False


def vm_triples(
    vm: Vm,
    host: Host | None,
    portgroups: Mapping[Key, PortGroup],
    policy: SessionPolicy | None,
    edge: Mapping[str, frozenset[str]],
) -> tuple[Triple, ...]:
    """The (switch, port, vlan) triples one VM needs; sorted, without duplicates."""
    if vm.power is not Power.ON or host is None or policy is None or not policy.autovlan:
        return _NONE
    found: set[Triple] = set()
    for name in vm.networks:
        pg = portgroups.get((vm.session, name))
        if pg is None:
            continue
        vlans = pg.vlans & policy.allowed
        if not vlans:
            continue
        uplinks, _ = carrying_uplinks(host, pg)
        for up in uplinks:
            if up.port in edge.get(up.switch, ()):
                found.update((up.switch, up.port, v) for v in vlans)
    return tuple(sorted(found)) if found else _NONE


def full_desired(
    hosts: Iterable[Host],
    portgroups: Iterable[PortGroup],
    vms: Iterable[Vm],
    policies: Iterable[SessionPolicy],
    switches: Iterable[SwitchPolicy],
) -> dict[PortKey, frozenset[int]]:
    """Desired VLANs of every edge port, computed from scratch (verification, cold start)."""
    host_map = {h.key: h for h in hosts}
    pg_map = {p.key: p for p in portgroups}
    pol = {p.name: p for p in policies if not p.check}
    edge = {s.name: s.edge_ports for s in switches}
    out: dict[PortKey, set[int]] = {}
    for vm in vms:
        host = host_map.get((vm.session, vm.host))
        for sw, port, vlan in vm_triples(vm, host, pg_map, pol.get(vm.session), edge):
            out.setdefault((sw, port), set()).add(vlan)
    return {k: frozenset(v) for k, v in out.items()}


def _put(index: dict[PortKey, set[int]], port: PortKey, vlan: int) -> None:
    index.setdefault(port, set()).add(vlan)


def _take(index: dict[PortKey, set[int]], port: PortKey, vlan: int) -> None:
    vlans = index.get(port)
    if vlans is not None:
        vlans.discard(vlan)
        if not vlans:
            del index[port]


def _replace_session_items(
    table: dict[Key, _T], new: dict[Key, _T], session: str, index: Mapping[Key, set[Key]]
) -> set[Key]:
    """Make ``table``'s items of ``session`` equal ``new``; return the VMs indexed under
    every key that changed."""
    touched: set[Key] = set()
    for key in [k for k in table if k[0] == session and k not in new]:
        del table[key]
        touched.update(index.get(key, ()))
    for key, item in new.items():
        if table.get(key) != item:
            table[key] = item
            touched.update(index.get(key, ()))
    return touched


class AutovlanEngine:
    """Incremental desired state plus planning. Not thread-safe: the service owns it."""

    def __init__(
        self,
        switches: Iterable[SwitchPolicy],
        policies: Iterable[SessionPolicy],
        prune_delay: float,
    ) -> None:
        self.switches = {s.name: s for s in switches}
        self._edge = {s.name: s.edge_ports for s in self.switches.values()}
        self.policies = {p.name: p for p in policies}
        self.prune_delay = prune_delay
        self.hosts: dict[Key, Host] = {}
        self.portgroups: dict[Key, PortGroup] = {}
        self.vms: dict[Key, Vm] = {}
        self._contrib: dict[Key, tuple[Triple, ...]] = {}
        self._users: dict[Triple, set[Key]] = {}
        self._enforcing: dict[Triple, int] = {}  # users from sessions not in check mode
        self._desired: dict[PortKey, set[int]] = {}
        self._checked: dict[PortKey, set[int]] = {}  # wanted by check-mode sessions only
        self._by_host: dict[Key, set[Key]] = {}
        self._by_pg: dict[Key, set[Key]] = {}
        self._in_sync: dict[str, bool] = dict.fromkeys(self.policies, False)
        self._vacated: dict[PortKey, dict[int, float]] = {}
        self._synced_at: dict[str, float] = {}
        self.dirty: set[str] = set()  # switches whose desired state changed since last taken

    # ---- queries ---------------------------------------------------------------------

    def desired(self) -> dict[PortKey, frozenset[int]]:
        return {k: frozenset(v) for k, v in self._desired.items() if v}

    def checked(self) -> dict[PortKey, frozenset[int]]:
        """VLANs that only sessions in check mode want, per port: reported, not applied."""
        return {k: frozenset(v) for k, v in self._checked.items() if v}

    def desired_for(self, switch: str, port: str) -> frozenset[int]:
        return frozenset(self._desired.get((switch, port), ()))

    def users(self, switch: str, port: str, vlan: int) -> frozenset[Key]:
        return frozenset(self._users.get((switch, port, vlan), ()))

    def in_sync(self, session: str) -> bool:
        return self._in_sync.get(session, False)

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def next_deadline(self, now: float) -> float | None:
        """Earliest time after ``now`` at which a pending removal becomes due, if any.
        Removals blocked by a session out of sync have none: its snapshot wakes them."""
        dues = []
        for vlans in self._vacated.values():
            for vlan, since in vlans.items():
                blocker, synced = self._sync_gate(vlan)
                due = max(since, synced) + self.prune_delay
                if not blocker and due > now:
                    dues.append(due)
        return min(dues) if dues else None

    # ---- changes -----------------------------------------------------------------------

    def apply(self, events: Iterable[SourceEvent], now: float) -> None:
        for event in events:
            self.apply_one(event, now)

    def apply_one(self, event: SourceEvent, now: float) -> None:
        match event:
            case VmUpsert(vm=vm):
                self._upsert_vm(vm, now)
            case VmRemoved(session=s, id=vid):
                self._remove_vm((s, vid), now)
            case HostUpsert(host=host):
                self.hosts[host.key] = host
                self._recompute(self._by_host.get(host.key, ()), now)
            case HostRemoved(session=s, name=name):
                self.hosts.pop((s, name), None)
                self._recompute(self._by_host.get((s, name), ()), now)
            case PortGroupUpsert(portgroup=pg):
                self.portgroups[pg.key] = pg
                self._recompute(self._by_pg.get(pg.key, ()), now)
            case PortGroupRemoved(session=s, name=name):
                self.portgroups.pop((s, name), None)
                self._recompute(self._by_pg.get((s, name), ()), now)
            case Snapshot():
                self._snapshot(event, now)
            case SessionStatus(session=s, state=state):
                if state != "connected":
                    self._in_sync[s] = False

    def set_policies(self, policies: Iterable[SessionPolicy], now: float) -> None:
        """Replace session policies (config reload); recomputes the VMs of changed ones."""
        new = {p.name: p for p in policies}
        old = self.policies
        changed = {n for n in set(new) | set(old) if new.get(n) != old.get(n)}
        self.policies = new
        for name in changed:
            self._in_sync.setdefault(name, False)
        keys = [k for k in self.vms if k[0] in changed]
        self.policies = old
        for key in keys:  # counted under the old policy: uncount under it
            self._set_contrib(key, _NONE, now)
        self.policies = new
        self._recompute(keys, now)

    def _snapshot(self, snap: Snapshot, now: float) -> None:
        s = snap.session
        touched: set[Key] = set()
        touched |= _replace_session_items(
            self.hosts, {h.key: h for h in snap.hosts}, s, self._by_host
        )
        touched |= _replace_session_items(
            self.portgroups, {p.key: p for p in snap.portgroups}, s, self._by_pg
        )
        new_vms = {v.key: v for v in snap.vms}
        for key in [k for k in self.vms if k[0] == s and k not in new_vms]:
            self._remove_vm(key, now)
        for key, vm in new_vms.items():
            if self.vms.get(key) != vm:
                self._upsert_vm(vm, now)
                touched.discard(key)
        self._recompute(touched, now)
        complete = not snap.unknown_hosts
        if complete and not self._in_sync.get(s, False):
            self._synced_at[s] = now
        self._in_sync[s] = complete

    def _upsert_vm(self, vm: Vm, now: float) -> None:
        key = vm.key
        old = self.vms.get(key)
        if old is not None:
            self._unindex(old)
        self.vms[key] = vm
        self._by_host.setdefault((vm.session, vm.host), set()).add(key)
        for name in vm.networks:
            self._by_pg.setdefault((vm.session, name), set()).add(key)
        self._recompute((key,), now)

    def _remove_vm(self, key: Key, now: float) -> None:
        old = self.vms.pop(key, None)
        if old is not None:
            self._unindex(old)
        self._set_contrib(key, _NONE, now)

    def _unindex(self, vm: Vm) -> None:
        for index, ikey in [(self._by_host, (vm.session, vm.host))] + [
            (self._by_pg, (vm.session, n)) for n in vm.networks
        ]:
            members = index.get(ikey)
            if members is not None:
                members.discard(vm.key)
                if not members:
                    del index[ikey]

    def _recompute(self, keys: Iterable[Key], now: float) -> None:
        for key in list(keys):
            vm = self.vms.get(key)
            if vm is None:
                self._set_contrib(key, _NONE, now)
                continue
            host = self.hosts.get((vm.session, vm.host))
            triples = vm_triples(
                vm, host, self.portgroups, self.policies.get(vm.session), self._edge
            )
            self._set_contrib(key, triples, now)

    def _set_contrib(self, key: Key, new: tuple[Triple, ...], now: float) -> None:
        old = self._contrib.get(key, _NONE)
        if old == new:
            return
        if new:
            self._contrib[key] = new
        else:
            self._contrib.pop(key, None)
        new_set = set(new)
        for t in old:
            if t not in new_set:
                self._drop_user(t, key, now)
        old_set = set(old)
        for t in new:
            if t not in old_set:
                self._add_user(t, key)

    def _checking(self, session: str) -> bool:
        policy = self.policies.get(session)
        return policy is not None and policy.check

    def _add_user(self, t: Triple, key: Key) -> None:
        self._users.setdefault(t, set()).add(key)
        port = (t[0], t[1])
        if self._checking(key[0]):
            if not self._enforcing.get(t):
                _put(self._checked, port, t[2])
                self.dirty.add(t[0])
            return
        count = self._enforcing.get(t, 0) + 1
        self._enforcing[t] = count
        if count > 1:
            return
        _put(self._desired, port, t[2])
        _take(self._checked, port, t[2])
        pending = self._vacated.get(port)
        if pending is not None:
            pending.pop(t[2], None)
        self.dirty.add(t[0])

    def _drop_user(self, t: Triple, key: Key, now: float) -> None:
        users = self._users.get(t)
        if users is None or key not in users:
            return
        users.discard(key)
        if not users:
            del self._users[t]
        port = (t[0], t[1])
        if self._checking(key[0]):
            if not users:
                _take(self._checked, port, t[2])
                self.dirty.add(t[0])
            return
        count = self._enforcing[t] - 1
        if count:
            self._enforcing[t] = count
            return
        del self._enforcing[t]
        _take(self._desired, port, t[2])
        if users:  # only check-mode users are left
            _put(self._checked, port, t[2])
        self._vacated.setdefault(port, {})[t[2]] = now
        self.dirty.add(t[0])

    # ---- planning ----------------------------------------------------------------------

    def plan(
        self,
        states: Mapping[PortKey, PortState],
        now: float,
        switches: Collection[str] | None = None,
    ) -> Plan:
        """The changes that bring the given ports to their desired VLANs at time ``now``.

        Ports without a state (not read yet, switch unreachable) are skipped. Removals that
        are not yet due are reported in ``Plan.held`` and not applied."""
        ports: list[PortPlan] = []
        held: list[PortPlan] = []
        check: list[PortPlan] = []
        for sw_name in sorted(switches if switches is not None else self.switches):
            sw = self.switches.get(sw_name)
            if sw is None:
                continue
            for port in sorted(sw.edge_ports):
                state = states.get((sw_name, port))
                if state is None:
                    continue
                todo, waiting = self._plan_port(sw, state, now)
                if todo is not None:
                    ports.append(todo)
                if waiting is not None:
                    held.append(waiting)
                would = self._check_port(state)
                if would is not None:
                    check.append(would)
        return Plan(ports=tuple(ports), held=tuple(held), check=tuple(check))

    def _check_port(self, state: PortState) -> PortPlan | None:
        """What sessions in check mode would add to this port (never applied)."""
        key = (state.switch, state.port)
        would = frozenset(self._checked.get(key, set()) - state.vlans)
        if not would:
            return None
        reasons = tuple(self._add_reason(key, v) for v in sorted(would))
        return PortPlan(state.switch, state.port, add=would, reasons=reasons)

    def _plan_port(
        self, sw: SwitchPolicy, state: PortState, now: float
    ) -> tuple[PortPlan | None, PortPlan | None]:
        closing = state.mode is PortMode.OPEN and sw.close_open
        if state.mode is not PortMode.TRUNK and not closing:
            return None, None
        key = (state.switch, state.port)
        desired = self._desired.get(key, set())
        add = frozenset(desired - state.vlans)
        reasons = [self._add_reason(key, v) for v in sorted(add)]
        remove, waiting = self._due_removals(key, state, desired, now)
        reasons += [Reason(v, "remove", note=self._remove_note(key, v)) for v in sorted(remove)]
        held = None
        if waiting:
            held = PortPlan(
                state.switch,
                state.port,
                remove=frozenset(waiting),
                reasons=tuple(Reason(v, "hold", note=why) for v, why in sorted(waiting.items())),
            )
        if not add and not remove and not closing:
            return None, held
        if closing:
            reasons.append(Reason(0, "add", note="port carried every VLAN: closed to those needed"))
        todo = PortPlan(state.switch, state.port, add, frozenset(remove), tuple(reasons))
        return todo, held

    def _due_removals(
        self, key: PortKey, state: PortState, desired: Collection[int], now: float
    ) -> tuple[set[int], dict[int, str]]:
        pending = self._vacated.get(key, {})
        for vlan in [v for v in pending if v not in state.dynamic]:
            del pending[vlan]  # gone from the port: nothing left to time
        if not pending and key in self._vacated:
            del self._vacated[key]
        remove: set[int] = set()
        waiting: dict[int, str] = {}
        for vlan in state.dynamic - set(desired):
            blocker, synced = self._sync_gate(vlan)
            if blocker:
                waiting[vlan] = f"session {blocker} not in sync: held (fail-static)"
                continue
            since = self._vacated.setdefault(key, {}).setdefault(vlan, now)
            due = max(since, synced) + self.prune_delay
            if now >= due:
                remove.add(vlan)
            else:
                waiting[vlan] = f"prune delay: removal in {due - now:.1f}s"
        return remove, waiting

    def _sync_gate(self, vlan: int) -> tuple[str, float]:
        """The first session that could want ``vlan`` and is not in sync (or ""), and the
        latest time one of those sessions (re)gained sync: the prune delay counts from
        there, so a manager that comes back with fewer VMs cannot prune at once."""
        latest = 0.0
        for name, pol in sorted(self.policies.items()):
            if pol.autovlan and vlan in pol.allowed:
                if not self._in_sync.get(name, False):
                    return name, latest
                latest = max(latest, self._synced_at.get(name, 0.0))
        return "", latest

    def _add_reason(self, key: PortKey, vlan: int) -> Reason:
        users = sorted(self._users.get((key[0], key[1], vlan), ()))
        names: list[str] = []
        pgs: set[str] = set()
        for vm_key in users:
            vm = self.vms[vm_key]
            if len(names) < _REASON_VMS:
                names.append(vm.name)
            for pg_name in vm.networks:
                pg = self.portgroups.get((vm.session, pg_name))
                if pg is not None and vlan in pg.vlans:
                    pgs.add(pg_name)
        note = f"+{len(users) - len(names)} more VMs" if len(users) > len(names) else ""
        return Reason(vlan, "add", tuple(names), tuple(sorted(pgs)), note)

    def _remove_note(self, key: PortKey, vlan: int) -> str:
        since = self._vacated.get(key, {}).get(vlan)
        if since is None:
            return "no powered-on VM needs it"
        return f"no powered-on VM needs it (prune delay {self.prune_delay:g}s elapsed)"

    def forget_removed(self, switch: str, port: str, vlans: Iterable[int]) -> None:
        """Called after a removal was applied: its timer is done."""
        pending = self._vacated.get((switch, port))
        if pending is not None:
            for v in vlans:
                pending.pop(v, None)
